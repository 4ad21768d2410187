"""Shared set-up of the ledger benchmarks: a fresh PostgreSQL database and Django.

``USUFRUCT_BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/usufruct_bench``)
names a database that is DROPPED and recreated on every run.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
URL = os.environ.get("USUFRUCT_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/usufruct_bench")


def fresh_database() -> None:
    import dj_database_url
    import psycopg2

    cfg = dj_database_url.parse(URL)
    admin = psycopg2.connect(
        dbname="postgres", user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"], password=cfg["PASSWORD"] or None
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')
        cur.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    admin.close()


def django_setup(var_dir: str = "/tmp/usufruct-bench") -> None:
    os.environ["DATABASE_URL"] = URL
    os.environ.setdefault("USUFRUCT_VAR_DIR", var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("USUFRUCT_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = subprocess.run(["psql", URL, "-Atc", "show server_version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg or '?'} (same machine), {platform.system()} {platform.release()}"
    )
