"""Receipt batches: a node vouches for many receipts with one signature (docs/decisions/0008).

The node attests only receipts it issued; the hub records a batch only if it covers
exactly the node's usage entries in its range; the offline verifier checks one node
signature per batch and recomputes its digest from the entries, and still checks one
by one every receipt no batch covers.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from compute import services as compute
from compute.node import runtime
from compute.node.config import NodeConfig
from compute.protocol import attest, envelope, keys
from ledger import _examine, bundle, services
from ledger import verify as verifier
from ledger.exceptions import LedgerConflict
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import LedgerEntry
from ledger.verify import verify_lines
from marketplace.models import Node

from .conftest import attest_as_node, node_key, receipt_attestation, use

pytestmark = pytest.mark.django_db


def pending(node: str) -> services.ReceiptBatch | None:
    return services.receipt_batch_pending(node_slug=node, organization_id=Node.objects.get(slug=node).organization_id)


def record(node: str, wire: dict[str, Any]) -> LedgerEntry:
    org = Node.objects.get(slug=node).organization_id
    return services.receipt_batch_record(node_slug=node, organization_id=org, attestation=wire)


def export() -> list[str]:
    services.checkpoint_create()
    return list(bundle.bundle_lines())


def check(lines: list[str], **options: Any) -> verifier.Report:
    return verify_lines(lines, log_keys=[services.log_vkey()], **options)


def _header(lines: list[str], fn) -> list[str]:  # type: ignore[no-untyped-def]
    header = json.loads(lines[0])
    fn(header)
    return [json.dumps(header) + "\n", *lines[1:]]


# --- the node ----------------------------------------------------------------------------------


def _node(tmp_path: Path) -> NodeConfig:
    directory = tmp_path / "n1"
    directory.mkdir()
    hub_pub = hub_private_key().public_key()
    (directory / "hub.pub").write_text(keys.public_b64(hub_pub))
    return NodeConfig(slug="n1", directory=directory, broker_url="memory://", broker_dir=None)


def _receipt(config: NodeConfig, n: int) -> dict[str, Any]:
    payload = {"job": f"job-{n}", "step": "partial", "round": 0, "nonce": f"nonce-{n}"}
    grant = {"dataset": 7, "right": 3, "consumer": 2}
    return runtime.sign_receipt(config, payload, grant, "stats", 100 + n)


def _ask(config: NodeConfig, body: dict[str, Any]) -> dict[str, Any]:
    wire = envelope.seal(
        job="",
        step="attest",
        round=0,
        sender="hub",
        recipient=config.slug,
        body=body,
        key=hub_private_key(),
        kid=hub_kid(),
        ttl=timedelta(minutes=5),
    )
    [reply] = runtime.handle_step(config, wire)
    opened = envelope.verify_signed(reply, lambda kid: config.private_key.public_key() if kid == config.kid else None)
    assert opened.payload["step"] == "attest" and opened.payload["recipient"] == "hub"
    return opened.payload["body"]


def test_a_node_attests_the_receipts_it_issued_and_refuses_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = _node(tmp_path)
    receipts = [_receipt(config, n) for n in range(3)]
    digests = [attest.receipt_digest(r) for r in receipts]
    body = {"log": "usufruct.local/ledger", "first_seq": 10, "last_seq": 40, "receipts": digests}
    answer = _ask(config, body)
    assert answer["status"] == "ok"
    signed = envelope.verify_signed(answer["attestation"], lambda kid: config.private_key.public_key())
    assert signed.payload == {
        "type": "usufruct/receipt-batch/v1",
        "log": "usufruct.local/ledger",
        "node": "n1",
        "first_seq": 10,
        "last_seq": 40,
        "count": 3,
        "digest": attest.batch_digest(digests),
    }
    # A receipt it never signed, even one differing only in its signature bytes: refused, named.
    forged = dict(receipts[1], sig=receipts[0]["sig"])
    answer = _ask(config, {**body, "receipts": [digests[0], attest.receipt_digest(forged)]})
    assert answer["status"] == "refused" and answer["code"] == "unknown_receipts"
    assert answer["unknown"] == [attest.receipt_digest(forged)]
    for bad in ({**body, "receipts": []}, {**body, "receipts": ["zz"]}, {**body, "first_seq": 50}, {"log": "x"}):
        answer = _ask(config, bad)
        assert (answer["status"], answer["code"]) == ("refused", "malformed")


def test_node_and_verifier_compute_the_same_digests() -> None:
    # Plain values, and ones that take the exact RFC 8785 path (long integer, float, astral key).
    for payload in ({"job": "x", "rows": 2}, {"é": 1, "rows": 2**53 - 1, "x": 0.1, "\U0001d11e": "y"}):
        receipt = {"payload": payload, "kid": "abc", "sig": "c2ln"}
        assert attest.receipt_digest(receipt) == _examine.receipt_digest(receipt)
    assert verifier.STATEMENT_TYPE == attest.STATEMENT_TYPE


# --- the hub -----------------------------------------------------------------------------------


def test_the_hub_records_a_batch_that_covers_exactly_the_nodes_receipts(world) -> None:  # type: ignore[no-untyped-def]
    acme_seqs = [u.seq for u in world["usages"] if u.payload["receipt"]["payload"]["node"] == "acme"]
    batch = pending("acme")
    assert batch is not None and (batch.first_seq, batch.last_seq) == (0, acme_seqs[-1])
    assert len(batch.digests) == len(acme_seqs) == 3
    entry = record("acme", receipt_attestation("acme", batch))
    assert entry.kind == "receipt_batch" and entry.payload["count"] == 3
    assert record("acme", receipt_attestation("acme", batch)).seq == entry.seq  # a redelivery: the same entry
    assert pending("acme") is None
    later = use(world["acme"])
    nxt = pending("acme")
    assert nxt is not None and (nxt.first_seq, nxt.last_seq, len(nxt.digests)) == (acme_seqs[-1] + 1, later.seq, 1)


def test_the_hub_refuses_a_batch_that_skips_overlaps_or_misstates_receipts(world) -> None:  # type: ignore[no-untyped-def]
    batch = pending("acme")
    assert batch is not None
    fewer = services.ReceiptBatch("acme", batch.first_seq, batch.last_seq, batch.digests[:-1])
    with pytest.raises(LedgerConflict, match="does not match"):
        record("acme", receipt_attestation("acme", fewer))
    gap = services.ReceiptBatch("acme", 1, batch.last_seq, batch.digests)
    with pytest.raises(LedgerConflict, match="starts at #0, not #1"):
        record("acme", receipt_attestation("acme", gap))
    with pytest.raises(LedgerConflict, match="for node 'acme', not 'taxco'"):
        record("taxco", receipt_attestation("acme", batch))
    with pytest.raises(LedgerConflict, match="not a receipt batch statement"):
        record("acme", receipt_attestation("acme", batch, log="elsewhere"))
    assert not LedgerEntry.objects.filter(kind="receipt_batch").exists()
    record("acme", receipt_attestation("acme", batch))
    with pytest.raises(LedgerConflict, match="next batch starts at"):  # overlapping the recorded one
        record("acme", receipt_attestation("acme", services.ReceiptBatch("acme", 0, batch.last_seq + 1, batch.digests)))


def test_the_hub_checks_the_nodes_signature_on_an_receipt_attestation(world) -> None:  # type: ignore[no-untyped-def]
    batch = pending("acme")
    assert batch is not None
    wire = receipt_attestation("acme", batch)
    acme = Node.objects.get(slug="acme")

    def reply(body: dict[str, Any], key: Any = None) -> dict[str, Any]:
        return envelope.seal(
            job="",
            step="attest",
            round=0,
            sender="acme",
            recipient="hub",
            body=body,
            key=key or node_key("acme"),
            kid=acme.kid,
        )

    assert compute.message_receive(wire=reply({"status": "refused", "code": "unknown_receipts"})) == (
        "attestation refused"
    )
    forged = dict(wire, payload={**wire["payload"], "count": 2})
    with pytest.raises(envelope.EnvelopeError, match="does not verify"):
        compute.message_receive(wire=reply({"status": "ok", "attestation": forged}))
    taxco = receipt_attestation("taxco", batch)  # signed by another node's key
    with pytest.raises(envelope.EnvelopeError, match="unknown key id"):
        compute.message_receive(wire=reply({"status": "ok", "attestation": taxco}))
    assert not LedgerEntry.objects.filter(kind="receipt_batch").exists()
    outcome = compute.message_receive(wire=reply({"status": "ok", "attestation": wire}))
    assert outcome.startswith(f"attested #0..#{batch.last_seq}")


# --- the offline verifier ----------------------------------------------------------------------


def test_batched_receipts_are_verified_by_one_node_signature(world) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import api_for

    first = world["usages"][0]
    assert api_for("regulator").get(f"/api/ledger/entries/{first.seq}/").json()["attested_by"] is None
    batch = attest_as_node("acme")
    assert api_for("regulator").get(f"/api/ledger/entries/{first.seq}/").json()["attested_by"] == {
        "seq": batch.seq,
        "node": "acme",
        "first_seq": 0,
        "last_seq": world["usages"][3].seq,
        "count": 3,
        "kid": Node.objects.get(slug="acme").kid,
    }
    taxco = world["usages"][2]  # inside acme's range, but taxco's receipt: not covered
    assert api_for("regulator").get(f"/api/ledger/entries/{taxco.seq}/").json()["attested_by"] is None
    use(world["acme"])  # after the batch: its own signature is checked
    lines = export()
    report = check(lines)
    assert report.ok, report.failures
    assert (report.batches, report.receipts_batched, report.receipts_one_by_one) == (1, 3, 2)
    assert "3 vouched for by 1 node-signed receipt batch(es)" in report.render()
    full = check(lines, every_signature=True)
    assert full.ok and (full.receipts_batched, full.receipts_one_by_one) == (3, 5)
    # A partial bundle lacks the batch's other receipts: every receipt is checked on its own.
    partial = check(list(bundle.bundle_lines(dataset_id=world["acme"].dataset_id)))
    assert partial.ok and (partial.batches, partial.receipts_one_by_one) == (0, 4)


def test_a_batch_that_does_not_match_its_entries_fails(world) -> None:  # type: ignore[no-untyped-def]
    entry = attest_as_node("acme")
    lines = export()
    usage = world["usages"][1]
    # The node signed a different statement: its signature fails, nothing is spared a check.
    bad_sig = _header(lines, lambda h: h["receipt_batches"][0]["attestation"]["payload"].update(count=9))
    assert any("node signature does not verify" in f for f in check(bad_sig).failures)
    # An entry removed from the range: the digest no longer matches (and the tree fails too).
    dropped = [line for line in lines if json.loads(line).get("seq") != usage.seq]
    found = check(dropped).failures
    assert any("the node attested 3 receipts, the log holds 2" in f for f in found), found
    # A batch the log does not hold (header only), or claimed by another node's key.
    moved = _header(lines, lambda h: h["receipt_batches"][0].update(seq=entry.seq + 1))
    assert any("is not the receipt_batch entry" in f for f in check(moved).failures)

    def to_taxco(h: dict[str, Any]) -> None:
        h["receipt_batches"][0]["attestation"]["kid"] = Node.objects.get(slug="taxco").kid

    assert any("is not a key of node 'acme'" in f for f in check(_header(lines, to_taxco)).failures)


def test_a_forged_receipt_outside_any_batch_is_still_caught(world) -> None:  # type: ignore[no-untyped-def]
    attest_as_node("acme")
    receipt = dict(world["usages"][0].payload["receipt"])
    receipt["payload"] = {**receipt["payload"], "rows": 1, "job": "never-ran"}  # the node never signed this
    use(world["acme"], job="never-ran", overrides={"receipt": receipt, "rows": 1})
    found = check(export()).failures
    assert any("node receipt: signature does not verify" in f for f in found), found
    # The node would not attest it either: the hub cannot move it into a batch.
    batch = pending("acme")
    assert batch is not None and len(batch.digests) == 1
    with pytest.raises(LedgerConflict):
        record("acme", receipt_attestation("acme", batch, digest=attest.batch_digest([])))
