"""Real PostgreSQL, real threads: the last quota units are never oversold, the ledger
chain never forks, and a double-clicked purchase creates one order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from compute.models import Job
from ledger.models import LedgerEntry
from marketplace.models import Offer, Order, UsageRight
from tests.conftest import api_for

pytestmark = pytest.mark.django_db(transaction=True)


def _threads(n: int, fn, workers: int | None = None):  # type: ignore[no-untyped-def]
    workers = workers or n
    barrier = threading.Barrier(workers)

    def run(i: int):  # type: ignore[no-untyped-def]
        if i < workers:
            barrier.wait()
        try:
            return fn(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_job_submissions_never_oversell_the_last_units(tdemo) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    offer = Offer.objects.get(dataset__node__slug="acme")
    right = bank.post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="o",
    ).json()["right"]["id"]
    UsageRight.objects.filter(id=right).update(quota_used=17)  # 3 units left

    def submit(i: int) -> int:
        return (
            api_for("bank")
            .post(
                "/api/jobs/",
                {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [right]},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"job-{i}",
            )
            .status_code
        )

    # 100 submissions race for the last 3 units, 40 at a time (PostgreSQL allows 100
    # connections in all; the workers and the test runner need some).
    codes = _threads(100, submit, workers=40)
    assert codes.count(201) == 3 and codes.count(409) == 97
    r = UsageRight.objects.get(id=right)
    assert (r.quota_used, r.quota_reserved) == (17, 3)
    assert Job.objects.count() == 3


def test_a_double_clicked_buy_creates_one_order(tdemo) -> None:  # type: ignore[no-untyped-def]
    offer = Offer.objects.get(dataset__node__slug="acme")

    def buy(i: int) -> int:
        return (
            api_for("bank")
            .post(
                "/api/orders/",
                {"offer": offer.id, "purpose": "p", "accept_terms": True},
                format="json",
                HTTP_IDEMPOTENCY_KEY="same-click",
            )
            .status_code
        )

    codes = _threads(100, buy, workers=40)
    assert codes.count(201) == 1 and codes.count(200) == 99
    assert Order.objects.count() == 1 and UsageRight.objects.count() == 1


def test_parallel_appends_keep_the_chain_gap_free(tdemo) -> None:  # type: ignore[no-untyped-def]
    from ledger.services import entry_append

    def append(i: int) -> int:
        return entry_append(kind="usage", event_id=f"test:{i}", payload={"i": i}).seq

    seqs = _threads(16, append)
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    assert len(set(seqs)) == 16
