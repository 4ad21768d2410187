"""``hetero_lr`` on a 50,000-row, three-party synthetic join: seconds for PSI and per epoch.

    .venv/bin/python benchmarks/hetero_lr_join.py [--rows 50000] [--bits 1024] [--epochs 1]

A guest (label + 5 features) and two hosts (10 features each) whose IDs overlap on 90 % of the
guest's rows; a latent variable drives the label and every party's features, so each host adds
signal. Real node contexts (``benchmarks/_inproc.py``), PSI alignment first, batches of 5,000,
every ciphertext with fresh randomness. Baseline, same run: scikit-learn on the joined rows in
one place (what the law forbids), its fit time and validation AUC.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from _inproc import Federation
from _setup import machine


def _data(rows: int, seed: int = 7) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:  # noqa: E501
    import math

    rng = random.Random(seed)
    guest, a, b = [], [], []
    for i in range(int(rows / 0.9)):
        z = rng.gauss(0, 1)
        ident = f"P{i:07d}"
        if i < rows:
            p = 1 / (1 + math.exp(-(-1.0 + 1.2 * z)))
            guest.append(
                {
                    "id": ident,
                    "y": int(rng.random() < p),
                    **{f"g{j}": round(0.3 * z + rng.gauss(0, 1), 4) for j in range(5)},
                }
            )  # noqa: E501
        if i % 10 != 3:
            a.append({"id": ident, **{f"a{j}": round(0.6 * z + rng.gauss(0, 1), 4) for j in range(10)}})
            b.append({"id": ident, **{f"b{j}": round(0.5 * z + rng.gauss(0, 1), 4) for j in range(10)}})
    return guest, a, b


def _time_crypto() -> list[tuple[float, float]]:
    """Time spent inside the Paillier engine (outermost calls only), as (when it ended, seconds)."""
    import functools

    from protocol import he

    spans: list[tuple[float, float]] = []
    depth = [0]

    def wrap(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def inner(*a, **k):  # type: ignore[no-untyped-def]
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    spans.append((time.perf_counter(), time.perf_counter() - t))

        return inner

    for cls in (he.PublicKey, he.PrivateKey):
        for name in ("encrypt", "rerandomize", "decrypt", "decrypt_packed", "add", "add_plain", "sum_vectors",
                     "matvec_t", "pack_ciphertexts", "encrypt_packed", "pack", "unpack", "generate"):  # fmt: skip
            fn = cls.__dict__.get(name)
            if isinstance(fn, classmethod):
                setattr(cls, name, classmethod(wrap(fn.__func__)))
            elif fn is not None:
                setattr(cls, name, wrap(fn))
    return spans


def _broker_replay(sizes: list[int]) -> float:
    """Seconds to carry messages of these sizes through Redis with kombu (publish, then consume), one by one."""
    import os

    from kombu import Connection, Exchange, Queue

    url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    queue = Queue("bench-replay", Exchange("bench-replay"), routing_key="bench-replay")
    with Connection(url) as conn:
        producer = conn.Producer(serializer="raw")
        sq = queue(conn.channel())
        sq.declare()
        sq.purge()
        start = time.perf_counter()
        for n in sizes:
            producer.publish(b"x" * n, exchange=queue.exchange, routing_key="bench-replay", declare=[queue])
            message = None
            while message is None:
                message = sq.get(no_ack=False)
            message.ack()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--bits", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    from compute.algorithms import get_algorithm
    from compute.algorithms.base import Column, DatasetInfo

    guest, a, b = _data(args.rows)
    fed = Federation(
        Path(tempfile.mkdtemp(prefix="usufruct-join-")),
        {"consumer": ("mine", guest), "provider:1": ("a", a), "provider:2": ("b", b)},
        job="bench",
    )  # noqa: E501
    algo = get_algorithm("hetero_lr")
    infos = [
        DatasetInfo(1, "a", (Column("id", "string", "id"), *(Column(f"a{j}", "number", "feature") for j in range(10)))),
        DatasetInfo(2, "b", (Column("id", "string", "id"), *(Column(f"b{j}", "number", "feature") for j in range(10)))),
    ]
    params = algo.validate(
        {"consumer_dataset": "mine", "consumer_id_column": "id", "label_column": "y",
         "consumer_features": [f"g{j}" for j in range(5)], "key_bits": args.bits, "epochs": args.epochs,
         "learning_rate": 0.5, "l2": 0.001, "batch_size": 5000, "validation_fraction": 0.1, "tolerance": 0},
        infos,
    )  # fmt: skip
    job = fed.view(params)
    crypto = _time_crypto()
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def on_step(step: str, party: str) -> None:
        if step == "psi_keep":
            marks.setdefault("psi_first_keep", time.perf_counter())
        if step == "lr_host_setup":
            marks["setup"] = time.perf_counter()
        if step == "lr_evaluate":
            marks.setdefault("epochs", 0)
            marks["epochs"] += 1
            marks["last_eval"] = time.perf_counter()

    out = fed.run(algo, job, on_step)
    total = time.perf_counter() - start
    psi = marks["psi_first_keep"] - start
    per_epoch = (marks["last_eval"] - marks["setup"]) / args.epochs
    print(f"machine: {machine()}")
    aligned = out["rows"]["aligned"]
    print(
        f"rows: guest {len(guest):,}, hosts {len(a):,} + {len(b):,}; aligned {aligned:,}; {args.bits}-bit, batch 5,000"
    )
    print(f"usufruct  PSI alignment (3 parties): {psi:7.1f} s")
    note = f"({args.epochs} epoch(s); fresh randomness on every ciphertext), total {total:.0f} s"
    print(f"usufruct  training: {per_epoch:7.1f} s per epoch {note}")
    in_epochs = [(t, n) for t, n in fed.wire if marks["setup"] <= t <= marks["last_eval"]]
    crypto_s = sum(s for t, s in crypto if marks["setup"] <= t <= marks["last_eval"]) / args.epochs
    broker_s = _broker_replay([n for _, n in in_epochs]) / args.epochs
    python_s = per_epoch - crypto_s
    whole = per_epoch + broker_s
    print(
        f"          per epoch: crypto {crypto_s:.1f} s ({crypto_s / whole:.0%}), broker {broker_s:.1f} s "
        f"({broker_s / whole:.0%}; {len(in_epochs) // args.epochs} messages, "
        f"{sum(n for _, n in in_epochs) / args.epochs / 1e6:.1f} MB replayed through Redis), "
        f"Python and the rest {python_s:.1f} s ({python_s / whole:.0%})"
    )
    joint, own = out["validation"]["auc"], out["own_data_only"]["validation"]["auc"]
    print(f"          validation AUC {joint:.4f}, own data only {own:.4f}")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    ha, hb = {r["id"]: r for r in a}, {r["id"]: r for r in b}
    joined = [r for r in guest if r["id"] in ha]
    x = [
        [r[f"g{j}"] for j in range(5)]
        + [ha[r["id"]][f"a{j}"] for j in range(10)]
        + [hb[r["id"]][f"b{j}"] for j in range(10)]
        for r in joined
    ]  # noqa: E501
    y = [r["y"] for r in joined]
    cut = int(len(x) * 0.9)
    t = time.perf_counter()
    model = LogisticRegression(max_iter=2000).fit(x[:cut], y[:cut])
    fit = time.perf_counter() - t
    auc = roc_auc_score(y[cut:], model.decision_function(x[cut:]))
    print(f"baseline  scikit-learn on the joined rows in one place: fit {fit:.2f} s, validation AUC {auc:.4f}")


if __name__ == "__main__":
    main()
