"""PSI alignment at 100,000 × 100,000 IDs through the node and hub code the product runs.

    .venv/bin/python benchmarks/psi_align.py [--ids 100000] [--overlap 0.5]

Two nodes (the consumer and one provider), each a real ``compute.node`` context over its
own folder: IDs read from its CSV by the node's dataset reader, job state written to its
disk. Each step is ``psi_align.node_step`` (what the node runtime calls) and each reply
goes through the hub's checks (``psi_align.on_result``), with every message taken through
RFC 8785 JSON as it is signed. The step envelopes' Ed25519 signatures and sealing are timed
apart on the largest message (they are the same for any algorithm).

Figure: IDs per second per party = 100,000 / (the seconds that party's steps took).
Baseline, same run: the insecure join a naive integration would do (SHA-256 of each ID,
a set intersection) on the same IDs. Anchor (not run here): FATE's ECDH PSI, about
1,400 rows/s per core (FATE's own published figures, quoted in issue 10).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--overlap", type=float, default=0.5)
    args = parser.parse_args()
    from _setup import machine

    from compute.algorithms import psi_align
    from compute.algorithms.base import Column, DatasetInfo, JobView, Party
    from compute.node.config import NodeConfig
    from compute.node.runtime import LocalContext
    from protocol import envelope, sealed
    from protocol.canonical import canonical

    n, shared = args.ids, int(args.ids * args.overlap)
    tmp = Path(tempfile.mkdtemp(prefix="usufruct-psi-"))
    consumer_ids = [f"C{i:08d}" for i in range(n)]
    provider_ids = [f"C{i:08d}" for i in range(n - shared, 2 * n - shared)]
    contexts = {}
    for key, slug, ids, name in (
        ("consumer", "bank", consumer_ids, "mine"),
        ("provider:1", "acme", provider_ids, "theirs"),
    ):  # noqa: E501
        folder = tmp / slug
        (folder / "data").mkdir(parents=True)
        with (folder / "data" / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "x"])
            w.writerows((i, 1) for i in ids)
        config = NodeConfig(slug=slug, directory=folder, broker_url="memory://", broker_dir=None)
        contexts[key] = LocalContext(config=config, job="bench", min_group_size=10)
    info = DatasetInfo(1, "theirs", (Column("id", "string", "id"), Column("x", "number", "feature")))
    params = psi_align.PsiAlign().validate({"consumer_dataset": "mine", "consumer_id_column": "id"}, [info])
    job = JobView(
        id="bench",
        params=params,
        parties=[
            Party("consumer", "bank", "consumer"),
            Party("provider:1", "acme", "provider", 1, "theirs", {"min_group_size": 10}),
        ],  # noqa: E501
    )
    spent = {"consumer": 0.0, "provider:1": 0.0, "hub": 0.0}
    largest: dict[str, Any] = {}
    outbox = list(psi_align.start(job).sends)
    result = None
    while outbox:
        send = outbox.pop(0)
        t = time.perf_counter()
        body = json.loads(canonical(send.body))
        out = psi_align.node_step(contexts[send.party], send.step, body)
        reply = json.loads(canonical(out.body))
        for fn in contexts[send.party].after_reply:
            fn()
        contexts[send.party].after_reply.clear()
        spent[send.party] += time.perf_counter() - t
        if len(json.dumps(reply)) > len(json.dumps(largest)):
            largest = reply
        t = time.perf_counter()
        progress = psi_align.on_result(job, send.step, send.party, reply)
        job.state = json.loads(canonical(job.state))
        spent["hub"] += time.perf_counter() - t
        if isinstance(progress, int):
            result = progress
            break
        outbox.extend(progress.sends)
    assert result == shared, (result, shared)
    aligned = [
        json.loads((c.config.state_dir / "bench" / "alignment.json").read_text())["ids"] for c in contexts.values()
    ]  # noqa: E501
    assert aligned[0] == aligned[1] and len(aligned[0]) == shared

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    hub, node = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    t = time.perf_counter()
    sealed_body = sealed.seal_body(largest, hub.public_key())
    envelope.sign_payload({"body": sealed_body}, key=node, kid="bench")
    wrap = time.perf_counter() - t

    t = time.perf_counter()
    theirs = {hashlib.sha256(i.encode()).digest() for i in provider_ids}
    naive = sum(hashlib.sha256(i.encode()).digest() in theirs for i in consumer_ids)
    base = time.perf_counter() - t
    assert naive == shared
    print(f"machine: {machine()}")
    print(f"{n:,} x {n:,} IDs, {shared:,} shared; ristretto255 via libsodium (rbcl), {os.cpu_count()} threads per step")
    for party in ("consumer", "provider:1"):
        print(f"usufruct  {party:10s} steps {spent[party]:6.2f} s  -> {n / spent[party]:9,.0f} IDs/s")
    print(f"usufruct  hub checks       {spent['hub']:6.2f} s")
    print(f"          seal + sign the largest message ({len(json.dumps(largest)) / 1e6:.1f} MB): {wrap:.2f} s")
    print(f"baseline  plain SHA-256 join (insecure) {base:6.2f} s  -> {2 * n / base:9,.0f} IDs/s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
