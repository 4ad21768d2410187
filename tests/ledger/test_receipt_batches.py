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

from audit import _examine
from audit import verify as verifier
from audit.verify import verify_lines
from compute import services as compute
from compute.node import runtime
from compute.node.config import NodeConfig
from ledger import bundle, services
from ledger.exceptions import LedgerConflict
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import LedgerEntry, RefusedReceipt
from marketplace.models import Node
from protocol import attest, envelope, keys

from .conftest import ACME_ROWS, attest_as_node, edit_entry, forge_usage, node_key, receipt_attestation, use

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
        to=config.private_key.public_key(),
    )
    [reply] = runtime.handle_step(config, wire)
    opened = envelope.open_envelope(
        reply,
        resolve_key=lambda kid: config.private_key.public_key() if kid == config.kid else None,
        recipient="hub",
        unseal=hub_private_key(),
    )
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
    assert (answer["unknown"], answer["first_seq"], answer["last_seq"]) == ([attest.receipt_digest(forged)], 10, 40)
    malformed = (
        {**body, "receipts": []},
        {**body, "receipts": ["zz"]},
        {**body, "receipts": [1]},
        {**body, "receipts": [digests[0], digests[0]]},  # one receipt counted twice
        {**body, "first_seq": 50},
        {**body, "first_seq": 39},  # three receipts cannot sit in two entries
        {**body, "first_seq": "10"},
        {"log": "x"},
    )
    for bad in malformed:
        answer = _ask(config, bad)
        assert (answer["status"], answer["code"]) == ("refused", "malformed"), bad
    # Receipts signed after the node first read its log are known too (it reads on incrementally).
    newer = _receipt(config, 9)
    answer = _ask(config, {**body, "receipts": [*digests, attest.receipt_digest(newer)]})
    assert answer["status"] == "ok"
    # A receipt log replaced by another file (a restored backup, longer than what was read):
    # read again from its start, so receipts missing from it are no longer vouched for.
    log = config.state_dir / "receipts.log"
    replacement = log.with_suffix(".new")
    replacement.write_text(attest.receipt_digest(newer) + "\n" + "0" * 64 + "\n" * 400)
    replacement.replace(log)
    answer = _ask(config, {**body, "receipts": digests[:1]})
    assert (answer["status"], answer["unknown"]) == ("refused", digests[:1])
    assert _ask(config, {**body, "receipts": [attest.receipt_digest(newer)]})["status"] == "ok"


def test_node_and_verifier_compute_the_same_digests() -> None:
    # Plain values, and ones that take the exact RFC 8785 path (long integer, float, astral key).
    for payload in ({"job": "x", "rows": 2}, {"é": 1, "rows": 2**53 - 1, "x": 0.1, "\U0001d11e": "y"}):
        receipt = {"payload": payload, "kid": "abc", "sig": "c2ln"}
        assert attest.receipt_digest(receipt) == _examine.receipt_digest(receipt)
    assert verifier.STATEMENT_TYPE == attest.STATEMENT_TYPE


# --- the hub -----------------------------------------------------------------------------------


def acme_seqs(world: dict[str, Any]) -> list[int]:
    return [u.seq for u in world["usages"] if u.payload["receipt"]["payload"]["node"] == "acme"]


def test_the_hub_records_a_batch_that_covers_exactly_the_nodes_receipts(world) -> None:  # type: ignore[no-untyped-def]
    seqs = acme_seqs(world)
    batch = pending("acme")
    assert batch is not None and (batch.first_seq, batch.last_seq) == (seqs[0], seqs[-1])  # a tight range
    assert len(batch.digests) == len(seqs) == 3
    entry = record("acme", receipt_attestation("acme", batch))
    assert entry.kind == "receipt_batch" and entry.payload["count"] == 3
    assert record("acme", receipt_attestation("acme", batch)).seq == entry.seq  # a redelivery: the same entry
    assert pending("acme") is None
    later = use(world["acme"])
    nxt = pending("acme")
    assert nxt is not None and (nxt.first_seq, nxt.last_seq, len(nxt.digests)) == (later.seq, later.seq, 1)


