"""A node rotates its key: a new one-time token, a new key enrolled with proof of
possession, a ``key_rotated`` entry on the ledger, the old key refused from then on, and
receipts it signed before still verify offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from compute import services
from compute.models import Job
from compute.node.config import NodeConfig
from compute.node.runtime import enrolment_message
from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace.models import Node
from protocol import envelope
from tests.conftest import api_for, run_verifier
from tests.test_jobs_protocol import _deliver, _right, _submit, node

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def test_rotation_is_on_the_ledger_and_old_receipts_still_verify(bank_api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    services.job_start(job_id=job_id)
    job = Job.objects.get(id=job_id)
    for step in ("keygen", "partial", "decrypt"):
        _deliver(job, step)
    old = node("acme")
    old_kid = old.kid
    assert LedgerEntry.objects.get(kind="usage").payload["receipt"]["kid"] == old_kid

    assert api_for("bank").post("/api/nodes/acme/rekey/").status_code == 404  # not the bank's node
    token = api_for("acme").post("/api/nodes/acme/rekey/").json()["enrolment_token"]
    fresh_dir = tmp_path / "acme"
    shutil.copytree(old.directory, fresh_dir, ignore=shutil.ignore_patterns("node_ed25519.pem", "state"))
    fresh = NodeConfig(slug="acme", directory=fresh_dir, broker_url="memory://", broker_dir=None)
    assert fresh.kid != old_kid
    assert services.message_receive(wire=enrolment_message(fresh, token)) == "enrolled"

    rotated = LedgerEntry.objects.get(kind="key_rotated")
    assert rotated.payload["key"] == "node" and rotated.payload["old_kid"] == old_kid
    assert rotated.payload["new_kid"] == fresh.kid
    assert Node.objects.get(slug="acme").kid == fresh.kid
    stale = envelope.seal(
        job="",
        step="announce",
        round=0,
        sender="acme",
        recipient="hub",
        body={"manifest": {}},
        key=old.private_key,
        kid=old_kid,
        to=old.hub_public_key,
    )
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=stale)
    assert err.value.code == "unknown_key"
    # The token is spent: enrolling yet another key with it is refused.
    from marketplace.exceptions import Forbidden

    with pytest.raises(Forbidden):
        services.message_receive(wire=enrolment_message(old, token))

    ledger_services.checkpoint_create()
    bundle = tmp_path / "bundle.jsonl"
    call_command("export_bundle", "-o", str(bundle))
    vkey = ledger_services.log_vkey()
    out = run_verifier(bundle, vkey)
    assert out.returncode == 0, out.stdout + out.stderr

    # Without the rotated-out key the old receipt cannot be checked: the verifier says so.
    import json

    lines = bundle.read_text().splitlines()
    header = json.loads(lines[0])
    del header["node_keys"][old_kid]
    bundle.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    bad = run_verifier(bundle, vkey)
    assert bad.returncode != 0
