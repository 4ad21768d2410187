"""A step whose publish was lost (after commit, before the broker) is sent again by the
beat task and the job completes; answered steps are never re-sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute import services
from compute.models import Job, Message
from tests.conftest import api_for, ledger_idle, post_job, wait_for

pytestmark = pytest.mark.e2e


def test_lost_publishes_are_resent_and_the_job_finishes(workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from marketplace.models import Offer

    bank = api_for("bank")
    offer = Offer.objects.get(dataset__node__slug="acme")
    right = bank.post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="o",
    ).json()["right"]["id"]
    lost: list[str] = []
    # The broker "loses" every step published after the commit.
    monkeypatch.setattr(services, "_send_all", lambda sends: lost.extend(node for node, _ in sends))
    monkeypatch.setattr(services, "_enqueue_start", lambda job_id: None)
    job_id = post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, [right], "j").json()["id"]
    services.job_start(job_id=job_id)
    assert lost == ["bank"]
    monkeypatch.undo()

    assert services.messages_resend_unanswered(older_than=timedelta(seconds=60)) == 0  # too young
    Message.objects.filter(job_id=job_id).update(created_at=timezone.now() - timedelta(minutes=2))
    assert services.messages_resend_unanswered(older_than=timedelta(seconds=60)) == 1
    job = wait_for(lambda: (j := Job.objects.get(id=job_id)).status in ("succeeded", "failed") and j, timeout=90)
    assert job.status == "succeeded", job.error
    ledger_idle()
    Message.objects.filter(job_id=job_id).update(created_at=timezone.now() - timedelta(minutes=2))
    assert services.messages_resend_unanswered(older_than=timedelta(seconds=60)) == 0
