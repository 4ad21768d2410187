"""The value preview through the API: on the hub with the real node code carried in process
(tampering consumers refused, nothing charged), and end to end with real worker processes
(IV and AUC per feature, a free use on the ledger, ε from the dataset's budget)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from compute.models import Job, Message
from ledger import writer
from ledger.models import LedgerEntry
from marketplace.models import Dataset
from protocol import he
from tests import federation
from tests.conftest import api_for, ledger_idle, wait_for


def _ask(api: Any, target: Dataset, own: Dataset, key: str | None = None) -> Any:
    return api.post(
        f"/api/datasets/{target.id}/value-preview/",
        {"consumer_dataset": own.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


@pytest.fixture(autouse=True)
def _short_keys(settings) -> None:  # type: ignore[no-untyped-def]
    """1024-bit preview keys: the same protocol and checks, a quarter of the proving time."""
    settings.USUFRUCT_PREVIEW_KEY_BITS = 1024


@pytest.mark.django_db
def test_a_consumer_that_marks_a_label_is_refused_and_nothing_is_released(demo) -> None:  # type: ignore[no-untyped-def]
    acme, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    r = _ask(api_for("bank"), acme, own)
    assert r.status_code == 201, r.content
    job = Job.objects.get(id=r.json()["id"])

    def mark(result: dict[str, Any]) -> dict[str, Any]:  # the bank's node, rewritten: 2^20 for one row
        public = he.PublicKey.from_json(result["public_key"])
        labels = public.unpack(result["labels"], 100_000)
        labels[0] = public.encrypt([1 << 20])[0]
        return {**result, "labels": public.pack(labels)}

    job = federation.run(job, tamper=federation.rewrite_result(mark, "vp_encrypt"))
    assert job.status == Job.Status.FAILED and "not proved to be bits" in job.error
    assert Message.objects.filter(job=job, direction="in", step="vp_encrypt").exists()  # kept as evidence
    # Nothing went to the provider, and the ε reserved for the preview went back to the dataset.
    assert not Message.objects.filter(job=job, direction="out", step="vp_exchange").exists()
    writer.integrate_all()
    assert Dataset.objects.get(id=acme.id).epsilon_spent == 0
    assert not LedgerEntry.objects.filter(kind="dp_charge", payload__job=str(job.id)).exists()


@pytest.mark.django_db
def test_the_preview_needs_a_labelled_dataset_and_shares_the_preview_limits(demo) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    acme, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    own.columns = [c for c in own.columns if c["role"] != "label"]
    own.save()
    r = _ask(bank, acme, own)
    assert r.status_code == 400 and "label" in r.json()["error"]["fields"]["consumer_dataset"][0], r.content
    provider = api_for("acme").post(f"/api/datasets/{acme.id}/value-preview/", {"consumer_dataset": own.id})
    assert provider.status_code == 403
    # A dataset id no dataset can have is not found (not a 400 about hashing the request).
    assert _ask(bank, acme, own).status_code == 400  # still the label
    huge = bank.post(
        f"/api/datasets/{2**60}/value-preview/", {"consumer_dataset": own.id}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert huge.status_code == 404, huge.content


@pytest.mark.e2e
def test_value_preview_end_to_end_with_real_workers(workers) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    acme, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    r = _ask(bank, acme, own, "vp-1")
    assert r.status_code == 201, r.content
    assert _ask(bank, acme, own, "vp-1").json()["id"] == r.json()["id"]  # a retry is the same preview
    body = wait_for(
        lambda: (b := bank.get(f"/api/jobs/{r.json()['id']}/").json())["status"] in ("succeeded", "failed") and b,
        timeout=240,
    )
    assert body["status"] == "succeeded", body["error"]
    ledger_idle()
    out = body["outputs"]
    ranked = [f["name"] for f in out["features"]]
    assert set(ranked) == {"orders_12m", "avg_basket_eur", "late_payment_rate", "returns_rate", "tenure_months"}
    assert ranked[0] == "late_payment_rate" and out["features"][0]["iv"] > 0.3  # the demo's strongest signal
    assert abs(out["overlap_estimate"] - 1600) < 60 and out["consumer_ids"] == 2000 and out["estimate"] is True
    job = Job.objects.get(id=body["id"])
    assert job.params["key_bits"] == 1024 and job.state == {
        "phase": "done"
    }  # no tags, no mapping, no exact overlap kept
    blob = json.dumps([m.envelope for m in Message.objects.filter(job=job)])
    assert "A000123" not in blob
    # A free use on the ledger, by the provider's node, and ε from the dataset's shared budget.
    usage = LedgerEntry.objects.filter(kind="usage", payload__job=body["id"])
    assert usage.exists() and all(u.payload["free"] is True and u.right_id is None for u in usage)
    assert {u.payload["operation"] for u in usage} == {"value_preview"}
    assert bank.get("/api/billing/bill/").json()["lines"] == []
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal("1.000")
    charge = LedgerEntry.objects.get(kind="dp_charge", payload__job=body["id"])
    assert (charge.dataset_id, charge.right_id) == (acme.id, None)
