"""Revenue reports and consumer spending: filters, series, rankings, CSV and XLSX, budget alerts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone
from openpyxl import load_workbook

from marketplace import spending
from marketplace.models import BudgetAlert, Dataset, Organization
from marketplace.tasks import budget_alerts_check
from tests.conftest import api_for, sell

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(demo):  # type: ignore[no-untyped-def]
    """acme sells the bank 4 jobs at 2.50 (10.00) and the research institute 4 at 1.25 (5.00);
    taxco sells the bank a subscription at 7.00."""
    sell("acme", "bank", {"kind": "per_job", "amount_minor": 250}, "a-bank")
    sell("acme", "research", {"kind": "per_job", "amount_minor": 125}, "a-res")
    sell("taxco", "bank", {"kind": "subscription", "amount_minor": 700}, "t-bank")


def _minor(amounts: list[dict]) -> int:  # type: ignore[type-arg]
    (only,) = amounts
    assert only["currency"] == "EUR"
    return only["amount_minor"]


def test_revenue_filters_rank_and_bucket(market) -> None:  # type: ignore[no-untyped-def]
    acme = api_for("acme")
    body = acme.get("/api/billing/revenue/?group=day").json()
    assert _minor(body["totals"]) == 1500
    today = timezone.now().strftime("%Y-%m-%d")
    assert {k: _minor(v) for k, v in body["series"].items()} == {today: 1500}
    assert {k: _minor(v) for k, v in body["by_counterparty"].items()} == {
        "Northwind Bank": 1000,
        "Oncology Research Institute": 500,
    }
    week = acme.get("/api/billing/revenue/?group=week").json()
    year, number, _ = timezone.now().isocalendar()
    assert list(week["series"]) == [f"{year}-W{number:02d}"]
    research = Organization.objects.get(slug="oncolab")
    only = acme.get(f"/api/billing/revenue/?counterparty={research.id}").json()
    assert _minor(only["totals"]) == 500 and list(only["by_counterparty"]) == ["Oncology Research Institute"]
    assert acme.get("/api/billing/revenue/?plan=subscription").json()["lines"] == []
    taxco = Dataset.objects.get(organization__slug="taxco")
    assert acme.get(f"/api/billing/revenue/?dataset={taxco.id}").json()["lines"] == []
    bank = api_for("bank").get("/api/billing/bill/").json()
    assert {k: _minor(v) for k, v in bank["by_counterparty"].items()} == {
        "Acme Commerce": 1000,
        "TaxCo Invoice Bureau": 700,
    }
    assert sorted(_minor(v) for v in bank["by_right"].values()) == [700, 1000]
    assert _minor(api_for("bank").get("/api/billing/bill/?plan=subscription").json()["totals"]) == 700


def test_report_filters_refuse_bad_values_by_field(market) -> None:  # type: ignore[no-untyped-def]
    acme = api_for("acme")
    for query, field in [
        ("group=year", "group"),
        ("plan=gold", "plan"),
        ("dataset=x", "dataset"),
        ("counterparty=0", "counterparty"),
    ]:
        r = acme.get(f"/api/billing/revenue/?{query}")
        assert r.status_code == 400 and list(r.json()["error"]["fields"]) == [field], (query, r.content)
    assert acme.get("/api/billing/revenue/export.pdf").status_code == 404
    assert api_for("bank").get("/api/billing/revenue/export.csv").status_code == 403
    assert acme.get("/api/billing/bill/export.csv").status_code == 403


def test_xlsx_and_csv_exports_hold_the_report(market, client) -> None:  # type: ignore[no-untyped-def]
    r = api_for("acme").get("/api/billing/revenue/export.xlsx?group=day")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Summary", "By day", "By dataset", "By consumer", "By plan", "By right", "Lines"]
    summary = list(wb["Summary"].iter_rows(values_only=True))
    fee = 1500 * settings.USUFRUCT_PLATFORM_FEE_BPS // 10_000
    eur = next(row for row in summary if row[0] == "EUR")
    assert eur[1] == 1500 and eur[3] == fee and eur[4] == 1500 - fee
    consumers = {row[0]: row[1] for row in wb["By consumer"].iter_rows(min_row=2, values_only=True)}
    assert consumers == {"Northwind Bank": 1000, "Oncology Research Institute": 500}
    lines = list(wb["Lines"].iter_rows(min_row=2, values_only=True))
    assert sorted(row[10] for row in lines) == [500, 1000]
    client.force_login(get_user_model().objects.get(username="bank"))
    page_csv = client.get("/bill/?format=csv&plan=subscription")
    rows = list(csv.DictReader(io.StringIO(page_csv.content.decode())))
    assert [(row["plan"], row["amount_minor"]) for row in rows] == [("subscription", "700")]
    assert load_workbook(io.BytesIO(client.get("/bill/?format=xlsx").content))["Summary"]["A1"].value == (
        "Northwind Bank: spending"
    )


def test_a_budget_alert_emails_once_a_month_when_spending_reaches_it(market) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    r = bank.post(
        "/api/billing/alerts/",
        {"currency": "EUR", "limit_minor": 2000, "email": "cfo@northwind.example"},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json()["notified_period"] == "" and mail.outbox == []  # 17.00 spent, limit 20.00
    sell("acme", "bank", {"kind": "per_job", "amount_minor": 100}, "a-bank-2")  # +4.00: 21.00
    assert budget_alerts_check.apply().get() == 1
    (sent,) = mail.outbox
    assert sent.to == ["cfo@northwind.example"] and "21.00" in sent.subject and "20.00" in sent.body
    assert budget_alerts_check.apply().get() == 0 and len(mail.outbox) == 1  # once a month
    alert = BudgetAlert.objects.get()
    assert alert.notified_spent_minor == 2100 and alert.notified_period == timezone.now().strftime("%Y-%m")
    # Next month, charges start from zero: nothing to send until they reach the limit again.
    assert spending.check_all(timezone.now() + timedelta(days=32)) == 0
    # Raising the limit re-arms it; lowering it below this month's spending sends at once.
    bank.post(
        "/api/billing/alerts/",
        {"currency": "EUR", "limit_minor": 5000, "email": "cfo@northwind.example"},
        format="json",
    )
    assert BudgetAlert.objects.get().notified_period == ""
    r = bank.post(
        "/api/billing/alerts/",
        {"currency": "EUR", "limit_minor": 1500, "email": "cfo@northwind.example"},
        format="json",
    )
    assert r.json()["notified_period"] and len(mail.outbox) == 2 and BudgetAlert.objects.count() == 1
    assert bank.get("/api/billing/alerts/").json()[0]["limit_minor"] == 1500
    assert bank.delete(f"/api/billing/alerts/{alert.id}/").status_code == 204
    assert bank.delete(f"/api/billing/alerts/{alert.id}/").status_code == 404
    assert BudgetAlert.objects.count() == 0


def test_budget_alert_input_is_checked_and_consumers_only(market) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    for body, field in [
        ({"currency": "XXX", "limit_minor": 100, "email": "a@b.example"}, "currency"),
        ({"currency": "EUR", "limit_minor": 0, "email": "a@b.example"}, "limit_minor"),
        ({"currency": "EUR", "limit_minor": "100", "email": "a@b.example"}, "limit_minor"),
        ({"currency": "EUR", "limit_minor": 100, "email": "not-an-email"}, "email"),
        ({"currency": "EUR", "limit_minor": 100, "email": "a@b.example", "extra": 1}, "extra"),
    ]:
        r = bank.post("/api/billing/alerts/", body, format="json")
        assert r.status_code == 400 and list(r.json()["error"]["fields"]) == [field], (body, r.content)
    assert (
        api_for("acme")
        .post("/api/billing/alerts/", {"currency": "EUR", "limit_minor": 1, "email": "a@b.example"}, format="json")
        .status_code
        == 403
    )
    assert api_for("regulator").get("/api/billing/alerts/").status_code == 403
    assert BudgetAlert.objects.count() == 0


def test_the_spending_page_sets_an_alert_and_shows_form_errors(market, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.get(username="bank"))
    bad = client.post("/bill/alerts/", {"currency": "EUR", "limit": "12.345", "email": "cfo@northwind.example"})
    assert bad.status_code == 400 and "EUR has 2 decimal places" in bad.content.decode()
    ok = client.post(
        "/bill/alerts/", {"currency": "EUR", "limit": "10.00", "email": "cfo@northwind.example"}, follow=True
    )
    assert "already been reached this month" in ok.content.decode() and len(mail.outbox) == 1
    page = client.get("/bill/").content.decode()
    assert 'id="by-provider"' in page and "TaxCo Invoice Bureau" in page and "cfo@northwind.example" in page


def test_the_beat_checks_budget_alerts_on_the_hub_queue() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["marketplace-budget-alerts"]
    assert entry["task"] == budget_alerts_check.name and entry["options"]["queue"] == "hub"
