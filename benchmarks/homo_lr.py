"""Seconds per round of ``homo_lr`` (FedAvg under packed Paillier) at 3 and 10 providers.

    .venv/bin/python benchmarks/homo_lr.py [--providers 3 10] [--bits 2048] [--rounds 5]

The breast-cancer training rows (426, 30 features) split IID across the providers; the
consumer's node and every provider a real node context (``benchmarks/_inproc.py``: CSV read by
the node's reader, job state on disk, RFC 8785 JSON for every message, the hub's checks of
every signed contribution included). A round is timed from one ``fl_aggregate`` answer to the
next: every provider evaluates the global model, trains ``local_epochs`` (2) and encrypts
its packed update; the hub checks each signed contribution; the consumer's node verifies
them all, sums, decrypts and averages. In one process the providers run one after another;
``critical path`` is what a round costs when each provider has its own machine (the slowest
provider + the hub + the consumer's node). Test AUC from the final model on the 143
held-out rows.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _inproc import Federation
from _setup import machine

from compute.algorithms import get_algorithm
from compute.algorithms.base import Column, DatasetInfo
from compute.demo_data import CANCER_FILE

FEATURES = [f"x{j}" for j in range(30)]


def _rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with CANCER_FILE.open() as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]


def run(providers: int, bits: int, rounds: int) -> dict[str, float]:
    train, test = _rows()
    order = np.random.default_rng(0).permutation(len(train))
    datasets = {"consumer": ("none", [{"id": "0"}])}
    for k in range(providers):
        part = [train[i] for i in order[k::providers]]
        datasets[f"provider:{k}"] = ("records", [{**{f: r[f] for f in FEATURES}, "y": r["y"]} for r in part])
    algo = get_algorithm("homo_lr")
    cols = (*(Column(f, "number", "feature") for f in FEATURES), Column("y", "integer", "label"))
    params = algo.validate(
        {"features": FEATURES, "label": "y", "rounds": rounds, "local_epochs": 2, "learning_rate": 0.1,
         "batch_size": 32, "l2": round(1 / 426, 6), "key_bits": bits, "min_providers": 2},
        [DatasetInfo(id=k, name=f"d{k}", columns=cols) for k in range(providers)],
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fed = Federation(Path(tmp), datasets, job="bench")
        job = fed.view(params)
        marks: list[tuple[float, dict[str, float]]] = []

        def on_step(step: str, party: str) -> None:
            if step == "fl_aggregate":
                marks.append((time.perf_counter(), dict(fed.spent)))

        outputs = fed.run(algo, job, on_step)
    # Rounds 1..R (each ends with its aggregate); the moments round and the final evaluation are left out.
    walls, critical = [], []
    for (t0, s0), (t1, s1) in zip(marks[:-2], marks[1:-1], strict=True):
        walls.append(t1 - t0)
        slowest = max(s1[k] - s0[k] for k in s1 if k.startswith("provider:"))
        critical.append(slowest + (s1["hub"] - s0["hub"]) + (s1["consumer"] - s0["consumer"]))
    x = np.array([[float(r[f]) for f in FEATURES] for r in test])
    y = np.array([int(r["y"]) for r in test])
    from sklearn.metrics import roc_auc_score

    model = outputs["model"]
    auc = float(roc_auc_score(y, x @ np.array(model["weights"]) + model["bias"]))
    return {"wall": statistics.median(walls), "critical": statistics.median(critical), "auc": auc}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--providers", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--bits", type=int, nargs="+", default=[2048])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"breast cancer, 426 training rows IID across the providers, 30 features, {args.rounds} rounds, 2 local epochs"
    )
    for bits in args.bits:
        for n in args.providers:
            r = run(n, bits, args.rounds)
            print(
                f"{n:2d} providers, {bits}-bit key: {r['wall']:.3f} s/round in one process (median),"
                f" critical path {r['critical']:.3f} s/round; test AUC {r['auc']:.4f}"
            )


if __name__ == "__main__":
    main()
