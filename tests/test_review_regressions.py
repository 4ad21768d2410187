"""Regression tests for defects found in review: unsolicited replies, ε rounding, billing
across periods, ε of paid PSI, counts in refusals, offer versions, preview limits under
concurrency, 404s instead of 500s, the last admin."""

from __future__ import annotations

import copy
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from compute import services
from compute.models import Job
from compute.node.runtime import handle_step
from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer, UsageRight
from protocol import envelope
from tests.conftest import api_for, post_job, right_on_new_offer
from tests.federation import body_of
from tests.test_jobs_protocol import _deliver, _outbox, _right, _submit, node, node_says


@pytest.mark.django_db
def test_a_node_cannot_answer_a_step_it_was_not_sent_or_answer_twice(bank_api) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    job = Job.objects.get(id=job_id)
    services.job_start(job_id=job_id)
    (keygen_out,) = _outbox(job, "keygen")
    (keygen_reply,) = handle_step(node("bank"), keygen_out.envelope)
    assert services.message_receive(wire=keygen_reply) == "advanced"
    # The consumer's node re-signs its keygen answer with a fresh nonce: refused.
    bank = node("bank")
    again = node_says(bank, job_id, "keygen", body_of(keygen_reply))
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=again)
    assert err.value.code == "answered"
    # A "decrypt" result nobody asked for (fabricated outputs) is refused.
    forged = copy.deepcopy(body_of(keygen_reply))
    forged["result"] = {"count": 1, "sum": 1.0, "mean": 1.0, "variance": 0.0}
    fake = node_says(bank, job_id, "decrypt", forged)
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=fake)
    assert err.value.code == "unsolicited"
    # A provider re-sending its partial (new nonce, new receipt) is not billed twice.
    _deliver(job, "partial")
    (partial_out,) = _outbox(job, "partial")
    acme = node("acme")
    replay = dict(partial_out.envelope)
    replay_payload = {**replay["payload"], "nonce": uuid.uuid4().hex}
    from ledger.hubkey import hub_kid, hub_private_key

    resent = envelope.sign_payload(replay_payload, key=hub_private_key(), kid=hub_kid())
    (second,) = handle_step(acme, resent)
    with pytest.raises(envelope.EnvelopeError):
        services.message_receive(wire=second)
    assert LedgerEntry.objects.filter(kind="usage", payload__job=job_id).count() == 1


