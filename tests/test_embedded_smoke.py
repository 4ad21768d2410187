"""Smoke test of the embedded default: `make run` with no DATABASE_URL and no broker
(SQLite + kombu's filesystem transport), walk the path over HTTP, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def _call(url: str, token: str | None = None, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _wait(fn, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out")


def _api_token(env: dict[str, str], username: str) -> str:
    """The user's API token, as an operator of the embedded system gets it."""
    cmd = [sys.executable, "manage.py", "drf_create_token", username]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.split()[2]


def test_make_run_serves_the_whole_path_on_the_embedded_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "MAKEFLAGS"}}
    env.update(USUFRUCT_VAR_DIR=str(tmp_path / "var"), USUFRUCT_PORT=str(port), PYTHONUNBUFFERED="1")
    # Beat and the demo witness at a test's pace: checkpoints, receipt batches, cosignatures.
    env.update(USUFRUCT_CHECKPOINT_INTERVAL="3", USUFRUCT_ATTEST_INTERVAL="2", USUFRUCT_WITNESS_INTERVAL="1")
    env.pop("USUFRUCT_HUB_KEY_FILE", None)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        ["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _call(f"{base}/api/datasets/")[1].get("count") == 5, timeout=120)
        token = _api_token(env, "bank")
        datasets = _call(f"{base}/api/datasets/?operation=hetero_lr")[1]["results"]  # the credit signals
        assert sorted(d["node"] for d in datasets) == ["acme", "taxco"]
        rights = []
        for d in datasets:
            status, order = _call(
                f"{base}/api/orders/",
                token,
                {"offer": d["offers"][0]["id"], "purpose": "smoke", "accept_terms": True},
                key=f"smoke-{d['id']}",
            )
            assert status == 201, order
            rights.append(order["right"]["id"])
        status, job = _call(
            f"{base}/api/jobs/",
            token,
            {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": rights},
            key="smoke-job",
        )
        assert status == 201, job
        done = _wait(
            lambda: (j := _call(f"{base}/api/jobs/{job['id']}/", token)[1])["status"] in ("succeeded", "failed") and j,
            timeout=120,
        )
        assert done["status"] == "succeeded", done
        assert done["outputs"]["count"] == 3800
        bill = _call(f"{base}/api/billing/bill/", token)[1]
        assert bill["totals"][0]["amount_minor"] == 350

        # The node workers attest their receipts; the demo regulator's witness cosigns a checkpoint over them.
        auditor = _api_token(env, "regulator")
        batches = _wait(
            lambda: (
                (b := _call(f"{base}/api/ledger/entries/?kind=receipt_batch", auditor)[1]["results"])
                and len(b) == 2
                and b
            ),
            timeout=60,
        )
        assert sorted(b["payload"]["node"] for b in batches) == ["acme", "taxco"]
        last = max(b["seq"] for b in batches)

        def cosigned_over_batches():  # type: ignore[no-untyped-def]
            cp = _call(f"{base}/api/ledger/checkpoints/latest/", auditor)[1]
            return cp.get("size", 0) > last and cp["cosignatures"] and cp

        checkpoint = _wait(cosigned_over_batches, timeout=60)
        assert checkpoint["cosignatures"][0]["witness"] == "dpa.example/audit-witness"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        output = (tmp_path / "run.log").read_text()
    assert "http://127.0.0.1:" in output and "usufruct-demo" in output
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.strip()
    assert leftover == "", f"processes survived Ctrl-C: {leftover}"
