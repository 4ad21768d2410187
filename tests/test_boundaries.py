"""Node code never touches the hub: no Django, no hub models, no hub database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import sys, importlib.abc

class Forbid(importlib.abc.MetaPathFinder):
    BANNED = ("django", "rest_framework", "marketplace", "ledger", "config", "psycopg2",
              "compute.models", "compute.services", "compute.tasks")
    def find_spec(self, name, path=None, target=None):
        if name.startswith(self.BANNED):
            raise ImportError(f"node code imported {name}")
        return None

sys.meta_path.insert(0, Forbid())
import compute.node.__main__, compute.node.app, compute.node.runtime, compute.algorithms
print("clean")
"""


def test_node_modules_import_without_django_or_hub_code() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_import_linter_contract_holds() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Node code is pure" in out.stdout and "KEPT" in out.stdout


def test_the_node_cli_fails_with_one_line_when_misconfigured() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "compute.node", "announce"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: environment variable USUFRUCT_NODE_SLUG is required"


def test_the_operations_sold_are_exactly_the_algorithms_that_run() -> None:
    from compute.algorithms import REGISTRY
    from protocol.operations import OPERATIONS

    assert {a.operation for a in REGISTRY.values()} == set(OPERATIONS)
    # Each operation is named after the algorithm it sells (scoring is a use of hetero_lr's right).
    assert all(OPERATIONS[name] == REGISTRY[name].summary for name in OPERATIONS)