def test_the_hub_refuses_a_batch_that_overlaps_or_misstates_receipts(world) -> None:  # type: ignore[no-untyped-def]
    seqs = acme_seqs(world)
    batch = pending("acme")
    assert batch is not None
    fewer = services.ReceiptBatch("acme", batch.seqs[:-1], batch.digests[:-1])  # claimed over the whole range
    with pytest.raises(LedgerConflict, match="does not match"):
        record("acme", receipt_attestation("acme", fewer, last_seq=batch.last_seq))
    loose = receipt_attestation("acme", batch, first_seq=seqs[0] - 1)  # not at an acme entry
    with pytest.raises(LedgerConflict, match="does not start and end at usage entries of node acme"):
        record("acme", loose)
    huge = receipt_attestation("acme", batch, last_seq=10**12)  # would swallow future receipts
    with pytest.raises(LedgerConflict, match="does not start and end"):
        record("acme", huge)
    for first, last in ((batch.first_seq, batch.first_seq - 1), ("1", batch.last_seq), (-1, batch.last_seq)):
        with pytest.raises(LedgerConflict, match="must be integers"):
            record("acme", receipt_attestation("acme", batch, first_seq=first, last_seq=last))
    with pytest.raises(LedgerConflict, match="for node 'acme', not 'taxco'"):
        record("taxco", receipt_attestation("acme", batch))
    with pytest.raises(LedgerConflict, match="not a receipt batch statement"):
        record("acme", receipt_attestation("acme", batch, log="elsewhere"))
    assert not LedgerEntry.objects.filter(kind="receipt_batch").exists()
    record("acme", receipt_attestation("acme", batch))
    again = services.ReceiptBatch("acme", seqs[1:], batch.digests[1:])  # inside the recorded one
    with pytest.raises(LedgerConflict, match="already in a batch"):
        record("acme", receipt_attestation("acme", again))


def test_a_refused_receipt_is_left_out_and_the_others_are_still_batched(world) -> None:  # type: ignore[no-untyped-def]
    seqs = acme_seqs(world)
    batch = pending("acme")
    assert batch is not None
    refused = services.receipt_refusal_record(
        node_slug="acme",
        organization_id=Node.objects.get(slug="acme").organization_id,
        unknown=[batch.digests[1], "f" * 64],  # one of them, and one that is no receipt of the batch
        reason="1 of 3 receipts were not signed by this node",
    )
    assert refused == [seqs[1]]
    assert list(RefusedReceipt.objects.values_list("seq", "node")) == [(seqs[1], "acme")]
    first = pending("acme")  # up to the refused one
    assert first is not None and (first.first_seq, first.last_seq, first.digests) == (
        seqs[0],
        seqs[0],
        batch.digests[:1],
    )
    record("acme", receipt_attestation("acme", first))
    rest = pending("acme")  # after it
    assert rest is not None and (rest.first_seq, rest.last_seq, rest.digests) == (seqs[2], seqs[2], batch.digests[2:])
    record("acme", receipt_attestation("acme", rest))
    # A refusal cannot reach back into recorded batches (nor another node's entries).
    taxco = world["usages"][2].payload["receipt"]
    unknown = [*batch.digests, attest.receipt_digest(taxco)]
    org = Node.objects.get(slug="acme").organization_id
    assert services.receipt_refusal_record(node_slug="acme", organization_id=org, unknown=unknown, reason="x") == []
    assert RefusedReceipt.objects.count() == 1
    report = check(export())  # the refused receipt is checked on its own; the two batches vouch for the rest
    assert report.ok, report.failures
    assert (report.batches, report.receipts_batched, report.receipts_one_by_one) == (2, 2, 2)


def test_the_hub_checks_the_nodes_signature_and_notes_its_refusals(world) -> None:  # type: ignore[no-untyped-def]
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
            to=hub_private_key().public_key(),
        )

    assert compute.message_receive(wire=reply({"status": "refused", "code": "node_error"})) == "attestation refused"
    unknown = {
        "status": "refused",
        "code": "unknown_receipts",
        "first_seq": batch.first_seq,
        "last_seq": batch.last_seq,
    }
    with pytest.raises(envelope.EnvelopeError, match="lists the unknown"):
        compute.message_receive(wire=reply({**unknown, "unknown": "all of them"}))
    outcome = compute.message_receive(wire=reply({**unknown, "unknown": batch.digests[:1]}))
    assert outcome == "attestation refused: 1 receipt(s) unknown to the node"
    assert RefusedReceipt.objects.get().seq == batch.first_seq
    batch = pending("acme")  # the others
    assert batch is not None
    wire = receipt_attestation("acme", batch)
    forged = dict(wire, payload={**wire["payload"], "count": 99})
    with pytest.raises(envelope.EnvelopeError, match="does not verify"):
        compute.message_receive(wire=reply({"status": "ok", "attestation": forged}))
    taxco = receipt_attestation("taxco", batch)  # signed by another node's key
    with pytest.raises(envelope.EnvelopeError, match="unknown key id"):
        compute.message_receive(wire=reply({"status": "ok", "attestation": taxco}))
    assert not LedgerEntry.objects.filter(kind="receipt_batch").exists()
    outcome = compute.message_receive(wire=reply({"status": "ok", "attestation": wire}))
    assert outcome.startswith(f"attested #{batch.first_seq}..#{batch.last_seq}")


