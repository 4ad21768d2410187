"""Ledger append throughput: node-signed usage entries integrated per second, against a baseline.

    .venv/bin/python benchmarks/ledger_append.py [--entries 100000] [--batch 5000]

Measured in one run, on a freshly created PostgreSQL database (see ``_setup``):

* baseline: plain batched INSERT (``execute_values``) of SHA-256-chained rows of the
  same size as our entries into a table with only a primary key;
* ours: ``entries_append_batch`` with each node receipt verified first (Ed25519, in
  a thread pool, one batch ahead), every entry canonicalised, chained, hub-signed (in
  a second pool, while the rest of the batch is built), its Merkle subtrees stored,
  and one signed checkpoint per batch.
"""

from __future__ import annotations

import argparse
import hashlib
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from _setup import django_setup, fresh_database, machine


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


def ours(wires: list[dict], batch: int, resolve, threads: int, pipelined: bool) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from ledger.hubkey import hub_private_key
    from ledger.sequencer import parallel_signer, verify_receipts
    from ledger.services import BatchResult, PipelinedSequencer, entries_append_batch

    pool = ThreadPoolExecutor(max_workers=threads)  # receipt verification, one batch ahead
    signing = ThreadPoolExecutor(max_workers=threads)  # hub signatures, while the batch's bodies are built
    coordinator = ThreadPoolExecutor(max_workers=1)
    signer = parallel_signer(hub_private_key(), signing)
    sequencer = PipelinedSequencer(signer=signer) if pipelined else None
    results: list[Future[BatchResult] | BatchResult] = []
    start = time.perf_counter()
    batches = [wires[i : i + batch] for i in range(0, len(wires), batch)]
    # Pipeline: the next batch's receipts are verified while this one is sequenced and written
    # (and, pipelined, while the one before is still being written).
    pending = coordinator.submit(verify_receipts, batches[0], resolve, pool)
    for k, chunk in enumerate(batches):
        verdicts = pending.result()
        if k + 1 < len(batches):
            pending = coordinator.submit(verify_receipts, batches[k + 1], resolve, pool)
        drafts = []
        for wire, bad in zip(chunk, verdicts, strict=True):
            if bad is not None:
                raise SystemExit(f"receipt rejected: {bad}")
            drafts.append(usage_draft(wire))
        if sequencer is not None:
            results.append(sequencer.submit(drafts))
        else:
            results.append(entries_append_batch(drafts=drafts, signer=signer))
    if sequencer is not None:
        sequencer.close()
        results = [f.result() for f in results]  # type: ignore[union-attr]
    elapsed = time.perf_counter() - start
    pool.shutdown()
    signing.shutdown()
    coordinator.shutdown()
    checkpoints = sum(r.checkpoint is not None for r in results)  # type: ignore[union-attr]
    return len(wires) / elapsed, checkpoints


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serial", action="store_true", help="entries_append_batch per batch, no PipelinedSequencer")
    args = parser.parse_args()
    fresh_database()
    django_setup()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger import tree
    from ledger.models import LedgerEntry
    from protocol import keys

    node = Ed25519PrivateKey.generate()
    kid = keys.key_id(node)
    public = node.public_key()
    wires = receipts(args.entries, node, kid)
    rate, cps = ours(wires, args.batch, lambda k: public if k == kid else None, args.threads, not args.serial)
    bodies = [e.encode() for e in LedgerEntry.objects.order_by("seq").values_list("body", flat=True)]
    base = baseline(bodies, args.batch)
    assert tree.tree_size() == args.entries
    from django.db import connection

    from ledger.models import Checkpoint

    with connection.cursor() as cur:  # one unbroken chain, and the last checkpoint covers the whole tree
        cur.execute(
            "SELECT count(*) FROM (SELECT seq, prev_hash, lag(entry_hash) OVER (ORDER BY seq) AS before"
            " FROM ledger_ledgerentry) t WHERE seq > 0 AND prev_hash <> before"
        )
        assert cur.fetchone()[0] == 0
    last = Checkpoint.objects.order_by("-size").first()
    assert last is not None and last.size == args.entries and bytes(last.root) == tree.root(args.entries)
    print(f"machine: {machine()}")
    from ledger.sequencer import BACKEND

    print(
        f"entries: {args.entries}, batch: {args.batch}, threads: {args.threads} verifying + {args.threads} signing,"
        f" Ed25519: {BACKEND}, {'one batch after the other' if args.serial else 'pipelined sequencer'}"
    )
    print(f"baseline  plain batched INSERT of chained rows:      {base:10,.0f} rows/s")
    print(f"usufruct  verified, signed, Merkle-stored entries:   {rate:10,.0f} entries/s ({cps} checkpoints)")


if __name__ == "__main__":
    main()
