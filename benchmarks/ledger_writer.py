"""The production ledger writer's throughput: pending usage → chained, signed, Merkle-stored entries.

    .venv/bin/python benchmarks/ledger_writer.py [--entries 100000]

What the product does: a hub worker that accepted a node's reply (receipt checked) leaves
its ``usage`` entry as a ``PendingEntry`` in the reply's transaction; the writer
(``ledger.writer.integrate_all``, the ``ledger.tasks.integrate_pending`` task) takes
them 20,000 per transaction under the ledger lock, in parts of 2,500, each part
sequenced on a thread while the one before is written: RFC 8785 body, SHA-256 chain, hub Ed25519
signature (two threads), Merkle subtrees, two COPYs, the pending rows deleted; then
the beat signs a checkpoint. Timed here: from the pending rows to the signed checkpoint
over all of them. Baseline, same run: a plain batched INSERT of chained rows of the same
bodies into a table with only a primary key.
"""

from __future__ import annotations

import argparse
import time

from _chain import baseline, leave_pending, receipts, usage_draft
from _setup import django_setup, fresh_database, machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    fresh_database()
    django_setup()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger import services, tree, writer
    from ledger.models import Checkpoint, LedgerEntry, PendingEntry
    from protocol import keys

    node = Ed25519PrivateKey.generate()
    wires = receipts(args.entries, node, keys.key_id(node))
    leave_pending([usage_draft(wire) for wire in wires])  # what the hub workers left, accepted and checked
    start = time.perf_counter()
    integrated = writer.integrate_all()
    cp = services.checkpoint_create()
    elapsed = time.perf_counter() - start
    assert integrated == args.entries and not PendingEntry.objects.exists()
    assert cp is not None and cp.size == args.entries and bytes(cp.root) == tree.root(args.entries)
    assert Checkpoint.objects.count() == 1
    rate = args.entries / elapsed
    bodies = [e.encode() for e in LedgerEntry.objects.order_by("seq").values_list("body", flat=True)]
    base = baseline(bodies, 5000)
    print(f"machine: {machine()}")
    print(f"entries: {args.entries}, {writer.BATCH:,} a transaction, parts of {services.PENDING_PART:,}, 2 signers")
    print(f"baseline  plain batched INSERT of chained rows:         {base:10,.0f} rows/s")
    print(f"usufruct  production writer, pending → signed checkpoint: {rate:10,.0f} entries/s ({rate / base:.2f}×)")


if __name__ == "__main__":
    main()
