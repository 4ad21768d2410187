"""Appending to the ledger: the only code that writes ``LedgerEntry`` rows.

Appends are serialised so the hash chain never forks or skips: on PostgreSQL with a
transaction-scoped advisory lock, on SQLite by its single writer (``BEGIN IMMEDIATE``).
Lock order: callers lock their own rows (rights, jobs) first; the ledger head is
always taken last and held until the caller's transaction commits.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from compute.protocol.canonical import canonical
from compute.protocol.envelope import format_time
from ledger.exceptions import LedgerConflict
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import LedgerEntry

GENESIS = "0" * 64
LEDGER_LOCK_ID = 0x5553_5546  # "USUF": the advisory lock key of the ledger head


def _lock_head() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_ID])


def entry_append(
    *,
    kind: str,
    event_id: str,
    payload: dict[str, Any],
    producer_time: datetime | None = None,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    provider_id: int | None = None,
    right_id: int | None = None,
) -> LedgerEntry:
    """Append one entry, or return the existing one for a repeated ``event_id``.

    A repeated id with a different kind or payload raises ``LedgerConflict``.
    """
    with transaction.atomic():
        _lock_head()
        existing = LedgerEntry.objects.filter(event_id=event_id).first()
        if existing is not None:
            if existing.kind == kind and canonical(existing.payload) == canonical(payload):
                return existing
            raise LedgerConflict(f"event {event_id!r} was recorded with a different body")
        last = LedgerEntry.objects.order_by("-seq").only("seq", "entry_hash").first()
        seq = last.seq + 1 if last else 0
        prev = last.entry_hash if last else GENESIS
        now = timezone.now()
        produced = producer_time or now
        entry = {
            "seq": seq,
            "kind": kind,
            "version": 1,
            "event_id": event_id,
            "producer_time": format_time(produced),
            "integrated_time": format_time(now),
            "payload": payload,
            "prev": prev,
        }
        body = canonical(entry)
        return LedgerEntry.objects.create(
            seq=seq,
            kind=kind,
            event_id=event_id,
            payload=payload,
            body=body.decode(),
            prev_hash=prev,
            entry_hash=hashlib.sha256(body).hexdigest(),
            leaf_hash=hashlib.sha256(b"\x00" + body).hexdigest(),  # RFC 9162 §2.1.1 leaf
            hub_kid=hub_kid(),
            hub_sig=base64.b64encode(hub_private_key().sign(body)).decode(),
            producer_time=produced,
            integrated_at=now,
            dataset_id=dataset_id,
            consumer_id=consumer_id,
            provider_id=provider_id,
            right_id=right_id,
        )
