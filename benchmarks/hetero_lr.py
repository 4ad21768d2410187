"""Seconds per epoch of ``hetero_lr`` on the breast-cancer vertical split, with FATE 2.2 beside it.

    .venv/bin/python benchmarks/hetero_lr.py [--bits 1024 2048] [--epochs 3] [--fate /work/fate-venv]

Ours: the guest (10 features + labels) and one host (20 features) as real node contexts
(``benchmarks/_inproc.py``: CSV read by the node's reader, job state on disk, RFC 8785 JSON
for every message; the hub's checks and homomorphic sums included), FATE's benchmark
settings where ours has them (learning rate 0.15, L2 0.01, batch 240), PSI alignment first,
every ciphertext with fresh randomness. An epoch is timed from one epoch's evaluation to the
next (its batches, then every row's partial scores for the per-epoch metrics). Test AUC is
computed from the parts the nodes kept, on the 143 held-out rows.

FATE, same run, when ``--fate`` names a venv made by ``benchmarks/fate/setup_venv.sh``: its
coordinated LR (guest, host, arbiter) through ``benchmarks/fate/run_fate_hetero_lr.py``,
flat learning rate. FATE 2.2 encrypts its per-row vectors without the random factor rⁿ
(c = 1 + n·m: readable by anyone, and cheap): its seconds leave out the most expensive
step of secure encryption.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _inproc import ROOT, Federation
from _setup import machine

DATA = ROOT / "tests" / "data" / "breast_cancer"


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open() as fh:
        return list(csv.DictReader(fh))


def ours(bits: int, epochs: int) -> dict[str, object]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from compute.algorithms import get_algorithm, hetero_lr
    from compute.algorithms.base import Column, DatasetInfo

    guest_rows, host_rows = _rows("guest_train.csv"), _rows("host_train.csv")
    host_features = [c for c in host_rows[0] if c != "id"]
    fed = Federation(
        Path(tempfile.mkdtemp(prefix="usufruct-lr-")),
        {"consumer": ("mine", guest_rows), "provider:1": ("host", host_rows)},
        job="bench",
    )  # noqa: E501
    algo = get_algorithm("hetero_lr")
    info = DatasetInfo(
        1, "host", (Column("id", "string", "id"), *(Column(c, "number", "feature") for c in host_features))
    )  # noqa: E501
    params = algo.validate(
        {
            "consumer_dataset": "mine", "consumer_id_column": "id", "label_column": "y",
            "consumer_features": [f"x{i}" for i in range(10)], "key_bits": bits, "epochs": epochs,
            "learning_rate": 0.15, "l2": 0.01, "batch_size": 240, "validation_fraction": 0.1, "tolerance": 0,
        },
        [info],
    )  # fmt: skip
    job = fed.view(params)
    marks: list[float] = []
    start = time.perf_counter()

    def on_step(step: str, party: str) -> None:
        if step in ("lr_host_setup", "lr_evaluate"):
            marks.append(time.perf_counter())

    fed.run(algo, job, on_step)
    total = time.perf_counter() - start
    per_epoch = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    guest = fed.state("consumer", hetero_lr.MODEL)
    host = fed.state("provider:1", hetero_lr.MODEL)
    gt, ht = _rows("guest_test.csv"), {r["id"]: r for r in _rows("host_test.csv")}
    zg = (np.array([[float(r[c]) for c in guest["features"]] for r in gt]) - guest["mean"]) / np.array(guest["std"])
    zh = (np.array([[float(ht[r["id"]][c]) for c in host["features"]] for r in gt]) - host["mean"]) / np.array(
        host["std"]
    )  # noqa: E501
    auc = roc_auc_score([int(r["y"]) for r in gt], zg @ np.array(guest["w"]) + zh @ np.array(host["w"]))
    return {
        "per_epoch": per_epoch,
        "median": statistics.median(per_epoch),
        "first": per_epoch[0],
        "total": total,
        "auc": auc,
    }  # noqa: E501


def fate(venv: Path, bits: int, epochs: int) -> dict[str, object] | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cmd = [str(python), str(ROOT / "benchmarks" / "fate" / "run_fate_hetero_lr.py"), "--data", str(DATA),
           "--key-bits", str(bits), "--epochs", str(epochs), "--scheduler-factor", "1", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        print(f"FATE failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result: dict[str, object] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bits", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fate", type=Path, default=Path("/work/fate-venv"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"breast-cancer split: 426 training rows (10 guest + 20 host features), 143 test rows; {args.epochs} epochs")
    for bits in args.bits:
        o = ours(bits, args.epochs)
        line = f"usufruct {bits:5d} bits: {o['median']:6.2f} s/epoch (median; first {o['first']:.2f})"
        print(f"{line}, total {o['total']:.1f} s, test AUC {o['auc']:.5f}  [fresh h_s^r on every ciphertext]")
        f = fate(args.fate, bits, args.epochs)
        if f is None:
            print(f"FATE 2.2 {bits:5d} bits: not run (no venv at {args.fate}; see benchmarks/fate/README.md)")
            continue
        ratio = float(f["median_epoch_seconds"]) / float(o["median"])  # type: ignore[arg-type]
        line = f"FATE 2.2 {bits:5d} bits: {f['median_epoch_seconds']:6.2f} s/epoch (median; first {f['first_epoch_seconds']:.2f})"  # noqa: E501
        print(f"{line}, test AUC {f['test_auc']:.5f}  [per-row vectors WITHOUT rⁿ]; FATE/usufruct time {ratio:.2f}x")


if __name__ == "__main__":
    main()
