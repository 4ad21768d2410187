"""Horizontal learning through the real pages, in Chromium, with real worker processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.demo_data import HOSPITALS
from tests.conftest import buy, login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_institute_trains_one_model_across_three_hospitals_from_the_pages(processes, live_server, page) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", *HOSPITALS, "oncolab"):
        processes.start(name, wait=False)
    processes.wait_ready()
    base = live_server.url
    login(page, base, "research")
    for hospital in ("St Mary's Hospital", "Lakeside Clinic", "Northgate Medical Centre"):
        buy(page, base, f"{hospital} breast-cancer diagnostics", purpose="Diagnostic model research")
    page.click("header >> text=Jobs")
    page.click("text=Run a job")
    page.click("#algorithms >> text=Model across providers")
    expect(page.locator("h1")).to_have_text("Train a model across providers")
    expect(page.locator("#id_label")).to_have_value("benign")
    expect(page.locator("input[name=rights]:checked")).to_have_count(3)
    expect(page.locator("input[name=features]:checked")).to_have_count(30)
    page.select_option("#id_key_bits", "1024")
    page.fill("#id_rounds", "3")
    page.fill("#id_min_providers", "4")
    page.click("text=Submit job")
    expect(page.locator(".errorlist")).to_contain_text("min_providers is more than the 3 datasets chosen.")
    page.fill("#id_min_providers", "2")
    page.click("text=Submit job")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#job-rounds")).to_contain_text("Round 3 of 3")
    for chart in ("#chart-fl-loss", "#chart-fl-auc", "#chart-fl-coef"):
        expect(page.locator(chart)).to_be_visible()
    expect(page.locator("#coefficients tbody tr")).to_have_count(31)  # 30 features and the intercept
    assert float(page.locator("#r-auc").inner_text()) > 0.98
