"""The joint credit model through the real pages, in Chromium, with real worker processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import buy, login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_bank_trains_the_joint_model_sees_its_charts_and_scores_with_it(workers, live_server, page) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026", purpose="Joint credit model")
    buy(page, base, "TaxCo SME invoice signals", purpose="Joint credit model")
    page.click("header >> text=Jobs")
    page.click("text=Run a job")
    page.click("#algorithms >> text=Joint credit model")
    expect(page.locator("h1")).to_have_text("Train the joint credit model")
    expect(page.locator("#id_label_column")).to_have_value("default")
    for box in page.locator("input[name=rights]").all():
        box.check()
    page.select_option("#id_key_bits", "1024")
    page.fill("#id_epochs", "0")
    page.fill("#id_learning_rate", "0.5")
    page.fill("#id_validation_fraction", "0.25")
    page.fill("#id_tolerance", "0")
    page.click("text=Train the model")
    expect(page.locator(".errorlist")).to_contain_text("Between 1 and 200.")  # the field's own error
    page.fill("#id_epochs", "2")
    page.click("text=Train the model")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    expect(page.locator("#job-epochs")).to_contain_text("of 2")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180_000)
    for chart in ("#chart-loss", "#chart-roc", "#chart-lift", "#chart-contrib"):
        expect(page.locator(chart)).to_be_visible()
    expect(page.locator("#chart-loss polyline")).to_have_count(2)  # train and validation
    expect(page.locator("#contributions tbody tr")).to_have_count(2)
    lift = float(page.locator("#r-lift").inner_text().lstrip("+"))
    assert lift > 0.05

    page.click("#model-link")
    expect(page.locator("#model-rights tbody tr")).to_have_count(2)
    page.fill("#id_ids", "\n".join(f"A{i:06d}" for i in range(100, 200)))  # 70 of them both providers hold
    page.select_option("#id_key_bits", "1024")
    page.click("#score-form button[type=submit]")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#r-scored")).to_have_text("70")
    with page.expect_download() as download:
        page.click("#scores-csv")
    lines = download.value.path().read_text().splitlines()
    assert lines[0] == "id,probability" and len(lines) == 71

    page.click("header >> text=Models")
    expect(page.locator("#models tbody tr")).to_have_count(1)
    expect(page.locator("#models")).to_contain_text("yes")  # every right still active: it can score
