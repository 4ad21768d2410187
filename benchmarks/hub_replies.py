"""Node replies handled by the hub end to end, against a no-op Celery task on the same broker and workers.

    .venv/bin/python benchmarks/hub_replies.py [--jobs 400] [--workers 1 2]

What the product does with a provider node's answer: the node's signed, sealed reply
travels over the broker to the ``hub`` queue; a hub worker process
(``usufruct.hub.receive``, the production task, ``--pool=solo`` as in the Procfile)
checks the envelope, the signature against the enrolled key, the nonce against the
step it asked for, unseals the body, checks the usage receipt field by field, stores
the message, moves the job on (here: the homomorphic sum is sent on to the bank's node
for decryption, a real publish) and leaves the ``usage`` entry pending for the ledger
writer, whose wake-ups run on the same workers.

Set-up, not timed: the demo world in a fresh PostgreSQL database, one offer bought,
``--jobs`` ``stats`` jobs started; the bank's node (key generation) and Acme's node
(encrypted partials) answer each job through the real node code
(``compute.node.runtime.handle_step``), so every reply is one the hub asked for.

Timed: from the first publish until every reply's usage entry is pending or on the
log; also the worker processes' CPU time per message in each phase (``/proc``), which a
noisy host moves less than the wall clock. Baseline, same run, same broker, same worker
processes and the same messages: a no-op task (``benchmarks/_noop.py``, which only counts
in Redis). Run for 1 and 2 hub worker processes. The broker is ``CELERY_BROKER_URL``
(default Redis db 13).
``BENCH_HUB_LOG_LEVEL=INFO`` keeps the workers' "hub took N node message(s) in T ms" lines
(one per batch) in the logs the run leaves under ``/tmp/usufruct-bench-replies-*``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _setup import ROOT, django_setup, fresh_database, machine

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
COUNTER = "usufruct-bench:noop"


def _worker(index: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "hub", "-n", f"bench-hub-{index}@%h",
        "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
        f"--loglevel={os.environ.get('BENCH_HUB_LOG_LEVEL', 'WARNING')}",
        "-I", "_noop",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _workers(n: int, env: dict[str, str], tmp: Path) -> list[subprocess.Popen[bytes]]:
    procs = [_worker(i, env, tmp / f"hub-{n}-{i}.log") for i in range(n)]
    time.sleep(0.5)
    from config.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ready when every worker answers a ping
        replies = app.control.ping(timeout=0.5) or []
        if len(replies) >= n:
            return procs
    raise RuntimeError("hub workers did not start: " + ", ".join(str(tmp / f"hub-{n}-{i}.log") for i in range(n)))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def _prepare(jobs: int) -> list[dict]:  # type: ignore[type-arg]
    """``jobs`` stats jobs, each waiting for Acme's partial; returns Acme's signed replies."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from compute import services
    from compute.models import Job, Message
    from compute.node.config import NodeConfig
    from compute.node.runtime import handle_step
    from marketplace import services as market
    from marketplace.models import Dataset, Organization

    call_command("seed_demo", quiet=True)
    acme = Dataset.objects.get(node__slug="acme")
    bank, buyer = Organization.objects.get(slug="northwind"), get_user_model().objects.get(username="bank")
    offer = market.offer_publish(
        organization=acme.organization, dataset=acme, title="bench", operations=["stats"], quota_jobs=jobs,
        duration_days=30, amount_minor=100, currency="EUR", min_group_size=10,
    )  # fmt: skip
    order, _ = market.order_place(
        consumer=bank, buyer=buyer, offer_id=offer.id, plan_id=None, purpose="benchmark", accept_terms=True,
        idempotency_key=uuid.uuid4().hex,
    )  # fmt: skip

    def node(slug: str) -> NodeConfig:
        return NodeConfig(
            slug=slug, directory=Path(settings.USUFRUCT_NODES_DIR) / slug, broker_url="memory://", broker_dir=None
        )

    replies = []
    for i in range(jobs):
        job, _ = services.job_submit(
            consumer=bank, user=buyer, algorithm="stats", params={"column": "tenure_months", "key_bits": 1024},
            rights=[order.right.id], idempotency_key=f"bench-{i}",
        )  # fmt: skip
        services.job_start(job_id=str(job.id))
        keygen = Message.objects.get(job=job, direction="out", step="keygen")
        for reply in handle_step(node("bank"), keygen.envelope):
            services.message_receive(wire=reply)
        partial = Message.objects.get(job=job, direction="out", step="partial")
        replies.extend(handle_step(node("acme"), partial.envelope))
        if (i + 1) % 100 == 0:
            print(f"  prepared {i + 1} jobs", flush=True)
    assert len(replies) == jobs and Job.objects.filter(state__phase="partial").count() == jobs
    return replies


