"""A usage right's whole life: plans at purchase, revocation with refund and cancelled
jobs, expiry — each recorded on the ledger, each visible in the bill."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute import services as compute_services
from compute.models import Job
from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer, UsageRight
from marketplace.rights import rights_expire_due
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _publish(plans, **extra):  # type: ignore[no-untyped-def]
    body = {
        "dataset": Dataset.objects.get(node__slug="acme").id,
        "title": "Bundle",
        "operations": ["stats"],
        "plans": plans,
        "quota_jobs": 10,
        "duration_days": 30,
        **extra,
    }
    r = api_for("acme").post("/api/offers/", body, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def _buy(offer, plan_index=0, key="k", **extra):  # type: ignore[no-untyped-def]
    body = {
        "offer": offer["id"],
        "plan": offer["plans"][plan_index]["id"],
        "purpose": "risk",
        "accept_terms": True,
        **extra,
    }
    return api_for("bank").post("/api/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_an_offer_carries_several_plans_and_the_buyer_picks_one(demo) -> None:  # type: ignore[no-untyped-def]
    offer = _publish(
        [
            {"kind": "per_job", "amount_minor": 100, "currency": "EUR", "billing": "prepaid"},
            {"kind": "per_1000_rows", "amount_minor": 40, "currency": "EUR"},
            {
                "kind": "subscription",
                "amount_minor": 5000,
                "currency": "EUR",
                "billing": "prepaid",
                "included_units": 5,
                "overage_minor": 300,
            },
            {"kind": "free", "currency": "EUR"},
        ]
    )
    assert [p["kind"] for p in offer["plans"]] == ["per_job", "per_1000_rows", "subscription", "free"]
    order = _buy(offer, plan_index=2).json()
    assert order["upfront_minor"] == 5000 and order["plan_kind"] == "subscription"
    bill = api_for("bank").get("/api/billing/bill/").json()
    assert [(li["kind"], li["amount"]["amount_minor"]) for li in bill["lines"]] == [("purchase", 5000)]


def test_plans_in_different_currencies_or_bad_kinds_are_refused(demo) -> None:  # type: ignore[no-untyped-def]
    body = {
        "dataset": Dataset.objects.get(node__slug="acme").id,
        "title": "X",
        "operations": ["stats"],
        "quota_jobs": 10,
        "duration_days": 30,
    }
    r = api_for("acme").post(
        "/api/offers/",
        {
            **body,
            "plans": [
                {"kind": "per_job", "amount_minor": 1, "currency": "EUR"},
                {"kind": "per_job", "amount_minor": 1, "currency": "USD"},
            ],
        },
        format="json",
    )
    assert r.status_code == 400 and "plans" in r.json()["error"]["fields"]
    r = api_for("acme").post(
        "/api/offers/",
        {**body, "plans": [{"kind": "per_1000_rows", "amount_minor": 1, "currency": "EUR", "billing": "prepaid"}]},
        format="json",
    )
    assert r.status_code == 400 and "billing" in r.json()["error"]["fields"]


def test_allowed_purposes_are_enforced(demo) -> None:  # type: ignore[no-untyped-def]
    offer = _publish([{"kind": "per_job", "amount_minor": 100, "currency": "EUR"}], allowed_purposes=["credit risk"])
    r = _buy(offer, purpose_category="marketing")
    assert r.status_code == 400 and "purpose_category" in r.json()["error"]["fields"]
    assert _buy(offer, key="k2", purpose_category="credit risk").status_code == 201


def test_revocation_refunds_unused_prepaid_units_cancels_jobs_and_is_on_the_ledger(demo) -> None:  # type: ignore[no-untyped-def]
    offer = _publish([{"kind": "per_job", "amount_minor": 100, "currency": "EUR", "billing": "prepaid"}])
    right_id = _buy(offer).json()["right"]["id"]
    UsageRight.objects.filter(id=right_id).update(quota_used=4)
    bank = api_for("bank")
    job = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [right_id]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="j",
    ).json()
    # Only the provider of the dataset may revoke, and only with a reason.
    assert api_for("taxco").post(f"/api/rights/{right_id}/revoke/", {"reason": "x"}, format="json").status_code == 403
    r = api_for("acme").post(f"/api/rights/{right_id}/revoke/", {"reason": ""}, format="json")
    assert r.status_code == 400 and "reason" in r.json()["error"]["fields"]
    r = api_for("acme").post(f"/api/rights/{right_id}/revoke/", {"reason": "purpose breached"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "revoked" and r.json()["status_reason"] == "purpose breached"
    assert Job.objects.get(id=job["id"]).status == "cancelled"
    right = UsageRight.objects.get(id=right_id)
    assert (right.quota_used, right.quota_reserved) == (4, 0)
    revoked = LedgerEntry.objects.get(kind="right_revoked", right_id=right_id)
    assert revoked.payload["cancelled_jobs"] == [job["id"]]
    refund = LedgerEntry.objects.get(kind="refund", right_id=right_id)
    assert refund.payload["amount_minor"] == 600  # 6 unused × 1.00 EUR
    bill = bank.get("/api/billing/bill/").json()
    assert [(li["kind"], li["amount"]["amount_minor"]) for li in bill["lines"]] == [
        ("purchase", 1000),
        ("refund", -600),
    ]
    assert bill["totals"][0]["amount_minor"] == 400
    # Revoking twice is a conflict; the revoked right runs no job.
    assert (
        api_for("acme").post(f"/api/rights/{right_id}/revoke/", {"reason": "again"}, format="json").status_code == 409
    )
    r = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [right_id]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="j2",
    )
    assert r.status_code == 409


def test_expiry_is_recorded_once_by_the_scheduled_task(demo) -> None:  # type: ignore[no-untyped-def]
    offer = Offer.objects.get(dataset__node__slug="acme")
    r = api_for("bank").post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="e",
    )
    right_id = r.json()["right"]["id"]
    UsageRight.objects.filter(id=right_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert rights_expire_due() == 1
    assert rights_expire_due() == 0
    assert UsageRight.objects.get(id=right_id).status == "expired"
    assert LedgerEntry.objects.filter(kind="right_expired", right_id=right_id).count() == 1


def test_a_stalled_job_fails_and_gives_its_quota_back(demo) -> None:  # type: ignore[no-untyped-def]
    offer = Offer.objects.get(dataset__node__slug="acme")
    bank = api_for("bank")
    right_id = bank.post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="s",
    ).json()["right"]["id"]
    job_id = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [right_id]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="js",
    ).json()["id"]
    assert compute_services.jobs_fail_stale(older_than=timedelta(minutes=5)) == 0
    Job.objects.filter(id=job_id).update(updated_at=timezone.now() - timedelta(minutes=10))
    assert compute_services.jobs_fail_stale(older_than=timedelta(minutes=5)) == 1
    job = Job.objects.get(id=job_id)
    assert job.status == "failed" and "timed out" in job.error
    assert UsageRight.objects.get(id=right_id).quota_reserved == 0
