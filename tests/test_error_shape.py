"""One error base, mapped once: a ledger error raised under a view of any app answers in the
one JSON error shape with its own status, never as a 500 page."""

from __future__ import annotations

import pytest

from ledger import exceptions as ledger_errors
from marketplace.models import Offer
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _shape(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.content
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code and body["error"]["message"]


def _refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise ledger_errors.TreeCorrupt("stored Merkle hashes disagree with the entries")


def test_a_ledger_error_under_a_ledger_view(demo) -> None:  # type: ignore[no-untyped-def]
    r = api_for("regulator").get("/api/ledger/proofs/consistency/?from=5&to=99999")  # beyond the log
    _shape(r, 404, "proof_unavailable")


def test_a_ledger_error_under_a_marketplace_view(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from marketplace import services

    monkeypatch.setattr(services, "entry_append", _refuse)
    offer = Offer.objects.get(dataset__node__slug="acme")
    r = api_for("bank").post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    _shape(r, 500, "tree_corrupt")


def test_a_ledger_error_under_a_compute_view(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from marketplace import rights

    offer = Offer.objects.get(dataset__node__slug="acme")
    right = api_for("bank").post(
        "/api/orders/", {"offer": offer.id, "purpose": "p", "accept_terms": True}, format="json",
        HTTP_IDEMPOTENCY_KEY="o",
    ).json()["right"]["id"]  # fmt: skip
    monkeypatch.setattr(rights, "right_reserve", _refuse)
    r = api_for("bank").post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [right]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="j",
    )
    _shape(r, 500, "tree_corrupt")
