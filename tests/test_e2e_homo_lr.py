"""Horizontal learning end to end: real hub and node worker processes on PostgreSQL and the broker.

The research institute buys rights on the three hospitals' datasets (same columns, different
patients) and trains one model across them; no hospital's update is decrypted alone. A hospital
whose node goes silent mid-training is dropped from the round by the stale-job sweeper and the
others finish; the silent one is not charged if it never contributed to a training round.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from sklearn.metrics import roc_auc_score

from compute import services
from compute.demo_data import CANCER_FEATURES, HOSPITALS
from compute.models import Job, JobParty, Message
from ledger.models import LedgerEntry
from marketplace.models import UsageRight
from tests.conftest import api_for, ledger_idle, post_job, wait_for

pytestmark = pytest.mark.e2e

PARAMS = {"label": "benign", "rounds": 4, "local_epochs": 2, "learning_rate": 0.1, "batch_size": 32, "key_bits": 1024}


def _rights(api) -> dict[str, int]:  # type: ignore[no-untyped-def]
    catalog = api.get("/api/datasets/?operation=homo_lr").json()["results"]
    assert sorted(d["node"] for d in catalog) == sorted(HOSPITALS)
    rights = {}
    for d in catalog:
        r = api.post(
            "/api/orders/",
            {"offer": d["offers"][0]["id"], "purpose": "Diagnostic model research", "accept_terms": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"buy-{d['node']}",
        )
        assert r.status_code == 201, r.content
        rights[d["node"]] = r.json()["right"]["id"]
    return rights


def _local(slug: str) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth from the hospital's own file (the test may read it; the hub never does)."""
    with (Path(settings.USUFRUCT_NODES_DIR) / slug / "data" / "patients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[f]) for f in CANCER_FEATURES] for r in rows]), np.array([int(r["benign"]) for r in rows])


def _finished(api, job_id: str):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        body = api.get(f"/api/jobs/{job_id}/").json()
        return body if body["status"] in ("succeeded", "failed") else None

    return check


def test_three_hospitals_train_one_model_through_the_api_and_real_workers(processes) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", *HOSPITALS, "oncolab"):
        processes.start(name, wait=False)
    processes.wait_ready()
    research = api_for("research")
    rights = _rights(research)
    r = post_job(research, "homo_lr", {**PARAMS, "features": CANCER_FEATURES}, list(rights.values()), "fl-1")
    assert r.status_code == 201, r.content
    job_id = r.json()["id"]
    body = wait_for(_finished(research, job_id), timeout=180)
    assert body["status"] == "succeeded", body["error"]
    ledger_idle()

    # The model fits the federation's rows, which it never saw in one place.
    parts = [_local(s) for s in HOSPITALS]
    x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    model = body["outputs"]["model"]
    assert roc_auc_score(y, x @ np.array(model["weights"]) + model["bias"]) > 0.99
    history = body["outputs"]["history"]
    assert [h["round"] for h in history] == [0, 1, 2, 3, 4, 5] and history[0]["rows"] == len(y) == 569
    assert history[-1]["loss"] < history[1]["loss"]

    # What crossed the hub: signed contributions of ciphertexts, never a plaintext update.
    job = Job.objects.get(id=job_id)
    updates = Message.objects.filter(job=job, step="fl_train", direction="in")
    assert updates.count() == 3 * 5
    for m in updates:
        assert set(m.envelope["payload"]["body"]) == {"sealed"}
        assert set(m.body["result"]) == {"contribution"}
        assert set(m.body["result"]["contribution"]["payload"]) == {"type", "job", "round", "party", "sum"}
    sums = Message.objects.filter(job=job, step="fl_aggregate", direction="out")
    assert sums.count() == 6 and all(len(m.body["args"]["contributions"]) == 3 for m in sums)

    # Metered per step and charged once per right; receipts bound by rows × passes.
    usage = LedgerEntry.objects.filter(kind="usage", payload__job=job_id)
    assert usage.count() == 3 * 6
    assert {e.payload["passes"] for e in usage if e.payload["step"] == "fl_train"} == {3}
    settled = LedgerEntry.objects.filter(kind="settlement", payload__job=job_id)
    assert sorted(e.payload["outcome"] for e in settled) == ["delivered"] * 3
    for right_id in rights.values():
        right = UsageRight.objects.get(id=right_id)
        assert (right.quota_used, right.quota_reserved) == (1, 0)

    # The same through the page: the rounds, the charts and the coefficients.
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="research"))
    page = client.get(f"/jobs/{job_id}/").content.decode()
    assert 'id="chart-fl-loss"' in page and 'id="chart-fl-coef"' in page and "mean_radius" in page


def test_a_hospital_that_goes_silent_is_dropped_and_the_others_finish(processes) -> None:  # type: ignore[no-untyped-def]
    for name in ("hub", *HOSPITALS, "oncolab"):
        processes.start(name, wait=False)
    processes.wait_ready()
    research = api_for("research")
    rights = _rights(research)
    processes.kill("northgate")  # before the job: it never answers a step
    params = {**PARAMS, "rounds": 2, "features": CANCER_FEATURES[:10], "min_providers": 2}
    r = post_job(research, "homo_lr", params, list(rights.values()), "fl-2")
    assert r.status_code == 201, r.content
    job_id = r.json()["id"]

    def waiting_on_northgate():  # type: ignore[no-untyped-def]
        job = Job.objects.get(id=job_id)
        return job if job.state.get("pending") == [_key(job, "northgate")] else None

    wait_for(waiting_on_northgate, timeout=60)
    assert services.jobs_fail_stale(older_than=timedelta(seconds=0)) == 0  # the beat task's body: not failed
    body = wait_for(_finished(research, job_id), timeout=120)
    assert body["status"] == "succeeded", body["error"]
    ledger_idle()
    job = Job.objects.get(id=job_id)
    assert body["outputs"]["dropped"] == {_key(job, "northgate"): "round 0: no answer"}
    assert all(len(h["providers"]) == 2 for h in body["outputs"]["history"])
    assert job.parties.get(node__slug="northgate").status == JobParty.Status.REFUSED
    outcomes = {e.payload["right"]: e.payload["outcome"] for e in LedgerEntry.objects.filter(kind="settlement")}
    assert outcomes == {rights["stmary"]: "delivered", rights["lakeside"]: "delivered"}  # northgate: no usage
    silent = UsageRight.objects.get(id=rights["northgate"])
    assert (silent.quota_used, silent.quota_reserved) == (0, 0)


def _key(job: Job, slug: str) -> str:
    return job.parties.get(node__slug=slug).key


def test_a_job_over_one_hospital_or_with_unknown_columns_is_refused_by_field(tdemo) -> None:  # type: ignore[no-untyped-def]
    research = api_for("research")
    rights = _rights(research)
    one = post_job(research, "homo_lr", {**PARAMS, "features": CANCER_FEATURES}, [rights["stmary"]], "fl-3")
    assert one.status_code == 400 and "rights" in one.json()["error"]["fields"], one.content
    bad = post_job(research, "homo_lr", {**PARAMS, "features": ["nope"]}, list(rights.values()), "fl-4")
    assert bad.status_code == 400 and "features" in bad.json()["error"]["fields"], bad.content
