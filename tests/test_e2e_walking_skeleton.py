"""The whole path with real worker processes on PostgreSQL and the real broker:
list → buy → federated stats job on provider nodes → signed ledger → bill and revenue."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.conf import settings

from compute.models import Job, Message
from ledger.models import LedgerEntry
from marketplace.models import Dataset, UsageRight
from protocol import he
from tests.conftest import api_for, ledger_idle, wait_for

pytestmark = pytest.mark.e2e


def _local_column(slug: str, column: str) -> list[float]:
    """Ground truth read straight from the node's CSV (the test may; the hub never does)."""
    path = next((Path(settings.USUFRUCT_NODES_DIR) / slug / "data").glob("*.csv"))
    with path.open() as fh:
        return [float(r[column]) for r in csv.DictReader(fh)]


def _buy(api, offer_id: int, key: str) -> dict:  # type: ignore[no-untyped-def]
    r = api.post(
        "/api/orders/",
        {"offer": offer_id, "purpose": "SME credit-risk model", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert r.status_code == 201, r.content
    return r.json()


def test_stats_job_runs_on_provider_nodes_and_is_billed_from_the_ledger(workers) -> None:
    bank = api_for("bank")
    catalog = bank.get("/api/datasets/").json()["results"]
    offers = {d["node"]: d["offers"][0] for d in catalog}
    acme_right = _buy(bank, offers["acme"]["id"], "buy-acme")["right"]["id"]
    taxco_right = _buy(bank, offers["taxco"]["id"], "buy-taxco")["right"]["id"]

    r = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [acme_right, taxco_right]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="job-1",
    )
    assert r.status_code == 201, r.content
    job_id = r.json()["id"]
    assert UsageRight.objects.get(id=acme_right).quota_reserved == 1

    def finished():  # type: ignore[no-untyped-def]
        body = bank.get(f"/api/jobs/{job_id}/").json()
        return body if body["status"] in ("succeeded", "failed") else None

    body = wait_for(finished, timeout=90)
    assert body["status"] == "succeeded", body["error"]
    ledger_idle()

    values = _local_column("acme", "tenure_months") + _local_column("taxco", "tenure_months")
    mean = sum(values) / len(values)
    assert body["outputs"]["count"] == len(values)
    assert body["outputs"]["sum"] == pytest.approx(sum(values))
    assert body["outputs"]["mean"] == pytest.approx(mean, abs=1e-6)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    assert body["outputs"]["variance"] == pytest.approx(variance, rel=1e-6)

    # Only ciphertexts crossed the hub: no message it handled holds a plaintext partial.
    job = Job.objects.get(id=job_id)
    partials = Message.objects.filter(job=job, step="partial", direction="in")
    assert partials.count() == 2
    for m in partials:
        assert set(m.envelope["payload"]["body"]) == {"sealed"}  # what the broker carried: ciphertext
        result = m.body["result"]
        assert set(result) == {"totals"}  # count, Σx, Σx² packed into one plaintext
        (ct,) = he.PublicKey.from_json(job.state["public_key"]).unpack(result["totals"], 1)  # one ciphertext mod n²
        assert ct > 10**600

    # Quota: reserved → used; one usage entry per provider dataset, chained and signed.
    for right_id in (acme_right, taxco_right):
        right = UsageRight.objects.get(id=right_id)
        assert (right.quota_used, right.quota_reserved) == (1, 0)
    usage = list(LedgerEntry.objects.filter(kind="usage").order_by("seq"))
    assert {e.payload["dataset"] for e in usage} == set(
        Dataset.objects.filter(node__slug__in=["acme", "taxco"]).values_list("id", flat=True)
    )
    assert all(e.payload["receipt"]["payload"]["job"] == job_id for e in usage)
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:]))

    bill = bank.get("/api/billing/bill/").json()
    assert bill["totals"] == [{"amount_minor": 350, "currency": "EUR", "display": "3.50 EUR"}]
    # Charged by the job's settlements, one per right, each naming the usage entry it charges.
    settlements = list(LedgerEntry.objects.filter(kind="settlement").order_by("seq"))
    assert sorted(bill["ledger_seqs"]) == [s.seq for s in settlements]
    assert sorted(s.payload["usage"] for s in settlements) == sorted([e.seq] for e in usage)
    assert all(s.payload["outcome"] == "delivered" and s.payload["use"] == 1 for s in settlements)
    revenue = api_for("acme").get("/api/billing/revenue/").json()
    assert revenue["totals"][0]["amount_minor"] == 150
    assert revenue["nets"][0]["amount_minor"] == 135  # 10 % platform fee


def test_a_node_refuses_a_column_it_does_not_hold_and_the_quota_comes_back(workers) -> None:
    bank = api_for("bank")
    offer = next(d for d in bank.get("/api/datasets/").json()["results"] if d["node"] == "acme")["offers"][0]
    right = _buy(bank, offer["id"], "buy-1")["right"]["id"]
    # Passes hub validation (the hub trusts the attested schema) but the node's local file
    # is the authority: simulate a schema drift by asking for a column via a stale schema.
    ds = Dataset.objects.get(node__slug="acme")
    ds.columns = ds.columns + [{"name": "ghost_column", "type": "number", "role": "feature"}]
    ds.save()
    r = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "ghost_column"}, "rights": [right]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="job-ghost",
    )
    assert r.status_code == 201, r.content
    job_id = r.json()["id"]
    body = wait_for(lambda: (b := bank.get(f"/api/jobs/{job_id}/").json())["status"] in ("succeeded", "failed") and b)
    assert body["status"] == "failed"
    assert "no_column" in body["error"]
    right_row = UsageRight.objects.get(id=right)
    assert (right_row.quota_used, right_row.quota_reserved) == (0, 0)
    assert not LedgerEntry.objects.filter(kind="usage").exists()


