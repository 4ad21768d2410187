"""``stats`` histograms with real worker processes: the sum of the providers' counts, and the
differencing attack refused by the providers' nodes before anything is released or charged."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from marketplace.models import UsageRight
from tests.conftest import api_for, ledger_idle, post_job, wait_for

pytestmark = pytest.mark.e2e

EDGES = [0, 24, 48, 72, 1000]  # every range holds at least the minimum group at both providers


def _tenure(slug: str) -> list[float]:
    path = next((Path(settings.USUFRUCT_NODES_DIR) / slug / "data").glob("*.csv"))
    with path.open() as fh:
        return [float(r["tenure_months"]) for r in csv.DictReader(fh)]


def _counts(values: list[float], edges: list[float]) -> list[int]:
    return [sum(1 for v in values if a <= v < b) for a, b in zip(edges, edges[1:], strict=False)]


def _rights(bank) -> list[int]:  # type: ignore[no-untyped-def]
    rights = []
    for d in bank.get("/api/datasets/?operation=hetero_lr").json()["results"]:  # acme and taxco
        r = bank.post(
            "/api/orders/",
            {"offer": d["offers"][0]["id"], "purpose": "Tenure profile", "accept_terms": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"hist-{d['node']}",
        )
        assert r.status_code == 201, r.content
        rights.append(r.json()["right"]["id"])
    return rights


def _run(bank, params: dict, rights: list[int], key: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = post_job(bank, "stats", params, rights, key)
    assert r.status_code == 201, r.content
    job_id = r.json()["id"]

    def finished():  # type: ignore[no-untyped-def]
        body = bank.get(f"/api/jobs/{job_id}/").json()
        return body if body["status"] in ("succeeded", "failed") else None

    return wait_for(finished, timeout=90)  # type: ignore[no-any-return]


def test_a_histogram_in_the_bins_the_providers_declare(workers) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    rights = _rights(bank)
    params = {"column": "tenure_months", "histogram": {"provider_bins": True}, "key_bits": 1024}
    body = _run(bank, params, rights, "declared-1")
    assert body["status"] == "succeeded", body["error"]
    edges = [0, 12, 24, 36, 48, 60, 600]  # what both demo providers declare in their manifests
    values = _tenure("acme") + _tenure("taxco")
    assert body["outputs"]["edges"] == edges and body["outputs"]["counts"] == _counts(values, edges)
    assert body["params"]["histogram"] == {"edges": edges, "provider_bins": True}
    ledger_idle()


def test_a_histogram_job_and_the_differencing_attack_with_real_workers(workers) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    rights = _rights(bank)
    body = _run(bank, {"column": "tenure_months", "histogram": {"edges": EDGES}, "key_bits": 1024}, rights, "h-1")
    assert body["status"] == "succeeded", body["error"]
    acme, taxco = _tenure("acme"), _tenure("taxco")
    assert body["outputs"]["counts"] == _counts(acme + taxco, EDGES)
    assert sorted(v["counts"] for v in body["outputs"]["by_party"].values()) == sorted(
        [_counts(acme, EDGES), _counts(taxco, EDGES)]
    )

    # The attack: a second histogram whose one extra edge isolates a small range of acme's rows.
    edge = next(e for e in range(73, 400) if 0 < len([v for v in acme if 72 <= v < e]) < 20)
    attack = {"column": "tenure_months", "histogram": {"edges": [0, 24, 48, 72, edge, 1000]}, "key_bits": 1024}
    refused = _run(bank, attack, rights, "h-2")
    assert refused["status"] == "failed"
    assert "(differencing)" in refused["error"] and "minimum group size" in refused["error"]
    assert "counts" not in (refused["outputs"] or {})
    ledger_idle()
    for right_id in rights:  # the first job charged once; the refused one nothing
        right = UsageRight.objects.get(id=right_id)
        assert (right.quota_used, right.quota_reserved) == (1, 0)
    ledger_idle()

    # DP quantiles over a fine grid (an exact release of it would be refused): charged ε, close to the truth.
    grid = list(range(0, 201))
    q = {"probabilities": [0.25, 0.5, 0.75], "edges": grid}
    dp = _run(bank, {"column": "tenure_months", "quantiles": q, "dp_epsilon": 1.0, "key_bits": 1024}, rights, "h-3")
    assert dp["status"] == "succeeded", dp["error"]
    both = sorted(acme + taxco)
    for got in dp["outputs"]["quantiles"]:
        exact = both[int(got["p"] * len(both))]
        assert abs(got["value"] - exact) <= 3, (got, exact)
    ledger_idle()
    for right_id in rights:
        assert UsageRight.objects.get(id=right_id).epsilon_spent == Decimal("1.0")

    # A correlation matrix over acme's numeric features alone, from its encrypted moments.
    cols = ["tenure_months", "orders_12m", "avg_basket_eur", "late_payment_rate"]
    corr = _run(bank, {"column": cols[0], "correlation": {"columns": cols}, "key_bits": 1024}, rights[:1], "h-4")
    assert corr["status"] == "succeeded", corr["error"]
    path = next((Path(settings.USUFRUCT_NODES_DIR) / "acme" / "data").glob("*.csv"))
    with path.open() as fh:
        x = np.array([[float(r[c]) for c in cols] for r in csv.DictReader(fh)])
    assert corr["outputs"]["count"] == len(x)
    assert np.allclose(np.array(corr["outputs"]["matrix"]), np.corrcoef(x.T), atol=1e-5)

    # Group-by region over both providers: the rare islands are never reported, at either.
    groups = ["north", "south", "east", "west", "islands"]
    by = _run(
        bank,
        {"column": "tenure_months", "group_by": {"column": "region", "groups": groups}, "key_bits": 1024},
        rights,
        "h-5",
    )  # noqa: E501
    assert by["status"] == "succeeded", by["error"]
    result = {g["group"]: g for g in by["outputs"]["groups"]}
    truth: dict[str, list[float]] = {}
    for slug in ("acme", "taxco"):
        path = next((Path(settings.USUFRUCT_NODES_DIR) / slug / "data").glob("*.csv"))
        with path.open() as fh:
            for r in csv.DictReader(fh):
                truth.setdefault(r["region"], []).append(float(r["tenure_months"]))
    assert result["islands"]["count"] == 0 and len(result["islands"]["merged_at"]) == 2
    smallest = {g for g in ("east", "west") if result[g]["merged_at"]}  # each provider's smallest common group
    for name in ("north", "south", *({"east", "west"} - smallest)):
        if not result[name]["merged_at"]:
            assert result[name]["count"] == len(truth[name])
            assert result[name]["mean"] == pytest.approx(sum(truth[name]) / len(truth[name]), abs=1e-6)
    assert all(g["count"] == 0 or g["count"] >= 25 for g in by["outputs"]["groups"])
    assert result["(other)"]["count"] >= len(truth["islands"]) + 25

    client = Client()
    client.force_login(get_user_model().objects.get(username="bank"))
    page = client.get(f"/jobs/{body['id']}/").content.decode()
    assert 'id="chart-histogram"' in page and "[24, 48)" in page
    page = client.get(f"/jobs/{corr['id']}/").content.decode()
    assert 'id="chart-correlation"' in page and "late_payment_rate" in page
    page = client.get(f"/jobs/{by['id']}/").content.decode()
    assert 'id="chart-groups"' in page and "suppressed" in page
