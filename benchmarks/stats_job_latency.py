"""End-to-end latency of a federated `stats` job on the embedded default.

    .venv/bin/python benchmarks/stats_job_latency.py [--jobs 5] [--key-bits 2048]

Starts `make run` (SQLite, filesystem broker, hub + three node workers as separate
processes) in a temporary directory, buys the two demo offers, then times submit →
succeeded for each job over the HTTP API: keygen on the bank's node, encrypted partials
on both provider nodes (2,000 + 1,800 rows), homomorphic sum on the hub, decryption.
Baseline in the same run: the same statistic computed in plain Python over both CSVs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def call(url: str, token: str | None = None, body: dict | None = None, key: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--key-bits", type=int, default=2048)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="usufruct-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(USUFRUCT_VAR_DIR=str(tmp / "var"), USUFRUCT_PORT=str(port))
    log = (tmp / "run.log").open("wb")
    proc = subprocess.Popen(
        ["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if call(f"{base}/api/datasets/")["count"] == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        token = subprocess.run(
            [sys.executable, "manage.py", "drf_create_token", "bank"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[2]
        rights = [
            call(
                f"{base}/api/orders/",
                token,
                {"offer": d["offers"][0]["id"], "purpose": "bench", "accept_terms": True},
                key=f"b{d['id']}",
            )["right"]["id"]
            for d in call(f"{base}/api/datasets/")["results"]
        ]
        latencies = []
        for i in range(args.jobs):
            start = time.perf_counter()
            job = call(
                f"{base}/api/jobs/",
                token,
                {
                    "algorithm": "stats",
                    "rights": rights,
                    "params": {"column": "tenure_months", "key_bits": args.key_bits},
                },
                key=f"bench-{i}",
            )
            while (state := call(f"{base}/api/jobs/{job['id']}/", token))["status"] not in ("succeeded", "failed"):
                time.sleep(0.05)
            assert state["status"] == "succeeded", state["error"]
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        values = []
        for slug in ("acme", "taxco"):
            path = next((tmp / "var" / "nodes" / slug / "data").glob("*.csv"))
            with path.open() as fh:
                values += [float(r["tenure_months"]) for r in csv.DictReader(fh)]
        mean = sum(values) / len(values)
        _ = sum((v - mean) ** 2 for v in values) / len(values)
        plain = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    med = statistics.median(latencies)
    print(
        f"# {os.cpu_count()} cores, embedded default (SQLite + filesystem broker, 0.2 s polling), "
        f"{args.key_bits}-bit Paillier, 2 providers, {len(values)} rows"
    )
    print(
        f"federated stats job, submit → result: median {med:.2f} s, min {min(latencies):.2f} s, "
        f"max {max(latencies):.2f} s over {len(latencies)} jobs"
    )
    print(f"baseline, plain Python over both CSVs on one machine: {plain * 1000:.1f} ms (ratio {med / plain:,.0f}×)")


if __name__ == "__main__":
    main()
