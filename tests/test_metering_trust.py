"""A node's receipt is a claim: every field is checked before anything is recorded or charged.

Each case is a tampering provider built from the real node code (``tests.federation``):
its honest reply, rewritten and signed again with its own key. Each shows the reply
refused with a named reason and kept as evidence, the step failed, nothing charged, the
quota back, the bill and revenue still answering, and the offline verifier still passing.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.verify import verify_lines
from compute import services
from compute.models import Job, Message
from ledger import bundle
from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer, UsageRight
from tests import federation
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def buy(slug: str = "acme", *, plans: list[dict] | None = None, key: str = "buy") -> UsageRight:  # type: ignore[type-arg]
    if plans is None:
        offer_id = Offer.objects.get(dataset__node__slug=slug).id
    else:
        dataset = Dataset.objects.get(node__slug=slug)
        r = api_for(slug).post(
            "/api/offers/",
            {
                "dataset": dataset.id,
                "title": "metered",
                "operations": ["stats", "psi"],
                "plans": plans,
                "quota_jobs": 5,
                "duration_days": 30,
                "epsilon": 3,
            },
            format="json",
        )
        assert r.status_code == 201, r.content
        offer_id = r.json()["id"]
    r = api_for("bank").post(
        "/api/orders/",
        {"offer": offer_id, "purpose": "credit risk", "accept_terms": True, "again": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert r.status_code == 201, r.content
    return UsageRight.objects.get(id=r.json()["right"]["id"])


def verify_everything() -> list[str]:
    ledger_services.checkpoint_create()
    lines = list(bundle.bundle_lines())
    report = verify_lines(lines, log_keys=[ledger_services.log_vkey()], every_signature=True)
    return report.failures


def page_for(username: str) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def bills_answer() -> tuple[dict, dict]:  # type: ignore[type-arg]
    for user, url in (("bank", "/bill/"), ("acme", "/revenue/")):
        assert page_for(user).get(url).status_code == 200, url
    bill = api_for("bank").get("/api/billing/bill/")
    revenue = api_for("acme").get("/api/billing/revenue/")
    assert bill.status_code == 200 and revenue.status_code == 200
    return bill.json(), revenue.json()


TAMPERED = {
    "rows_huge": ({"rows": 10**12}, "receipt_rows"),
    "rows_text": ({"rows": "lots"}, "receipt_rows"),
    "rows_negative": ({"rows": -5}, "receipt_rows"),
    "rows_bool": ({"rows": True}, "receipt_rows"),
    "records_huge": ({"records": 10**9}, "receipt_records"),
    "at_future": ({"at": "2999-01-01T00:00:00.000000Z"}, "receipt_at"),
    "at_past": ({"at": "2000-01-01T00:00:00.000000Z"}, "receipt_at"),
    "at_text": ({"at": "yesterday"}, "receipt_at"),
    "operation": ({"operation": "psi"}, "receipt_operation"),
    "step": ({"step": "decrypt"}, "receipt_step"),
    "round": ({"round": 7}, "receipt_round"),
    "request": ({"request": "0" * 32}, "receipt_request"),
    "job": ({"job": "00000000-0000-0000-0000-000000000000"}, "receipt_job"),
    "consumer": ({"consumer": "acme"}, "receipt_consumer"),
    "extra_field": ({"bonus": 1}, "receipt_fields"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_receipt_is_refused_and_charges_nothing(demo, case) -> None:  # type: ignore[no-untyped-def]
    changes, code = TAMPERED[case]
    right = buy(plans=[{"kind": "per_1000_rows", "amount_minor": 1000, "currency": "EUR"}])
    job = federation.run(federation.submit([right.id]), tamper=federation.rewrite_receipt(**changes))

    assert job.status == Job.Status.FAILED and code in job.error, job.error
    refused = Message.objects.get(job=job, direction="in", step="partial")
    assert refused.refused_code == code  # the claim is kept, with the reason
    assert not LedgerEntry.objects.filter(kind__in=["usage", "settlement"]).exists()
    right.refresh_from_db()
    assert (right.quota_used, right.quota_reserved) == (0, 0)
    bill, revenue = bills_answer()
    assert bill["totals"] == [] and revenue["totals"] == []
    assert verify_everything() == []


def test_a_receipt_signed_by_another_key_is_refused(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy()

    def foreign_signature(slug: str, payload: dict) -> dict:  # type: ignore[type-arg]
        body = payload["body"]
        if "receipt" in body:
            body["receipt"] = federation.resign("taxco", body["receipt"])  # another provider's node signs
        return payload

    job = federation.run(federation.submit([right.id]), tamper=foreign_signature)
    assert job.status == Job.Status.FAILED and "receipt_unknown_key" not in job.error
    assert "receipt_signer" in job.error, job.error
    assert not LedgerEntry.objects.filter(kind="usage").exists()


def test_a_valid_receipt_with_a_useless_result_is_a_use_but_not_a_charge(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy()
    job = federation.run(federation.submit([right.id]), tamper=federation.rewrite_result(lambda r: {}, "partial"))

    assert job.status == Job.Status.FAILED and "bad result" in job.error
    (usage,) = LedgerEntry.objects.filter(kind="usage")  # the data was touched: the regulator sees it
    (settlement,) = LedgerEntry.objects.filter(kind="settlement")
    assert settlement.payload["outcome"] == "failed" and settlement.payload["usage"] == [usage.seq]
    assert settlement.payload["units"] == 0 and settlement.payload["use"] is None
    right.refresh_from_db()
    assert (right.quota_used, right.quota_reserved) == (0, 0)  # the reservation is released
    bill, revenue = bills_answer()
    assert bill["totals"] == [] and revenue["totals"] == []
    assert verify_everything() == []


def test_a_per_record_plan_bills_the_records_the_node_counted(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy(plans=[{"kind": "per_record", "amount_minor": 2, "currency": "EUR"}])
    job = federation.run(federation.submit([right.id]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    (usage,) = LedgerEntry.objects.filter(kind="usage")
    records = usage.payload["records"]
    assert records == job.outputs["count"] > 0  # the values the partial aggregated
    bill, _ = bills_answer()
    assert bill["totals"] == [
        {"amount_minor": 2 * records, "currency": "EUR", "display": f"{2 * records / 100:.2f} EUR"}
    ]
    (line,) = bill["lines"]
    assert line["records"] == records and line["usage_seqs"] == [usage.seq]
    assert verify_everything() == []


def test_a_per_1000_rows_plan_bills_the_checked_rows(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy(plans=[{"kind": "per_1000_rows", "amount_minor": 1000, "currency": "EUR"}])
    federation.run(federation.submit([right.id]))
    rows = Dataset.objects.get(node__slug="acme").row_count
    bill, revenue = bills_answer()
    assert bill["lines"][0]["rows"] == rows
    assert bill["totals"][0]["amount_minor"] == (rows * 1000 + 500) // 1000
    assert revenue["totals"][0]["amount_minor"] == bill["totals"][0]["amount_minor"]


def test_a_bill_shows_a_line_it_cannot_price_instead_of_failing(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy(plans=[{"kind": "per_1000_rows", "amount_minor": 1000, "currency": "EUR"}])
    federation.run(federation.submit([right.id]))
    # A historical entry written before the checks existed (or by a hub that skipped them).
    bad = ledger_services.entry_append(
        kind="settlement",
        event_id="settlement:legacy",
        payload={"job": "legacy", "right": right.id, "outcome": "delivered", "rows": "lots", "records": 0, "use": 2},
        dataset_id=right.dataset_id,
        consumer_id=right.consumer_id,
        provider_id=right.dataset.organization_id,
        right_id=right.id,
    )
    bill, revenue = bills_answer()
    unpriced = [li for li in bill["lines"] if li["amount"] is None]
    assert [li["ledger_seq"] for li in unpriced] == [bad.seq] and "rows 'lots'" in unpriced[0]["problem"]
    assert len(bill["totals"]) == 1  # the good line is still billed
    assert "not priced" in page_for("bank").get("/bill/").content.decode()


def test_after_a_free_preview_the_honest_full_log_verifies(demo) -> None:  # type: ignore[no-untyped-def]
    from marketplace.models import Organization

    bank = Organization.objects.get(slug="northwind")
    target = Dataset.objects.get(node__slug="acme")
    own = Dataset.objects.get(node__slug="bank")
    job, _ = services.preview_request(
        consumer=bank,
        user=get_user_model().objects.get(username="bank"),
        dataset_id=target.id,
        consumer_dataset_id=own.id,
        idempotency_key="p1",
    )
    job = federation.run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    (usage,) = LedgerEntry.objects.filter(kind="usage")
    assert usage.payload["right"] is None and usage.payload["preview"] is True
    assert verify_everything() == []


def test_psi_refuses_one_id_blinded_twenty_times(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy(plans=[{"kind": "per_job", "amount_minor": 100, "currency": "EUR"}])
    own = Dataset.objects.get(node__slug="bank")

    def repeat_one(slug: str, payload: dict) -> dict:  # type: ignore[type-arg]
        body = payload["body"]
        if payload["step"] == "psi_blind":  # a tampering consumer node: one target, 20 copies
            assert body["status"] == "ok", body
            first = base64.b64decode(body["result"]["elements"])[:32]  # the packed list's first element
            body["result"]["elements"] = base64.b64encode(first * 20).decode()
        return payload

    params = {"consumer_dataset": own.local_name, "consumer_id_column": "applicant_id", "epsilon": 1.0}
    job = federation.run(federation.submit([right.id], algorithm="psi", params=params), tamper=repeat_one)
    assert job.status == Job.Status.FAILED and "repeats an element" in job.error
    assert not Message.objects.filter(job=job, step="psi_exchange", direction="out").exists()  # never asked
    assert not LedgerEntry.objects.filter(kind="usage").exists()


def test_previews_of_one_dataset_have_a_lifetime_privacy_budget(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from marketplace.models import Organization

    monkeypatch.setattr(services, "PREVIEWS_PER_DATASET_PER_DAY", 100)
    bank = Organization.objects.get(slug="northwind")
    user = get_user_model().objects.get(username="bank")
    target, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    n = int(services.PREVIEW_LIFETIME_EPSILON / services.PREVIEW_EPSILON)
    for i in range(n):
        services.preview_request(
            consumer=bank, user=user, dataset_id=target.id, consumer_dataset_id=own.id, idempotency_key=f"p{i}"
        )
    with pytest.raises(services.Throttled, match="lifetime privacy budget"):
        services.preview_request(
            consumer=bank, user=user, dataset_id=target.id, consumer_dataset_id=own.id, idempotency_key="one-more"
        )
    Job.objects.filter(preview=True).update(created_at="2000-01-01T00:00:00Z")  # days later: still refused
    with pytest.raises(services.Throttled, match="lifetime privacy budget"):
        services.preview_request(
            consumer=bank, user=user, dataset_id=target.id, consumer_dataset_id=own.id, idempotency_key="later"
        )


def test_quota_is_consumed_on_delivery_and_counted_by_the_verifier(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy()
    job = federation.run(federation.submit([right.id]))
    assert job.status == Job.Status.SUCCEEDED
    right.refresh_from_db()
    assert (right.quota_used, right.quota_reserved) == (1, 0)
    (settlement,) = LedgerEntry.objects.filter(kind="settlement")
    assert settlement.payload["use"] == 1 and settlement.payload["outcome"] == "delivered"
    assert verify_everything() == []


def _export() -> list[str]:
    ledger_services.checkpoint_create()
    return list(bundle.bundle_lines())


def test_verifier_fails_a_header_key_that_is_not_on_the_log(demo) -> None:  # type: ignore[no-untyped-def]
    """A hub operator makes a key of its own for acme's node, signs a receipt with it and
    lists it in the bundle's header: the log holds no such key, so the bundle fails."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import tests.ledger.conftest as ledger_fixtures
    from marketplace.models import Node
    from protocol import keys

    right = buy()
    federation.use(right)
    operator_key = Ed25519PrivateKey.generate()
    kid = keys.key_id(operator_key)
    Node.objects.filter(slug="acme").update(kid=kid, public_key=keys.public_b64(operator_key))
    original = ledger_fixtures.node_key
    ledger_fixtures.node_key = lambda slug: operator_key  # type: ignore[assignment]
    try:
        ledger_fixtures.forge_usage(right)
    finally:
        ledger_fixtures.node_key = original
    lines = _export()
    header = json.loads(lines[0])
    assert kid not in header["node_keys"]  # the honest export takes node keys from the log only
    header["node_keys"][kid] = {"node": "acme", "organization": right.dataset.organization_id,
                                "public_key": keys.public_b64(operator_key)}  # fmt: skip
    found = " | ".join(verify_lines([json.dumps(header) + "\n", *lines[1:]]).failures)
    assert f"header node key {kid} (acme) is not on the log" in found
    assert "is not on the log before it (no node_enrolled entry)" in found


