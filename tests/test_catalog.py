"""Catalog search, filters, sorting and pagination (page and API); bounded query count."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace import services
from marketplace.models import Dataset, Node, Organization
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _names(client, query: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/datasets/?{query}")
    assert r.status_code == 200, r.content
    return [d["name"] for d in r.json()["results"]]


def _more_datasets(n: int) -> None:
    """Extra listed datasets (created directly: the catalog only reads them)."""
    org = Organization.objects.get(slug="acme")
    node = Node.objects.get(slug="acme")
    base = Dataset.objects.get(node=node)
    for i in range(n):
        ds = Dataset.objects.create(
            organization=org,
            node=node,
            local_name=f"extra{i}",
            name=f"Extra panel {i:02d}",
            description="filler",
            tags=["retail"],
            columns=base.columns,
            row_count=100 + i,
            content_sha256="0" * 64,
            manifest={},
            attested_at=base.attested_at,
        )
        services.offer_publish(
            organization=org,
            dataset=ds,
            title="Extra",
            operations=["stats"],
            amount_minor=1000 + i,
            currency="EUR",
            quota_jobs=5,
            duration_days=30,
        )


def test_full_text_search_filters_and_sorting(demo, client) -> None:  # type: ignore[no-untyped-def]
    acme, taxco = "Acme shopper behaviour 2026", "TaxCo SME invoice signals"
    lakeside, northgate, stmary = (
        f"{h} breast-cancer diagnostics" for h in ("Lakeside Clinic", "Northgate Medical Centre", "St Mary's Hospital")
    )
    assert _names(client) == [acme, lakeside, northgate, stmary, taxco]
    assert _names(client, "q=invoicing") == [taxco]  # stemmed: invoicing ~ invoice
    assert _names(client, "q=buy-now-pay-later payments") == [acme]
    assert _names(client, "provider=taxco") == [taxco]
    assert _names(client, "tag=e-commerce") == [acme]
    assert _names(client, "tag=e-comm") == []  # tags match whole
    assert _names(client, "tag=oncology") == [lakeside, northgate, stmary]
    assert _names(client, "operation=stats") == [acme, lakeside, northgate, stmary, taxco]
    assert _names(client, "operation=homo_lr") == [lakeside, northgate, stmary]
    assert _names(client, "operation=hetero_lr") == [acme, taxco]
    assert _names(client, "plan=subscription") == []
    assert _names(client, "price_max=160") == [acme]
    assert _names(client, "price_min=160&price_max=250") == [taxco]
    assert _names(client, "sort=-price") == [stmary, northgate, lakeside, taxco, acme]
    assert _names(client, "sort=-rows")[:2] == [acme, taxco]


def test_bad_filter_values_are_a_400_with_field_messages(demo, client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/datasets/?sort=sideways&price_min=cheap")
    assert r.status_code == 400
    assert set(r.json()["error"]["fields"]) == {"sort", "price_min"}


def test_the_consumers_own_dataset_is_not_listed(demo, client) -> None:  # type: ignore[no-untyped-def]
    assert "Northwind loan applicants" not in _names(client)


def test_pagination_and_query_count_independent_of_page_size(demo, client) -> None:  # type: ignore[no-untyped-def]
    _more_datasets(12)
    page = client.get("/api/datasets/?limit=5&offset=5").json()
    assert page["count"] == 17 and len(page["results"]) == 5
    counts = []
    for limit in (1, 17):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/api/datasets/?limit={limit}").status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    counts = []
    for query in ("", "?page=2"):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/{query}").status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_catalog_page_filters_and_paginates(demo, client) -> None:  # type: ignore[no-untyped-def]
    _more_datasets(13)
    html = client.get("/?tag=retail&sort=price").content.decode()
    assert "13 datasets" in html and "Page 1 of 2" in html and "next →" in html
    assert html.index("Extra panel 00") < html.index("Extra panel 01")
    assert "Acme shopper" not in html


def test_dataset_page_shows_safe_summary_statistics(demo, client) -> None:  # type: ignore[no-untyped-def]
    ds = Dataset.objects.get(node__slug="acme")
    tenure = next(c for c in ds.columns if c["name"] == "tenure_months")
    assert {"mean", "std", "p25", "p50", "p75", "filled"} <= set(tenure["summary"])
    assert "min" not in tenure["summary"] and "max" not in tenure["summary"]
    ident = next(c for c in ds.columns if c["role"] == "id")
    assert set(ident["summary"]) == {"filled", "suppressed"}
    html = client.get(f"/datasets/{ds.id}/").content.decode()
    assert str(tenure["summary"]["mean"]) in html


def test_anyone_may_browse_but_api_users_see_the_same(demo) -> None:  # type: ignore[no-untyped-def]
    assert _names(api_for("regulator")) == _names(api_for("bank"))


def test_the_catalog_page_takes_prices_in_euros(demo, client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/?price_to=1.60").content.decode()  # Acme's plan is 150 cents, TaxCo's above 160
    assert "Acme shopper behaviour 2026" in page and "TaxCo SME invoice signals" not in page
    page = client.get("/?price_from=1,60&price_to=2.50").content.decode()  # a decimal comma is read too
    assert "TaxCo SME invoice signals" in page and "Acme shopper behaviour 2026" not in page
    assert "Min price (€)" in page
    bad = client.get("/?price_to=1.505").content.decode()
    assert "at most two decimals" in bad
    assert "A price in euros, e.g. 1.50." in client.get("/?price_from=cheap").content.decode()
