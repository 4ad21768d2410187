"""The value preview through the real pages, in Chromium, with real worker processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_bank_estimates_what_a_dataset_adds_before_buying(workers, live_server, page, settings) -> None:  # type: ignore[no-untyped-def]
    settings.USUFRUCT_PREVIEW_KEY_BITS = 1024  # the same protocol, a quarter of the proving time
    base = live_server.url
    login(page, base, "bank")
    page.goto(f"{base}/")
    page.click("text=Acme shopper behaviour 2026")
    expect(page.locator(".declared-bins")).to_contain_text("0 · 12 · 24")  # the provider's tenure bands
    card = page.locator("#value-preview")
    expect(card).to_contain_text("Estimate its value first")
    card.locator("button", has_text="Estimate value").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180_000)
    expect(page.locator("#chart-value")).to_be_visible()
    expect(page.locator("#value-features tbody tr")).to_have_count(5)
    expect(page.locator("#r-top")).to_have_text("late_payment_rate")
    expect(page.locator(".estimate-caveat")).to_contain_text("An estimate")
    # Back on the dataset page, the ranked chart, with its caveat; nothing was bought.
    page.go_back()
    page.reload()
    expect(page.locator("#value-preview-result #chart-value")).to_be_visible()
    expect(page.locator("#chart-value rect[data-label]")).to_have_count(5)
    expect(page.locator("#value-preview-result")).to_contain_text("An estimate, not a promise")
    page.click("header >> text=Spending")
    expect(page.locator("body")).not_to_contain_text("Acme shopper behaviour 2026")


def test_a_provider_sees_no_value_preview_of_its_own_dataset(live_server, page, tdemo) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    login(page, base, "acme")
    page.goto(f"{base}/")
    page.click("text=Acme shopper behaviour 2026")
    expect(page.locator("h1")).to_have_text("Acme shopper behaviour 2026")
    expect(page.locator("#value-preview")).to_have_count(0)
