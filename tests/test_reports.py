"""Bills and revenue reports: periods, breakdowns, CSV, and the checkpoint that covers them."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace.models import Dataset
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def sold(demo):  # type: ignore[no-untyped-def]
    """A prepaid bundle bought from acme, so both parties have a purchase line."""
    acme = Dataset.objects.get(node__slug="acme")
    offer = (
        api_for("acme")
        .post(
            "/api/offers/",
            {
                "dataset": acme.id,
                "title": "Bundle",
                "operations": ["stats"],
                "quota_jobs": 4,
                "duration_days": 30,
                "plans": [{"kind": "per_job", "amount_minor": 250, "currency": "EUR", "billing": "prepaid"}],
            },
            format="json",
        )
        .json()
    )
    api_for("bank").post(
        "/api/orders/",
        {"offer": offer["id"], "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r",
    )
    return offer


def test_revenue_breaks_down_by_dataset_consumer_plan_and_month(sold) -> None:  # type: ignore[no-untyped-def]
    body = api_for("acme").get("/api/billing/revenue/").json()
    assert body["totals"][0]["amount_minor"] == 1000
    assert list(body["by_counterparty"]) == ["Northwind Bank"]
    assert list(body["by_plan"]) == ["per_job"]
    assert list(body["by_month"]) == [timezone.now().strftime("%Y-%m")]
    assert body["checkpoint_size"] is None
    ledger_services.checkpoint_create()
    assert api_for("acme").get("/api/billing/revenue/").json()["checkpoint_size"] == LedgerEntry.objects.count()


def test_periods_filter_lines_and_bad_periods_are_400(sold) -> None:  # type: ignore[no-untyped-def]
    today = timezone.now().date()
    acme = api_for("acme")
    assert acme.get(f"/api/billing/revenue/?since={today}").json()["totals"][0]["amount_minor"] == 1000
    assert acme.get(f"/api/billing/revenue/?until={today - timedelta(days=1)}").json()["lines"] == []
    r = acme.get(f"/api/billing/revenue/?since={today}&until={today - timedelta(days=3)}")
    assert r.status_code == 400 and "until" in r.json()["error"]["fields"]
    assert acme.get("/api/billing/revenue/?since=yesterday").status_code == 400


def test_csv_exports_every_line_in_minor_units(sold, client) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="bank"))
    response = client.get("/bill/?format=csv")
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["kind"], r["amount_minor"], r["currency"]) for r in rows] == [("purchase", "1000", "EUR")]
    page = client.get("/bill/").content.decode()
    assert "Download CSV" in page and "1,000 EUR" not in page and "10.00 EUR" in page
