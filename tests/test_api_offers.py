"""Publishing offers: price validation (integer minor units, ISO 4217) and ownership."""

from __future__ import annotations

import pytest

from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _body(**kw):  # type: ignore[no-untyped-def]
    body = {
        "dataset": Dataset.objects.get(node__slug="acme").id,
        "title": "Spring promo",
        "operations": ["stats"],
        "amount_minor": 99,
        "currency": "EUR",
        "quota_jobs": 5,
        "duration_days": 30,
    }
    body.update(kw)
    return body


def test_a_provider_publishes_an_offer_and_the_ledger_records_it(demo) -> None:  # type: ignore[no-untyped-def]
    r = api_for("acme").post("/api/offers/", _body(), format="json")
    assert r.status_code == 201, r.content
    offer = Offer.objects.get(id=r.json()["id"])
    assert offer.plans.get().amount_minor == 99
    assert LedgerEntry.objects.filter(kind="offer_published", payload__offer=offer.id).exists()
    again = api_for("acme").post("/api/offers/", _body(amount_minor=120), format="json").json()
    assert again["version"] == 2  # editing publishes a new version; v1 stays as sold


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_minor": -1}, "amount_minor"),
        ({"amount_minor": 12.5}, "amount_minor"),
        ({"amount_minor": "12.5"}, "amount_minor"),
        ({"currency": "EUX"}, "currency"),
        ({"currency": "eur"}, "currency"),
        ({"operations": ["mine_bitcoin"]}, "operations"),
        ({"operations": []}, "operations"),
        ({"quota_jobs": 0}, "quota_jobs"),
        ({"title": ""}, "title"),
    ],
)
def test_bad_offers_are_refused_with_field_messages(demo, change, field) -> None:  # type: ignore[no-untyped-def]
    before = Offer.objects.count()
    r = api_for("acme").post("/api/offers/", _body(**change), format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["error"]["fields"]
    assert Offer.objects.count() == before


def test_nobody_offers_someone_elses_dataset(demo) -> None:  # type: ignore[no-untyped-def]
    r = api_for("taxco").post("/api/offers/", _body(), format="json")
    assert r.status_code == 403
