"""Invoices, statements and the regulator's view of them through the real pages, in Chromium,
with real worker processes; and the beat task issuing a month through the hub worker."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from marketplace.models import Document
from tests.conftest import api_for, buy, ledger_idle, login, post_job, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _one_paid_job() -> None:
    bank = api_for("bank")
    right = bank.get("/api/rights/").json()["results"][0]["id"]
    r = post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, [right], "doc-job")
    assert r.status_code == 201, r.content
    wait_for(lambda: bank.get(f"/api/jobs/{r.json()['id']}/").json()["status"] == "succeeded", timeout=90)
    ledger_idle()


def test_invoices_and_statements_through_the_pages(workers, live_server, page) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    login(page, base, "bank")
    buy(page, base, "Acme shopper behaviour 2026")
    _one_paid_job()
    page.click("header >> text=Invoices")
    expect(page.locator("h1")).to_have_text("Invoices and statements")
    page.click("#issue button")
    expect(page.locator(".messages")).to_contain_text("Issued INV-")
    page.click("#documents tbody tr >> nth=0 >> a >> nth=0")
    expect(page).to_have_url(re.compile(r"/documents/INV-\d{4}-\d{6}/$"))
    expect(page.locator("#doc-lines tbody tr")).to_have_count(1)
    expect(page.locator("#doc-lines tfoot")).to_contain_text("Total")
    expect(page.locator("#doc-lines tfoot")).to_contain_text("1.80")  # 1.50 per job and 20 % VAT
    with page.expect_download() as download:
        page.click("#dl-pdf")
    assert download.value.suggested_filename.endswith(".pdf")
    # Issuing again finds nothing new.
    page.click("header >> text=Invoices")
    page.click("#issue button")
    expect(page.locator(".messages")).to_contain_text("Nothing new to issue")

    # The provider: its statement, with the platform's fee; never the bank's invoice.
    page.click("text=Log out")
    login(page, base, "acme")
    page.click("header >> text=Statements")
    page.click("#issue button")
    expect(page.locator(".messages")).to_contain_text("Issued STM-")
    expect(page.locator("#documents")).not_to_contain_text("INV-")
    page.click("#documents tbody tr >> nth=0 >> a >> nth=0")
    expect(page.locator("#doc-lines tfoot")).to_contain_text("Net payable to you")
    expect(page.locator("#by-dataset")).to_contain_text("Acme shopper behaviour 2026")

    # The regulator reads both and issues neither.
    page.click("text=Log out")
    login(page, base, "regulator")
    page.click("header >> text=Documents")
    expect(page.locator("#documents tbody tr")).to_have_count(2)
    expect(page.locator("#issue")).to_have_count(0)
    invoice = Document.objects.get(type="invoice").number
    page.goto(f"{base}/documents/{invoice}/")
    expect(page.locator("#doc-number")).to_have_text(invoice)


def test_the_beat_task_issues_a_month_through_the_hub_worker(workers) -> None:  # type: ignore[no-untyped-def]
    from marketplace.tasks import documents_issue_due

    bank = api_for("bank")
    offer = bank.get("/api/datasets/?operation=stats").json()["results"][0]["offers"][0]["id"]
    r = bank.post(
        "/api/orders/", {"offer": offer, "purpose": "monthly", "accept_terms": True}, format="json",
        HTTP_IDEMPOTENCY_KEY="beat-order",
    )  # fmt: skip
    assert r.status_code == 201, r.content
    _one_paid_job()
    documents_issue_due.apply_async(kwargs={"period": timezone.now().strftime("%Y-%m")}, queue="hub")
    wait_for(lambda: Document.objects.filter(type="invoice").exists(), timeout=60)
    invoice = Document.objects.get(type="invoice")
    assert invoice.total_minor > 0 and invoice.organization.slug == "northwind"
    assert Document.objects.filter(type="statement").exists()
