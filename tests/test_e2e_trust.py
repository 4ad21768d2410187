"""The attacks of a dishonest provider, end to end: real hub and node worker processes on
PostgreSQL and the broker, the provider's node being the real node worker with its replies
rewritten (``tests.tampering_node``). And crashes: a node or the hub worker killed mid-job.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from compute import services
from compute.models import Job, Message
from ledger import bundle
from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace.models import Dataset, UsageRight
from protocol.canonical import canonical, sha256_hex
from tests.conftest import api_for, ledger_idle, post_job, right_on_new_offer, run_verifier, wait_for

pytestmark = pytest.mark.e2e


def _acme() -> Path:
    return Path(settings.USUFRUCT_NODES_DIR) / "acme"


def _tamper(rules: dict | None) -> None:  # type: ignore[type-arg]
    path = _acme() / "tamper.json"
    if rules is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(rules))


def _right(plan: dict, key: str, operations: tuple[str, ...] = ("stats",)) -> int:  # type: ignore[type-arg]
    return right_on_new_offer(title=f"metered {key}", operations=list(operations), epsilon="3", key=key, plans=[plan])


def _finish(job_id: str, timeout: float = 90) -> Job:
    job = wait_for(
        lambda: (j := Job.objects.get(id=job_id)).status in ("succeeded", "failed", "cancelled") and j,
        timeout=timeout,
    )
    ledger_idle()
    return job


def _pages_answer() -> None:
    for user, url in (("bank", "/bill/"), ("acme", "/revenue/"), ("bank", "/api/billing/bill/")):
        client = Client()
        client.force_login(get_user_model().objects.get(username=user))
        assert client.get(url).status_code == 200, url
    assert api_for("acme").get("/api/billing/revenue/").status_code == 200


def _verifier_passes(tmp_path: Path) -> None:
    ledger_services.checkpoint_create()
    path = tmp_path / "bundle.jsonl"
    path.write_text("".join(bundle.bundle_lines()))
    out = run_verifier(path, ledger_services.log_vkey())
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_tampering_provider_node_is_refused_and_paid_nothing(processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", "bank", "taxco"):
        processes.start(name, wait=False)
    processes.start("acme", module="tests.tampering_node", wait=False)
    processes.wait_ready()
    bank = api_for("bank")
    right = _right({"kind": "per_1000_rows", "amount_minor": 1000, "currency": "EUR"}, "rows-plan")
    params = {"column": "tenure_months", "key_bits": 1024}
    attacks = {
        "bill any amount": ({"receipt": {"rows": 10**12}}, "receipt_rows"),
        "break every bill": ({"receipt": {"rows": "lots"}}, "receipt_rows"),
        "poison every audit": ({"receipt": {"at": "2999-01-01T00:00:00.000000Z"}}, "receipt_at"),
        "answer another step": ({"receipt": {"request": "0" * 32}}, "receipt_request"),
    }
    try:
        for i, (name, (rules, code)) in enumerate(attacks.items()):
            _tamper(rules)
            job = _finish(post_job(bank, "stats", params, [right], f"attack-{i}").json()["id"])
            assert job.status == "failed" and code in job.error, (name, job.error)
            assert Message.objects.get(job=job, direction="in", step="partial").refused_code == code, name
        # A valid receipt with a useless result: a use on the ledger, not a charge.
        _tamper({"result": {}})
        job = _finish(post_job(bank, "stats", params, [right], "empty-result").json()["id"])
        assert job.status == "failed" and "bad result" in job.error
        (usage,) = LedgerEntry.objects.filter(kind="usage")
        (settlement,) = LedgerEntry.objects.filter(kind="settlement")
        assert settlement.payload["outcome"] == "failed" and settlement.payload["usage"] == [usage.seq]
    finally:
        _tamper(None)
    r = UsageRight.objects.get(id=right)
    assert (r.quota_used, r.quota_reserved) == (0, 0)
    assert bank.get("/api/billing/bill/").json()["totals"] == []
    _pages_answer()
    # The honest node (same worker, rules gone) is paid for what it delivered, by the checked rows.
    job = _finish(post_job(bank, "stats", params, [right], "honest").json()["id"])
    assert job.status == "succeeded", job.error
    rows = Dataset.objects.get(node__slug="acme").row_count
    assert bank.get("/api/billing/bill/").json()["totals"][0]["amount_minor"] == (rows * 1000 + 500) // 1000
    _verifier_passes(tmp_path)


def _resend_now() -> int:
    """The beat task that re-publishes unanswered steps, run at once instead of after a minute."""
    Message.objects.filter(direction="out").update(created_at=timezone.now() - timedelta(minutes=2))
    return services.messages_resend_unanswered(older_than=timedelta(seconds=60))


def test_a_provider_node_killed_mid_step_is_restarted_and_the_job_is_charged_once(processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", "bank", "taxco"):
        processes.start(name, wait=False)
    processes.start("acme", module="tests.tampering_node", wait=False)
    processes.wait_ready()
    bank = api_for("bank")
    right = _right({"kind": "per_job", "amount_minor": 150, "currency": "EUR"}, "per-job")
    (_acme() / "paused").unlink(missing_ok=True)
    _tamper({"pause": "partial"})
    try:
        job_id = post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, [right], "crash").json()["id"]
        wait_for(lambda: (_acme() / "paused").exists(), timeout=60)
        # Killed mid-step: the reply is computed, signed and kept, its receipt logged, nothing sent.
        os.kill(processes.procs["acme"].pid, signal.SIGKILL)
        processes.procs["acme"].wait(timeout=15)
        processes.procs.pop("acme")
    finally:
        _tamper(None)
    nonce = json.loads((_acme() / "paused").read_text())["nonce"]
    kept = json.loads((_acme() / "state" / "replies" / f"{nonce}.json").read_text())
    assert not Message.objects.filter(job_id=job_id, step="partial", direction="in").exists()
    processes.start("acme")  # the node comes back (its plain worker)
    assert _resend_now() == 1  # the unanswered step goes out again
    job = _finish(job_id)
    assert job.status == "succeeded", job.error
    # What the hub took is the very reply the node kept before the crash: nothing recomputed.
    answered = Message.objects.get(job_id=job_id, step="partial", direction="in")
    assert answered.digest == sha256_hex(canonical(kept["payload"]))
    assert LedgerEntry.objects.filter(kind="usage").count() == 1
    (settlement,) = LedgerEntry.objects.filter(kind="settlement")
    assert settlement.payload["outcome"] == "delivered" and settlement.payload["use"] == 1
    assert [li["amount"]["amount_minor"] for li in bank.get("/api/billing/bill/").json()["lines"]] == [150]

    _verifier_passes(tmp_path)


def test_the_hub_worker_killed_mid_job_resumes_with_nothing_lost_or_doubled(processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", "bank", "taxco", "acme"):
        processes.start(name, wait=False)
    processes.wait_ready()
    bank = api_for("bank")
    rights = [
        _right({"kind": "per_job", "amount_minor": 150, "currency": "EUR"}, "a"),
    ]
    from marketplace.models import Offer

    taxco_offer = Offer.objects.get(dataset__node__slug="taxco")
    rights.append(
        bank.post(
            "/api/orders/",
            {"offer": taxco_offer.id, "purpose": "p", "accept_terms": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY="t",
        ).json()["right"]["id"]
    )
    job_id = post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, rights, "hub-crash").json()["id"]
    wait_for(lambda: Message.objects.filter(job_id=job_id, step="partial", direction="out").exists(), timeout=60)
    processes.kill("hub")  # while the providers compute and answer into its queue
    time.sleep(2)
    processes.start("hub")
    if Job.objects.get(id=job_id).status == "running":
        _resend_now()  # a reply the dead worker took and never committed: asked again, answered again
    job = _finish(job_id)
    assert job.status == "succeeded", job.error
    assert LedgerEntry.objects.filter(kind="usage").count() == 2
    assert LedgerEntry.objects.filter(kind="settlement", payload__outcome="delivered").count() == 2
    for right_id in rights:
        r = UsageRight.objects.get(id=right_id)
        assert (r.quota_used, r.quota_reserved) == (1, 0)
    _verifier_passes(tmp_path)


def test_a_tampering_consumer_node_cannot_turn_psi_into_a_membership_test(processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The bank's own node blinds one target ID twenty times; and, honest again, a per-record
    plan is paid for the records the provider counted, and a free preview leaves an audit that verifies."""
    bank_dir = Path(settings.USUFRUCT_NODES_DIR) / "bank"
    for name in ("hub", "acme", "taxco"):
        processes.start(name, wait=False)
    processes.start("bank", module="tests.tampering_node", wait=False)
    processes.wait_ready()
    bank = api_for("bank")
    right = _right({"kind": "per_record", "amount_minor": 2, "currency": "EUR"}, "records", ("stats", "psi"))
    own = Dataset.objects.get(node__slug="bank")
    psi = {"consumer_dataset": own.local_name, "consumer_id_column": "applicant_id", "epsilon": 1.0}
    (bank_dir / "tamper.json").write_text(json.dumps({"repeat_first": "psi_blind"}))
    try:
        r = post_job(bank, "psi", psi, [right], "membership")
        assert r.status_code == 201, r.content
        job = _finish(r.json()["id"])
    finally:
        (bank_dir / "tamper.json").unlink(missing_ok=True)
    assert job.status == "failed" and "repeats an element" in job.error
    assert not Message.objects.filter(job=job, step="psi_exchange").exists()  # the provider was never asked

    job = _finish(post_job(bank, "stats", {"column": "tenure_months", "key_bits": 1024}, [right], "rec").json()["id"])
    assert job.status == "succeeded", job.error
    (usage,) = LedgerEntry.objects.filter(kind="usage", payload__job=str(job.id))
    assert usage.payload["records"] == job.outputs["count"] > 0
    total = bank.get("/api/billing/bill/").json()["totals"][0]["amount_minor"]
    assert total == 2 * usage.payload["records"]

    preview = bank.post(
        f"/api/datasets/{Dataset.objects.get(node__slug='acme').id}/overlap-preview/",
        {"consumer_dataset": own.id}, format="json", HTTP_IDEMPOTENCY_KEY="pv",
    )  # fmt: skip
    assert preview.status_code == 201, preview.content
    assert _finish(preview.json()["id"]).status == "succeeded"
    _pages_answer()
    _verifier_passes(tmp_path)
