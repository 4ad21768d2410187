"""The free overlap preview, end to end with real workers: PSI on the nodes, a noised
estimate to the consumer, a free use on the ledger, rate-limited, and refused by a node
whose policy does not offer previews."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from compute.models import Job, Message
from ledger.models import LedgerEntry
from marketplace.models import Dataset
from tests.conftest import api_for, ledger_idle, wait_for
from tests.federation import body_of

pytestmark = pytest.mark.e2e


def _ids(slug: str, column: str) -> set[str]:
    path = next((Path(settings.USUFRUCT_NODES_DIR) / slug / "data").glob("*.csv"))
    with path.open() as fh:
        return {r[column] for r in csv.DictReader(fh)}


def _preview(api, target: Dataset, own: Dataset, key: str):  # type: ignore[no-untyped-def]
    return api.post(
        f"/api/datasets/{target.id}/overlap-preview/",
        {"consumer_dataset": own.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def _done(api, job_id: str) -> dict:  # type: ignore[type-arg]
    body = wait_for(
        lambda: (b := api.get(f"/api/jobs/{job_id}/").json())["status"] in ("succeeded", "failed") and b, timeout=90
    )
    ledger_idle()
    return body


def test_preview_estimates_the_overlap_without_releasing_it_and_is_free(workers) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    acme, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    r = _preview(bank, acme, own, "p1")
    assert r.status_code == 201, r.content
    body = _done(bank, r.json()["id"])
    assert body["status"] == "succeeded", body["error"]
    true_overlap = len(_ids("bank", "applicant_id") & _ids("acme", "customer_id"))
    out = body["outputs"]
    assert out["consumer_ids"] == 2000 and out["overlap_bucket"] == "1,000–9,999"
    assert abs(out["overlap_estimate"] - true_overlap) < 40  # discrete Laplace, ε = 1: |noise| < 40 w.p. 1 - 1e-17
    # Exactly the noised release, nothing more: no exact count under any name.
    assert set(out) == {
        "consumer_ids", "overlap_estimate", "overlap_bucket", "overlap_fraction", "epsilon", "noise",
    }  # fmt: skip
    job = Job.objects.get(id=body["id"])
    assert job.state == {"phase": "done"}
    # No ID crossed the hub in the clear.
    blob = json.dumps([m.envelope for m in Message.objects.filter(job=job)])
    assert "A000123" not in blob
    usage = LedgerEntry.objects.get(kind="usage", payload__job=body["id"])
    assert usage.payload["free"] is True and usage.right_id is None
    assert bank.get("/api/billing/bill/").json()["lines"] == []
    # Free, but not free of privacy: the release is charged to the dataset's lifetime budget.
    assert Dataset.objects.get(id=acme.id).epsilon_spent == Decimal(str(out["epsilon"]))
    wait_for(lambda: LedgerEntry.objects.filter(kind="dp_charge", payload__job=body["id"]).exists(), timeout=30)
    charge = LedgerEntry.objects.get(kind="dp_charge", payload__job=body["id"])
    assert (charge.dataset_id, charge.right_id, charge.payload["epsilon"]) == (acme.id, None, str(out["epsilon"]))


def test_previews_are_rate_limited_and_idempotent(workers) -> None:  # type: ignore[no-untyped-def]
    bank = api_for("bank")
    taxco, own = Dataset.objects.get(node__slug="taxco"), Dataset.objects.get(node__slug="bank")
    first = _preview(bank, taxco, own, "a")
    assert _preview(bank, taxco, own, "a").json()["id"] == first.json()["id"]
    assert _preview(bank, taxco, own, "b").status_code == 201
    assert _preview(bank, taxco, own, "c").status_code == 201
    r = _preview(bank, taxco, own, "d")
    assert r.status_code == 429 and r.json()["error"]["code"] == "throttled"


def _node(tmp_path: Path, policy: dict) -> tuple:  # type: ignore[type-arg]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from compute.node.config import NodeConfig
    from protocol import keys

    hub = Ed25519PrivateKey.generate()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ids.csv").write_text("id\n" + "".join(f"X{i}\n" for i in range(50)))
    (tmp_path / "hub.pub").write_text(keys.public_b64(hub))
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    return NodeConfig(slug="n1", directory=tmp_path, broker_url="memory://", broker_dir=None), hub


def _step(hub, step: str, args: dict, grant: dict | None, node) -> dict:  # type: ignore[type-arg,no-untyped-def]
    from protocol import envelope, keys

    return envelope.seal(
        job="j",
        step=step,
        round=0,
        sender="hub",
        recipient="n1",
        key=hub,
        kid=keys.key_id(hub),
        body={"algorithm": "psi", "party": "provider:1", "args": args, "grant": grant},
        to=node.private_key.public_key(),
    )


def test_a_node_refuses_previews_unless_its_policy_offers_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from compute.node.runtime import handle_step

    config, hub = _node(tmp_path, {"operations": ["psi"], "min_group_size": 5})
    grant = {
        "right": None,
        "preview": True,
        "node": "n1",
        "dataset": 1,
        "dataset_local": "ids",
        "consumer": "c",
        "operations": ["psi"],
        "expires_at": "2999-01-01T00:00:00+00:00",
        "min_group_size": 5,
    }
    (reply,) = handle_step(
        config, _step(hub, "psi_exchange", {"dataset": "ids", "id_column": "id", "elements": []}, grant, config)
    )
    body = body_of(reply, hub)
    assert (body["status"], body["code"]) == ("refused", "not_permitted")


def test_consumer_side_steps_may_not_read_a_dataset_the_node_sells(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from compute.node.runtime import handle_step

    config, hub = _node(tmp_path, {"operations": ["psi"], "min_group_size": 5, "consumer_datasets": []})
    (reply,) = handle_step(config, _step(hub, "psi_blind", {"dataset": "ids", "id_column": "id"}, None, config))
    body = body_of(reply, hub)
    assert body["code"] == "policy" and "not open to this node's own jobs" in body["reason"]
