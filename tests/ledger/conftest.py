"""Ledger fixtures: a demo world with a bought right and node-signed usage entries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from ledger import services
from ledger.models import LedgerEntry
from marketplace.models import Node, Offer, UsageRight
from protocol import envelope, keys
from tests import federation
from tests.conftest import api_for


def _acme_rows() -> str:
    from compute import demo_data

    return f'"rows":{len(demo_data.generate()["acme"])}'


ACME_ROWS = _acme_rows()  # how the first ``rows`` field of an honest acme usage body reads


def node_key(slug: str):  # type: ignore[no-untyped-def]
    return keys.load_or_create_private_key(Path(settings.USUFRUCT_NODES_DIR) / slug / "node_ed25519.pem")


def buy(consumer: str = "bank", node: str = "acme", key: str | None = None) -> UsageRight:
    offer = Offer.objects.get(dataset__node__slug=node)
    r = api_for(consumer).post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "credit risk", "accept_terms": True, "again": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )
    assert r.status_code == 201, r.content
    return UsageRight.objects.get(order_id=r.json()["id"])


def use(right: UsageRight) -> LedgerEntry:
    """The usage entry of one delivered job on ``right``, metered by compute's real path."""
    return federation.use(right)


def forge_usage(
    right: UsageRight,
    *,
    job: str | None = None,
    step: str = "partial",
    operation: str = "stats",
    at: datetime | None = None,
    overrides: dict[str, Any] | None = None,
) -> LedgerEntry:
    """A usage entry written by hand, as a dishonest hub (or a hub that skipped its checks)
    would: the node's key signs whatever receipt the test wants. For the verifier's
    negative cases only; honest fixtures come from :func:`use`."""
    node = Node.objects.get(datasets=right.dataset)
    job = job or str(uuid.uuid4())
    receipt = {
        "type": "usage_receipt",
        "job": job,
        "step": step,
        "round": 0,
        "node": node.slug,
        "dataset": right.dataset_id,
        "right": right.id,
        "consumer": right.consumer.slug,
        "consumer_kid": Node.objects.get(slug="bank").kid,
        "operation": operation,
        "rows": 120,
        "records": 120,
        "request": uuid.uuid4().hex,
        "at": envelope.format_time(at or datetime.now(UTC)),
    }
    wire = envelope.sign_payload(receipt, key=node_key(node.slug), kid=node.kid)
    payload = {
        "job": job,
        "step": step,
        "dataset": right.dataset_id,
        "right": right.id,
        "order": right.order_id,
        "consumer": right.consumer_id,
        "provider": right.dataset.organization_id,
        "operation": operation,
        "rows": 120,
        "records": 120,
        "round": 0,
        "passes": 1,
        "receipt": wire,
        **(overrides or {}),
    }
    return services.entry_append(
        kind="usage",
        event_id=f"usage:{uuid.uuid4().hex}",
        payload=payload,
        producer_time=envelope.parse_time(receipt["at"]),
        dataset_id=right.dataset_id,
        consumer_id=right.consumer_id,
        provider_id=right.dataset.organization_id,
        right_id=right.id,
    )


def receipt_attestation(node: str, batch: services.ReceiptBatch, **changes: Any) -> dict[str, Any]:
    """What the node signs for ``batch`` (as compute.node.runtime.attest_receipts does), optionally altered first."""
    from protocol import attest

    statement = attest.statement(
        log=settings.USUFRUCT_LOG_ORIGIN,
        node=node,
        first_seq=batch.first_seq,
        last_seq=batch.last_seq,
        digests=batch.digests,
    )
    return envelope.sign_payload({**statement, **changes}, key=node_key(node), kid=Node.objects.get(slug=node).kid)


def attest_as_node(node: str) -> LedgerEntry:
    """The node attests all its receipts not yet in a batch; the hub records the batch."""
    org = Node.objects.get(slug=node).organization_id
    batch = services.receipt_batch_pending(node_slug=node, organization_id=org)
    assert batch is not None, f"node {node} has no receipt to attest"
    return services.receipt_batch_record(
        node_slug=node, organization_id=org, attestation=receipt_attestation(node, batch)
    )


@pytest.fixture
def world(demo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Demo + bank buys from acme and taxco; four usage entries; checkpoints at two sizes."""
    acme = buy(node="acme")
    first = services.checkpoint_create()
    taxco = buy(node="taxco")
    usages = [use(acme), use(acme), use(taxco), use(acme)]
    second = services.checkpoint_create()
    return {"acme": acme, "taxco": taxco, "usages": usages, "checkpoints": [first, second]}


def edit_entry(lines: list[str], seq: int, fn) -> list[str]:  # type: ignore[no-untyped-def]
    """A bundle's lines with ``fn`` applied to the (parsed) line of entry ``seq``."""
    out = []
    for line in lines:
        item = json.loads(line)
        if item.get("seq") == seq:
            fn(item)
        out.append(json.dumps(item) + "\n")
    return out


def later(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


WITNESS_NAME = "dpa.example/witness"


def dpa_id() -> int:
    from marketplace.models import Organization

    return Organization.objects.get(slug="dpa").id


def register_witness(directory, name: str = WITNESS_NAME):  # type: ignore[no-untyped-def]
    """The regulator makes its witness key (as `python -m audit.witness keygen` does) and registers it."""
    from audit.witness import keygen, load_key

    path = directory / f"{name.replace('/', '_')}.pem"
    vkey = keygen(path, name)
    r = api_for("regulator").post("/api/ledger/witnesses/", {"vkey": vkey}, format="json")
    assert r.status_code == 201, r.content
    return name, load_key(path)
