"""Offline verification of a 1,000,000-entry bundle, with the export it needs.

    .venv/bin/python benchmarks/ledger_verify.py [--entries 1000000] [--jobs 2]

Uses the ledger built by ``_million`` (shared with ``ledger_proofs.py``), exports the
whole-log bundle with ``manage.py export_bundle``'s code path, then runs
``python -m audit.verify`` on it in a fresh process (no Django) and times it.
Baseline in the same run: the bare cost of reading the file and SHA-256-hashing every
body into the Merkle tree (what any verifier must at least do).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _million
from _setup import ROOT, machine


def ed25519_verify_us(n: int = 20_000) -> float:
    """What one signature check costs with the verifier's library, on this machine, now."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    message = os.urandom(400)
    signature, public = key.sign(message), key.public_key()
    t = time.perf_counter()
    for _ in range(n):
        public.verify(signature, message)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bundle", default="/tmp/usufruct-bench-bundle.jsonl")
    args = parser.parse_args()
    _million.ensure(args.entries)
    from ledger import bundle, services
    from protocol import merkle

    path = Path(args.bundle)
    t = time.perf_counter()
    with path.open("w", encoding="utf-8") as out:
        out.writelines(bundle.bundle_lines())
    exported = time.perf_counter() - t
    t = time.perf_counter()
    frontier = merkle.Frontier()
    with path.open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            frontier.append(merkle.leaf_hash(json.loads(line)["body"].encode()))
    floor = time.perf_counter() - t
    floor_us = ed25519_verify_us()
    cmd = [sys.executable, "-m", "audit.verify", str(path), "--log-key", services.log_vkey(), "--jobs", str(args.jobs)]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    verified = time.perf_counter() - t
    t = time.perf_counter()
    every = subprocess.run([*cmd, "--every-signature"], cwd=ROOT, capture_output=True, text=True)
    each = time.perf_counter() - t
    print(f"machine: {machine()}")
    print(f"bundle: {frontier.size:,} entries, {path.stat().st_size / 1e6:,.0f} MB, exported in {exported:.1f} s")
    print(f"baseline  read + parse + leaf-hash + tree, one process:  {floor:6.1f} s")
    print(f"usufruct  python -m audit.verify --jobs {args.jobs}:            {verified:6.1f} s (exit {done.returncode})")
    print(f"usufruct  ... --every-signature:                         {each:6.1f} s (exit {every.returncode})")
    receipts = args.entries
    print(
        f"floor     one Ed25519 verification (cryptography): {floor_us:.1f} us; {receipts:,} node receipts"
        f" on {args.jobs} cores >= {receipts * floor_us / 1e6 / args.jobs:.1f} s,"
        f" + as many hub signatures >= {2 * receipts * floor_us / 1e6 / args.jobs:.1f} s"
    )
    print("\n".join(line for line in done.stdout.splitlines() if "receipts" in line or "RESULT" in line))
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])


if __name__ == "__main__":
    main()
