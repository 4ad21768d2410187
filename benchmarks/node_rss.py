"""Peak memory of a provider node during a 1,000,000-row ``hetero_lr`` training step.

    .venv/bin/python benchmarks/node_rss.py [--rows 1000000] [--features 20] [--bits 1024]

A host node folder with a CSV of ``--rows`` rows (an ID and ``--features`` numeric columns) and
the alignment ``psi_keep`` leaves (every row aligned). In a fresh process each, the node runs
``lr_host_setup`` (reads its rows, standardises them) and one ``lr_forward`` (a batch of
10,000 rows encrypted under the guest's key) through ``hetero_lr``'s node code on a real node
context; the figure is that process's peak RSS (``getrusage``). Baseline, same run: a fresh
process that only reads the same dataset as a list of Python dicts (what the node did before
the batch reader), and one that only imports the node code.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _inproc import ROOT


def _make(folder: Path, rows: int, features: int) -> None:
    from compute.algorithms import psi_align

    data = folder / "host" / "data"
    data.mkdir(parents=True)
    rng = random.Random(1)
    ids = []
    with (data / "host.csv").open("w") as fh:
        fh.write("id," + ",".join(f"x{j}" for j in range(features)) + "\n")
        for i in range(rows):
            ident = f"C{i:09d}"
            ids.append(ident)
            fh.write(ident + "," + ",".join(f"{rng.gauss(0, 1):.6f}" for _ in range(features)) + "\n")
    state = folder / "host" / "state" / "bench"
    state.mkdir(parents=True)
    (state / f"{psi_align.ALIGNMENT}.json").write_text(json.dumps({"ids": ids}))
    (folder / "host" / "datasets.json").write_text(json.dumps([{"local": "host", "roles": {"id": "id"}}]))


def _child(mode: str, folder: Path, features: int, bits: int) -> None:
    sys.path.insert(0, str(ROOT))
    from compute.algorithms import hetero_lr
    from compute.node import sources
    from compute.node.config import NodeConfig
    from compute.node.runtime import LocalContext
    from protocol import he, keys

    host = NodeConfig(slug="host", directory=folder / "host", broker_url="memory://", broker_dir=None)
    start = time.perf_counter()
    if mode == "dicts":
        rows = sources.read_rows(host.data_dir, {"local": "host"})
        assert len(rows) > 0
    elif mode == "step":
        guest = NodeConfig(slug="guest", directory=folder / "guest", broker_url="memory://", broker_dir=None)
        key = he.PrivateKey.generate(bits)
        grant = {"right": 1, "consumer_node": {"kid": guest.kid, "public_key": keys.public_b64(guest.private_key)}}
        statement = LocalContext(config=guest, job="bench", min_group_size=10).sign(
            {"type": hetero_lr.JOB_KEY, "job": "bench", "public_key": key.public.to_json()}
        )
        ctx = LocalContext(config=host, job="bench", min_group_size=10, grant=grant)
        algo = hetero_lr.HeteroLR()
        n = len(json.loads((host.state_dir / "bench" / "alignment.json").read_text())["ids"])
        validation = hetero_lr._pack_mask(n, list(range(0, n, 10)))
        setup = {"public_key": key.public.to_json(), "key_statement": statement, "validation": validation,
                 "batch_size": 10_000, "learning_rate": 0.15, "l2": 0.01, "dataset": "host", "id_column": "id",
                 "features": [f"x{j}" for j in range(features)]}  # fmt: skip
        algo.node_step(ctx, "lr_host_setup", setup)
        t_setup = time.perf_counter() - start
        out = algo.node_step(ctx, "lr_forward", {"epoch": 0, "batch": 0, "dataset": "host"})
        assert len(key.public.unpack(out.body["enc"], 10_000)) == 10_000
        print(json.dumps({"setup_s": t_setup}), file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "peak_bytes": peak, "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--bits", type=int, default=1024)
    parser.add_argument("--child", default="")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.folder, args.features, args.bits)
        return
    from _setup import machine

    folder = Path(tempfile.mkdtemp(prefix="usufruct-rss-"))
    t = time.perf_counter()
    _make(folder, args.rows, args.features)
    size = (folder / "host" / "data" / "host.csv").stat().st_size
    print(f"machine: {machine()}")
    made = time.perf_counter() - t
    print(f"dataset: {args.rows:,} rows x {args.features} features, {size / 2**20:.0f} MiB CSV (made in {made:.0f} s)")
    for mode in ("import", "dicts", "step"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--features", str(args.features), "--bits", str(args.bits)],  # noqa: E501
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        label = {
            "import": "baseline  node code imported, nothing read",
            "dicts": "baseline  rows read as a list of dicts",
            "step": "usufruct  lr_host_setup + one lr_forward (10,000 rows)",
        }[mode]  # noqa: E501
        print(f"{label:58s} peak RSS {r['peak_bytes'] / 2**20:7.0f} MiB   {r['seconds']:6.1f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
