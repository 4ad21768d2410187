"""schemathesis over the served schema, once per role: 0 failures of every check.

The API runs as it does in production (gunicorn, ``DEBUG`` off) on the test database with
the demo world. For each role (a consumer, a provider, a regulator, platform staff and an
anonymous caller) schemathesis runs all its phases (examples, coverage, fuzzing, stateful)
with all its checks, bounded by ``--max-examples`` and a fixed seed so the run is
repeatable; ``schemathesis.toml`` names the few operations where a schema-valid request
may still break a rule the schema cannot state. The five runs go side by side.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, _worker_env

ROLES = {"consumer": "bank", "provider": "acme", "regulator": "regulator", "staff": "admin", "anonymous": None}
MAX_EXAMPLES = os.environ.get("USUFRUCT_SCHEMATHESIS_EXAMPLES", "20")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_server(tdemo, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    cmd = [
        str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "3", "--access-logfile", "-",
    ]  # fmt: skip
    env = dict(_worker_env(), DJANGO_DEBUG="0")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_schemathesis_finds_nothing_for_any_role(api_server, tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model

    from marketplace import accounts

    url, log = api_server
    users = get_user_model().objects
    runs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for role, username in ROLES.items():
        auth = []
        if username:
            auth = ["-H", f"Authorization: Token {accounts.token_rotate(user=users.get(username=username))}"]
        out = tmp_path / f"schemathesis-{role}.txt"
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/api/schema/", *auth,
            "--checks", "all", "--max-examples", MAX_EXAMPLES, "--workers", "2", "--seed", "20261201",
            "--no-color", "--request-timeout", "30",
        ]  # fmt: skip
        runs[role] = (subprocess.Popen(cmd, cwd=ROOT, stdout=out.open("wb"), stderr=subprocess.STDOUT), out)
    failed = {}
    for role, (proc, out) in runs.items():
        code = proc.wait(timeout=600)
        text = out.read_text()
        assert "Tested: " in text, f"{role}: schemathesis did not test any operation:\n{text[-2000:]}"
        if code != 0:
            failed[role] = text[-6000:]
    assert not failed, "\n\n".join(f"=== {role} ===\n{text}" for role, text in failed.items()) + (
        f"\n\nserver log: {log}"
    )