def test_verifier_fails_usage_rows_above_the_attested_count(demo) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.conftest import forge_usage, node_key

    right = buy()
    entry = forge_usage(right)
    receipt = dict(entry.payload["receipt"])
    receipt["payload"] = {**receipt["payload"], "rows": 10**9, "request": "f" * 32}
    from protocol import envelope

    signed = envelope.sign_payload(receipt["payload"], key=node_key("acme"), kid=receipt["kid"])
    forge_usage(right, overrides={"receipt": signed, "rows": 10**9})
    found = " | ".join(verify_lines(_export()).failures)
    assert "1000000000 rows / 120 records exceed the dataset's attested" in found


def test_verifier_fails_a_usage_outside_its_settlement_and_a_double_charge(demo) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.conftest import forge_usage

    right = buy()
    first = forge_usage(right, job="job-x")
    second = forge_usage(right, job="job-x")
    settle = {
        "job": "job-x",
        "right": right.id,
        "order": right.order_id,
        "dataset": right.dataset_id,
        "consumer": right.consumer_id,
        "provider": right.dataset.organization_id,
        "outcome": "delivered",
        "usage": [first.seq],
        "rows": 120,
        "records": 120,
        "units": 1,
        "use": 1,
    }
    ids = {
        "dataset_id": right.dataset_id,
        "consumer_id": right.consumer_id,
        "provider_id": right.dataset.organization_id,
        "right_id": right.id,
    }
    ledger_services.entry_append(kind="settlement", event_id="settlement:job-x", payload=settle, **ids)
    forge_usage(right, job="job-y")
    ledger_services.entry_append(
        kind="settlement",
        event_id="settlement:job-y",
        payload={**settle, "job": "job-y", "use": 2},  # charges job-x's use again, not its own
        **ids,
    )
    found = " | ".join(verify_lines(_export()).failures)
    assert f"usage #{second.seq} of job job-x is outside its settlement" in found
    assert f"charges usage #{first.seq} a second time" in found
    assert "is no earlier use of job job-y" in found


