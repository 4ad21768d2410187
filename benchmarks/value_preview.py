"""Seconds and bytes of one value preview (``value_preview``), per party, on the product's code.

    .venv/bin/python benchmarks/value_preview.py [--applicants 2000 10000] [--bits 2048]

The demo's bank (applicants with a 0/1 default label) and acme (its shoppers, five numeric
features, 80 % of the applicants plus strangers), generated at the given size; each node a real
node context (``benchmarks/_inproc.py``: CSV read by the node's reader, job state on disk,
RFC 8785 JSON for every message) and the hub's own checks, proofs verified in full. Per party:
the consumer's node (key, blinding, labels and their bit proofs, the zeros and theirs, the
decryption), the provider's node (re-blinding, per-bin sums under encryption, noise), the hub
(batch verification of every proof, tag matching). Not timed: signatures, sealing, the broker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _inproc import Federation
from _setup import machine

from compute import demo_data
from compute.algorithms import get_algorithm
from compute.algorithms.base import Column, DatasetInfo

FEATURES = ["orders_12m", "avg_basket_eur", "late_payment_rate", "returns_rate", "tenure_months"]


def run(applicants: int, bits: int) -> dict[str, float]:
    data = demo_data.generate(n=applicants)
    algo = get_algorithm("value_preview")
    cols = (Column("customer_id", "string", "id"), *(Column(f, "number", "feature") for f in FEATURES))
    params = algo.validate(
        {"consumer_dataset": "applicants", "consumer_id_column": "applicant_id", "label_column": "default",
         "key_bits": bits},
        [DatasetInfo(id=1, name="acme", columns=cols)],
    )  # fmt: skip
    acme = [{k: r[k] for k in ("customer_id", *FEATURES)} for r in data["acme"]]
    with tempfile.TemporaryDirectory() as tmp:
        fed = Federation(
            Path(tmp), {"consumer": ("applicants", data["bank"]), "provider:1": ("shoppers", acme)}, "bench"
        )
        t = time.perf_counter()
        outputs = fed.run(algo, fed.view(params))
        wall = time.perf_counter() - t
    top = outputs["features"][0]
    return {
        "wall": wall,
        "consumer": fed.spent["consumer"],
        "provider": fed.spent["provider:1"],
        "hub": fed.spent["hub"],
        "mb": sum(b for _, b in fed.wire) / 1e6,
        "provider_rows": len(acme),
        "top": top["name"],
        "iv": top["iv"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--applicants", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--bits", type=int, default=2048)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for n in args.applicants:
        r = run(n, args.bits)
        print(
            f"{n:6d} consumer IDs x {r['provider_rows']:6d} provider rows, {args.bits}-bit key:"
            f" {r['wall']:.1f} s in all;"
            f" consumer node {r['consumer']:.1f} s, provider node {r['provider']:.1f} s, hub {r['hub']:.1f} s;"
            f" {r['mb']:.1f} MB on the wire; top feature {r['top']} (IV {r['iv']:.3f})"
        )


if __name__ == "__main__":
    main()
