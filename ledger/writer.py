"""The ledger writer: the high-volume entries of jobs, integrated in batches.

A hub worker that accepts a node's reply does not append to the log itself: in the same
transaction as the reply it leaves the ``usage`` (and later ``settlement``, ``dp_charge``)
entry as a :class:`~ledger.models.PendingEntry`. The writer takes the pending entries
in the order they were accepted, sequences them through the batched sequencer (chain,
hub signatures across a thread pool, Merkle subtrees, two bulk COPYs; the next part
sequenced while one is written) and deletes them,
all under the ledger lock and in one transaction, so an entry is pending or on the log,
never both or neither.

Order is kept: every other append (:func:`ledger.services.entry_append`) and every
checkpoint first integrates what is pending, so a revocation can never land before a
use that was accepted earlier. A settlement names the usage entries it charges by their
event ids while they wait; the writer turns those into sequence numbers, which the log
has by then (docs/decisions/0012-ledger-writer.md).

Lock order: as :mod:`ledger.services` (callers' rows, then the ledger head, then the
checkpoint lock).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger import services
from ledger.bulk import insert_rows
from ledger.exceptions import LedgerConflict
from ledger.models import LedgerEntry, PendingEntry
from protocol import jcs
from protocol.canonical import canonical

BATCH = services.PENDING_BATCH
# Seconds: at most one wake-up task per hub process this often. A wake-up's fixed cost (the
# task, the lock, the tree's frontier) is shared by what it takes: 25 entries cost 0.22-0.29 ms
# each, 100 or more 0.10 ms (measured on the hub path); at a few hundred replies a second,
# 250 ms gathers batches of about a hundred, and an entry reaches the log within that.
_WAKE_EVERY = settings.USUFRUCT_LEDGER_WAKE_MS / 1000
_last_wake = 0.0  # when the last wake-up was (or is) due to run
_due = 0.0
_collected: ContextVar[list[PendingEntry] | None] = ContextVar("usufruct_pending_collected", default=None)


def entry_enqueue(
    *,
    kind: str,
    event_id: str,
    payload: dict[str, Any],
    producer_time: datetime | None = None,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    provider_id: int | None = None,
    right_id: int | None = None,
) -> None:
    """Leave an entry for the writer, in the caller's transaction; a repeat with the same body is a no-op.

    Inside :func:`entries_collected`, the row is kept and inserted with the others when it ends.
    """
    # The canonical text is made here, in the accepting worker, not under the writer's lock.
    text = jcs.dumps_checked(payload, exact=canonical).decode()
    row = PendingEntry(
        kind=kind,
        event_id=event_id,
        payload_json=text,
        producer_time=producer_time or timezone.now(),
        dataset_id=dataset_id,
        consumer_id=consumer_id,
        provider_id=provider_id,
        right_id=right_id,
    )
    collecting = _collected.get()
    if collecting is not None:
        collecting.append(row)
        return
    _insert([row])


_PENDING_COLUMNS = [
    "kind", "event_id", "payload_json", "producer_time", "dataset_id", "consumer_id", "provider_id", "right_id",
    "created_at",
]  # fmt: skip


def _insert(rows: list[PendingEntry], *, retry: bool = True) -> None:
    """Insert pending rows in one statement, leaving out each one already pending or on the log
    with the same kind and body; a different body under a known event id is a conflict."""
    first: dict[str, PendingEntry] = {}
    for row in rows:
        seen = first.setdefault(row.event_id, row)
        if seen is not row and (seen.kind, seen.payload_json) != (row.kind, row.payload_json):
            raise LedgerConflict(f"event {row.event_id!r} was recorded with a different body")
    ids = list(first)
    for event_id, kind in LedgerEntry.objects.filter(event_id__in=ids).values_list("event_id", "kind"):
        if kind != first.pop(event_id).kind:
            raise LedgerConflict(f"event {event_id!r} was recorded with a different body")
    waiting = PendingEntry.objects.filter(event_id__in=list(first)).values_list("event_id", "kind", "payload_json")
    for event_id, kind, text in waiting:
        row = first.pop(event_id)
        if (kind, text) != (row.kind, row.payload_json):
            raise LedgerConflict(f"event {event_id!r} was recorded with a different body")
    if not first:
        return
    try:
        with transaction.atomic():
            now = timezone.now()
            insert_rows(
                PendingEntry,
                _PENDING_COLUMNS,
                [[*(getattr(r, c) for c in _PENDING_COLUMNS[:-1]), now] for r in first.values()],
            )
    except IntegrityError:
        # Another transaction left one of these since the read above: read and compare again.
        if not retry:
            raise LedgerConflict(f"event {next(iter(first))!r} is being recorded concurrently") from None
        for row in first.values():
            _insert([row], retry=False)
        return
    transaction.on_commit(_wake)


@contextmanager
def entries_collected() -> Iterator[None]:
    """Inside, :func:`entry_enqueue` keeps its rows; they are inserted together, in the order
    they were enqueued, when the block ends without an error (in the caller's transaction)."""
    rows: list[PendingEntry] = []
    token = _collected.set(rows)
    try:
        yield
    finally:
        _collected.reset(token)
    if rows:
        _insert(rows)


def _wake() -> None:
    """Ask a hub worker to integrate, once this commit is visible; at most one wake-up per
    ``_WAKE_EVERY`` per process, and never none: a commit that finds no wake-up due after it
    schedules one (a trailing wake-up), so the last acceptance of a burst is not left waiting
    for the beat backstop."""
    global _last_wake, _due
    now = time.monotonic()
    if now < _due:
        return  # a wake-up is due after this commit already: it will see these rows
    delay = max(0.0, _last_wake + _WAKE_EVERY - now)
    _last_wake = _due = now + delay
    from ledger.tasks import integrate_pending  # the tasks module imports this one

    integrate_pending.apply_async(queue="hub", countdown=delay or None)


def integrate(*, limit: int = BATCH) -> int:
    """Integrate up to ``limit`` pending entries, oldest first; returns how many."""
    with transaction.atomic():
        services._lock(services.LEDGER_LOCK_ID)
        return services.pending_integrate_locked(limit)


def integrate_all(*, limit: int = BATCH) -> int:
    """Integrate until nothing is pending: the writer task's body."""
    total = 0
    while True:
        n = integrate(limit=limit)
        total += n
        if n < limit:
            return total
