"""What the API refuses, and how: every refusal a JSON error in the one shape, never a 500
or an HTML page, whatever ``DEBUG`` says (the stumbles a schemathesis run found)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from marketplace.models import Node, Offer, Order
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _error(r, status: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert r.status_code == status, r.content[:500]
    assert r["Content-Type"].startswith("application/json"), r["Content-Type"]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def _order(api, body: dict, key: str = "k"):  # type: ignore[no-untyped-def, type-arg]
    return api.post("/api/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize("debug", [False, True])
def test_a_too_large_body_and_an_unknown_url_answer_in_json(demo, settings, debug) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug
    api = api_for("bank")
    big = json.dumps({"offer": 1, "purpose": "x" * 3_000_000, "accept_terms": True})
    r = api.generic("POST", "/api/orders/", big, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big")
    assert _error(r, 413)["code"] == "too_large"
    assert _error(Client().get("/api/no-such-thing/"), 404)["code"] == "not_found"
    assert _error(Client().get("/api/datasets/?q=" + "x" * 5000), 414)["code"] == "uri_too_long"
    assert Order.objects.count() == 0


def test_unknown_fields_are_refused_by_name_and_nothing_is_written(demo) -> None:  # type: ignore[no-untyped-def]
    offer = Offer.objects.get(dataset__node__slug="acme")
    junk = {f"junk{i}": "x" * 100 for i in range(2000)}  # what once bought a right
    err = _error(_order(api_for("bank"), {"offer": offer.id, "purpose": "p", "accept_terms": True, **junk}), 400)
    assert "junk0" in err["fields"] and Order.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"offer": 2**60, "purpose": "p", "accept_terms": True}, "offer"),  # once a 500 in RFC 8785
        ({"offer": 1.0, "purpose": "p", "accept_terms": True}, "offer"),
        ({"offer": True, "purpose": "p", "accept_terms": True}, "offer"),
        ({"offer": 1, "purpose": ["p"], "accept_terms": True}, "purpose"),
    ],
)
def test_values_of_another_type_or_out_of_range_are_a_400(demo, body, field) -> None:  # type: ignore[no-untyped-def]
    assert field in _error(_order(api_for("bank"), body), 400)["fields"]


def test_a_job_with_huge_numbers_in_its_params_is_a_400_not_a_500(demo) -> None:  # type: ignore[no-untyped-def]
    r = api_for("bank").post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "x", "key_bits": 2**80}, "rights": [1]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="huge",
    )
    assert "key_bits" in _error(r, 400)["fields"]


@pytest.mark.parametrize(
    "text",
    [
        '{"offer": 1, "purpose": "a\\u0000b", "accept_terms": true}',  # PostgreSQL text holds no U+0000
        '{"offer": 1, "purpose": "\\ud800", "accept_terms": true}',  # an unpaired surrogate: not UTF-8
        '{"offer": 1, "purpose": "p", "accept_terms": true, "x": ' + "[" * 40 + "]" * 40 + "}",
        '{"offer": 1,',
    ],
)
def test_bodies_that_cannot_be_stored_or_parsed_are_a_parse_error(demo, text) -> None:  # type: ignore[no-untyped-def]
    r = api_for("bank").generic("POST", "/api/orders/", text, content_type="application/json", HTTP_IDEMPOTENCY_KEY="t")
    assert _error(r, 400)["code"] == "parse_error"


@pytest.mark.parametrize(
    "query", ["limit=true", "offset=0.99999", "limit=" + "9" * 29, "limit=0", "offset=1&offset=2", "limit="]
)
def test_list_pages_are_validated_not_defaulted(demo, query) -> None:  # type: ignore[no-untyped-def]
    err = _error(api_for("regulator").get(f"/api/ledger/entries/?{query}"), 400)
    assert set(err["fields"]) & {"limit", "offset"}


def test_pending_nodes_are_limited_and_slugs_validated(demo) -> None:  # type: ignore[no-untyped-def]
    api = api_for("bank")
    assert "slug" in _error(api.post("/api/nodes/", {"slug": "-"}, format="json"), 400)["fields"]
    assert "slug" in _error(api.post("/api/nodes/", {"slug": "Bank_2"}, format="json"), 400)["fields"]
    for i in range(5):
        assert api.post("/api/nodes/", {"slug": f"bank-extra-{i}"}, format="json").status_code == 201
    err = _error(api.post("/api/nodes/", {"slug": "bank-extra-5"}, format="json"), 409)
    assert err["code"] == "too_many_pending_nodes"
    assert _error(api.post("/api/nodes/", {"slug": "bank-extra-0"}, format="json"), 409)["fields"]["slug"]
    assert Node.objects.filter(organization__slug="northwind", status="pending").count() == 5


def test_buying_an_offer_again_needs_again_and_order_status_tells_billing_apart(demo) -> None:  # type: ignore[no-untyped-def]
    api = api_for("bank")
    offer = Offer.objects.get(dataset__node__slug="acme")
    first = _order(api, {"offer": offer.id, "purpose": "p", "accept_terms": True}, "one").json()
    assert first["status"] == "postpaid_open"  # nothing was charged at purchase: not "paid"
    err = _error(_order(api, {"offer": offer.id, "purpose": "p", "accept_terms": True}, "two"), 409)
    assert err["code"] == "already_held" and "again" in err["fields"]
    again = _order(api, {"offer": offer.id, "purpose": "p", "accept_terms": True, "again": True}, "two")
    assert again.status_code == 201 and Order.objects.count() == 2
    from marketplace import rights

    rights.right_revoke(provider=offer.dataset.organization, right_id=first["right"]["id"], reason="test")
    orders = {o["id"]: o["status"] for o in api.get("/api/orders/").json()}
    assert orders == {first["id"]: "settled", again.json()["id"]: "postpaid_open"}


def test_the_consumers_bill_carries_no_provider_fees(demo) -> None:  # type: ignore[no-untyped-def]
    bill = api_for("bank").get("/api/billing/bill/").json()
    assert "platform_fees" not in bill and "nets" not in bill
    revenue = api_for("acme").get("/api/billing/revenue/").json()
    assert "platform_fees" in revenue and "nets" in revenue
