"""Every page for every role, in Chromium: reachable from the navigation, and the
marketplace flows beyond the walking skeleton (sign-up, members, tokens, catalog
filters, overlap preview, revocation, plans)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from marketplace.models import Offer
from tests.conftest import buy, login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

NAV = {
    "bank": ["Catalog", "My rights", "Jobs", "Models", "Spending", "Invoices", "Ledger", "API"],
    "acme": ["Catalog", "My data", "Orders", "Revenue", "Statements", "Ledger", "API"],
    "regulator": ["Catalog", "Documents", "Ledger", "Audit", "Alerts", "Records", "API"],
}


def _nav_texts(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("header nav a").all_inner_texts()]


@pytest.mark.parametrize("username", list(NAV))
def test_every_navigation_link_of_every_role_opens_a_page(tdemo, live_server, page: Page, username: str) -> None:
    base = live_server.url
    login(page, base, username)
    assert _nav_texts(page) == NAV[username]
    for text in NAV[username][:-1]:
        page.click(f"header nav >> text={text}")
        expect(page.locator("h1").first).to_be_visible()
        assert "Traceback" not in page.content() and "Server Error" not in page.content()
    page.click("header nav >> text=API")  # Swagger UI, served offline, renders the schema
    expect(page.locator(".swagger-ui .title").first).to_contain_text("Usufruct API")
    page.go_back()
    for link in ("header .who >> text=API token", f"header .who >> text={username}"):
        page.click(link)
        expect(page.locator("h1").first).to_be_visible()


def test_anonymous_visitor_filters_the_catalog_and_signs_up(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    page.goto(base)
    assert _nav_texts(page) == ["Catalog", "API"]
    page.fill("input[name=q]", "invoices")
    page.click("text=Apply")
    expect(page.locator("#result-count")).to_have_text("1 dataset")
    expect(page.locator(".dataset-card")).to_contain_text("TaxCo SME invoice signals")
    page.click("text=Reset")
    page.click("a.tag:text-is('e-commerce')")
    expect(page.locator(".dataset-card")).to_have_count(1)
    page.select_option("select[name=sort]", "-price")
    page.fill("input[name=tag]", "")
    page.click("text=Apply")
    expect(page.locator(".dataset-card h2").first).to_have_text("St Mary's Hospital breast-cancer diagnostics")
    expect(page.locator(".dataset-card h2").last).to_have_text("Acme shopper behaviour 2026")  # the cheapest

    page.click("text=Sign up")
    page.fill("#id_username", "ivy")
    page.fill("#id_email", "ivy@example.org")
    page.fill("#id_password", "long-enough-pass")
    page.fill("#id_org_name", "Ivy Insurance")
    page.click("button:has-text('Sign up')")
    expect(page.locator(".errorlist")).to_contain_text("Choose provider, consumer or both.")
    page.fill("#id_password", "long-enough-pass")
    page.check("#id_is_consumer")
    page.click("button:has-text('Sign up')")
    expect(page.locator("h1")).to_have_text("Ivy Insurance")
    expect(page.locator("#members")).to_contain_text("ivy")
    assert _nav_texts(page) == ["Catalog", "My rights", "Jobs", "Models", "Spending", "Invoices", "Ledger", "API"]


def test_consumer_manages_members_and_api_token(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "bank")
    page.click("header .who >> text=bank")
    page.fill("#id_username", "nobody-here")
    page.click("#member-form button")
    expect(page.locator(".errorlist")).to_contain_text("No user 'nobody-here'")
    page.click("header .who >> text=API token")
    page.click("text=Create token")
    token = page.locator("#new-token").inner_text()
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    page.click("text=Revoke")
    expect(page.locator("body")).to_contain_text("You have no API token.")


def test_consumer_previews_overlap_for_free_before_buying(workers, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "bank")
    page.click("text=Acme shopper behaviour 2026")
    page.click("text=Estimate overlap")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#r-consumer-ids")).to_have_text("2000")
    expect(page.locator("#r-bucket")).to_have_text("1,000–9,999")
    page.click("header >> text=Spending")
    expect(page.locator("#bill-total")).to_contain_text("0.00")


def test_provider_revokes_a_right_and_the_consumer_sees_why(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026", purpose="SME credit risk")
    page.locator("#rights tbody tr td a").first.click()
    expect(page.locator("#quota")).to_have_text("0 / 20")
    page.click("text=Log out")

    login(page, base, "acme")
    page.click("header nav >> text=Orders")
    expect(page.locator("#orders-received")).to_contain_text("Northwind Bank")
    page.click(".revoke-form button")
    expect(page.locator(".errorlist")).to_contain_text("This field is required.")
    page.fill(".revoke-form textarea", "Declared purpose not respected")
    page.click(".revoke-form button")
    expect(page.locator(".messages")).to_contain_text("revoked")
    expect(page.locator("#orders-received")).to_contain_text("Declared purpose not respected")
    page.click("text=Log out")

    login(page, base, "bank")
    page.click("header nav >> text=My rights")
    expect(page.locator("#rights")).to_contain_text("Revoked")


def test_provider_publishes_a_subscription_and_adds_a_node(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "acme")
    page.click("header nav >> text=My data")
    page.click("text=Publish an offer")
    page.select_option("#id_dataset", label="Acme shopper behaviour 2026")
    page.fill("#id_title", "Monthly access")
    page.select_option("#id_kind", "subscription")
    page.select_option("#id_billing", "postpaid")
    page.fill("#id_price", "49.00")
    page.click("button:has-text('Publish')")
    expect(page.locator(".errorlist")).to_contain_text("paid in advance")
    page.select_option("#id_billing", "prepaid")
    page.fill("#id_included_units", "5")
    page.fill("#id_overage", "2.50")
    page.click("button:has-text('Publish')")
    expect(page.locator(".messages")).to_contain_text("Monthly access")
    offer = Offer.objects.get(title="Monthly access")
    expect(page.locator(f"#offer-{offer.id}")).to_contain_text("49.00 EUR")

    page.click("header nav >> text=My data")
    page.locator("#my-offers tr", has_text="Monthly access").locator("text=Retire").click()
    expect(page.locator(".messages")).to_contain_text("no longer for sale")
    expect(page.locator("#my-offers tr", has_text="Monthly access")).to_contain_text("Retired")
    page.click("text=Add a node")
    page.fill("#id_slug", "acme-eu-2")
    page.click("button:has-text('Create node')")
    expect(page.locator("#enrol-token")).to_have_text(re.compile(r"\S{20,}"))


def test_regulator_reads_but_cannot_buy(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "regulator")
    page.click("text=Acme shopper behaviour 2026")
    expect(page.locator(".buy-form")).to_have_count(0)
    page.goto(f"{base}/provider/offers/new/")
    expect(page.locator("#error-message")).to_be_visible()
    page.click("header nav >> text=Ledger")
    expect(page.locator("body")).to_contain_text("right_granted")


def test_consumer_runs_a_differentially_private_job_and_sees_the_budget_spent(workers, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026", purpose="Portfolio statistics")
    page.click("header nav >> text=Jobs")
    page.click("text=Run a job")
    page.locator("input[name=rights]").first.check()
    page.select_option("#id_column", "tenure_months")
    page.fill("#id_dp_epsilon", "1")
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("bounds")
    page.fill("#id_bound_low", "0")
    page.fill("#id_bound_high", "240")
    page.click("text=Submit job")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#r-dp")).to_contain_text("ε = 1.0")
    page.click("header nav >> text=My rights")
    expect(page.locator("#rights")).to_contain_text("1.000 / 3.000")


def test_a_provider_budgets_its_dataset_and_a_release_past_it_is_refused(workers, live_server, page: Page) -> None:
    """The provider sets a lifetime ε on its page; the bank's DP job spends it (real workers); the
    next DP job is refused with the reason on the form; the provider sees it spent, on a chart."""
    base = live_server.url
    login(page, base, "acme")
    page.click("header nav >> text=My data")
    page.locator("#my-datasets tr", has_text="Acme shopper behaviour 2026").locator("a", has_text="no cap").click()
    page.fill("#epsilon_budget", "-1")
    page.click("button:has-text('Save budget')")
    expect(page.locator("#budget-error")).to_contain_text("between 0 and 1000")
    page.fill("#epsilon_budget", "1")
    page.click("button:has-text('Save budget')")
    expect(page.locator("#budget-cap")).to_have_text("ε = 1.000")
    page.context.clear_cookies()

    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026", purpose="Portfolio statistics")
    expect(page.locator("body")).to_contain_text("Usage right")
    page.goto(f"{base}/datasets/{_acme_id()}/")
    expect(page.locator("#shared-budget")).to_contain_text("ε = 1.000 of 1.000 left")
    for attempt in (1, 2):
        page.goto(f"{base}/jobs/new/?algorithm=stats")
        page.locator("input[name=rights]").first.check()
        page.select_option("#id_column", "tenure_months")
        page.fill("#id_dp_epsilon", "1")
        page.fill("#id_bound_low", "0")
        page.fill("#id_bound_high", "240")
        page.click("text=Submit job")
        if attempt == 1:
            expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator(".errorlist")).to_contain_text("lifetime privacy budget left")
    page.context.clear_cookies()

    login(page, base, "acme")
    page.goto(f"{base}/provider/datasets/{_acme_id()}/privacy/")
    expect(page.locator("#budget-left")).to_have_text("ε = 0.000")
    expect(page.locator("#budget-charges tbody tr")).to_have_count(1)
    expect(page.locator("#budget-charges")).to_contain_text("Northwind Bank")
    expect(page.locator("#chart-budget polyline")).to_have_attribute("data-last", "1.000")
    expect(page.locator("#chart-budget line[data-budget]")).to_have_attribute("data-budget", "1.000")


def _acme_id() -> int:
    from marketplace.models import Dataset

    return Dataset.objects.get(node__slug="acme").id
