"""Inclusion and consistency proofs from stored subtrees at 1,000,000 entries.

    .venv/bin/python benchmarks/ledger_proofs.py [--entries 1000000] [--samples 1000]

Builds the ledger once (``_million``; several minutes), then times, for random
entries and sizes: ``tree.inclusion_proof`` (one query of O(log n) rows), the full
API read ``selectors.inclusion`` (tree size, root, proof, checkpoint), and
``tree.consistency_proof``. Each proof is checked against the stored roots. Also the
hub's side of a receipt batch: ``receipt_batch_record`` re-reads the node's receipts
in the batch's range and recomputes their digest before it appends the entry (timed
on the recorded batches, read-only).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import _million
from _setup import machine


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return (
        f"p50 {statistics.median(s) * 1e3:.2f} ms, p95 {s[int(len(s) * 0.95)] * 1e3:.2f} ms, max {s[-1] * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    built = _million.ensure(args.entries, args.rebuild)
    from ledger import selectors, services, tree
    from ledger.models import LedgerEntry
    from protocol import attest, merkle

    size = tree.tree_size()
    root = tree.root(size)
    rng = random.Random(9162)
    inc, api, cons = [], [], []
    entries = {e.seq: e for e in LedgerEntry.objects.filter(seq__in=rng.sample(range(size), args.samples))}
    for seq, entry in entries.items():
        t = time.perf_counter()
        proof = tree.inclusion_proof(seq, size, current=size)
        inc.append(time.perf_counter() - t)
        merkle.verify_inclusion(bytes.fromhex(entry.leaf_hash), seq, size, proof, root)
        t = time.perf_counter()
        selectors.inclusion(entry)
        api.append(time.perf_counter() - t)
    for _ in range(args.samples // 4):
        a = rng.randrange(1, size)
        t = time.perf_counter()
        proof = tree.consistency_proof(a, size, current=size)
        cons.append(time.perf_counter() - t)
        merkle.verify_consistency(a, size, proof, tree.root(a, current=size), root)
    batches = []
    recorded = LedgerEntry.objects.filter(kind="receipt_batch").values_list("payload", flat=True)
    for p in rng.sample(list(recorded), min(20, len(recorded))):
        t = time.perf_counter()
        digests = [d for _, d in services._node_receipts(p["node"], p["organization"], p["first_seq"], p["last_seq"])]
        assert attest.batch_digest(digests) == p["digest"]
        batches.append((time.perf_counter() - t, len(digests)))
    print(f"machine: {machine()}")
    if built is not None:
        print(
            f"built {args.entries:,} usage entries in {built:.0f} s ({args.entries / built:,.0f}/s, unverified build)"
        )
    print(f"tree size {size:,}; {len(inc)} random entries")
    print(f"inclusion proof (stored subtrees):      {_ms(inc)}")
    print(f"entry + proof as the API serves it:     {_ms(api)}")
    print(f"consistency proof (random old size):    {_ms(cons)}")
    if batches:
        n = sum(c for _, c in batches) // len(batches)
        print(f"receipt batch recomputed from the log:  {_ms([t for t, _ in batches])} ({n:,} receipts each)")


if __name__ == "__main__":
    main()
