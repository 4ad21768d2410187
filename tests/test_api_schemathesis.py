"""schemathesis over the served schema, once per role: 0 failures of every check.

The API runs as it does in production (gunicorn, ``DEBUG`` off) on the test database with
the demo world. For each role (a consumer, a provider, a regulator, platform staff and an
anonymous caller) schemathesis runs all its phases (examples, coverage, fuzzing, stateful)
with all its checks, bounded by ``--max-examples`` and a fixed seed so the run is
repeatable, and one worker thread each (two threads of one schemathesis process can trip
CPython 3.11's AST recursion guard while Hypothesis reads its own source).
``schemathesis.toml`` names the few operations where a schema-valid request may still
break a rule the schema cannot state. The five runs go side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

ROLES = {"consumer": "bank", "provider": "acme", "regulator": "regulator", "staff": "admin", "anonymous": None}
MAX_EXAMPLES = os.environ.get("USUFRUCT_SCHEMATHESIS_EXAMPLES", "20")


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
            "--checks", "all", "--max-examples", MAX_EXAMPLES, "--workers", "1", "--seed", "20261201",
            "--no-color", "--request-timeout", "30",
        ]  # fmt: skip
        runs[role] = (subprocess.Popen(cmd, cwd=ROOT, stdout=out.open("wb"), stderr=subprocess.STDOUT), out)
    failed = {}
    for role, (proc, out) in runs.items():
        code = proc.wait(timeout=600)
        text = out.read_text()
        assert "Tested: " in text, f"{role}: schemathesis did not test any operation:\n{text[-2000:]}"
        if code != 0:  # the failures section, then the summary
            start = text.find("FAILURES")
            failed[role] = (text[start : start + 8000] if start >= 0 else "") + "\n" + text[-1500:]
    assert not failed, "\n\n".join(f"=== {role} ===\n{text}" for role, text in failed.items()) + (
        f"\n\nserver log: {log}"
    )
