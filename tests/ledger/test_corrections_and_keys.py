"""Corrections point at what they correct; a hub key rotation is in the ledger and old proofs stay valid."""

from __future__ import annotations

import shutil

import pytest
from django.core.management import call_command

from audit.verify import verify_lines
from ledger import bundle, services
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import LedgerEntry

pytestmark = pytest.mark.django_db


def test_a_correction_points_at_the_entry_and_edits_nothing(world) -> None:  # type: ignore[no-untyped-def]
    target = world["usages"][0]
    fix = services.entry_correct(
        corrects_seq=target.seq, reason="rows double-counted", amends={"rows": 60}, event_id="correction:1"
    )
    assert fix.kind == "correction" and fix.payload["corrects_entry_hash"] == target.entry_hash
    assert fix.dataset_id == target.dataset_id
    assert LedgerEntry.objects.get(seq=target.seq).body == target.body
    with pytest.raises(services.LedgerConflict):
        services.entry_correct(corrects_seq=target.seq, reason=" ", amends={}, event_id="correction:2")


@pytest.fixture
def own_hub_key(settings, tmp_path):  # type: ignore[no-untyped-def]
    key_file = tmp_path / "hub.pem"
    shutil.copy(settings.USUFRUCT_HUB_KEY_FILE, key_file)
    settings.USUFRUCT_HUB_KEY_FILE = key_file
    hub_private_key.cache_clear()
    yield key_file
    hub_private_key.cache_clear()


def test_rotation_is_recorded_and_bundles_verify_across_it(world, own_hub_key, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    old_kid, old_vkey = hub_kid(), services.log_vkey()
    with django_capture_on_commit_callbacks(execute=True):
        entry = services.hub_key_rotate()
    assert entry.hub_kid == old_kid and entry.payload["new_kid"] == hub_kid() != old_kid
    assert (own_hub_key.parent / f"hub.pem.retired-{old_kid}").exists()
    from tests.ledger.conftest import forge_usage

    later = forge_usage(world["acme"])  # the nodes still pin the old hub key: an entry as the hub writes it
    assert later.hub_kid == hub_kid()
    services.checkpoint_create()
    report = verify_lines(list(bundle.bundle_lines()), log_keys=[old_vkey, services.log_vkey()])
    assert report.ok, report.failures
    assert len(report.log_vkeys) == 2


def test_rotate_command(world, own_hub_key, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    import io

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("rotate_hub_key", stdout=out)
    assert "->" in out.getvalue() and LedgerEntry.objects.filter(kind="key_rotated").count() == 1