# --- the offline verifier ----------------------------------------------------------------------


def test_batched_receipts_are_verified_by_one_node_signature(world) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import api_for

    first = world["usages"][0]
    assert api_for("regulator").get(f"/api/ledger/entries/{first.seq}/").json()["attested_by"] is None
    batch = attest_as_node("acme")
    assert api_for("regulator").get(f"/api/ledger/entries/{first.seq}/").json()["attested_by"] == {
        "seq": batch.seq,
        "node": "acme",
        "first_seq": first.seq,
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
    bad_sig = _header(lines, lambda h: h["receipt_batches"][0]["attestation"]["payload"].update(count=2))
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
    forge_usage(world["acme"], job="never-ran", overrides={"receipt": receipt, "rows": 1})
    found = check(export()).failures
    assert any("node receipt: signature does not verify" in f for f in found), found


def test_a_batch_listed_twice_or_malformed_is_a_failure_not_a_crash(world) -> None:  # type: ignore[no-untyped-def]
    first = attest_as_node("acme")
    use(world["acme"])
    second = attest_as_node("acme")
    lines = export()
    header = json.loads(lines[0])
    [a, b] = header["receipt_batches"]
    assert (a["seq"], b["seq"]) == (first.seq, second.seq)
    # The first batch listed again under the second's seq: it must not stand in for an unchecked range.
    twice = _header(lines, lambda h: h.update(receipt_batches=[dict(a, seq=b["seq"]), b]))
    found = check(twice).failures
    assert any(f"receipt batch #{b['seq']}: listed twice" in f for f in found), found
    out_of_order = check(_header(lines, lambda h: h.update(receipt_batches=[b, a]))).failures
    assert any("overlaps or precedes the one before" in f for f in out_of_order), out_of_order

    def statement(**changes: Any):  # type: ignore[no-untyped-def]
        return lambda h: h["receipt_batches"][0]["attestation"]["payload"].update(**changes)

    broken = {
        "not a list": lambda h: h.update(receipt_batches=5),
        "not an object": lambda h: h.update(receipt_batches=[7]),
        "huge number": statement(first_seq=float("inf")),
        "node is a list": statement(node=["acme"]),
        "count too big": statement(count=10**6),
        "last after the entry": statement(last_seq=first.seq + 5),
    }
    for what, fn in broken.items():
        report = check(_header(lines, fn))
        assert not report.ok, what
        assert any("receipt batch" in f or "receipt_batches" in f for f in report.failures), (what, report.failures)


def test_crafted_bundles_fail_cleanly_instead_of_crashing(world) -> None:  # type: ignore[no-untyped-def]
    lines = export()
    seq = world["usages"][0].seq

    bodies = {
        "huge number": lambda i: i.update(body=i["body"].replace(ACME_ROWS, '"rows":1e999', 1)),
        "deep nesting": lambda i: i.update(
            body=i["body"].replace(ACME_ROWS, '"rows":' + "[" * 100000 + "]" * 100000, 1)
        ),
        "lone surrogate": lambda i: i.update(body=i["body"].replace('"step":"partial"', '"step":"\\ud800"', 1)),
        "big receipt number": lambda i: i.update(body=i["body"].replace(ACME_ROWS, f'"rows":{2**60}')),
    }
    for what, fn in bodies.items():
        report = check(edit_entry(lines, seq, fn))
        assert not report.ok, what
    headers = {
        "checkpoint not an object": lambda h: h["checkpoints"].append(5),
        "consistency without from": lambda h: h["consistency"][0].pop("from"),
        "node keys as a list": lambda h: h.update(node_keys=[1]),
        "tree size infinite": lambda h: h.update(tree_size=float("inf")),
        "checkpoints not a list": lambda h: h.update(checkpoints=5),
    }
    for what, fn in headers.items():
        try:
            report = check(_header(lines, fn))
        except verifier.BundleError as exc:
            assert "bad bundle header" in str(exc), what
        else:
            assert not report.ok, what
