"""The Paillier race: our engine against phe, FATE 2.2's fate_utils and SecretFlow HEU, in one run.

    .venv/bin/python benchmarks/paillier_race.py [--bits 1024 2048 3072] [--seconds 2] [--out var/race.json]

Installs nothing into the project's venv. Each peer runs ``benchmarks/_race_peer.py`` in a venv
of its own, outside the repository:

- ``ours`` and ``phe`` (the reference the engine is tested against, a project dependency): ``.venv``;
- FATE 2.2 (``fate_utils``): ``bash benchmarks/fate/setup_venv.sh`` → ``/work/fate-venv``;
- HEU (``sf-heu``, ZPaillier): ``bash benchmarks/heu/setup_venv.sh`` → ``/work/heu-venv``.

A peer whose venv is missing is named in one line and left out of the table. "per core" is one
process; "2 cores" is two processes of the peer at once, rates summed (its best case), and for
``ours`` also the product's own path: one process whose engine splits vectors over a forked
pool. Also measured in the same run (ours against per-value ``phe``, 2048 bits): encrypted
aggregation of a 10,000-value vector with packing, and the choices for Xᵀ·E(d).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VENVS = {
    "ours": ROOT / ".venv",
    "phe": ROOT / ".venv",
    "fate": Path(os.environ.get("FATE_VENV", "/work/fate-venv")),
    "heu": Path(os.environ.get("HEU_VENV", "/work/heu-venv")),
}
SETUP = {"fate": "bash benchmarks/fate/setup_venv.sh", "heu": "bash benchmarks/heu/setup_venv.sh"}
OPS = ("encrypt", "decrypt", "add", "scalar_mul")


def run_peer(
    peer: str, bits: int, seconds: float, procs: int = 1, workers: int = 1, pin: bool = False
) -> dict[str, float]:
    py = VENVS[peer] / "bin" / "python"
    cmd = ["taskset", "-c", "0"] if pin else []  # pinned: one core, whatever threads the peer starts
    cmd += [str(py), str(ROOT / "benchmarks" / "_race_peer.py"), "--peer", peer, "--bits", str(bits)]
    cmd += ["--seconds", str(seconds), "--workers", str(workers), "--values", "600"]
    children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(procs)]
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"{peer} at {bits} bits failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    summed: dict[str, float] = {}
    for r in results:
        for k, v in r.items():
            summed[k] = summed.get(k, 0.0) + v if not k.endswith("seconds") else max(summed.get(k, 0.0), v)
    return summed


def aggregation(seconds: float) -> dict[str, float]:
    """Sum of two parties' 10,000-value vectors (e.g. two hosts' partial scores): encrypt each, add, decrypt.

    Ours packed (56-bit slots, 2^-24 steps), phe per value. Each addend is rounded to the step once
    (≤ ½ step), so the sum of two is within one step of the real sum.
    """
    from phe import paillier

    from protocol import he

    he.set_workers(1)
    rng = random.Random(7)
    parties = [[rng.uniform(-1000, 1000) for _ in range(10_000)] for _ in range(2)]
    key = he.PrivateKey.generate(2048)
    pub = key.public
    pub._table()
    t = time.perf_counter()
    packed = [pub.encrypt_packed(he.quantise(v, 24, 2**15), 56) for v in parties]
    total = key.decrypt_packed(pub.sum_vectors(packed), 56, 10_000)
    ours = time.perf_counter() - t
    got = he.from_fixed(total)
    want = [a + b for a, b in zip(*parties, strict=True)]
    error = max(abs(x - y) for x, y in zip(got, want, strict=True)) * he.ONE  # in quantisation steps
    ppub, ppriv = paillier.generate_paillier_keypair(n_length=2048)
    sample = 300  # phe per value: timed on a sample, scaled to 10,000 (it would take minutes)
    t = time.perf_counter()
    enc = [[ppub.encrypt(x) for x in v[:sample]] for v in parties]
    sums = [a + b for a, b in zip(*enc, strict=True)]
    back = [ppriv.decrypt(s) for s in sums]
    phe_s = (time.perf_counter() - t) * 10_000 / sample
    assert max(abs(x - y) for x, y in zip(back, want[:sample], strict=True)) < 1e-6
    return {
        "ours_seconds": ours,
        "phe_seconds": phe_s,
        "ratio": phe_s / ours,
        "ciphertexts_per_party": len(packed[0]),
        "max_error_steps": error,
    }


def matvec_choices(rows: int = 426, cols: int = 15) -> dict[str, float]:
    """Xᵀ·E(d) at 2048 bits: one exponentiation per element against Pippenger's buckets (ours)."""
    import gmpy2

    from protocol import he

    key = he.PrivateKey.generate(2048)
    pub = key.public
    rng = random.Random(3)
    x = [[rng.randint(-(2**15), 2**15) for _ in range(cols)] for _ in range(rows)]
    d = pub.encrypt([rng.randint(-(2**34), 2**34) for _ in range(rows)])
    nsq = pub.nsquare

    def per_element() -> list[int]:
        acc = [gmpy2.mpz(1)] * cols
        inverse = {}
        for row, c in zip(x, d, strict=True):
            for j, v in enumerate(row):
                base = gmpy2.mpz(c) if v >= 0 else inverse.setdefault(c, gmpy2.invert(gmpy2.mpz(c), nsq))
                acc[j] = acc[j] * gmpy2.powmod(base, abs(v), nsq) % nsq
        return [int(a) for a in acc]

    t = time.perf_counter()
    a = per_element()
    naive = time.perf_counter() - t
    t = time.perf_counter()
    b = pub.matvec_t(x, d)
    bucket = time.perf_counter() - t
    assert key.decrypt(a) == key.decrypt(b)
    return {"rows": rows, "cols": cols, "per_element_seconds": naive, "bucket_seconds": bucket, "ratio": naive / bucket}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="+", default=[1024, 2048, 3072])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "paillier_race.json")
    args = ap.parse_args()
    peers = []
    for peer in VENVS:
        if (VENVS[peer] / "bin" / "python").exists():
            peers.append(peer)
        else:
            print(f"# {peer}: no venv at {VENVS[peer]} — left out; set it up with: {SETUP[peer]}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    report: dict[str, Any] = {"bits": {}}
    for bits in args.bits:
        table: dict[str, dict[str, Any]] = {}
        for peer in peers:
            core, two = run_peer(peer, bits, args.seconds), run_peer(peer, bits, args.seconds, procs=2)
            table[peer] = {"core": core, "two": two}
        table["ours"]["pool"] = run_peer("ours", bits, args.seconds, workers=2)
        if "heu" in table:  # heu.numpy runs a thread pool of its own: the same, held to one core
            table["heu"]["pinned"] = run_peer("heu", bits, args.seconds, pin=True)
        report["bits"][bits] = table
        print(f"\n## {bits}-bit keys (ops/s)\n")
        print("| peer | " + " | ".join(f"{op} 1 core | {op} 2 cores" for op in OPS) + " |")
        print("|---|" + "---|---|" * len(OPS))
        for peer, r in table.items():
            cells = [f"{r['core'][op]:,.0f} | {r['two'][op]:,.0f}" for op in OPS]
            print(f"| {peer} | " + " | ".join(cells) + " |")
        if "heu" in table:
            h = table["heu"]
            cells = [f"{h['core'][op + '_batch']:,.0f} | {h['two'][op + '_batch']:,.0f}" for op in OPS]
            print("| heu, `heu.numpy` vectors (its own thread pool) | " + " | ".join(cells) + " |")
            cells = [f"{h['pinned'][op + '_batch']:,.0f} | " for op in OPS]
            print("| heu, `heu.numpy` vectors pinned to one core (`taskset -c 0`) | " + " | ".join(cells) + " |")
        pool = table["ours"]["pool"]
        print(
            f"| ours, engine pool (1 process, 2 workers) | {table['ours']['core']['encrypt']:,.0f} | "
            f"{pool['encrypt']:,.0f} | {table['ours']['core']['decrypt']:,.0f} | {pool['decrypt']:,.0f} | | | | |"
        )
        ours = table["ours"]
        for peer in [p for p in table if p != "ours"]:
            ratios = [f"{op} ×{ours['core'][op] / table[peer]['core'][op]:.1f}" for op in OPS]
            print(f"- ours / {peer}, per core: " + ", ".join(ratios))
        if "heu" in table:
            h = table["heu"]
            one = max(h["core"]["encrypt"], h["pinned"]["encrypt_batch"])  # HEU on one core, its best path
            both, per = pool["encrypt"], ours["core"]["encrypt"]
            print(
                f"- encrypt: ours on both cores (engine pool) / HEU on one core (best path): ×{both / one:.2f}; "
                f"ours per core / HEU on one core: ×{per / one:.2f}; "
                f"ours on both cores / HEU vectors on its thread pool: ×{both / h['core']['encrypt_batch']:.2f}"
            )
        print(
            f"- ours: key holder's CRT encrypt {ours['core']['key_holder_encrypt']:,.0f}/s per core; "
            f"fixed-base table built in {ours['core']['table_seconds']:.2f} s"
        )
        if "fate" in table:
            bare = table["fate"]["core"]["encrypt_unrandomised"]
            print(f"- FATE unrandomised encrypt (obfuscate=False, what its LR uses): {bare:,.0f}/s")
    agg = aggregation(args.seconds)
    report["aggregation"] = agg
    print(
        f"\n## Aggregation, 2 × 10,000 values, 2048 bits\n\nours packed {agg['ours_seconds']:.2f} s "
        f"({agg['ciphertexts_per_party']} ciphertexts per party), phe per value {agg['phe_seconds']:.1f} s: "
        f"×{agg['ratio']:.0f}; max error {agg['max_error_steps']:.2f} quantisation steps"
    )
    mv = matvec_choices()
    report["matvec"] = mv
    print(
        f"\n## Xᵀ·E(d), {mv['rows']} × {mv['cols']}, 2048 bits\n\n"
        f"one powmod per element {mv['per_element_seconds']:.2f} s, "
        f"Pippenger buckets (ours) {mv['bucket_seconds']:.2f} s: ×{mv['ratio']:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
