"""Corrections: a signed compensating entry that points at the entry it corrects."""

from __future__ import annotations

import pytest

from ledger.models import LedgerEntry
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def test_staff_appends_a_correction_idempotently_and_nothing_is_edited(demo) -> None:  # type: ignore[no-untyped-def]
    target = LedgerEntry.objects.filter(kind="offer_published").first()
    before = (target.body, target.entry_hash)
    staff = api_for("admin")
    body = {"corrects_seq": target.seq, "reason": "terms text mistyped", "amends": {"terms": "No resale."}}
    first = staff.post("/api/ledger/corrections/", body, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert first.status_code == 201, first.content
    again = staff.post("/api/ledger/corrections/", body, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert again.json()["seq"] == first.json()["seq"]
    other = staff.post("/api/ledger/corrections/", {**body, "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert other.status_code == 409
    entry = LedgerEntry.objects.get(seq=first.json()["seq"])
    assert entry.kind == "correction"
    assert entry.payload["corrects"] == target.seq and entry.payload["corrects_entry_hash"] == target.entry_hash
    target.refresh_from_db()
    assert (target.body, target.entry_hash) == before


def test_only_staff_may_correct_and_bad_input_is_refused(demo) -> None:  # type: ignore[no-untyped-def]
    body = {"corrects_seq": 0, "reason": "r"}
    assert (
        api_for("regulator").post("/api/ledger/corrections/", body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 403
    )
    staff = api_for("admin")
    r = staff.post(
        "/api/ledger/corrections/", {"corrects_seq": 10**6, "reason": "r"}, format="json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    # The body names an entry the log does not have: a 404, as for any object a body refers to.
    assert r.status_code == 404 and r.json()["error"]["code"] == "proof_unavailable", r.content
    r = staff.post(
        "/api/ledger/corrections/", {"corrects_seq": 0, "reason": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k3"
    )
    assert r.status_code == 400 and "reason" in r.json()["error"]["fields"]
    assert staff.post("/api/ledger/corrections/", body, format="json").status_code == 400
