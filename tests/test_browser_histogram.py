"""A ``stats`` histogram through the real pages, in Chromium, with real worker processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import buy, login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _new_stats_job(page) -> None:  # type: ignore[no-untyped-def]
    """The stats form, every right chosen, on tenure_months."""
    page.click("header >> text=Jobs")
    page.click("text=Run a job")
    for box in page.locator("input[name=rights]").all():
        box.check()
    page.select_option("#id_column", "tenure_months")


def test_the_bank_asks_for_a_histogram_and_sees_it_as_a_chart(workers, live_server, page) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026", purpose="Tenure profile")
    _new_stats_job(page)
    page.fill("#id_histogram_edges", "0, 24, 48, 24")
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("Bin edges must increase strictly.")
    page.fill("#id_histogram_edges", "0, 24, 48, 72, 1000")
    page.click("text=Submit job")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#chart-histogram")).to_be_visible()
    expect(page.locator("#histogram tbody tr")).to_have_count(4)
    expect(page.locator("#histogram")).to_contain_text("[72, 1000)")

    # The bins the providers declare: no edges to choose, and not both.
    _new_stats_job(page)
    page.check("#id_provider_bins")
    page.fill("#id_histogram_edges", "0, 24")
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("not both")
    page.fill("#id_histogram_edges", "")
    page.click("text=Submit job")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#declared-bins")).to_be_visible()
    expect(page.locator("#histogram tbody tr")).to_have_count(6)
    expect(page.locator("#histogram")).to_contain_text("[60, 600)")

    # Quantiles: only with ε, read from a grid.
    _new_stats_job(page)
    page.fill("#id_histogram_edges", ", ".join(str(e) for e in range(0, 201, 2)))
    page.fill("#id_quantiles", "0.25, 0.5, 0.75")
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("only with differential privacy")
    page.fill("#id_dp_epsilon", "0.5")
    page.click("text=Submit job")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#quantiles tbody tr")).to_have_count(3)
    expect(page.locator("#r-dp")).to_contain_text("ε = 0.5")

    # A correlation matrix over the one dataset's numeric features, as a heat map.
    _new_stats_job(page)
    page.check("#id_correlation")
    page.click("text=Submit job")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#chart-correlation")).to_be_visible()
    expect(page.locator("#correlation tbody tr")).to_have_count(5)  # acme's five numeric features
    expect(page.locator("#chart-correlation rect[data-value='1.00']")).to_have_count(5)  # the diagonal

    # Group-by region: the rare islands are never reported, and the page says so.
    _new_stats_job(page)
    page.select_option("#id_group_column", "region")
    page.fill("#id_groups", "north, south, east, west, islands")
    page.click("text=Submit job")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#chart-groups")).to_be_visible()
    expect(page.locator("#groups tbody tr")).to_have_count(6)  # five groups and (other)
    expect(page.locator("#groups tbody tr", has_text="islands")).to_contain_text("suppressed")
