"""The production transport: RabbitMQ with one broker user per node (scripts/rabbitmq-federation).

A whole job runs over it with real worker processes, each node on its own credentials;
then each node's user is shown to read only its own queue and to write only to it and to
the hub, so no node reads the hub's queue or another node's.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from amqp import Message as AmqpMessage
from kombu import Connection, Exchange
from kombu.exceptions import OperationalError

from compute.models import Job, Message
from ledger.models import LedgerEntry
from marketplace.models import Offer
from tests.conftest import NODES, ROOT, api_for, ledger_idle, post_job, wait_for

pytestmark = pytest.mark.e2e
HOST = os.environ.get("RABBITMQ_HOST", "127.0.0.1")


def _url(user: str, password: str, vhost: str) -> str:
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:5672/{quote(vhost, safe='')}"


@pytest.fixture
def federation_vhost() -> Iterator[dict[str, str]]:
    """A fresh vhost with a hub user and one user per demo node; deleted afterwards."""
    vhost = f"usufruct-test-{os.getpid()}-{secrets.token_hex(3)}"
    # Hex: a password with a leading '-' would read as an option to rabbitmqctl.
    passwords = {name: secrets.token_hex(12) for name in ("hub", *NODES)}
    pairs = [f"{slug}={passwords[slug]}" for slug in NODES]
    setup = subprocess.run(
        [str(ROOT / "scripts" / "rabbitmq-federation"), vhost, passwords["hub"], *pairs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    urls = {"hub": _url(f"usufruct-hub@{vhost}", passwords["hub"], vhost)}
    urls |= {slug: _url(f"usufruct-{slug}@{vhost}", passwords[slug], vhost) for slug in NODES}
    try:
        yield urls
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "rabbitmq-federation"), "--delete", vhost, *NODES], capture_output=True, timeout=60
        )


@pytest.fixture
def hub_app_on(federation_vhost):  # type: ignore[no-untyped-def]
    """This test process publishes (job starts, steps) as the hub, over the federation vhost."""
    from config.celery import app

    def reconnect(url: str) -> None:  # the next publish takes kombu's pool for this URL
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.broker_url = app.conf.broker_write_url = app.conf.broker_read_url = url

    saved = app.conf.broker_url
    reconnect(federation_vhost["hub"])
    try:
        yield federation_vhost
    finally:
        reconnect(saved)


def _refused(url: str, action) -> bool:  # type: ignore[no-untyped-def]
    try:
        with Connection(url, transport_options={"confirm_publish": True}) as conn:
            action(conn.channel())
    except (OperationalError, Exception) as exc:  # amqp's AccessRefused (403)
        refused = "ACCESS_REFUSED" in str(exc)
        assert refused, f"failed, but not for want of permission: {exc!r}"
        return refused
    return False


def test_a_job_runs_over_rabbitmq_with_one_broker_user_per_node(processes, hub_app_on) -> None:  # type: ignore[no-untyped-def]
    urls = hub_app_on
    processes.env = dict(processes.env, CELERY_BROKER_URL=urls["hub"])
    processes.start("hub", wait=False)
    for slug in NODES:
        processes.env_for[slug] = {"CELERY_BROKER_URL": urls[slug]}
        processes.start(slug, wait=False)
    processes.wait_ready()

    bank = api_for("bank")
    rights = []
    for slug in ("acme", "taxco"):
        offer = Offer.objects.get(dataset__node__slug=slug)
        r = bank.post(
            "/api/orders/", {"offer": offer.id, "purpose": "p", "accept_terms": True}, format="json",
            HTTP_IDEMPOTENCY_KEY=f"o-{slug}",
        )  # fmt: skip
        rights.append(r.json()["right"]["id"])
    job_id = post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, rights, "rmq").json()["id"]
    job = wait_for(lambda: (j := Job.objects.get(id=job_id)).status in ("succeeded", "failed") and j, timeout=90)
    assert job.status == "succeeded", job.error
    ledger_idle()
    assert LedgerEntry.objects.filter(kind="settlement", payload__outcome="delivered").count() == 2
    assert Message.objects.filter(job=job, direction="in").count() == 4

    acme = urls["acme"]
    # acme reads its own queue, and no other.
    assert not _refused(acme, lambda ch: ch.basic_get("node.acme"))
    assert _refused(acme, lambda ch: ch.basic_get("hub"))
    assert _refused(acme, lambda ch: ch.basic_get("node.taxco"))
    # It writes to the hub's exchange, but not to another node's queue nor through the default exchange.
    assert not _refused(
        acme, lambda ch: ch.basic_publish_confirm(AmqpMessage(b"{}"), exchange="hub", routing_key="hub")
    )
    assert _refused(
        acme,
        lambda ch: ch.basic_publish_confirm(AmqpMessage(b"{}"), exchange="node.taxco", routing_key="node.taxco"),
    )
    assert _refused(acme, lambda ch: ch.basic_publish_confirm(AmqpMessage(b"{}"), exchange="", routing_key="hub"))
    # And it cannot delete or re-declare what is not its own.
    assert _refused(acme, lambda ch: ch.queue_delete("hub"))
    assert _refused(acme, lambda ch: Exchange("hub", type="fanout")(ch).declare())
