"""The ledger writer: accepted entries wait as pending rows and are integrated in order, in batches."""

from __future__ import annotations

import threading

import pytest

from ledger import services, writer
from ledger.exceptions import LedgerConflict
from ledger.models import LedgerEntry, PendingEntry

pytestmark = pytest.mark.django_db


def _use(n: int, job: str = "job-1") -> str:
    event = f"usage:test-{job}-{n}"
    writer.entry_enqueue(kind="usage", event_id=event, payload={"job": job, "n": n}, right_id=1)
    return event


def test_pending_entries_are_integrated_in_order_and_settlements_cite_seqs(db) -> None:  # type: ignore[no-untyped-def]
    first, second = _use(1), _use(2)
    writer.entry_enqueue(
        kind="settlement", event_id="settlement:job-1:1", payload={"job": "job-1", "usage": [first, second]}
    )
    assert LedgerEntry.objects.count() == 0 and PendingEntry.objects.count() == 3
    assert writer.integrate_all(limit=2) == 3  # two batches: the settlement cites uses of the first
    assert not PendingEntry.objects.exists()
    entries = {e.event_id: e for e in LedgerEntry.objects.all()}
    assert entries["settlement:job-1:1"].payload["usage"] == [entries[first].seq, entries[second].seq]
    assert [e.kind for e in LedgerEntry.objects.order_by("seq")] == ["usage", "usage", "settlement"]
    chain = list(LedgerEntry.objects.order_by("seq"))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(chain, chain[1:]))


def test_a_direct_append_and_a_checkpoint_first_integrate_what_is_pending(db) -> None:  # type: ignore[no-untyped-def]
    use = _use(1)
    revoked = services.entry_append(kind="right_revoked", event_id="right_revoked:1", payload={"right": 1})
    assert LedgerEntry.objects.get(event_id=use).seq < revoked.seq  # accepted first, on the log first
    _use(2)
    cp = services.checkpoint_create()
    assert cp is not None and cp.size == 3 and not PendingEntry.objects.exists()


def test_enqueueing_again_is_idempotent_and_a_different_body_is_a_conflict(db) -> None:  # type: ignore[no-untyped-def]
    event = _use(1)
    _use(1)  # the same acceptance again: nothing new
    assert PendingEntry.objects.count() == 1
    with pytest.raises(LedgerConflict):
        writer.entry_enqueue(kind="usage", event_id=event, payload={"job": "job-1", "n": 99}, right_id=1)
    writer.integrate_all()
    _use(1)  # already on the log: nothing pending
    assert not PendingEntry.objects.exists() and LedgerEntry.objects.filter(event_id=event).count() == 1
    with pytest.raises(LedgerConflict):
        writer.entry_enqueue(kind="settlement", event_id=event, payload={}, right_id=1)


@pytest.mark.django_db(transaction=True)
def test_an_entry_left_by_another_transaction_meanwhile_is_compared_not_lost(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The race the pre-read cannot see: another connection commits the same event id between this
    one's read and its COPY. The COPY's unique violation is Django's IntegrityError; each row is then
    taken alone: the same body is a no-op, a different one a conflict, and the others are kept."""
    from django.db import connection, transaction

    from ledger import bulk

    real = bulk.insert_rows

    def other_connection_first(event_id: str, payload: dict) -> None:  # type: ignore[type-arg]
        def run() -> None:
            try:
                writer.entry_enqueue(kind="usage", event_id=event_id, payload=payload)
            finally:
                connection.close()

        t = threading.Thread(target=run)
        t.start()
        t.join()

    for raced, theirs, outcome in (("usage:race-same", {"n": 1}, None), ("usage:race-diff", {"n": 2}, LedgerConflict)):
        calls: list[int] = []
        main = threading.current_thread()

        def racing(model, columns, rows, raced=raced, theirs=theirs, calls=calls):  # type: ignore[no-untyped-def]
            if threading.current_thread() is main:
                calls.append(len(rows))
                if len(calls) == 1:  # the batch's own COPY: the other connection gets there first
                    other_connection_first(raced, theirs)
            real(model, columns, rows)

        monkeypatch.setattr(writer, "insert_rows", racing)
        mine = raced.replace("race", "kept")
        if outcome is None:
            with transaction.atomic(), writer.entries_collected():
                writer.entry_enqueue(kind="usage", event_id=mine, payload={"n": 0})
                writer.entry_enqueue(kind="usage", event_id=raced, payload={"n": 1})
            assert calls[:2] == [2, 1] and set(PendingEntry.objects.values_list("event_id", flat=True)) >= {mine, raced}
        else:
            with pytest.raises(LedgerConflict), transaction.atomic(), writer.entries_collected():
                writer.entry_enqueue(kind="usage", event_id=mine, payload={"n": 0})
                writer.entry_enqueue(kind="usage", event_id=raced, payload={"n": 1})
            assert PendingEntry.objects.get(event_id=raced).payload_json == '{"n":2}'  # theirs, untouched
            assert not PendingEntry.objects.filter(event_id=mine).exists()  # rolled back with the caller
