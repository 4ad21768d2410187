"""The regulator's trail, alerts, records of processing and ledger search (issue 14), built
through the real metering path: the bank's jobs run on the real node code (``federation``)."""

from __future__ import annotations

import io
import json

import pypdfium2 as pdfium
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from compute.models import Job
from ledger import services as ledger_services
from ledger.models import LedgerEntry, Witness
from marketplace.models import Dataset, Organization
from protocol import checkpoint as notes
from tests import federation
from tests.conftest import api_for, right_for_purpose, run_psi
from tests.ledger.conftest import dpa_id, register_witness

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(demo):  # type: ignore[no-untyped-def]
    """A stats job (within 'statistics') and a PSI job (beyond it) under one right."""
    right = right_for_purpose("statistics", "stat")
    stats = federation.run(federation.submit([right.id]))
    assert stats.status == Job.Status.SUCCEEDED, stats.error
    psi = run_psi(right)
    return right, stats, psi


def test_the_trail_names_purpose_operation_rows_epsilon_and_charge(history) -> None:  # type: ignore[no-untyped-def]
    right, stats, psi = history
    acme = Dataset.objects.get(node__slug="acme")
    r = api_for("regulator").get(f"/api/regulator/trail/?dataset={acme.id}")
    assert r.status_code == 200, r.content
    rows = {row["job"]: row for row in r.json()["rows"]}
    assert set(rows) == {str(stats.id), str(psi.id)}
    s, p = rows[str(stats.id)], rows[str(psi.id)]
    assert (s["consumer"], s["right"], s["purpose"], s["purpose_category"]) == (
        "Northwind Bank",
        right.id,
        "purpose stat",
        "statistics",
    )
    assert s["operations"] == ["stats"] and s["within_declared_purpose"] is True and s["epsilon"] == "0"
    assert p["operations"] == ["psi"] and p["within_declared_purpose"] is False
    assert p["epsilon"] == "1.0" and len(p["ledger_seqs"]["dp_charge"]) == 1
    for row in (s, p):
        assert row["outcome"] == "delivered" and row["charged"] == {"amount_minor": 100, "currency": "EUR"}
        usage = LedgerEntry.objects.filter(seq__in=row["ledger_seqs"]["usage"])
        assert {e.kind for e in usage} == {"usage"} and sum(e.payload["rows"] for e in usage) == row["rows"] > 0
        assert LedgerEntry.objects.get(seq=row["ledger_seqs"]["settlement"]).kind == "settlement"
    bank = Organization.objects.get(slug="northwind")
    assert len(api_for("regulator").get(f"/api/regulator/trail/?consumer={bank.id}").json()["rows"]) == 2
    assert api_for("regulator").get(f"/api/regulator/trail/?consumer={bank.id}&since=2999-01-01").json()["rows"] == []
    bad = api_for("regulator").get("/api/regulator/trail/?since=2026-13-01")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["since"]
    for who in ("bank", "acme"):
        assert api_for(who).get("/api/regulator/trail/").status_code == 403


