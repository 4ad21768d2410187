"""Checkpoints on a schedule and by command; bundles by command and by API; the witness key command."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.verify import verify_file, verify_lines
from audit.witness import keygen
from ledger import services
from ledger.models import Checkpoint, Witness
from ledger.tasks import checkpoint_scheduled
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def test_beat_schedules_the_checkpoint_task_on_the_hub_queue() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["ledger-checkpoint"]
    assert entry["task"] == checkpoint_scheduled.name
    assert entry["options"]["queue"] == "hub"


def test_scheduled_task_signs_only_when_something_is_new(demo) -> None:  # type: ignore[no-untyped-def]
    size = checkpoint_scheduled.apply().get()
    assert size and Checkpoint.objects.get().size == size
    assert checkpoint_scheduled.apply().get() == size
    assert Checkpoint.objects.count() == 1


def test_checkpoint_command_prints_the_signed_note(demo) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("checkpoint", stdout=out)
    assert out.getvalue().startswith("usufruct.local/ledger\n")
    assert "\n\n\u2014 usufruct.local/ledger " in out.getvalue()


def test_export_bundle_command_writes_a_verifiable_bundle(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "b.jsonl"
    call_command("export_bundle", "-o", str(path), "--dataset", str(world["acme"].dataset_id), "--checkpoint")
    report = verify_file(path, log_keys=[services.log_vkey()])
    assert report.ok, report.failures
    assert report.scope == {"dataset": world["acme"].dataset_id}


def test_export_without_a_checkpoint_fails_clearly(demo) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="no checkpoint"):
        call_command("export_bundle", "-o", "/dev/null")


def test_bundle_api_is_for_auditors(world) -> None:  # type: ignore[no-untyped-def]
    r = api_for("regulator").get(f"/api/ledger/bundle/?consumer={world['acme'].consumer_id}")
    assert r.status_code == 200 and r["Content-Type"] == "application/x-ndjson"
    lines = b"".join(r.streaming_content).decode().splitlines(keepends=True)
    assert verify_lines(lines, log_keys=[services.log_vkey()]).ok
    assert api_for("bank").get("/api/ledger/bundle/").status_code == 403
    assert api_for("regulator").get("/api/ledger/bundle/?dataset=x").status_code == 400


def test_witness_register_command(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    vkey = keygen(tmp_path / "k.pem", "dpa.example/w2")
    call_command("witness_register", "dpa", vkey, stdout=io.StringIO())
    assert Witness.objects.filter(name="dpa.example/w2", vkey=vkey).exists()
    with pytest.raises(CommandError):
        call_command("witness_register", "acme", vkey)


def test_log_key_is_public() -> None:
    from rest_framework.test import APIClient

    r = APIClient().get("/api/ledger/key/").json()
    assert r["vkey"] == services.log_vkey() and r["origin"] == settings.USUFRUCT_LOG_ORIGIN