def test_node_enrols_and_announces_over_the_broker(workers, tmp_path) -> None:
    """A new provider node: created in the hub, enrolled and announced by the node CLI."""
    import json
    import os
    import subprocess
    import sys

    from marketplace import services
    from marketplace.models import Node, Organization

    org = Organization.objects.get(slug="acme")
    node, token = services.node_create(organization=org, slug="acme-eu")
    node_dir = tmp_path / "acme-eu"
    (node_dir / "data").mkdir(parents=True)
    (node_dir / "data" / "loyalty.csv").write_text("member_id,points\n" + "".join(f"M{i},{i * 3}\n" for i in range(40)))
    (node_dir / "datasets.json").write_text(
        json.dumps([{"local": "loyalty", "name": "Loyalty points", "roles": {"member_id": "id"}}])
    )
    (node_dir / "hub.pub").write_text(api_for("acme").get("/api/hub/key/").json()["public_key"])
    env = dict(
        os.environ,
        USUFRUCT_NODE_SLUG="acme-eu",
        USUFRUCT_NODE_DIR=str(node_dir),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
    )
    env.pop("DATABASE_URL", None)
    for args in (["enroll", f"--token={token}"], ["announce"]):  # as the page shows it: a token may begin with "-"
        out = subprocess.run(
            [sys.executable, "-m", "compute.node", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
    dataset = wait_for(lambda: Dataset.objects.filter(node__slug="acme-eu").first())
    assert dataset.row_count == 40
    assert [c["role"] for c in dataset.columns] == ["id", "feature"]
    node.refresh_from_db()
    assert node.status == Node.Status.ACTIVE and node.kid
    assert LedgerEntry.objects.filter(kind="dataset_listed", dataset_id=dataset.id).exists()
    # Someone else's key presented for this node with the spent token: the hub worker
    # refuses it and the node keeps its key.
    intruder_dir = tmp_path / "intruder"
    (intruder_dir / "data").mkdir(parents=True)
    (intruder_dir / "hub.pub").write_text((node_dir / "hub.pub").read_text())
    bad = subprocess.run(
        [sys.executable, "-m", "compute.node", "enroll", f"--token={token}"],
        env=dict(env, USUFRUCT_NODE_DIR=str(intruder_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 0, bad.stderr  # sent; refusing it is the hub's job
    wait_for(lambda: "enrolment already used" in workers["hub"].read_text())
    kid = node.kid
    node.refresh_from_db()
    assert node.kid == kid and node.status == Node.Status.ACTIVE


def test_nodes_attest_their_receipts_in_batches_over_the_broker(workers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Real node workers sign receipt batches; the offline verifier then needs one signature per batch."""
    from compute import services as compute
    from ledger import bundle, services
    from tests.conftest import run_verifier
    from tests.ledger.conftest import forge_usage

    bank = api_for("bank")
    offers = {d["node"]: d["offers"][0] for d in bank.get("/api/datasets/").json()["results"]}
    rights = [_buy(bank, offers[n]["id"], f"buy-{n}")["right"]["id"] for n in ("acme", "taxco")]
    for n in range(2):
        r = bank.post(
            "/api/jobs/",
            {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": rights},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"job-{n}",
        )
        job_id = r.json()["id"]
        assert wait_for(lambda j=job_id: Job.objects.get(id=j).status == "succeeded", timeout=90)
        ledger_idle()

    assert compute.attestations_request() == 2  # one request per provider node
    batches = wait_for(lambda: (b := list(LedgerEntry.objects.filter(kind="receipt_batch"))) and len(b) == 2 and b)
    assert sorted((b.payload["node"], b.payload["count"]) for b in batches) == [("acme", 2), ("taxco", 2)]
    assert compute.attestations_request() == 0  # nothing left to attest

    services.checkpoint_create()
    path = tmp_path / "bundle.jsonl"
    path.write_text("".join(bundle.bundle_lines()))
    out = run_verifier(path, services.log_vkey())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 signatures checked one by one, 4 vouched for by 2 node-signed receipt batch(es)" in out.stdout

    # A receipt the ledger attributes to acme that acme's worker never issued: it refuses to attest,
    # the hub notes it and leaves it out, and acme's later receipts are batched again.
    from ledger.models import RefusedReceipt

    unknown = forge_usage(UsageRight.objects.get(id=rights[0]))
    assert compute.attestations_request() == 1
    assert wait_for(lambda: RefusedReceipt.objects.filter(seq=unknown.seq, node="acme").exists(), timeout=30)
    assert "node acme refused to attest receipts" in workers["hub"].read_text()
    r = bank.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": rights},
        format="json",
        HTTP_IDEMPOTENCY_KEY="job-after-refusal",
    )
    assert wait_for(lambda: Job.objects.get(id=r.json()["id"]).status == "succeeded", timeout=90)
    ledger_idle()
    assert compute.attestations_request() == 2
    assert wait_for(lambda: LedgerEntry.objects.filter(kind="receipt_batch").count() == 4)
    latest = LedgerEntry.objects.filter(kind="receipt_batch", payload__node="acme").order_by("-seq").first()
    assert latest.payload["first_seq"] > unknown.seq and latest.payload["count"] == 1
