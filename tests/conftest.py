"""Shared fixtures. The suite runs on PostgreSQL with a real broker (see Makefile).

``workers`` starts the hub worker and the three demo node workers as real processes on
the configured broker, connected to the test database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import Browser, Page, expect, sync_playwright
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent
NODES = ("acme", "taxco", "bank")
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _nodes_in_tmp_path(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Each test's demo nodes keep their keys, data and job state in its own folder.
    settings.USUFRUCT_NODES_DIR = tmp_path / "nodes"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    # PBKDF2 costs ~0.2 s per demo user; tests check permissions, not hash strength.
    settings.PASSWORD_HASHERS = FAST_HASHERS


_SEEDED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The test database with the demo world seeded once, committed, for every ``demo`` test.

    Each ``demo`` test runs in a transaction rolled back at its end (pytest-django), so it
    starts from this same world, and gets its own copy of the demo nodes' folders (keys,
    data, job state). pytest-django runs these tests before the transactional ones, whose
    flush clears the world; ``tdemo`` seeds it again for each of them.
    """
    from django.test import override_settings

    nodes = tmp_path_factory.mktemp("seeded") / "nodes"
    with django_db_blocker.unblock(), override_settings(USUFRUCT_NODES_DIR=nodes, PASSWORD_HASHERS=FAST_HASHERS):
        call_command("seed_demo", quiet=True)
    _SEEDED["nodes"] = nodes


def _world_exists() -> bool:
    from marketplace.models import Organization

    return Organization.objects.exists()


@pytest.fixture(autouse=True)
def _no_world_unless_asked(request) -> None:  # type: ignore[no-untyped-def]
    """A database test that did not ask for ``demo`` starts from an empty database, as before
    the world was seeded once: inside its transaction (rolled back after it) the tables are
    emptied, append-only triggers paused for that statement only."""
    names = request.fixturenames
    marker = request.node.get_closest_marker("django_db")
    if {"demo", "tdemo"} & set(names) or not (marker or "db" in names or "transactional_db" in names):
        return
    if "transactional_db" in names or "live_server" in names or (marker and marker.kwargs.get("transaction")):
        request.getfixturevalue("transactional_db")
        if _world_exists():
            call_command("flush", interactive=False, verbosity=0)
        return
    request.getfixturevalue("db")
    tables = ", ".join(connection.ops.quote_name(t) for t in connection.introspection.django_table_names())
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(f"TRUNCATE {tables} CASCADE")
        cur.execute("SET LOCAL session_replication_role = origin")


@pytest.fixture
def demo(db, settings) -> None:  # type: ignore[no-untyped-def]
    """The seeded demo world: orgs, users, enrolled nodes, signed datasets, offers."""
    import shutil

    shutil.copytree(_SEEDED["nodes"], settings.USUFRUCT_NODES_DIR, dirs_exist_ok=True)


@pytest.fixture
def tdemo(transactional_db) -> None:  # type: ignore[no-untyped-def]
    """The demo world committed for real, so that worker processes can see it."""
    if _world_exists():  # the session's world, before the first flush
        call_command("flush", interactive=False, verbosity=0)
    call_command("seed_demo", quiet=True)


def api_for(username: str) -> APIClient:
    from django.contrib.auth import get_user_model

    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    return client


@pytest.fixture
def bank_api(demo) -> APIClient:  # type: ignore[no-untyped-def]
    return api_for("bank")


