"""Flower's FedAvg on the same breast-cancer split, as an anchor for ``homo_lr``'s accuracy.

    /work/flwr-venv/bin/python benchmarks/flower/run_fedavg.py DATA.csv --split iid|skewed --rounds 20

Runs in Flower's own venv (``setup_venv.sh``), not the project's. Each client is a Flower
``NumPyClient`` training the same logistic regression as ``homo_lr`` (mini-batch SGD, batch 32,
learning rate 0.1, L2 1/426, two local epochs a round, from zero weights); the server side is
Flower's own ``FedAvg`` strategy (``aggregate_fit``: the example-weighted average), called with the
clients' fit results, in plaintext and in one process (no gRPC: the accuracy, not the transport,
is the anchor). Prints one JSON line: test AUC, the centralised scikit-learn AUC, seconds per round.
"""

from __future__ import annotations

import argparse
import csv
import json
import time

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

FEATURES = [f"x{j}" for j in range(30)]


def split(y: np.ndarray, kind: str) -> list[np.ndarray]:
    """The same IID and skewed splits as tests/test_homo_lr.py."""
    rng = np.random.default_rng(0)
    if kind == "iid":
        order = rng.permutation(len(y))
        return [order[k::3] for k in range(3)]
    parts: list[list[int]] = [[], [], []]
    for label, shares in ((1, (0.6, 0.3, 0.1)), (0, (0.1, 0.3, 0.6))):
        idx = rng.permutation(np.where(y == label)[0])
        cuts = np.cumsum([0, *(round(s * len(idx)) for s in shares)])
        cuts[-1] = len(idx)
        for k in range(3):
            parts[k].extend(idx[cuts[k] : cuts[k + 1]])
    return [np.array(p) for p in parts]


def local_fit(w: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = w.copy()
    z = np.hstack([x, np.ones((len(x), 1))])
    for _ in range(2):
        order = rng.permutation(len(y))
        for s in range(0, len(y), 32):
            i = order[s : s + 32]
            err = 1 / (1 + np.exp(-(z[i] @ w))) - y[i]
            grad = z[i].T @ err / len(i)
            grad[:-1] += (1 / 426) * w[:-1]
            w -= 0.1 * grad
    return w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--split", default="iid")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    with open(args.data) as fh:
        rows = list(csv.DictReader(fh))
    tr = [r for r in rows if r["split"] == "train"]
    te = [r for r in rows if r["split"] == "test"]
    x = np.array([[float(r[f]) for f in FEATURES] for r in tr])
    y = np.array([float(r["y"]) for r in tr])
    xt = np.array([[float(r[f]) for f in FEATURES] for r in te])
    yt = np.array([int(r["y"]) for r in te])
    central = roc_auc_score(yt, LogisticRegression(max_iter=5000).fit(x, y).decision_function(xt))
    parts = split(y.astype(int), args.split)
    strategy = FedAvg()
    rng = np.random.default_rng(1)
    w = np.zeros(31)
    start = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        results = []
        for p in parts:
            local = local_fit(w, x[p], y[p], rng)
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([local]), len(p), {})
            results.append((None, res))
        params, _ = strategy.aggregate_fit(rnd, results, [])
        (w,) = parameters_to_ndarrays(params)
    per_round = (time.perf_counter() - start) / args.rounds
    auc = roc_auc_score(yt, xt @ w[:-1] + w[-1])
    print(json.dumps({"split": args.split, "auc": auc, "sklearn_auc": central, "s_per_round": per_round}))


if __name__ == "__main__":
    main()
