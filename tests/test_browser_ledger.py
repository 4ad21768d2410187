"""The regulator's ledger pages in Chromium: entries, an entry with its inclusion proof
and signed checkpoint, checkpoints, audit trails, and an audit bundle that the offline
verifier accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ledger import services as ledger_services
from ledger.models import LedgerEntry
from tests.conftest import login, run_verifier

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parent.parent


def test_regulator_walks_the_ledger_and_verifies_a_bundle_offline(tdemo, live_server, page: Page, tmp_path) -> None:
    checkpoint = ledger_services.checkpoint_create()
    assert checkpoint is not None
    base = live_server.url
    login(page, base, "regulator")
    page.click("header nav >> text=Ledger")
    expect(page.locator("#ledger tbody tr")).to_have_count(LedgerEntry.objects.count())
    first = LedgerEntry.objects.filter(kind="offer_published").order_by("seq").first()
    page.click(f"#ledger >> a:text-is('{first.seq}')")
    expect(page.locator("h1")).to_contain_text(f"Entry #{first.seq}")
    expect(page.locator("#body")).to_contain_text('"kind":"offer_published"')
    expect(page.locator("body")).to_contain_text(f"tree of size {checkpoint.size}")
    expect(page.locator("body")).to_contain_text("Signed checkpoint")

    page.goto(f"{base}/ledger/")
    page.click("text=Checkpoints & witnesses")
    expect(page.locator("#checkpoints")).to_contain_text(str(checkpoint.size))
    vkey = page.locator("#vkey").inner_text()

    page.goto(f"{base}/ledger/")
    page.click("text=Audit trails & bundles")
    expect(page.locator("h1")).to_have_text("Audit trails and bundles")
    with page.expect_download() as download:
        page.click("text=Whole log")
    path = tmp_path / "bundle.jsonl"
    download.value.save_as(path)
    out = run_verifier(path, vkey)
    assert out.returncode == 0, out.stdout + out.stderr

    # One flipped byte in the downloaded bundle and the verifier refuses it.
    original = path.read_bytes()
    raw = original.replace(b'\\"kind\\":\\"offer_published', b'\\"kind\\":\\"offer_publishee', 1)
    assert raw != original
    path.write_bytes(raw)
    bad = run_verifier(path, vkey)
    assert bad.returncode != 0


def test_a_consumer_sees_only_its_own_ledger_entries_and_no_audit_page(tdemo, live_server, page: Page) -> None:
    base = live_server.url
    login(page, base, "taxco")
    page.click("header nav >> text=Ledger")
    visible = page.locator("#ledger tbody tr").count()
    assert 0 < visible < LedgerEntry.objects.count()
    expect(page.locator("body")).not_to_contain_text("Audit trails & bundles")


def test_regulator_sees_which_node_batch_vouches_for_a_usage_receipt(tdemo, live_server, page: Page) -> None:
    from tests.ledger.conftest import attest_as_node, buy, use

    usage = use(buy(node="acme"))
    base = live_server.url
    login(page, base, "regulator")
    page.goto(f"{base}/ledger/entries/{usage.seq}/")
    expect(page.locator("#attestation")).to_contain_text("not yet in a node-signed receipt batch")
    from marketplace.models import Organization

    bank, acme = Organization.objects.get(slug="northwind"), usage.payload["provider"]
    words = page.locator("#words")  # the entry in words, with the declared purpose from the grant
    expect(words).to_contain_text(f"{Organization.objects.get(id=acme).name}'s node acme reported a stats step")
    expect(words).to_contain_text(f"on Acme shopper behaviour 2026 for {bank.name} under right #{usage.right_id}")
    expect(words).to_contain_text("purpose 'credit risk'")

    batch = attest_as_node("acme")
    page.reload()
    expect(page.locator("#attestation")).to_contain_text(f"receipt batch #{batch.seq}: node acme")
    expect(page.locator("#attestation")).to_contain_text(f"1 receipt(s) of entries #{usage.seq}–#{usage.seq}")
    page.click(f"#attestation >> text=receipt batch #{batch.seq}")
    expect(page.locator("h1")).to_contain_text(f"Entry #{batch.seq}")
    expect(page.locator("h1 .tag")).to_have_text("Receipt batch attested")
    expect(page.locator("#attestation")).to_contain_text(f"node acme (key {batch.payload['attestation']['kid']})")
