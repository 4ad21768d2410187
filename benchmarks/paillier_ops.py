"""Paillier operation rates of our codec (phe + gmpy2) against the raw floor, same run.

    .venv/bin/python benchmarks/paillier_ops.py [--bits 2048] [--seconds 2]

The baseline is one gmpy2.powmod(r, n, n²) — the unavoidable cost of a randomised
encryption — measured in this process (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gmpy2  # noqa: E402

from protocol import paillier  # noqa: E402


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    public, private = paillier.generate(args.bits)
    n, n2 = gmpy2.mpz(public.n), gmpy2.mpz(public.nsquare)
    c1, c2 = paillier.encrypt_int(public, 123456789), paillier.encrypt_int(public, -42)
    results = {
        "floor: gmpy2.powmod(r, n, n²)": rate(lambda: gmpy2.powmod(secrets.randbelow(public.n), n, n2), args.seconds),
        "encrypt_int (fresh r^n)": rate(lambda: paillier.encrypt_int(public, 987654321), args.seconds),
        "decrypt_int": rate(lambda: paillier.decrypt_int(private, c1), args.seconds),
        "add_ciphertexts (2)": rate(lambda: paillier.add_ciphertexts(public, [c1, c2]), args.seconds),
    }
    floor = results["floor: gmpy2.powmod(r, n, n²)"]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"gmpy2 {gmpy2.version()}, {args.bits}-bit keys, single core"
    )
    print("| operation | ops/s | ratio to floor |")
    print("|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value / floor:.2f} |")


if __name__ == "__main__":
    main()
