"""Buying usage rights through the API: the happy path and every refusal."""

from __future__ import annotations

import pytest

from ledger.models import LedgerEntry
from marketplace.models import Offer, Order, UsageRight
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _offer(node: str) -> Offer:
    return Offer.objects.get(dataset__node__slug=node)


def _buy(api, body, key="k1"):  # type: ignore[no-untyped-def]
    return api.post("/api/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_an_order_copies_price_and_terms_and_grants_a_right(bank_api) -> None:  # type: ignore[no-untyped-def]
    offer = _offer("acme")
    r = _buy(bank_api, {"offer": offer.id, "purpose": "credit risk", "accept_terms": True})
    assert r.status_code == 201, r.content
    order = Order.objects.get(id=r.json()["id"])
    assert (order.unit_price_minor, order.currency, order.quota_jobs) == (150, "EUR", 20)
    assert order.accepted_terms == offer.terms
    right = order.right
    assert (right.quota_total, right.quota_left, right.status) == (20, 20, "active")
    granted = LedgerEntry.objects.get(kind="right_granted", right_id=right.id)
    assert granted.payload["price"] == {
        "kind": "per_job",
        "amount_minor": 150,
        "currency": "EUR",
        "billing": "postpaid",
        "included_units": 0,
        "overage_minor": 0,
    }
    assert granted.payload["charge_minor"] == 0  # postpaid: charged per use
    # A later price change (a new offer version) never touches the bought right.
    offer.plans.update(amount_minor=999)
    order.refresh_from_db()
    assert order.unit_price_minor == 150


def test_same_idempotency_key_and_body_returns_the_same_order(bank_api) -> None:  # type: ignore[no-untyped-def]
    body = {"offer": _offer("acme").id, "purpose": "credit risk", "accept_terms": True}
    first, second = _buy(bank_api, body), _buy(bank_api, body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Order.objects.count() == 1 and UsageRight.objects.count() == 1


def test_reused_idempotency_key_with_another_body_is_a_409(bank_api) -> None:  # type: ignore[no-untyped-def]
    _buy(bank_api, {"offer": _offer("acme").id, "purpose": "credit risk", "accept_terms": True})
    r = _buy(bank_api, {"offer": _offer("taxco").id, "purpose": "credit risk", "accept_terms": True})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"purpose": "", "accept_terms": True}, "purpose"),
        ({"purpose": "   ", "accept_terms": True}, "purpose"),
        ({"purpose": "risk", "accept_terms": False}, "accept_terms"),
        ({"purpose": "risk"}, "accept_terms"),
        ({"offer": 999999, "purpose": "risk", "accept_terms": True}, "offer"),
        ({"offer": "abc", "purpose": "risk", "accept_terms": True}, "offer"),
        ({"offer": "7", "purpose": "risk", "accept_terms": True}, "offer"),
        ({"purpose": 7, "accept_terms": True}, "purpose"),
        ({"purpose": "risk", "accept_terms": "true"}, "accept_terms"),
        ({"purpose": "risk", "accept_terms": True, "again": 1}, "again"),
        ({"purpose": "risk", "accept_terms": True, "coupon": "FREE"}, "coupon"),
        ({"purpose": "risk", "accept_terms": True, "offer": 2**53}, "offer"),
    ],
)
def test_bad_orders_get_field_errors_and_write_nothing(bank_api, body, field) -> None:  # type: ignore[no-untyped-def]
    body = {"offer": _offer("acme").id, **body}
    before = LedgerEntry.objects.count()
    r = _buy(bank_api, body)
    # An offer that does not exist is a 404 naming the field; every other fault a 400.
    assert r.status_code == (404 if body["offer"] == 999999 else 400), r.content
    assert field in r.json()["error"]["fields"]
    assert Order.objects.count() == 0 and UsageRight.objects.count() == 0
    assert LedgerEntry.objects.count() == before


def test_missing_idempotency_key_is_refused(bank_api) -> None:  # type: ignore[no-untyped-def]
    r = bank_api.post("/api/orders/", {"offer": _offer("acme").id, "purpose": "x", "accept_terms": True}, format="json")
    assert r.status_code == 400
    assert "idempotency_key" in r.json()["error"]["fields"]


def test_an_unlisted_offer_cannot_be_bought(bank_api) -> None:  # type: ignore[no-untyped-def]
    offer = _offer("acme")
    Offer.objects.filter(id=offer.id).update(status=Offer.Status.RETIRED)
    r = _buy(bank_api, {"offer": offer.id, "purpose": "x", "accept_terms": True})
    assert r.status_code == 404
    assert r.json()["error"]["fields"]["offer"] == ["No such listed offer."]


def test_a_provider_cannot_buy_its_own_dataset(demo) -> None:  # type: ignore[no-untyped-def]
    from marketplace.models import Organization

    Organization.objects.filter(slug="acme").update(is_consumer=True)
    r = _buy(api_for("acme"), {"offer": _offer("acme").id, "purpose": "x", "accept_terms": True})
    assert r.status_code == 400
    assert "own dataset" in r.json()["error"]["fields"]["offer"][0]


def test_anonymous_buyers_are_turned_away(demo, client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/orders/", {"offer": _offer("acme").id}, content_type="application/json")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "not_authenticated"


def test_a_consumer_sees_only_its_own_orders(bank_api) -> None:  # type: ignore[no-untyped-def]
    _buy(bank_api, {"offer": _offer("acme").id, "purpose": "x", "accept_terms": True})
    assert len(bank_api.get("/api/orders/").json()) == 1
    assert api_for("taxco").get("/api/orders/").status_code == 403  # a provider has no orders page