def _answer_until_one_partial(job: Job, provider: str) -> None:
    services.job_start(job_id=str(job.id))
    for step in ("keygen", "partial"):
        for m in Message.objects.filter(job=job, direction="out", step=step):
            if step == "partial" and m.recipient != provider:
                continue
            for reply in federation.handle_step(federation.node(m.recipient), m.envelope):
                services.message_receive(wire=reply)


def test_an_honest_log_with_failed_and_cancelled_jobs_verifies(demo) -> None:  # type: ignore[no-untyped-def]
    acme, taxco = buy("acme", key="a"), buy("taxco", key="t")
    assert federation.run(federation.submit([acme.id, taxco.id])).status == Job.Status.SUCCEEDED
    failed = federation.run(
        federation.submit([acme.id]), tamper=federation.rewrite_result(lambda r: {**r, "totals": "x"}, "partial")
    )
    assert failed.status == Job.Status.FAILED
    # A job cancelled by revocation after one provider's data was used, before the other answered:
    # that use is settled as cancelled; the provider never reached has nothing to settle.
    job = federation.submit([acme.id, taxco.id])
    _answer_until_one_partial(job, "taxco")
    r = api_for("taxco").post(f"/api/rights/{taxco.id}/revoke/", {"reason": "breach of terms"}, format="json")
    assert r.status_code == 200, r.content
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    outcomes = sorted(e.payload["outcome"] for e in LedgerEntry.objects.filter(kind="settlement"))
    assert outcomes == ["cancelled", "delivered", "delivered", "failed"]
    assert verify_everything() == []
    header = json.loads(_export()[0])
    assert header["complete"] is True


