"""Issued documents from the ledger: invoices, credit notes and statements, numbered, immutable,
each line proved against a signed checkpoint, verified offline in a process without Django,
and a tampered amount, entry or proof refused."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone

from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace import invoicing, rights
from marketplace.models import Document, DocumentLine, Organization, UsageRight
from tests import federation
from tests.conftest import api_for, right_on_new_offer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db


def _period() -> str:
    return timezone.now().strftime("%Y-%m")


def _used_right(key: str = "inv", plans: list[dict[str, Any]] | None = None) -> UsageRight:
    """The bank buys a right on acme's data and runs one stats job under it (the real node code)."""
    right_id = right_on_new_offer(title=f"offer {key}", operations=["stats"], key=key, plans=plans)
    _job(right_id)
    return UsageRight.objects.get(id=right_id)


def _job(right_id: int) -> None:
    job = federation.run(federation.submit([right_id]))
    assert job.status == "succeeded", job.error


def verify(doc: dict[str, Any], tmp_path: Path, *extra: str, log_key: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m ledger.verify`` as a buyer's auditor runs it: its own process, no Django settings."""
    path = tmp_path / f"{doc['number']}.json"
    path.write_text(json.dumps(doc))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ledger.verify", str(path), "--log-key", log_key or ledger_services.log_vkey(), *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_an_invoice_and_a_statement_are_issued_from_the_ledger_and_verify_offline(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    right = _used_right()  # 1.00 EUR per job, one job delivered
    issued = invoicing.documents_issue(period=_period())
    northwind, acme = Organization.objects.get(slug="northwind"), right.dataset.organization
    (invoice,) = [d for d in issued if d.organization_id == northwind.id]
    (statement,) = [d for d in issued if d.organization_id == acme.id]
    body = invoice.body
    assert invoice.number == f"INV-{timezone.now().year}-000001" and statement.number.startswith("STM-")
    assert [li["amount_minor"] for li in body["lines"]] == [100] and body["lines"][0]["kind"] == "usage"
    assert body["subtotal_minor"] == 100 and body["tax"] == {"name": "VAT", "rate_bps": 2000, "amount_minor": 20}
    assert body["total_minor"] == 120 and invoice.total_minor == 120
    assert body["buyer"]["name"] == northwind.name and body["seller"]["name"]
    s = statement.body
    assert (s["gross_minor"], s["fee"]["amount_minor"], s["net_minor"]) == (100, 10, 90)
    assert s["by_consumer"] == {northwind.name: 100} and s["by_plan"] == {"per_job": 100}
    # Issuing is itself on the ledger, with the document's digest.
    entry = LedgerEntry.objects.get(seq=invoice.ledger_seq)
    assert entry.kind == "document_issued" and entry.payload["digest"] == invoice.digest == body["digest"]
    # Offline: the invoice and the statement verify, in a process that has no Django.
    for doc in (body, s):
        out = verify(doc, tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith(f"OK {doc['number']}: 1 lines")
    # Again: nothing new to issue, nothing on the ledger.
    entries = LedgerEntry.objects.count()
    assert invoicing.documents_issue(period=_period()) == []
    assert LedgerEntry.objects.count() == entries


def _tampered(body: dict[str, Any], change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(body)
    change(doc)
    return doc


def test_a_tampered_line_amount_entry_or_proof_fails_offline(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _used_right()
    (invoice,) = [d for d in invoicing.documents_issue(period=_period()) if d.type == "invoice"]
    body = invoice.body

    def amount(doc: dict[str, Any]) -> None:
        doc["lines"][0]["amount_minor"] = 10
        doc["subtotal_minor"], doc["tax"]["amount_minor"], doc["total_minor"] = 10, 2, 12

    def entry(doc: dict[str, Any]) -> None:
        doc["lines"][0]["entry"]["body"] = doc["lines"][0]["entry"]["body"].replace('"rows":', '"rows":1')

    def proof(doc: dict[str, Any]) -> None:
        import base64

        hashes = doc["lines"][0]["entry"]["proof"]
        raw = bytearray(base64.b64decode(hashes[0]))
        raw[0] ^= 1  # one bit of one sibling hash
        hashes[0] = base64.b64encode(bytes(raw)).decode()

    def total(doc: dict[str, Any]) -> None:
        doc["total_minor"] += 1

    cases = {
        amount: "the ledger entry stands for 100",
        entry: "line 1",
        proof: "not in the signed tree",
        total: "total",
    }
    for change, expected in cases.items():
        doc = _tampered(body, change)
        doc["digest"] = invoicing.document_digest(doc)  # a forger recomputes the digest too
        out = verify(doc, tmp_path)
        assert out.returncode == 1 and expected in out.stdout, (change.__name__, out.stdout)
    # Without recomputing it, the digest gives the edit away on its own.
    out = verify(_tampered(body, total), tmp_path)
    assert out.returncode == 1 and "digest" in out.stdout
    # A log key other than the hub's: the checkpoint is not trusted.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol import checkpoint as notes

    stranger = notes.encode_vkey("usufruct.local/ledger", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    other = verify(body, tmp_path, log_key=stranger)
    assert other.returncode == 1 and "none of the log keys" in other.stdout, other.stdout


def test_documents_are_immutable_and_numbered_without_gaps(demo) -> None:  # type: ignore[no-untyped-def]
    right = _used_right("a")
    first = invoicing.documents_issue(period=_period())
    _job(right.id)  # a second job: on the next invoice, not on the first
    second = invoicing.documents_issue(period=_period())
    numbers = [d.number for d in Document.objects.filter(type="invoice").order_by("sequence")]
    year = timezone.now().year
    assert numbers == [f"INV-{year}-000001", f"INV-{year}-000002"]
    # The second invoice holds only what the first did not: no entry is charged twice.
    assert not set(DocumentLine.objects.filter(document__in=first).values_list("seq", flat=True)) & set(
        DocumentLine.objects.filter(document__in=second).values_list("seq", flat=True)
    )
    from django.db import connection

    doc = Document.objects.filter(type="invoice").first()
    assert doc is not None

    def raw(sql: str) -> None:
        with connection.cursor() as cur:
            cur.execute(sql, [doc.id])

    attempts = (
        lambda: Document.objects.filter(id=doc.id).update(total_minor=1),
        lambda: DocumentLine.objects.filter(document=doc).update(seq=1),
        lambda: raw("DELETE FROM marketplace_documentline WHERE document_id = %s"),
        lambda: raw("DELETE FROM marketplace_document WHERE id = %s"),
    )
    for attempt in attempts:
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            attempt()
    assert Document.objects.get(id=doc.id).total_minor == doc.total_minor


def test_a_refund_after_issue_is_a_credit_note_on_that_invoice(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prepaid = [{"kind": "per_job", "amount_minor": 200, "currency": "EUR", "billing": "prepaid"}]
    right = _used_right("pre", plans=prepaid)  # 5 jobs bought for 10.00 up front, one used
    (invoice,) = [d for d in invoicing.documents_issue(period=_period()) if d.type == "invoice"]
    assert [li["kind"] for li in invoice.body["lines"]] == ["purchase"] and invoice.body["subtotal_minor"] == 1000
    rights.right_revoke(provider=right.dataset.organization, right_id=right.id, reason="data withdrawn")
    issued = invoicing.documents_issue(period=_period())
    (credit,) = [d for d in issued if d.type == "credit_note"]
    assert credit.corrects_id == invoice.id and credit.body["corrects"] == invoice.number
    assert [li["amount_minor"] for li in credit.body["lines"]] == [-800]  # four unused jobs back
    assert credit.body["total_minor"] == -960 and credit.number.startswith("CRN-")
    assert Document.objects.get(id=invoice.id).body == invoice.body  # the invoice itself is untouched
    out = verify(credit.body, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # The provider's next statement carries the refund against its revenue.
    (statement,) = [d for d in issued if d.type == "statement"]
    assert statement.body["refunds_minor"] == -800 and statement.body["fee"]["amount_minor"] == -80


def test_a_period_is_a_month_that_has_begun(demo) -> None:  # type: ignore[no-untyped-def]
    from marketplace.exceptions import Invalid

    for bad in ("2026-13", "soon", "2026-00"):
        with pytest.raises(Invalid) as err:
            invoicing.documents_issue(period=bad)
        assert "period" in err.value.fields
    _used_right()
    assert invoicing.documents_issue(period="2999-01") == []  # nothing is due in a month to come


def test_the_pdf_reads_as_the_invoice_it_renders(demo) -> None:  # type: ignore[no-untyped-def]
    """Looked at as a person would: rendered to an image, it is not blank, and its text holds the
    number, the lines and the total."""
    import pypdfium2 as pdfium

    from marketplace import documents

    _used_right()
    (invoice,) = [d for d in invoicing.documents_issue(period=_period()) if d.type == "invoice"]
    pdf = pdfium.PdfDocument(documents.to_pdf(invoice.body))
    page = pdf[0]
    text = page.get_textpage().get_text_range()
    assert invoice.number in text and "Invoice" in text
    line = invoice.body["lines"][0]
    assert f"#{line['seq']}" in text and "Acme shopper behaviour 2026" in text
    assert "1.20" in text and "Total" in text and invoice.digest in text.replace("\n", "").replace("\r", "")
    image = page.render(scale=1).to_numpy()
    ink = (image[:, :, :3].mean(axis=2) < 128).mean()
    assert 0.005 < ink < 0.5, ink  # text on a white page: neither blank nor a filled rectangle
    csv_text = documents.to_csv(invoice.body)
    assert csv_text.splitlines()[1].startswith(f"{invoice.number},1,{line['seq']},")
    assert csv_text.splitlines()[-1].split(",")[5] == "Total"


def test_reconcile_finds_nothing_on_honest_documents_and_names_a_planted_difference(demo) -> None:  # type: ignore[no-untyped-def]
    from io import StringIO

    from django.core.management import CommandError, call_command
    from django.db import connection

    _used_right()
    invoicing.documents_issue(period=_period())
    out = StringIO()
    call_command("reconcile", "--period", _period(), stdout=out)
    assert out.getvalue().strip().endswith("2 documents reconciled with the ledger: 0 differences")
    # Someone with database access rewrites an issued invoice's total (the trigger set aside).
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending before ALTER TABLE
        cur.execute("ALTER TABLE marketplace_document DISABLE TRIGGER USER")
        cur.execute("UPDATE marketplace_document SET total_minor = total_minor + 5 WHERE type = 'invoice'")
        cur.execute("ALTER TABLE marketplace_document ENABLE TRIGGER USER")
    out = StringIO()
    with pytest.raises(CommandError, match="1 differences"):
        call_command("reconcile", stdout=out)
    assert "its total is 125 in the database but 120 as issued" in out.getvalue()


def test_who_reads_and_issues_which_documents_through_the_api(demo) -> None:  # type: ignore[no-untyped-def]
    """A consumer sees only its invoices, a provider only its statements, a regulator reads all
    and issues none; every form of a document is its own."""
    _used_right()
    bank, acme, taxco, regulator = api_for("bank"), api_for("acme"), api_for("taxco"), api_for("regulator")
    assert regulator.post("/api/documents/", {"period": _period()}, format="json").status_code == 403
    issued = bank.post("/api/documents/", {"period": _period()}, format="json")
    assert issued.status_code == 201, issued.content
    (invoice,) = issued.json()["issued"]
    assert invoice["type"] == "invoice" and invoice["total_minor"] == 120
    again = bank.post("/api/documents/", {"period": _period()}, format="json")
    assert (again.status_code, again.json()) == (200, {"issued": []})
    statement = acme.post("/api/documents/", {"period": _period()}, format="json").json()["issued"][0]
    assert statement["type"] == "statement"

    def numbers(client: Any) -> set[str]:
        return {d["number"] for d in client.get("/api/documents/").json()["results"]}

    assert numbers(bank) == {invoice["number"]} and numbers(acme) == {statement["number"]}
    assert numbers(taxco) == set() and numbers(regulator) == {invoice["number"], statement["number"]}
    assert numbers(api_for("research")) == set()
    for path in ("", "csv/", "pdf/"):
        assert bank.get(f"/api/documents/{invoice['number']}/{path}").status_code == 200
        assert bank.get(f"/api/documents/{statement['number']}/{path}").status_code == 404
        assert acme.get(f"/api/documents/{invoice['number']}/{path}").status_code == 404
        assert regulator.get(f"/api/documents/{invoice['number']}/{path}").status_code == 200
    body = bank.get(f"/api/documents/{invoice['number']}/").json()
    assert body["number"] == invoice["number"] and body["digest"] == invoice["digest"]
    pdf = bank.get(f"/api/documents/{invoice['number']}/pdf/")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    for bad in ({"period": "2026-1"}, {"period": "x"}, {}, {"period": "2026-12", "extra": 1}):
        r = bank.post("/api/documents/", bad, format="json")
        assert r.status_code == 400 and r.json()["error"]["fields"], (bad, r.content)
