"""The spending, revenue and regulator pages in Chromium: filters, charts, exports, a budget
alert set through its form, the trail, alerts and records of processing."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from compute.models import Job
from tests import federation
from tests.conftest import login, right_for_purpose, run_psi, sell

pytestmark = pytest.mark.browser


def test_spending_and_revenue_pages_filter_chart_export_and_alert(tdemo, live_server, page: Page) -> None:  # type: ignore[no-untyped-def]
    sell("acme", "bank", {"kind": "per_job", "amount_minor": 250}, "b-bank")
    sell("acme", "research", {"kind": "per_job", "amount_minor": 125}, "b-res")
    sell("taxco", "bank", {"kind": "subscription", "amount_minor": 700}, "b-tax")
    base = live_server.url
    login(page, base, "bank")
    page.click("header nav >> text=Spending")
    expect(page.locator("#bill-total")).to_contain_text("17.00")
    expect(page.locator("#by-provider")).to_contain_text("TaxCo Invoice Bureau")
    expect(page.locator("#by-right tbody tr")).to_have_count(2)
    page.select_option("#id_group", "day")
    page.select_option("#id_plan", "subscription")
    page.click("#period-form button[type=submit]")
    expect(page.locator("#bill-total")).to_contain_text("7.00")
    expect(page.locator("#series-chart")).to_contain_text(timezone.now().strftime("%Y-%m-%d"))
    with page.expect_download() as download:
        page.click("#xlsx-link")
    assert download.value.suggested_filename.endswith(".xlsx")
    page.fill("#budget-alert-form input[name=limit]", "ten")
    page.click("#budget-alert-form button")
    expect(page.locator("#budget-alert-form .errorlist")).to_contain_text("Enter a")
    page.fill("#budget-alert-form input[name=limit]", "15.00")
    page.fill("#budget-alert-form input[name=email]", "cfo@northwind.example")
    page.click("#budget-alert-form button")
    expect(page.locator(".messages")).to_contain_text("already been reached this month")
    expect(page.locator("#budget-alerts tbody")).to_contain_text("cfo@northwind.example")
    assert [m.to for m in mail.outbox] == [["cfo@northwind.example"]]

    page.click("text=Log out")
    login(page, base, "acme")
    page.click("header nav >> text=Revenue")
    expect(page.locator("#top-consumers")).to_contain_text("Northwind Bank")
    expect(page.locator("#top-consumers .bar-row").first).to_contain_text("Northwind Bank")  # 10.00 before 5.00
    page.select_option("#id_counterparty", label="Oncology Research Institute")
    page.click("#period-form button[type=submit]")
    expect(page.locator("#revenue-gross")).to_contain_text("5.00")
    expect(page.locator("#by-consumer")).not_to_contain_text("Northwind Bank")
    with page.expect_download() as download:
        page.click("#csv-link")
    assert download.value.suggested_filename.endswith(".csv")


def test_the_regulator_reads_alerts_trail_and_records(tdemo, live_server, page: Page) -> None:  # type: ignore[no-untyped-def]
    right = right_for_purpose("statistics", "b-stat")
    stats = federation.run(federation.submit([right.id]))
    assert stats.status == Job.Status.SUCCEEDED, stats.error
    run_psi(right)  # beyond 'statistics'
    base = live_server.url
    login(page, base, "regulator")
    page.click("header nav >> text=Alerts")
    expect(page.locator("#alerts tr.alert-purpose")).to_contain_text("psi")
    expect(page.locator("#alert-chart")).to_contain_text("purpose")
    page.click("header nav >> text=Audit")
    page.select_option("#trail-form select[name=dataset]", label="Acme shopper behaviour 2026 (Acme Commerce)")
    page.click("#trail-form button")
    expect(page.locator("#trail tbody tr")).to_have_count(2)
    expect(page.locator("#trail tr.flagged")).to_contain_text("beyond purpose")
    expect(page.locator("#trail")).to_contain_text("1.00 EUR")
    page.click("header nav >> text=Records")
    expect(page.locator("#records")).to_contain_text("Acme Commerce")
    with page.expect_download() as download:
        page.locator("#records tr", has_text="Acme Commerce").locator("text=PDF").click()
    assert download.value.suggested_filename == "records-of-processing-acme.pdf"
    page.click("header nav >> text=Ledger")
    page.select_option("#search-organization", label="Northwind Bank")
    page.fill("#search-purpose", "statistics")
    page.click("form.filters button")
    expect(page.locator("#ledger")).to_contain_text("Right granted")
    expect(page.locator("#ledger")).to_contain_text("Privacy budget charged")
    expect(page.locator("#ledger")).not_to_contain_text("enrolled node")  # the bank's, but under no right
