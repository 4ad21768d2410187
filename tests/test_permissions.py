"""Permission matrix: every marketplace/compute endpoint × every role.

Roles: anonymous, consumer (bank), provider (acme), regulator, staff (platform admin
without an organisation). An endpoint that is not for the caller's kind of organisation
answers 403 (never an empty 200). Object-level rules: a consumer sees only its own
orders, rights and jobs; a provider only its own offers, orders received and revenue; a
regulator reads the ledger but buys nothing.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from marketplace.models import Dataset, Offer
from tests.conftest import api_for

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "consumer", "provider", "regulator", "staff")
USERS = {"consumer": "bank", "provider": "acme", "regulator": "regulator", "staff": "admin"}
A, C, P, R, S = ROLES


def client_for(role: str) -> APIClient:
    if role == "anonymous":
        return APIClient()
    return api_for(USERS[role])


@pytest.fixture
def world(demo):  # type: ignore[no-untyped-def]
    """A bought right and a job of the consumer, for the object-level endpoints."""
    offer = Offer.objects.get(dataset__node__slug="acme")
    bank = api_for("bank")
    order = bank.post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "p", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="w",
    ).json()
    job = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [order["right"]["id"]]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="wj",
    ).json()
    from ledger import services as ledger_services

    checkpoint = ledger_services.checkpoint_create()
    return {
        "size": checkpoint.size,
        "dataset": Dataset.objects.get(node__slug="acme").id,
        "own": Dataset.objects.get(node__slug="bank").id,
        "offer": offer.id,
        "right": order["right"]["id"],
        "job": job["id"],
    }


def _offer_body(w):  # type: ignore[no-untyped-def]
    return {
        "dataset": w["dataset"],
        "title": "Matrix",
        "operations": ["stats"],
        "amount_minor": 10,
        "currency": "EUR",
        "quota_jobs": 1,
        "duration_days": 1,
    }


# (method, path, body, {role: expected status})
MATRIX = [
    ("get", "/api/datasets/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/datasets/{dataset}/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/hub/key/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/schema/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("post", "/api/offers/", _offer_body, {A: 401, C: 403, P: 201, R: 403, S: 403}),
    ("get", "/api/orders/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    (
        "post",
        "/api/orders/",
        lambda w: {"offer": w["offer"], "purpose": "p", "accept_terms": True},
        {A: 401, C: 200, P: 403, R: 403, S: 403},
    ),
    ("get", "/api/rights/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    ("get", "/api/provider/orders/", None, {A: 401, C: 403, P: 200, R: 403, S: 403}),
    ("get", "/api/nodes/", None, {A: 401, C: 200, P: 200, R: 403, S: 403}),
    ("post", "/api/nodes/", lambda w: {"slug": "matrix-node"}, {A: 401, C: 201, P: 201, R: 403, S: 403}),
    ("get", "/api/billing/bill/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    ("get", "/api/billing/revenue/", None, {A: 401, C: 403, P: 200, R: 403, S: 403}),
    ("get", "/api/billing/bill/export.csv", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    ("get", "/api/billing/revenue/export.xlsx", None, {A: 401, C: 403, P: 200, R: 403, S: 403}),
    ("get", "/api/billing/alerts/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    (
        "post",
        "/api/billing/alerts/",
        lambda w: {"currency": "EUR", "limit_minor": 100_000, "email": "cfo@example.org"},
        {A: 401, C: 200, P: 403, R: 403, S: 403},
    ),
    # The regulator's reads: all of it, and no write.
    ("get", "/api/regulator/alerts/", None, {A: 401, C: 403, P: 403, R: 200, S: 200}),
    ("post", "/api/regulator/alerts/", lambda w: {}, {A: 401, C: 403, P: 403, R: 405, S: 405}),
    ("get", "/api/regulator/trail/", None, {A: 401, C: 403, P: 403, R: 200, S: 200}),
    ("post", "/api/regulator/trail/", lambda w: {}, {A: 401, C: 403, P: 403, R: 405, S: 405}),
    # Records of processing: the organisation's own, and every one for an auditor.
    ("get", "/api/records/acme/", None, {A: 401, C: 403, P: 200, R: 200, S: 200}),
    ("get", "/api/records/northwind/pdf/", None, {A: 401, C: 200, P: 403, R: 200, S: 200}),
    ("post", "/api/records/acme/", lambda w: {}, {A: 401, C: 405, P: 405, R: 405, S: 405}),
    ("get", "/api/jobs/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    ("get", "/api/jobs/{job}/", None, {A: 401, C: 200, P: 403, R: 403, S: 403}),
    (
        "post",
        "/api/jobs/",
        lambda w: {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [w["right"]]},
        {A: 401, C: 200, P: 403, R: 403, S: 403},
    ),
    (
        "post",
        "/api/datasets/{dataset}/overlap-preview/",
        lambda w: {"consumer_dataset": w["own"]},
        {A: 401, C: 201, P: 403, R: 403, S: 403},
    ),
    ("post", "/api/rights/{right}/revoke/", lambda w: {"reason": "matrix"}, {A: 401, C: 403, P: 200, R: 403, S: 403}),
    ("get", "/api/ledger/entries/", None, {A: 401, C: 200, P: 200, R: 200, S: 200}),
    ("post", "/api/offers/{offer}/retire/", None, {A: 401, C: 403, P: 200, R: 403, S: 403}),
    ("post", "/api/nodes/acme/rekey/", None, {A: 401, C: 404, P: 200, R: 403, S: 403}),
    # The ledger: readable by every member for what concerns them, whole for auditors.
    ("get", "/api/ledger/key/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/ledger/entries/0/", None, {A: 401, C: 200, P: 404, R: 200, S: 200}),
    # Checkpoints, consistency proofs and witnesses are public, as a transparency log's are.
    ("get", "/api/ledger/checkpoints/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("post", "/api/ledger/checkpoints/", lambda w: {}, {A: 401, C: 403, P: 403, R: 403, S: 201}),
    ("get", "/api/ledger/checkpoints/latest/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/ledger/checkpoints/{size}/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("get", "/api/ledger/proofs/consistency/?from=1&to={size}", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    (
        "post",
        "/api/ledger/checkpoints/{size}/cosignatures/",
        lambda w: {"note": "not a note"},
        {A: 401, C: 403, P: 403, R: 400, S: 403},  # staff belong to no organisation: no witness of theirs
    ),
    ("get", "/api/ledger/witnesses/", None, {A: 200, C: 200, P: 200, R: 200, S: 200}),
    ("post", "/api/ledger/witnesses/", lambda w: {"vkey": "bad"}, {A: 401, C: 403, P: 403, R: 400, S: 403}),
    ("get", "/api/ledger/bundle/", None, {A: 401, C: 403, P: 403, R: 200, S: 200}),
    (
        "post",
        "/api/ledger/corrections/",
        lambda w: {"corrects_seq": 0, "reason": "matrix"},
        {A: 401, C: 403, P: 403, R: 403, S: 201},
    ),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_permission_matrix(world, role, method, path, body, expected) -> None:  # type: ignore[no-untyped-def]
    client = client_for(role)
    url = path.format(**world)
    kwargs = {"format": "json", "HTTP_IDEMPOTENCY_KEY": "wj" if path == "/api/jobs/" else "w"}
    if method == "post" and "overlap" in path:
        kwargs["HTTP_IDEMPOTENCY_KEY"] = "preview"
    response = getattr(client, method)(url, body(world) if callable(body) else body, **kwargs)
    assert response.status_code == expected[role], (role, method, url, response.content[:300])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_object_level_isolation_of_lists(world) -> None:  # type: ignore[no-untyped-def]
    from marketplace import accounts

    accounts.signup(
        username="other", email="o@example.org", password="pw-other-1", org_name="Other Bank",
        is_provider=False, is_consumer=True,
    )  # fmt: skip
    other = api_for("other")  # another consumer: its lists are empty, not the bank's
    assert len(api_for("bank").get("/api/orders/").json()) == 1
    assert other.get("/api/orders/").json() == []
    assert len(api_for("acme").get("/api/provider/orders/").json()["results"]) == 1
    assert api_for("taxco").get("/api/provider/orders/").json()["results"] == []
    assert other.get("/api/jobs/").json() == []
    assert [r["id"] for r in api_for("bank").get("/api/rights/").json()["results"]] == [world["right"]]
    assert other.get("/api/rights/").json()["results"] == []


def test_no_endpoint_returns_rows(world) -> None:  # type: ignore[no-untyped-def]
    """A right never confers the data: nothing in the API carries a provider's row values."""
    import csv
    from pathlib import Path

    from django.conf import settings

    path = Path(settings.USUFRUCT_NODES_DIR) / "acme" / "data" / "shoppers.csv"
    with path.open() as fh:
        sample_ids = [r["customer_id"] for _, r in zip(range(50), csv.DictReader(fh), strict=False)]
    bank = api_for("bank")
    blobs = [
        bank.get(u).content.decode()
        for u in (
            "/api/datasets/",
            f"/api/datasets/{world['dataset']}/",
            "/api/orders/",
            "/api/rights/",
            "/api/jobs/",
            f"/api/jobs/{world['job']}/",
            "/api/ledger/entries/?limit=500",
        )
    ]
    assert not any(i in b for i in sample_ids for b in blobs)


def test_staff_is_a_django_admin_but_not_a_buyer(world, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.get(username="admin"))
    assert client.get("/admin/marketplace/usageright/").status_code == 200
    assert client.get(f"/admin/marketplace/usageright/{world['right']}/change/").status_code == 200
    assert client.post(f"/admin/marketplace/usageright/{world['right']}/delete/", {"post": "yes"}).status_code == 403