def _worker_env() -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    env["USUFRUCT_VAR_DIR"] = str(settings.VAR_DIR)
    env["USUFRUCT_HUB_KEY_FILE"] = str(settings.USUFRUCT_HUB_KEY_FILE)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _wait_ready(logs: list[Path], procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker died at start:\n{log.read_text()[-3000:]}")
        if all(b" ready." in log.read_bytes() for log in logs):
            return
        time.sleep(0.2)
    raise RuntimeError("workers did not become ready: " + ", ".join(str(p) for p in logs))


@pytest.fixture(scope="session")
def broker_clean() -> None:
    url = os.environ.get("CELERY_BROKER_URL", "")
    if url.startswith("redis://"):
        import redis

        redis.Redis.from_url(url).flushdb()


class Processes:
    """The federation's worker processes: one hub worker and one worker per demo node.

    ``start``, ``kill`` (SIGKILL, as a crash) and ``restart`` act on one of them by name; a
    node may be started from another module (a tampering node built on the real one).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.env = _worker_env()
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.starts: dict[str, int] = {}
        self.env_for: dict[str, dict[str, str]] = {}  # per-process overrides (e.g. a node's broker user)

    def _command(self, name: str, module: str) -> tuple[list[str], dict[str, str]]:
        if name == "hub":
            cmd = [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "hub",
                "-n", f"hub-{os.getpid()}@%h", "--pool=threads", "--concurrency=4",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
            ]  # fmt: skip
            return cmd, dict(self.env, **self.env_for.get(name, {}))
        env = dict(
            self.env,
            **self.env_for.get(name, {}),
            USUFRUCT_NODE_SLUG=name,
            USUFRUCT_NODE_DIR=str(Path(settings.USUFRUCT_NODES_DIR) / name),
        )
        env.pop("DATABASE_URL")  # a node has no business with the hub database
        return [sys.executable, "-m", module, "worker"], env

    def start(self, name: str, module: str = "compute.node", wait: bool = True) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        log = self.tmp_path / f"{name}.{self.starts[name]}.log"
        cmd, env = self._command(name, module)
        self.procs[name] = _start(cmd, env, log)
        self.logs[name] = log
        if wait:
            _wait_ready([log], [self.procs[name]])

    def wait_ready(self) -> None:
        _wait_ready([self.logs[n] for n in self.procs], list(self.procs.values()))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=15)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def processes(tdemo, broker_clean, tmp_path) -> Iterator[Processes]:  # type: ignore[no-untyped-def]
    """Worker processes started by the test itself (see ``workers`` for all of them at once)."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "amqp://")):
        pytest.fail("end-to-end tests need CELERY_BROKER_URL set to a real broker (make test does it)")
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def workers(processes) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Real processes: one hub worker and one worker per demo node."""
    for name in ("hub", *NODES):
        processes.start(name, wait=False)
    processes.wait_ready()
    return processes.logs


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def ledger_idle(timeout: float = 30.0) -> None:
    """Wait until the hub's ledger writer has integrated every accepted entry (normally milliseconds)."""
    from ledger.models import PendingEntry

    wait_for(lambda: not PendingEntry.objects.exists(), timeout=timeout, interval=0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_server(tdemo, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The API as production serves it (gunicorn, ``DEBUG`` off) on the test database: (URL, log)."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    cmd = [
        str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "3", "--access-logfile", "-", "--limit-request-line", "8190",
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


# --- browser (Playwright driving Debian's Chromium) ------------------------------------

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests
# make themselves are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "usufruct-demo"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    context.close()


def login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(username)


def buy(page: Page, base: str, dataset_name: str, purpose: str = "Credit-risk model for SME loans") -> None:
    """Buy the first offer of a dataset through the catalog page."""
    page.goto(f"{base}/")
    page.click(f"text={dataset_name}")
    page.fill("textarea[name=purpose]", purpose)
    page.check("input[name=accept_terms]")
    page.click("text=Buy usage right")
    expect(page.locator(".messages")).to_contain_text("Usage right")


def post_job(api: APIClient, algorithm: str, params: dict, rights: list[int], key: str):  # type: ignore[no-untyped-def,type-arg]
    return api.post(
        "/api/jobs/",
        {"algorithm": algorithm, "params": params, "rights": rights},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def right_on_new_offer(
    *,
    title: str,
    operations: list[str],
    epsilon: str = "0",
    key: str,
    plans: list[dict] | None = None,  # type: ignore[type-arg]
) -> int:
    """acme publishes an offer on its dataset (by default 1.00 EUR per job); the bank buys it. The right's id."""
    from marketplace.models import Dataset

    acme = Dataset.objects.get(node__slug="acme")
    offer = api_for("acme").post(
        "/api/offers/",
        {
            "dataset": acme.id,
            "title": title,
            "operations": operations,
            **({"plans": plans} if plans else {"amount_minor": 100, "currency": "EUR"}),
            "quota_jobs": 5,
            "duration_days": 30,
            "epsilon": float(epsilon),
        },
        format="json",
    )
    assert offer.status_code == 201, offer.content
    order = api_for("bank").post(
        "/api/orders/",
        {"offer": offer.json()["id"], "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert order.status_code == 201, order.content
    return order.json()["right"]["id"]


def run_verifier(bundle: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    """The offline verifier as a regulator runs it: a separate process, no Django."""
    return subprocess.run(
        [sys.executable, "-m", "audit.verify", str(bundle), "--log-key", vkey],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sell(provider: str, buyer: str, plan: dict, key: str, quota: int = 4) -> int:  # type: ignore[type-arg]
    """``provider`` publishes an offer on its dataset with ``plan``; ``buyer`` buys it. The right's id."""
    from marketplace.models import Dataset

    dataset = Dataset.objects.filter(organization__slug=provider).order_by("id").first()
    assert dataset is not None
    offer = api_for(provider).post(
        "/api/offers/",
        {
            "dataset": dataset.id,
            "title": f"offer {key}",
            "operations": ["stats"],
            "quota_jobs": quota,
            "duration_days": 30,
            "plans": [{"currency": "EUR", "billing": "prepaid", **plan}],
        },
        format="json",
    )
    assert offer.status_code == 201, offer.content
    order = api_for(buyer).post(
        "/api/orders/",
        {"offer": offer.json()["id"], "purpose": "p", "accept_terms": True, "again": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert order.status_code == 201, order.content
    return order.json()["right"]["id"]


def right_for_purpose(category: str, key: str) -> Any:
    """acme sells stats and PSI (1.00 EUR per job, ε = 3); the bank buys it declaring ``category``."""
    from marketplace.models import Dataset, UsageRight

    dataset = Dataset.objects.get(node__slug="acme")
    offer = api_for("acme").post(
        "/api/offers/",
        {
            "dataset": dataset.id,
            "title": f"offer {key}",
            "operations": ["stats", "psi"],
            "plans": [{"kind": "per_job", "amount_minor": 100, "currency": "EUR"}],
            "quota_jobs": 5,
            "duration_days": 30,
            "epsilon": 3,
        },
        format="json",
    )
    assert offer.status_code == 201, offer.content
    r = api_for("bank").post(
        "/api/orders/",
        {"offer": offer.json()["id"], "purpose": f"purpose {key}", "purpose_category": category,
         "accept_terms": True, "again": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip
    assert r.status_code == 201, r.content
    return UsageRight.objects.get(id=r.json()["right"]["id"])


def run_psi(right: Any) -> Any:
    from compute.models import Job
    from marketplace.models import Dataset
    from tests import federation

    own = Dataset.objects.get(node__slug="bank")
    params = {"consumer_dataset": own.local_name, "consumer_id_column": "applicant_id", "epsilon": 1.0}
    job = federation.run(federation.submit([right.id], algorithm="psi", params=params))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job