def _usage_count() -> int:
    """Usage entries pending or on the log, in one statement (one snapshot: an entry the writer
    moves between the two tables meanwhile is counted once)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM ledger_pendingentry WHERE kind = 'usage')"
            " + (SELECT count(*) FROM ledger_ledgerentry WHERE kind = 'usage')"
        )
        return int(cur.fetchone()[0])


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU time (user + system) the worker processes have used so far, from ``/proc``: a figure
    a noisy host moves less than wall time (another tenant's load slows the clock, not the work)."""
    total = 0
    for p in procs:
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the name: fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _timed(task: str, wires: list[dict], done) -> float:  # type: ignore[no-untyped-def, type-arg]
    from config.celery import app

    start = time.perf_counter()
    for wire in wires:  # as a node publishes (compute.node.app.send_to_hub on Redis)
        app.send_task(task, args=[wire], queue="hub")
    while not done():  # every 20 ms: the count is a query, and the hub shares the database's two cores
        time.sleep(0.02)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="usufruct-bench-replies-"))
    os.environ["CELERY_BROKER_URL"] = BROKER
    os.environ["USUFRUCT_VAR_DIR"] = str(tmp / "var")
    fresh_database()
    django_setup(str(tmp / "var"))
    import redis
    from django.conf import settings
    from django.db import connection

    from ledger import writer

    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    env = dict(os.environ)
    db = connection.settings_dict
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        USUFRUCT_HUB_KEY_FILE=str(settings.USUFRUCT_HUB_KEY_FILE),
        PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
        USUFRUCT_LOG_LEVEL=os.environ.get("BENCH_HUB_LOG_LEVEL", "WARNING"),
    )
    print(f"machine: {machine()}")
    print(f"broker: {BROKER}; {args.jobs} replies per run; hub workers --pool=solo")
    from django.core.management import call_command

    for round_, n in enumerate(args.workers):
        if round_:  # a fresh world for each worker count
            connection.close()
            fresh_database()
            call_command("migrate", verbosity=0)
        settings.USUFRUCT_NODES_DIR = tmp / f"nodes-{round_}"
        replies = _prepare(args.jobs)
        r.flushdb()  # the set-up's own messages to the nodes' queues
        writer.integrate_all()
        before = _usage_count()
        procs = _workers(n, env, tmp)
        try:
            r.delete(COUNTER)
            want = len(replies)
            cpu0 = _cpu_seconds(procs)
            base = _timed("bench.noop", replies, lambda w=want: int(r.get(COUNTER) or 0) >= w)
            cpu1 = _cpu_seconds(procs)
            hub = _timed("usufruct.hub.receive", replies, lambda w=want + before: _usage_count() >= w)
            cpu2 = _cpu_seconds(procs)
        finally:
            _stop(procs)
        from compute.models import Job

        moved = Job.objects.filter(state__phase="decrypt").count()
        assert moved == args.jobs, f"only {moved} of {args.jobs} jobs moved on to decryption"
        b, h = len(replies) / base, len(replies) / hub
        print(f"{n} hub worker(s): baseline no-op task {b:7,.0f} msgs/s | usufruct replies {h:7,.0f}/s ({h / b:.0%})")
        cb, ch = (cpu1 - cpu0) / want * 1000, (cpu2 - cpu1) / want * 1000
        print(f"    workers' CPU per message: no-op {cb:.2f} ms | reply {ch:.2f} ms ({cb / ch:.0%} by CPU)")


if __name__ == "__main__":
    main()
