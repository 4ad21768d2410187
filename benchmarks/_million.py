"""A ledger of N node-signed usage entries (default 1,000,000) in its own PostgreSQL database, built once.

Built through the production ledger writer (pending rows → ``ledger.writer.integrate_all``,
one checkpoint per batch of 10,000),
preceded by the organisations, the provider's node key and the ``right_granted``
entries the usage rests on, so that a bundle of it passes every verifier check.
After each batch the node's receipts are attested as the node does it (one signed
statement per 5,000 receipts) and recorded by the hub's ``receipt_batch_record``,
which recomputes the statement from the ledger before it appends the entry.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import _setup

RIGHTS = 50


def dataset_of(right: int) -> int:
    return 1 + right % 7


def ensure(entries: int, rebuild: bool = False) -> float | None:
    """Make sure the database holds ``entries`` usage entries (+ grants); return build seconds if built."""
    os.environ["USUFRUCT_BENCH_DATABASE_URL"] = _setup.URL.rsplit("/", 1)[0] + f"/usufruct_bench_{entries}"
    _setup.URL = os.environ["USUFRUCT_BENCH_DATABASE_URL"]
    import psycopg2

    try:
        with psycopg2.connect(_setup.URL) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ledger_ledgerentry WHERE kind = 'usage'")
            have = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM ledger_ledgerentry WHERE kind = 'receipt_batch'")
            if cur.fetchone()[0] == 0:
                have = -1  # built before receipt batches existed
    except psycopg2.Error:
        have = -1
    if have == entries and not rebuild:
        _setup.django_setup("/tmp/usufruct-bench-million")
        return None
    _setup.fresh_database()
    _setup.django_setup("/tmp/usufruct-bench-million")
    return _build(entries)


def _build(entries: int) -> float:
    from _chain import leave_pending
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from django.conf import settings

    from ledger import writer
    from ledger.services import (
        Draft,
        checkpoint_create,
        receipt_batch_pending,
        receipt_batch_record,
    )
    from marketplace.models import Node, Organization
    from protocol import attest, envelope, keys

    provider = Organization.objects.create(name="Acme", slug="acme", is_provider=True)
    consumer = Organization.objects.create(name="Bank", slug="bank", is_consumer=True)
    node_key = Ed25519PrivateKey.generate()
    kid = keys.key_id(node_key)
    Node.objects.create(
        organization=provider, slug="acme", status="active", public_key=keys.public_b64(node_key), kid=kid
    )
    expires = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    grants = [
        Draft(
            "right_granted",
            f"right_granted:{r}",
            {
                "right": r,
                "consumer": consumer.id,
                "provider": provider.id,
                "dataset": dataset_of(r),
                "operations": ["stats"],
                "quota": 10**7,
                "expires_at": expires,
                "purpose": "benchmark",
            },
            dataset_id=dataset_of(r),
            consumer_id=consumer.id,
            provider_id=provider.id,
            right_id=r,
        )  # fmt: skip
        for r in range(1, RIGHTS + 1)
    ]
    leave_pending(grants)
    writer.integrate_all()
    at = envelope.format_time(datetime.now(UTC))
    start = time.perf_counter()
    batch = 10_000
    for base in range(0, entries, batch):
        drafts = []
        for i in range(base, min(base + batch, entries)):
            right = 1 + i % RIGHTS
            r = {
                "type": "usage_receipt", "job": str(uuid.UUID(int=i)), "step": "stats/partial", "round": 0,
                "node": "acme", "dataset": dataset_of(right), "right": right, "consumer": consumer.id,
                "operation": "stats", "rows": 1000 + i % 97, "request": uuid.UUID(int=i + 10**9).hex, "at": at,
            }  # fmt: skip
            wire = envelope.sign_payload(r, key=node_key, kid=kid)
            payload = {
                "job": r["job"], "step": r["step"], "dataset": r["dataset"], "right": right, "order": right,
                "consumer": consumer.id, "provider": provider.id, "operation": "stats", "rows": r["rows"],
                "units": 1, "receipt": wire,
            }  # fmt: skip
            drafts.append(
                Draft("usage", f"usage:{r['request']}", payload, dataset_id=r["dataset"], consumer_id=consumer.id,
                      provider_id=provider.id, right_id=right)
            )  # fmt: skip
        leave_pending(drafts)
        writer.integrate_all()
        checkpoint_create()
        while (pending := receipt_batch_pending(node_slug="acme", organization_id=provider.id)) is not None:
            statement = attest.statement(
                log=settings.USUFRUCT_LOG_ORIGIN,
                node="acme",
                first_seq=pending.first_seq,
                last_seq=pending.last_seq,
                digests=pending.digests,
            )
            wire = envelope.sign_payload(statement, key=node_key, kid=kid)
            receipt_batch_record(node_slug="acme", organization_id=provider.id, attestation=wire)
        if base % 100_000 == 0:
            print(f"  built {base + len(drafts):,} entries", flush=True)
    checkpoint_create()  # over the last receipt batches too
    return time.perf_counter() - start