def test_alerts_name_purpose_misuse_budget_refusals_and_a_silent_witness(history, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    right, _, psi = history
    acme = Dataset.objects.get(node__slug="acme")
    reg = api_for("regulator")

    def kinds() -> dict[str, list[dict]]:  # type: ignore[type-arg]
        found: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        for a in reg.get("/api/regulator/alerts/").json()["alerts"]:
            found.setdefault(a["kind"], []).append(a)
        return found

    (purpose,) = kinds()["purpose"]
    assert "psi" in purpose["subject"] and f"#{right.id}" in purpose["detail"] and "statistics" in purpose["detail"]
    assert LedgerEntry.objects.get(seq=purpose["ledger_seqs"][0]).payload["job"] == str(psi.id)
    assert "budget" not in kinds()
    # The provider caps the dataset's lifetime ε just above what is spent (1.0): 80 % is reached.
    assert (
        api_for("acme")
        .put(f"/api/datasets/{acme.id}/privacy-budget/", {"epsilon_budget": 1.2}, format="json")
        .status_code
        == 200
    )
    (budget,) = kinds()["budget"]
    assert budget["severity"] == "warning" and "83 %" in budget["detail"]
    # A tampering node's refused reply.
    other = right_for_purpose("credit risk", "tamper")
    job = federation.run(federation.submit([other.id]), tamper=federation.rewrite_receipt(rows=10**12))
    assert job.status == Job.Status.FAILED
    (refused,) = kinds()["refused_reply"]
    assert refused["subject"] == "Node acme: receipt_rows" and str(job.id) in refused["detail"]
    # A witness that co-signs nothing past the grace period.
    settings.USUFRUCT_WITNESS_GRACE = 0
    Witness.objects.update(active=False)
    name, key = register_witness(tmp_path)
    cp = ledger_services.checkpoint_create()
    (silent,) = kinds()["witness"]
    assert name in silent["subject"] and str(cp.size) in silent["detail"]
    ledger_services.cosignature_add(
        checkpoint=cp, note=notes.add_cosignature(cp.note.encode(), name, key), organization_id=dpa_id()
    )
    assert "witness" not in kinds()
    only = reg.get("/api/regulator/alerts/?kind=budget").json()["alerts"]
    assert [a["kind"] for a in only] == ["budget"]
    assert reg.get("/api/regulator/alerts/?kind=weather").status_code == 400
    assert api_for("bank").get("/api/regulator/alerts/").status_code == 403
    assert reg.post("/api/regulator/alerts/", {}, format="json").status_code == 405


def test_records_of_processing_point_at_the_ledger_and_render_as_pdf(history) -> None:  # type: ignore[no-untyped-def]
    right, _, _ = history
    ledger_services.checkpoint_create()
    r = api_for("acme").get("/api/records/acme/")
    assert r.status_code == 200, r.content
    doc = r.json()
    assert doc["schema"] == "usufruct.records-of-processing/v1" and doc["organization"]["name"] == "Acme Commerce"
    (activity,) = [a for a in doc["as_controller"] if a["purposes"]]
    assert activity["recipients"] == ["Northwind Bank"]
    assert activity["purposes"][-1] == {"right": right.id, "recipient": "Northwind Bank", "purpose": "purpose stat",
                                        "category": "statistics"}  # fmt: skip
    for field in ("categories_of_data_subjects", "categories_of_personal_data", "transfers", "retention",
                  "security_measures", "pipl_impact_assessment"):  # fmt: skip
        assert activity[field], field
    assert activity["pipl_impact_assessment"]["required"] is True
    seqs = activity["ledger_entries"]
    granted = LedgerEntry.objects.filter(seq__in=seqs["right_granted"])
    assert {e.kind for e in granted} == {"right_granted"} and right.id in {e.right_id for e in granted}
    assert LedgerEntry.objects.get(seq=seqs["usage"]["first"]).kind == "usage"
    assert (
        seqs["usage"]["count"] == LedgerEntry.objects.filter(kind="usage", dataset_id=activity["dataset"]["id"]).count()
    )
    assert [LedgerEntry.objects.get(seq=s).kind for s in seqs["dp_charge"]] == ["dp_charge"]
    assert doc["checkpoint"]["size"] >= seqs["usage"]["last"]
    bank = api_for("bank").get("/api/records/northwind/").json()
    (held,) = [a for a in bank["as_recipient"] if a["jobs_delivered"]]
    assert held["purpose_category"] == "statistics" and held["jobs_delivered"] == 2
    assert api_for("bank").get("/api/records/acme/").status_code == 403
    assert api_for("regulator").get("/api/records/acme/").status_code == 200
    assert api_for("regulator").get("/api/records/nobody/").status_code == 404
    pdf = api_for("regulator").get("/api/records/acme/pdf/")
    assert pdf["Content-Type"] == "application/pdf"
    document = pdfium.PdfDocument(io.BytesIO(pdf.content))
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    assert "Records of processing: Acme Commerce" in text and "Northwind Bank" in text and "purpose stat" in text
    image = document[0].render(scale=1).to_pil().convert("L")
    assert image.getextrema()[0] < 100  # ink on the page, not a blank render


def test_the_pages_download_records_for_their_own_organisation_only(history, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.get(username="acme"))
    own = client.get("/records/acme.json")
    assert own.status_code == 200 and json.loads(own.content)["organization"]["name"] == "Acme Commerce"
    assert client.get("/records/northwind.json").status_code == 403
    assert client.get("/regulator/alerts/").status_code == 403
    assert client.get("/ledger/audit/").status_code == 403
    client.force_login(get_user_model().objects.get(username="regulator"))
    assert client.get("/records/northwind.pdf")["Content-Type"] == "application/pdf"
    assert client.get("/records/northwind.xml").status_code == 404
    page = client.get(f"/ledger/audit/?dataset={Dataset.objects.get(node__slug='acme').id}").content.decode()
    assert "beyond purpose" in page and "purpose stat" in page
    assert (
        "The end of the period"
        in client.get("/ledger/audit/?dataset=1&since=2026-02-01&until=2026-01-01").content.decode()
    )


def test_ledger_search_by_organisation_and_purpose_in_constant_queries(history) -> None:  # type: ignore[no-untyped-def]
    right, _, _ = history
    other = right_for_purpose("credit risk", "second")
    reg = api_for("regulator")
    bank = Organization.objects.get(slug="northwind")
    everything = reg.get(f"/api/ledger/entries/?organization_id={bank.id}&limit=500").json()["results"]
    named = LedgerEntry.objects.filter(seq__in=[e["seq"] for e in everything])
    assert len(everything) == named.count() > 0 and all(bank.id in (e.consumer_id, e.provider_id) for e in named)
    assert named.count() == LedgerEntry.objects.filter(Q(consumer_id=bank.id) | Q(provider_id=bank.id)).count()
    by_purpose = reg.get("/api/ledger/entries/?purpose=purpose stat&limit=500").json()["results"]
    rights = set(LedgerEntry.objects.filter(seq__in=[e["seq"] for e in by_purpose]).values_list("right_id", flat=True))
    assert by_purpose and rights == {right.id}
    by_category = reg.get("/api/ledger/entries/?purpose=CREDIT RISK&kind=right_granted").json()["results"]
    assert [e["payload"]["right"] for e in by_category] == [other.id]
    counts = []
    for limit in (2, 6):
        with CaptureQueriesContext(connection) as ctx:
            body = reg.get(f"/api/ledger/entries/?organization_id={bank.id}&purpose=purpose&limit={limit}").json()
        assert len(body["results"]) == limit
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert reg.get("/api/ledger/entries/?organization_id=abc").status_code == 400
    # A consumer searching sees only its own entries, whatever organisation it names.
    acme = Organization.objects.get(slug="acme")
    mine = api_for("research").get(f"/api/ledger/entries/?organization_id={acme.id}").json()["results"]
    assert mine == []