@pytest.mark.django_db
def test_epsilon_below_a_thousandth_is_refused(bank_api) -> None:  # type: ignore[no-untyped-def]
    right = _right(bank_api, "acme", "a")
    r = bank_api.post(
        "/api/jobs/",
        {
            "algorithm": "stats",
            "rights": [right],
            "params": {"column": "tenure_months", "dp_epsilon": 0.0004, "bounds": [0, 100]},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="e",
    )
    assert r.status_code == 400 and "dp_epsilon" in r.json()["error"]["fields"]
    assert UsageRight.objects.get(id=right).epsilon_spent == 0


@pytest.mark.django_db
def test_paid_psi_spends_the_rights_privacy_budget(bank_api) -> None:  # type: ignore[no-untyped-def]
    right = right_on_new_offer(title="Matching", operations=["psi"], epsilon="3.000", key="psi-right")
    own = Dataset.objects.get(node__slug="bank")
    params = {"consumer_dataset": own.local_name, "consumer_id_column": "applicant_id", "epsilon": 2.5}
    r = post_job(bank_api, "psi", params, [right], "p1")
    assert r.status_code == 201, r.content
    assert UsageRight.objects.get(id=right).epsilon_spent == Decimal("2.5")
    r = post_job(bank_api, "psi", params, [right], "p2")
    assert r.status_code == 409


@pytest.mark.django_db
def test_subscription_overage_counts_uses_before_the_period(demo) -> None:  # type: ignore[no-untyped-def]
    acme = Dataset.objects.get(node__slug="acme")
    offer = (
        api_for("acme")
        .post(
            "/api/offers/",
            {
                "dataset": acme.id,
                "title": "Sub",
                "operations": ["stats"],
                "quota_jobs": 5,
                "duration_days": 60,
                "plans": [
                    {
                        "kind": "subscription",
                        "amount_minor": 1000,
                        "currency": "EUR",
                        "billing": "prepaid",
                        "included_units": 2,
                        "overage_minor": 500,
                    }
                ],
            },
            format="json",
        )
        .json()
    )
    right = (
        api_for("bank")
        .post(
            "/api/orders/",
            {"offer": offer["id"], "purpose": "p", "accept_terms": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY="s",
        )
        .json()["right"]
    )
    from ledger.services import entry_append

    consumer_id = UsageRight.objects.get(id=right["id"]).consumer_id
    for i in range(3):  # three delivered jobs, settled as compute settles them
        entry_append(
            kind="settlement",
            event_id=f"s{i}",
            producer_time=timezone.now(),
            payload={
                "job": f"j{i}",
                "order": right["order"],
                "outcome": "delivered",
                "usage": [i],
                "rows": 1,
                "records": 1,
                "units": 1,
                "use": i + 1,
                "right": right["id"],
            },
            consumer_id=consumer_id,
            provider_id=acme.organization_id,
            dataset_id=acme.id,
            right_id=right["id"],
        )
    # The first two uses happened "last month": integrated_at is immutable, so move the
    # period boundary instead — a bill from the third use's seq on must still charge it.
    third = LedgerEntry.objects.filter(kind="settlement").order_by("-seq").first()
    all_lines = api_for("bank").get("/api/billing/bill/").json()["lines"]
    assert [li["amount"]["amount_minor"] for li in all_lines if li["kind"] == "usage"] == [0, 0, 500]
    from marketplace import selectors

    only_third = selectors._statement(LedgerEntry.objects.filter(seq=third.seq), counterparty_of="provider")
    assert [li.amount.minor for li in only_third.lines] == [500]


@pytest.mark.django_db
def test_publishing_a_new_version_retires_the_old_one_and_retire_works(demo) -> None:  # type: ignore[no-untyped-def]
    acme_api = api_for("acme")
    v1 = Offer.objects.get(dataset__node__slug="acme")
    body = {
        "dataset": v1.dataset_id,
        "title": v1.title,
        "operations": ["stats"],
        "amount_minor": 999,
        "currency": "EUR",
        "quota_jobs": 5,
        "duration_days": 30,
    }
    v2 = acme_api.post("/api/offers/", body, format="json").json()
    assert v2["version"] == 2
    v1.refresh_from_db()
    assert v1.status == "retired"
    r = api_for("bank").post(
        "/api/orders/",
        {"offer": v1.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="old",
    )
    assert r.status_code == 404 and r.json()["error"]["fields"]["offer"] == ["No such listed offer."]
    assert api_for("taxco").post(f"/api/offers/{v2['id']}/retire/").status_code == 403
    assert acme_api.post(f"/api/offers/{v2['id']}/retire/").json()["status"] == "retired"
    listed = api_for("bank").get("/api/datasets/").json()["results"]
    assert next(d for d in listed if d["node"] == "acme")["offers"] == []


@pytest.mark.django_db(transaction=True)
def test_parallel_previews_cannot_beat_the_daily_limit(tdemo) -> None:  # type: ignore[no-untyped-def]
    target, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    barrier = threading.Barrier(8)

    def ask(i: int) -> int:
        barrier.wait()
        try:
            return (
                api_for("bank")
                .post(
                    f"/api/datasets/{target.id}/overlap-preview/",
                    {"consumer_dataset": own.id},
                    format="json",
                    HTTP_IDEMPOTENCY_KEY=f"par-{i}",
                )
                .status_code
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(ask, range(8)))
    assert codes.count(201) == 3 and codes.count(429) == 5
    assert Job.objects.filter(preview=True).count() == 3


@pytest.mark.django_db
def test_refusals_do_not_reveal_the_size_of_a_suppressed_group(bank_api) -> None:  # type: ignore[no-untyped-def]
    from compute.algorithms import get_algorithm
    from compute.algorithms.base import StepRefused
    from protocol import he
    from tests.test_stats_algorithm import FakeNode

    public = he.PrivateKey.generate(1024).public
    small = FakeNode("acme", {"a": [{"x": str(i)} for i in range(7)]}, min_group=10)
    args = {"public_key": public.to_json(), "column": "x", "dataset": "a"}
    assert get_algorithm("stats").node_step(small, "partial", args).body == {"suppressed": True}  # no count
    with pytest.raises(StepRefused) as err:  # under DP the group is refused, still without its size
        get_algorithm("stats").node_step(small, "partial", args | {"bounds": [0, 10]})
    assert "7" not in str(err.value)


@pytest.mark.django_db
def test_someone_elses_right_page_is_a_404_and_the_last_admin_stays(demo, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.get(username="bank"))
    assert client.get("/rights/999999/").status_code == 404
    client.force_login(get_user_model().objects.get(username="taxco"))
    assert client.get("/rights/999999/").status_code == 403  # a provider has no "My rights" pages
    refused = client.post("/provider/orders/", {"right": "abc", "reason": "x"})
    assert refused.status_code == 200  # the page again: there is no right "abc" to revoke
    assert not UsageRight.objects.filter(status="revoked").exists()
    assert client.post("/organization/", {"remove": "abc"}).status_code == 200
    r = client.post("/organization/", {"username": "taxco", "role": "member"})
    assert "at least one admin" in r.content.decode()
    assert get_user_model().objects.get(username="taxco").memberships.get().role == "admin"
