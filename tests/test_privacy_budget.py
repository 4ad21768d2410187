"""A dataset's lifetime privacy budget, shared by every buyer, and offers that demand DP (issue 13).

Real PostgreSQL; jobs run through the real node code (``tests.federation``); the offline
verifier reads a real bundle."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth import get_user_model

from compute.models import Job
from ledger import writer
from ledger.models import LedgerEntry
from marketplace import budget
from marketplace.exceptions import Conflict, Forbidden, Invalid
from marketplace.models import Dataset, Membership, Node, Offer, Organization, UsageRight
from protocol import keys
from tests import federation
from tests.conftest import api_for, post_job

DP = {"column": "tenure_months", "key_bits": 1024, "dp_epsilon": 0.5, "bounds": [0, 240]}


def _acme() -> Dataset:
    return Dataset.objects.get(node__slug="acme")


def _dp_offer(*, dp_required: bool = False, epsilon: float = 100.0, quota: int = 200) -> int:
    r = api_for("acme").post(
        "/api/offers/",
        {
            "dataset": _acme().id,
            "title": f"DP {uuid.uuid4().hex[:6]}",
            "operations": ["stats", "hetero_lr"],
            "amount_minor": 100,
            "currency": "EUR",
            "quota_jobs": quota,
            "duration_days": 30,
            "epsilon": epsilon,
            "dp_required": dp_required,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    return int(r.json()["id"])


def _buy(offer: int, username: str = "bank") -> int:
    r = api_for(username).post(
        "/api/orders/",
        {"offer": offer, "purpose": "credit risk", "accept_terms": True, "again": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert r.status_code == 201, r.content
    return int(r.json()["right"]["id"])


def _consumer(slug: str) -> str:
    """Another bank: an organisation, an admin user and an enrolled node (its key made here)."""
    org = Organization.objects.create(name=f"Bank {slug}", slug=slug, is_consumer=True)
    user = get_user_model().objects.create_user(username=slug, password="x")
    Membership.objects.create(user=user, organization=org, role=Membership.Role.ADMIN)
    key = Ed25519PrivateKey.generate()
    Node.objects.create(
        organization=org, slug=f"{slug}-node", status=Node.Status.ACTIVE, public_key=keys.public_b64(key),
        kid=keys.key_id(key),
    )  # fmt: skip
    return slug


def test_the_provider_sets_a_budget_on_the_ledger_and_never_below_what_is_spent(demo) -> None:  # type: ignore[no-untyped-def]
    acme = _acme()
    api = api_for("acme")
    r = api.put(f"/api/datasets/{acme.id}/privacy-budget/", {"epsilon_budget": 2.5}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["epsilon_budget"], body["epsilon_spent"], body["epsilon_left"]) == ("2.500", "0.000", "2.500")
    (entry,) = LedgerEntry.objects.filter(kind="dataset_budget_set")
    assert entry.payload == {"dataset": acme.id, "provider": acme.organization_id, "epsilon_budget": "2.500",
                             "epsilon_spent": "0.000"}  # fmt: skip
    for bad, field in [(-1, "epsilon_budget"), ("lots", "epsilon_budget"), (5000, "epsilon_budget")]:
        r = api.put(f"/api/datasets/{acme.id}/privacy-budget/", {"epsilon_budget": bad}, format="json")
        assert r.status_code == 400 and field in r.json()["error"]["fields"], r.content
    Dataset.objects.filter(id=acme.id).update(epsilon_spent=Decimal("2"))
    with pytest.raises(Invalid) as err:
        budget.dataset_budget_set(provider=acme.organization, dataset_id=acme.id, epsilon_budget="1.5")
    assert "already spent" in err.value.fields["epsilon_budget"][0]
    with pytest.raises(Forbidden):
        budget.dataset_budget_set(provider=Organization.objects.get(slug="taxco"), dataset_id=acme.id, epsilon_budget=9)
    assert api_for("bank").get(f"/api/datasets/{acme.id}/privacy-budget/").status_code == 403
    assert api_for("taxco").get(f"/api/datasets/{acme.id}/privacy-budget/").status_code == 403
    r = api.put(f"/api/datasets/{acme.id}/privacy-budget/", {"epsilon_budget": None}, format="json")
    assert r.status_code == 200 and r.json()["epsilon_budget"] is None and r.json()["epsilon_left"] is None
    assert LedgerEntry.objects.filter(kind="dataset_budget_set").count() == 2
    assert Dataset.objects.get(id=acme.id).epsilon_budget is None


def test_releases_spend_the_dataset_and_the_right_at_once_and_stop_when_the_dataset_is_spent(demo) -> None:  # type: ignore[no-untyped-def]
    acme = _acme()
    budget.dataset_budget_set(provider=acme.organization, dataset_id=acme.id, epsilon_budget="1.0")
    right = _buy(_dp_offer())
    bank = api_for("bank")
    first = post_job(bank, "stats", DP, [right], "b1").json()
    job = federation.run(Job.objects.get(id=first["id"]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    writer.integrate_all()
    (charge,) = LedgerEntry.objects.filter(kind="dp_charge")
    assert (charge.dataset_id, charge.right_id, charge.payload["epsilon"]) == (acme.id, right, "0.5")
    assert UsageRight.objects.get(id=right).epsilon_spent == Decimal("0.5")
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("0.5")

    # A job that fails before releasing gives back what it reserved, on both.
    failing = post_job(bank, "stats", DP, [right], "b2").json()
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("1.0")
    assert bank.post(f"/api/jobs/{failing['id']}/cancel/").status_code == 200
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("0.5")
    assert UsageRight.objects.get(id=right).epsilon_spent == Decimal("0.5")

    second = post_job(bank, "stats", DP, [right], "b3")
    assert second.status_code == 201
    third = post_job(bank, "stats", DP, [right], "b4")  # the right has ε 99 left; the dataset has none
    assert third.status_code == 409, third.content
    error = third.json()["error"]
    assert error["code"] == "privacy_budget_spent"
    assert "lifetime privacy budget" in error["fields"]["dp_epsilon"][0]
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("1.0")
    assert UsageRight.objects.get(id=right).epsilon_spent == Decimal("1.0")  # the refused job reserved nothing


def test_an_offer_that_demands_dp_refuses_jobs_without_it(demo) -> None:  # type: ignore[no-untyped-def]
    r = api_for("acme").post(
        "/api/offers/",
        {"dataset": _acme().id, "title": "no eps", "operations": ["stats"], "amount_minor": 1, "currency": "EUR",
         "quota_jobs": 1, "duration_days": 1, "dp_required": True},
        format="json",
    )  # fmt: skip
    assert r.status_code == 400 and "epsilon" in r.json()["error"]["fields"]
    offer = _dp_offer(dp_required=True)
    assert Offer.objects.get(id=offer).dp_required
    right = _buy(offer)
    assert UsageRight.objects.get(id=right).dp_required
    bank = api_for("bank")
    plain = post_job(bank, "stats", {"column": "tenure_months"}, [right], "p1")
    assert plain.status_code == 400, plain.content
    assert "requires differential privacy" in plain.json()["error"]["fields"]["dp_epsilon"][0]
    assert post_job(bank, "stats", DP, [right], "p2").status_code == 201
    assert UsageRight.objects.get(id=right).quota_reserved == 1  # the refused one reserved nothing


def test_a_hundred_concurrent_dp_jobs_from_several_consumers_never_overspend(tdemo) -> None:  # type: ignore[no-untyped-def]
    from tests.test_concurrency import _threads

    acme = _acme()
    offer = _dp_offer()
    buyers = ["bank", *(_consumer(f"bank{i}") for i in range(3))]
    rights = {b: _buy(offer, b) for b in buyers}
    Dataset.objects.filter(id=acme.id).update(epsilon_spent=Decimal("7.5"), epsilon_budget=Decimal("10"))  # 5 left

    def submit(i: int) -> int:
        who = buyers[i % len(buyers)]
        return post_job(api_for(who), "stats", DP, [rights[who]], f"race-{i}").status_code

    codes = _threads(100, submit, workers=40)
    assert codes.count(201) == 5 and codes.count(409) == 95, codes
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("10")
    assert sum(UsageRight.objects.get(id=r).epsilon_spent for r in rights.values()) == Decimal("2.5")
    assert Job.objects.filter(params__dp_epsilon=0.5).count() == 5


def test_the_offline_verifier_holds_each_dataset_to_its_budget(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ledger import services
    from tests.ledger.test_verify import export, failures

    acme = _acme()
    budget.dataset_budget_set(provider=acme.organization, dataset_id=acme.id, epsilon_budget="1.0")
    right = _buy(_dp_offer())
    job = federation.run(Job.objects.get(id=post_job(api_for("bank"), "stats", DP, [right], "v1").json()["id"]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    writer.integrate_all()
    services.checkpoint_create()
    assert failures(export()) == []
    # A hub that charges past the budget (it signs what it likes): the verifier finds it.
    for i in range(2):
        services.entry_append(
            kind="dp_charge",
            event_id=f"dp_charge:forged-{i}",
            payload={"job": f"forged-{i}", "right": right, "dataset": acme.id, "epsilon": "0.4", "algorithm": "stats"},
            dataset_id=acme.id,
            right_id=right,
        )
    services.checkpoint_create()
    found = failures(export())
    assert any("over its budget ε 1.000" in f for f in found), found
    assert sum("over its budget" in f for f in found) == 1  # 0.5 + 0.4 fits; the second 0.4 does not


def test_the_provider_page_shows_the_budget_and_sets_it(demo, client) -> None:  # type: ignore[no-untyped-def]
    acme = _acme()
    client.force_login(get_user_model().objects.get(username="acme"))
    page = client.get(f"/provider/datasets/{acme.id}/privacy/")
    assert page.status_code == 200 and b'id="chart-budget"' in page.content
    r = client.post(f"/provider/datasets/{acme.id}/privacy/", {"epsilon_budget": "-3"})
    assert r.status_code == 200 and b'id="budget-error"' in r.content
    r = client.post(f"/provider/datasets/{acme.id}/privacy/", {"epsilon_budget": "4"}, follow=True)
    assert b"\xce\xb5 = 4.000" in r.content and Dataset.objects.get(id=acme.id).epsilon_budget == Decimal("4")
    client.force_login(get_user_model().objects.get(username="bank"))
    assert client.get(f"/provider/datasets/{acme.id}/privacy/").status_code == 403
    with pytest.raises(Conflict):
        budget.datasets_reserve(dataset_ids=[acme.id], epsilon=4.5)


def test_the_migration_counts_what_was_spent_before_budgets_existed(demo) -> None:  # type: ignore[no-untyped-def]
    """Charges already on the ledger and ε reserved by open jobs are spent when budgets arrive."""
    import importlib

    from django.apps import apps

    acme = _acme()
    right = _buy(_dp_offer())
    job = federation.run(Job.objects.get(id=post_job(api_for("bank"), "stats", DP, [right], "m1").json()["id"]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    writer.integrate_all()
    post_job(api_for("bank"), "stats", {**DP, "dp_epsilon": 0.25}, [right], "m2")  # open, nothing released
    Dataset.objects.filter(id=acme.id).update(epsilon_spent=0)  # as before the migration
    importlib.import_module("marketplace.migrations.0005_privacy_budgets").spent_so_far(apps, None)
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("0.75")
    assert Dataset.objects.get(node__slug="taxco").epsilon_spent == 0
