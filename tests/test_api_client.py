"""A client generated from the served schema walks the README's path against real processes.

openapi-python-client runs in a venv of its own (``var/client-venv``, made once), never in
the project's; it generates ``usufruct_client`` from ``/api/schema/`` as the running server
serves it, and ``tests/client_walk.py`` drives it: catalog, purchase (and its idempotent
retry), rights, a ``stats`` job run by the hub and node workers, the job's signed messages,
the bill, the provider's revenue, a staff checkpoint and the regulator's inclusion proof.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ROOT

GENERATOR = "openapi-python-client>=0.29,<0.30"
VENV = ROOT / "var" / "client-venv"


def _client_venv() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != GENERATOR:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", GENERATOR, "python-dateutil>=2.8"],
            check=True,
            timeout=600,
        )
        stamp.write_text(GENERATOR)
    return python


def test_a_generated_client_walks_the_readme_path(workers, api_server, tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model

    from marketplace import accounts

    url, log = api_server
    python = _client_venv()
    schema = tmp_path / "schema.json"
    with urllib.request.urlopen(f"{url}/api/schema/?format=json", timeout=30) as r:  # noqa: S310 - our own server
        schema.write_bytes(r.read())
    assert json.loads(schema.read_text())["openapi"].startswith("3.")
    config = tmp_path / "generator.yaml"
    config.write_text(
        "project_name_override: usufruct-client\npackage_name_override: usufruct_client\npost_hooks: []\n"
    )
    gen = subprocess.run(
        [str(python.with_name("openapi-python-client")), "generate", "--path", str(schema), "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert gen.returncode == 0, gen.stdout + gen.stderr
    package = tmp_path / "usufruct-client"
    assert (package / "usufruct_client" / "api" / "jobs" / "jobs_create.py").exists(), gen.stdout

    users = get_user_model().objects
    tokens = [accounts.token_rotate(user=users.get(username=u)) for u in ("bank", "acme", "regulator", "admin")]
    walk = subprocess.run(
        [str(python), str(ROOT / "tests" / "client_walk.py"), url, *tokens],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert walk.returncode == 0, f"{walk.stdout}\n{walk.stderr}\nserver log: {log}"
    assert "ok: regulator: usage entry" in walk.stdout, walk.stdout
