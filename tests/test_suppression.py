"""A provider below the minimum group size is suppressed, named in the result and not charged."""

from __future__ import annotations

import pytest

from compute.models import Job
from ledger import writer
from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer, UsageRight
from tests import federation
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _buy(offer_id: int, key: str) -> int:
    r = api_for("bank").post(
        "/api/orders/", {"offer": offer_id, "purpose": "portfolio statistics", "accept_terms": True},
        format="json", HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip
    assert r.status_code == 201, r.content
    return int(r.json()["right"]["id"])


def test_a_suppressed_provider_is_named_in_the_result_and_charged_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    taxco = Dataset.objects.get(node__slug="taxco")
    strict = api_for("taxco").post(
        "/api/offers/",
        {"dataset": taxco.id, "title": "Only large groups", "operations": ["stats"], "amount_minor": 300,
         "currency": "EUR", "quota_jobs": 5, "duration_days": 30, "min_group_size": 100_000},
        format="json",
    )  # fmt: skip
    assert strict.status_code == 201, strict.content
    acme_right = _buy(Offer.objects.get(dataset__node__slug="acme", status="published").id, "acme")
    taxco_right = _buy(strict.json()["id"], "taxco")

    job = federation.run(federation.submit([acme_right, taxco_right], params={"column": "tenure_months"}))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.outputs["count"] == 2000  # Acme's rows only: TaxCo's 1,800 are below 100,000
    keys = {p.right_id: p.key for p in job.parties.all()}
    assert job.outputs["by_party"][keys[taxco_right]] == {"suppressed": True}
    assert job.outputs["by_party"][keys[acme_right]]["count"] == 2000

    writer.integrate_all()
    settled = {e.right_id: e.payload for e in LedgerEntry.objects.filter(kind="settlement")}
    assert settled[acme_right]["outcome"] == "delivered" and settled[acme_right]["units"] == 1
    assert settled[taxco_right]["outcome"] == "suppressed" and settled[taxco_right]["units"] == 0
    assert UsageRight.objects.get(id=taxco_right).quota_used == 0
    assert UsageRight.objects.get(id=acme_right).quota_used == 1
    bill = api_for("bank").get("/api/billing/bill/").json()
    assert [t["display"] for t in bill["totals"]] == ["1.50 EUR"]  # Acme's job only
