"""Shared pieces of the ledger benchmarks: signed receipts, their usage entries, and the plain baseline."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime


def receipts(n: int, key, kid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    from protocol import envelope

    at = envelope.format_time(datetime.now(UTC))
    out = []
    for i in range(n):
        payload = {
            "type": "usage_receipt",
            "job": str(uuid.UUID(int=i)),
            "step": "stats/partial",
            "round": 0,
            "node": "acme",
            "dataset": 1 + i % 7,
            "right": 1 + i % 50,
            "consumer": 3,
            "operation": "stats",
            "rows": 1000 + i % 97,
            "request": uuid.UUID(int=i + 10**9).hex,
            "at": at,
        }
        out.append(envelope.sign_payload(payload, key=key, kid=kid))
    return out


def baseline(bodies: list[bytes], batch: int) -> float:
    from django.db import connection, transaction
    from psycopg2.extras import execute_values

    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_chain (seq bigint PRIMARY KEY, body text NOT NULL, prev char(64) NOT NULL,"
            " hash char(64) NOT NULL)"
        )
    prev = "0" * 64
    start = time.perf_counter()
    for i in range(0, len(bodies), batch):
        rows = []
        for seq in range(i, min(i + batch, len(bodies))):
            h = hashlib.sha256(prev.encode() + bodies[seq]).hexdigest()
            rows.append((seq, bodies[seq].decode(), prev, h))
            prev = h
        with transaction.atomic(), connection.cursor() as cur:
            execute_values(cur.cursor, "INSERT INTO bench_chain VALUES %s", rows, page_size=batch)
    return len(bodies) / (time.perf_counter() - start)


def usage_draft(wire: dict):  # type: ignore[no-untyped-def]
    from ledger.services import Draft

    r = wire["payload"]
    return Draft(
        kind="usage",
        event_id=f"usage:{r['request']}",
        payload={
            "job": r["job"],
            "step": r["step"],
            "dataset": r["dataset"],
            "right": r["right"],
            "order": r["right"],
            "consumer": r["consumer"],
            "provider": 1,
            "operation": r["operation"],
            "rows": r["rows"],
            "units": 1,
            "receipt": wire,
        },
        dataset_id=r["dataset"],
        consumer_id=r["consumer"],
        provider_id=1,
        right_id=r["right"],
    )


def leave_pending(drafts: list) -> None:  # type: ignore[type-arg]
    """What the accepting hub workers leave for the writer (``ledger.writer.entry_enqueue``), in bulk:
    pending rows with each payload's RFC 8785 text already made."""
    from datetime import UTC, datetime

    from ledger.models import PendingEntry
    from protocol import jcs
    from protocol.canonical import canonical

    now = datetime.now(UTC)
    PendingEntry.objects.bulk_create(
        (
            PendingEntry(
                kind=d.kind,
                event_id=d.event_id,
                payload_json=jcs.dumps_checked(d.payload, exact=canonical).decode(),
                producer_time=d.producer_time or now,
                dataset_id=d.dataset_id,
                consumer_id=d.consumer_id,
                provider_id=d.provider_id,
                right_id=d.right_id,
            )  # fmt: skip
            for d in drafts
        ),
        batch_size=5000,
    )
