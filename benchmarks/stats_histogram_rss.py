"""Peak memory and time of a provider node answering a ``stats`` histogram over 1,000,000 rows.

    .venv/bin/python benchmarks/stats_histogram_rss.py [--rows 1000000] [--bins 20] [--bits 2048]

A provider node folder with a CSV of ``--rows`` rows (an ID and five numeric columns). In a
fresh process each, the node runs the ``partial`` step of a histogram job through ``stats``'
node code on a real node context (the job key checked against the consumer's signed statement,
the column read batch by batch, the differencing rule against the node's memory, the counts
packed and encrypted); the figure is that process's peak RSS (``getrusage``). Baselines, same
run: a process that only imports the node code, and one that reads the dataset as a list of
Python dicts (what ``stats`` did before this change). Target: peak RSS ≤ 1 GiB.
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

COLUMNS = ["x0", "x1", "x2", "x3", "x4"]


def _make(folder: Path, rows: int) -> None:
    data = folder / "host" / "data"
    data.mkdir(parents=True)
    rng = random.Random(1)
    with (data / "host.csv").open("w") as fh:
        fh.write("id," + ",".join(COLUMNS) + "\n")
        for i in range(rows):
            fh.write(f"C{i:09d}," + ",".join(f"{rng.gauss(0, 1):.6f}" for _ in COLUMNS) + "\n")
    (folder / "host" / "datasets.json").write_text(json.dumps([{"local": "host", "roles": {"id": "id"}}]))


def _child(mode: str, folder: Path, bins: int, bits: int) -> None:
    sys.path.insert(0, str(ROOT))
    from compute.algorithms import stats
    from compute.node import sources
    from compute.node.config import NodeConfig
    from compute.node.runtime import LocalContext
    from protocol import he, keys

    host = NodeConfig(slug="host", directory=folder / "host", broker_url="memory://", broker_dir=None)
    start = time.perf_counter()
    out: dict[str, object] = {}
    if mode == "dicts":
        assert len(sources.read_rows(host.data_dir, {"local": "host"})) > 0
    elif mode == "histogram":
        guest = NodeConfig(slug="guest", directory=folder / "guest", broker_url="memory://", broker_dir=None)
        key = he.PrivateKey.generate(bits)
        grant = {"right": 1, "consumer_node": {"kid": guest.kid, "public_key": keys.public_b64(guest.private_key)}}
        statement = LocalContext(config=guest, job="bench", min_group_size=10).sign(
            {"type": stats.JOB_KEY, "job": "bench", "public_key": key.public.to_json()}
        )
        ctx = LocalContext(config=host, job="bench", min_group_size=10, grant=grant)
        edges = [-1e9, *(round(-4 + 8 * i / (bins - 2), 6) for i in range(bins - 1)), 1e9]
        t = time.perf_counter()
        body = {"public_key": key.public.to_json(), "key_statement": statement, "column": "x0", "dataset": "host",
                "histogram": {"edges": edges}}  # fmt: skip
        result = stats.Stats().node_step(ctx, "partial", body)
        out["step_s"] = round(time.perf_counter() - t, 2)
        counts = key.decrypt_packed(key.public.unpack(result.body["histogram"], 100), stats.HIST_SLOT, bins)
        assert sum(counts) == result.rows, (sum(counts), result.rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "peak_bytes": peak, "seconds": time.perf_counter() - start, **out}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--child", default="")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.folder, args.bins, args.bits)
        return
    from _setup import machine

    folder = Path(tempfile.mkdtemp(prefix="usufruct-hist-rss-"))
    t = time.perf_counter()
    _make(folder, args.rows)
    size = (folder / "host" / "data" / "host.csv").stat().st_size
    print(f"machine: {machine()}")
    made = time.perf_counter() - t
    print(f"dataset: {args.rows:,} rows x {len(COLUMNS)} columns, {size / 2**20:.0f} MiB CSV (made in {made:.0f} s)")
    for mode in ("import", "dicts", "histogram"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--bins", str(args.bins), "--bits", str(args.bits)],  # noqa: E501
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        label = {
            "import": "baseline  node code imported, nothing read",
            "dicts": "baseline  rows read as a list of dicts",
            "histogram": f"usufruct  histogram partial ({args.bins} bins, {args.bits}-bit key)",
        }[mode]
        extra = f"  (the step itself {r['step_s']} s)" if "step_s" in r else ""
        print(f"{label:58s} peak RSS {r['peak_bytes'] / 2**20:7.0f} MiB   {r['seconds']:6.1f} s{extra}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