def _attest(slug: str) -> LedgerEntry:
    """What the beat task does, in process: the hub asks, the real node code signs, the hub records."""
    from django.conf import settings

    from compute.node.runtime import attest_receipts
    from marketplace.models import Node

    node = Node.objects.get(slug=slug)
    batch = ledger_services.receipt_batch_pending(node_slug=slug, organization_id=node.organization_id)
    assert batch is not None
    body = {
        "log": settings.USUFRUCT_LOG_ORIGIN,
        "first_seq": batch.first_seq,
        "last_seq": batch.last_seq,
        "receipts": batch.digests,
    }
    answer = attest_receipts(federation.node(slug), body, in_reply_to="0" * 64)
    assert answer["status"] == "ok", answer
    return ledger_services.receipt_batch_record(
        node_slug=slug, organization_id=node.organization_id, attestation=answer["attestation"]
    )


def test_an_honest_history_with_every_kind_of_entry_verifies_offline(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Previews, purchases, jobs that succeed, fail and are cancelled, a revocation with a refund,
    a DP charge, receipt batches, a node key rotation and a correction: the full-log bundle
    passes the offline verifier as a regulator runs it, with and without --every-signature."""
    import shutil
    import subprocess
    import sys

    from django.contrib.auth import get_user_model

    from compute.node.config import NodeConfig
    from compute.node.runtime import enrolment_message
    from marketplace.models import Organization
    from tests.conftest import ROOT

    bank, user = Organization.objects.get(slug="northwind"), get_user_model().objects.get(username="bank")
    acme_ds, own = Dataset.objects.get(node__slug="acme"), Dataset.objects.get(node__slug="bank")
    preview, _ = services.preview_request(
        consumer=bank, user=user, dataset_id=acme_ds.id, consumer_dataset_id=own.id, idempotency_key="pv"
    )
    assert federation.run(preview).status == Job.Status.SUCCEEDED
    acme = buy("acme", key="a")  # the demo offer: per job, with a privacy budget
    taxco = buy("taxco", key="t")
    prepaid = buy(plans=[{"kind": "per_job", "amount_minor": 300, "currency": "EUR", "billing": "prepaid"}], key="pp")
    assert federation.run(federation.submit([acme.id, taxco.id])).status == Job.Status.SUCCEEDED
    dp = {"column": "tenure_months", "key_bits": 1024, "dp_epsilon": 0.5, "bounds": [0, 240]}
    assert federation.run(federation.submit([acme.id], params=dp)).status == Job.Status.SUCCEEDED
    failed = federation.run(
        federation.submit([taxco.id]), tamper=federation.rewrite_result(lambda r: {**r, "totals": "x"}, "partial")
    )
    assert failed.status == Job.Status.FAILED
    assert federation.run(federation.submit([prepaid.id])).status == Job.Status.SUCCEEDED
    _attest("acme")
    _attest("taxco")
    # A job on the prepaid right whose provider has answered, then the right is revoked: cancelled, refunded.
    job = federation.submit([prepaid.id, taxco.id])
    _answer_until_one_partial(job, "acme")
    r = api_for("acme").post(f"/api/rights/{prepaid.id}/revoke/", {"reason": "terms breached"}, format="json")
    assert r.status_code == 200, r.content
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    first_usage = LedgerEntry.objects.filter(kind="usage").order_by("seq").first()
    ledger_services.entry_correct(
        corrects_seq=first_usage.seq, reason="late note", amends={"note": "x"}, event_id="correction:1"
    )
    # taxco rotates its node key (a fresh key made in a fresh directory, enrolled with the token).
    token = api_for("taxco").post("/api/nodes/taxco/rekey/").json()["enrolment_token"]
    fresh_dir = tmp_path / "taxco"
    old = federation.node("taxco")
    shutil.copytree(old.directory, fresh_dir, ignore=shutil.ignore_patterns("node_ed25519.pem", "state"))
    fresh = NodeConfig(slug="taxco", directory=fresh_dir, broker_url="memory://", broker_dir=None)
    assert services.message_receive(wire=enrolment_message(fresh, token)) == "enrolled"

    kinds = set(LedgerEntry.objects.values_list("kind", flat=True))
    assert kinds >= {
        "dataset_listed", "offer_published", "right_granted", "usage", "settlement", "right_revoked", "refund",
        "dp_charge", "receipt_batch", "key_rotated", "node_enrolled", "correction",
    }  # fmt: skip
    outcomes = sorted(e.payload["outcome"] for e in LedgerEntry.objects.filter(kind="settlement"))
    assert outcomes == ["cancelled", "delivered", "delivered", "delivered", "delivered", "failed"]
    assert verify_everything() == []
    path = tmp_path / "bundle.jsonl"
    path.write_text("".join(bundle.bundle_lines()))
    for extra in ([], ["--every-signature"]):
        out = subprocess.run(
            [sys.executable, "-m", "audit.verify", str(path), "--log-key", ledger_services.log_vkey(), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "RESULT: OK" in out.stdout
    for scope in ({"dataset_id": acme_ds.id}, {"consumer_id": bank.id}):  # and the regulator's partial bundles
        lines = list(bundle.bundle_lines(**scope))
        assert verify_lines(lines, log_keys=[ledger_services.log_vkey()]).failures == [], scope


# --- regressions from review ------------------------------------------------------------


def _announce(slug: str, **changes: object) -> str:
    """The provider's own node announces its dataset again, with ``changes`` in the manifest."""
    from compute.node.runtime import announcement_messages

    config = federation.node(slug)
    (wire,) = announcement_messages(config)
    body = federation.body_of(wire)
    body["manifest"].update(changes)
    from protocol import envelope as env

    again = env.seal(
        job="", step="announce", round=0, sender=slug, recipient="hub", body=body, key=config.private_key,
        kid=config.kid, to=config.hub_public_key,
    )  # fmt: skip
    return services.message_receive(wire=again)


def test_re_announcing_a_bigger_dataset_after_the_sale_does_not_raise_the_bill(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy(plans=[{"kind": "per_1000_rows", "amount_minor": 1000, "currency": "EUR"}])
    assert _announce("acme", row_count=10**12, sha256="a" * 64) == "announced"
    assert Dataset.objects.get(node__slug="acme").row_count == 10**12
    job = federation.run(federation.submit([right.id]), tamper=federation.rewrite_receipt(rows=10**12))
    assert job.status == Job.Status.FAILED and "receipt_rows" in job.error
    bill, _ = bills_answer()
    assert bill["totals"] == []
    assert verify_everything() == []


def test_a_manifest_with_a_mistyped_row_count_is_refused_and_lists_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    from marketplace.exceptions import Invalid

    entries = LedgerEntry.objects.count()
    for bad in ("2000", True, -1, 2.5):
        with pytest.raises(Invalid) as err:
            _announce("acme", row_count=bad, sha256="b" * 64)
        assert "row_count" in err.value.fields
    assert LedgerEntry.objects.count() == entries
    assert verify_everything() == []


def test_a_manifest_declaring_bins_that_are_not_bins_is_refused(demo) -> None:  # type: ignore[no-untyped-def]
    from marketplace.exceptions import Invalid

    listed = Dataset.objects.get(node__slug="acme").columns
    assert next(c for c in listed if c["name"] == "tenure_months")["bins"] == [0, 12, 24, 36, 48, 60, 600]
    entries = LedgerEntry.objects.count()
    for bins, column in (([0, 12, 12], "tenure_months"), ("0-12", "tenure_months"), ([0, 1], "customer_id")):
        columns = [{**c, "bins": bins} if c["name"] == column else c for c in listed]
        with pytest.raises(Invalid) as err:
            _announce("acme", columns=columns, sha256="c" * 64)
        assert "bins" in err.value.fields["columns"][0]
    assert LedgerEntry.objects.count() == entries
    assert Dataset.objects.get(node__slug="acme").columns == listed


def test_a_consumer_whose_node_never_decrypts_still_pays_for_the_aggregate_it_got(demo) -> None:  # type: ignore[no-untyped-def]
    right = buy()

    def refuse_decrypt(slug: str, payload: dict) -> dict:  # type: ignore[type-arg]
        if payload["step"] == "decrypt":  # the consumer's own node, after it decrypted the totals
            payload["body"] = {k: payload["body"][k] for k in ("party", "in_reply_to")} | {
                "status": "error", "code": "node_error", "reason": "disk full",
            }  # fmt: skip
        return payload

    job = federation.run(federation.submit([right.id]), tamper=refuse_decrypt)
    assert job.status == Job.Status.FAILED
    (settlement,) = LedgerEntry.objects.filter(kind="settlement")
    assert settlement.payload["outcome"] == "delivered"
    right.refresh_from_db()
    assert (right.quota_used, right.quota_reserved) == (1, 0)
    bill, _ = bills_answer()
    assert bill["totals"][0]["amount_minor"] == 150
    assert verify_everything() == []


def test_a_right_that_expires_mid_job_leaves_an_honest_log_that_verifies(demo) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from marketplace import rights

    right = buy()
    job = federation.submit([right.id])
    services.job_start(job_id=str(job.id))
    for m in Message.objects.filter(job=job, direction="out"):  # keygen: partial goes out
        for reply in federation.handle_step(federation.node(m.recipient), m.envelope):
            services.message_receive(wire=reply)
    UsageRight.objects.filter(id=right.id).update(expires_at=timezone.now())  # its term ends now
    assert rights.rights_expire_due() == 1  # right_expired on the ledger, before the answer
    job = federation.run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error  # the step was issued while it was valid
    assert verify_everything() == []


def test_a_node_killed_between_dropping_its_key_and_keeping_its_reply_can_answer_again(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from compute.node import runtime

    right = buy()
    job = federation.submit([right.id])
    services.job_start(job_id=str(job.id))
    for step in ("keygen", "partial"):
        for m in Message.objects.filter(job=job, direction="out", step=step):
            for reply in federation.handle_step(federation.node(m.recipient), m.envelope):
                services.message_receive(wire=reply)
    (decrypt,) = Message.objects.filter(job=job, direction="out", step="decrypt")

    def crash(*args: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(runtime, "_store_reply", crash)
    with pytest.raises(SystemExit):
        federation.handle_step(federation.node("bank"), decrypt.envelope)
    monkeypatch.undo()
    (reply,) = federation.handle_step(federation.node("bank"), decrypt.envelope)  # redelivered after restart
    assert federation.body_of(reply)["status"] == "ok"
    services.message_receive(wire=reply)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.outputs["count"] > 0


def _settlement(right: UsageRight, job: str, usage: list[int], **changes: object) -> LedgerEntry:
    payload = {
        "job": job, "right": right.id, "order": right.order_id, "dataset": right.dataset_id,
        "consumer": right.consumer_id, "provider": right.dataset.organization_id, "outcome": "delivered",
        "usage": usage, "rows": 120, "records": 120, "units": 1, "use": 1, **changes,
    }  # fmt: skip
    return ledger_services.entry_append(
        kind="settlement", event_id=f"settlement:{job}", payload=payload, dataset_id=right.dataset_id,
        consumer_id=right.consumer_id, provider_id=right.dataset.organization_id, right_id=right.id,
    )  # fmt: skip


def test_a_complete_bundle_with_a_seq_scope_in_its_header_is_still_checked_whole(demo) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.conftest import forge_usage

    right = buy()
    first = forge_usage(right, job="job-x")
    forge_usage(right, job="job-x")
    _settlement(right, "job-x", [first.seq], rows=10**9, use=7)
    ledger_services.checkpoint_create()
    size = LedgerEntry.objects.count()
    lines = list(bundle.bundle_lines(seq_to=size))
    assert json.loads(lines[0])["complete"] is True and json.loads(lines[0])["scope"] == {"seq_to": size}
    found = " | ".join(verify_lines(lines).failures)
    assert "is outside its settlement" in found and "charges 1000000000 rows" in found


def test_the_verifier_takes_passes_from_the_protocol_not_from_the_hub(demo) -> None:  # type: ignore[no-untyped-def]
    from tests.ledger.conftest import forge_usage

    forge_usage(buy(), overrides={"passes": 10_000})
    found = " | ".join(verify_lines(_export()).failures)
    assert "stats/partial meters 1 pass(es), not 10000" in found


def test_a_second_enrolment_of_a_live_node_fails_the_audit(demo) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from marketplace.models import Node
    from protocol import keys

    acme = Node.objects.get(slug="acme")
    extra = Ed25519PrivateKey.generate()
    ledger_services.entry_append(
        kind="node_enrolled",
        event_id="node_enrolled:acme:extra",
        payload={
            "node": "acme",
            "organization": acme.organization_id,
            "kid": keys.key_id(extra),
            "public_key": keys.public_b64(extra),
            "enrolment_digest": "0" * 64,
        },  # fmt: skip
        provider_id=acme.organization_id,
    )
    found = " | ".join(verify_lines(_export()).failures)
    assert "node 'acme' is enrolled again while its key is live" in found


def test_a_partial_bundle_checks_the_signer_belongs_to_the_provider_on_the_log(demo) -> None:  # type: ignore[no-untyped-def]
    """A use of acme's dataset vouched for by taxco's node (its own, logged key), in a
    dataset-scoped bundle whose header claims taxco's key for acme's organisation."""
    from marketplace.models import Node
    from protocol import envelope as env
    from tests.ledger.conftest import forge_usage, node_key

    right = buy()
    taxco = Node.objects.get(slug="taxco")
    honest = forge_usage(right)
    receipt = {**honest.payload["receipt"]["payload"], "node": "taxco", "request": "e" * 32}
    signed = env.sign_payload(receipt, key=node_key("taxco"), kid=taxco.kid)
    forge_usage(right, overrides={"receipt": signed})
    ledger_services.checkpoint_create()
    lines = list(bundle.bundle_lines(dataset_id=right.dataset_id))
    header = json.loads(lines[0])
    header["node_keys"][taxco.kid]["organization"] = right.dataset.organization_id  # the header lies
    lines[0] = json.dumps(header) + "\n"
    found = " | ".join(verify_lines(lines).failures)
    assert f"key {taxco.kid!r} is a node key of organisation {taxco.organization_id}" in found
    assert f"header node key {taxco.kid} differs from the one the log holds" in found
