"""The walking skeleton through the real pages, in Chromium, with real worker processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from marketplace.models import Offer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

from tests.conftest import buy, login  # noqa: E402


def test_consumer_buys_runs_a_job_and_sees_it_billed_provider_sees_revenue(workers, live_server, page) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    page.goto(f"{base}/")
    expect(page.locator(".dataset-card")).to_have_count(5)  # two credit signals, three hospitals
    expect(page.locator("body")).to_contain_text("1.50 EUR")

    login(page, base, "bank")
    # A purchase without purpose or accepted terms is refused on the page, nothing bought.
    page.goto(f"{base}/")
    page.click("text=Acme shopper behaviour 2026")
    expect(page.locator("#row-count")).to_have_text("2,000")
    page.click("text=Buy usage right")
    expect(page.locator(".errorlist").first).to_contain_text("Declare the purpose of use.")
    expect(page.locator("body")).to_contain_text("You must accept the terms.")

    buy(page, base, "Acme shopper behaviour 2026")
    buy(page, base, "TaxCo SME invoice signals")
    expect(page.locator("#rights tbody tr")).to_have_count(2)

    page.click("header >> text=Jobs")
    page.click("text=Run a job")
    groups = page.locator("#id_column optgroup")  # a column picker grouped by dataset, not free text
    expect(groups).to_have_count(2)
    expect(page.locator("#id_column optgroup[label='TaxCo SME invoice signals'] option")).to_contain_text(
        ["invoices_12m", "revenue_k_eur", "tax_arrears_eur", "filing_delay_days", "tenure_months"]
    )
    page.select_option("#id_column", "orders_12m")  # Acme's only
    for box in page.locator("input[name=rights]").all():
        box.check()
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("has no column 'orders_12m'")
    page.select_option("#id_column", "tenure_months")
    page.click("text=Submit job")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#r-count")).to_have_text("3800")
    rows = page.locator("#by-provider tbody tr")  # and each provider's own aggregate, named
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Acme shopper behaviour 2026")
    expect(rows.nth(1)).to_contain_text("TaxCo SME invoice signals")

    page.click("header >> text=Spending")
    expect(page.locator("#bill-total")).to_contain_text("3.50 EUR")
    expect(page.locator("#bill-lines tbody tr")).to_have_count(2)

    page.click("text=Log out")
    login(page, base, "acme")
    page.click("header >> text=Revenue")
    expect(page.locator("#revenue-gross")).to_contain_text("1.50 EUR")
    expect(page.locator("#revenue-net")).to_contain_text("1.35 EUR")


def test_provider_publishes_an_offer_with_form_errors_first(workers, live_server, page) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    login(page, base, "taxco")
    page.click("header >> text=My data")
    expect(page.locator("#my-datasets")).to_contain_text("TaxCo SME invoice signals")
    page.click("text=Publish an offer")
    page.select_option("#id_dataset", label="TaxCo SME invoice signals")
    page.fill("#id_title", "Quarterly SME signals")
    page.fill("#id_price", "-3")
    page.click("button:has-text('Publish')")
    expect(page.locator(".errorlist")).to_contain_text("Price cannot be negative.")
    page.fill("#id_price", "4.999")
    page.click("button:has-text('Publish')")
    expect(page.locator(".errorlist")).to_contain_text("EUR has 2 decimal places")
    page.fill("#id_price", "4.99")
    page.click("button:has-text('Publish')")
    expect(page.locator(".messages")).to_contain_text("published")
    expect(page.locator("#offer-" + str(Offer.objects.get(title="Quarterly SME signals").id))).to_contain_text(
        "4.99 EUR"
    )
