"""The offline verifier accepts real bundles and reports every kind of tampering (exit status 1)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.verify import verify_file, verify_lines
from ledger import bundle, services
from ledger.hubkey import hub_private_key
from ledger.models import LedgerEntry
from protocol import checkpoint as notes
from tests.conftest import ROOT

from .conftest import ACME_ROWS, buy, edit_entry, forge_usage, later, use

pytestmark = pytest.mark.django_db


def export(**scope: int) -> list[str]:
    return list(bundle.bundle_lines(**scope))


def failures(lines: list[str], every_signature: bool = False) -> list[str]:
    return verify_lines(lines, log_keys=[services.log_vkey()], every_signature=every_signature).failures


def test_whole_dataset_consumer_and_range_bundles_verify(world) -> None:  # type: ignore[no-untyped-def]
    acme = world["acme"]
    for scope in ({}, {"dataset_id": acme.dataset_id}, {"consumer_id": acme.consumer_id}, {"seq_from": 5}):
        lines = export(**scope)
        report = verify_lines(lines, log_keys=[services.log_vkey()])
        assert report.ok, (scope, report.failures)
        assert report.kinds.get("usage", 0) >= 1
    # A dataset bundle carries the grants its usage rests on, and nothing of other datasets.
    report = verify_lines(export(dataset_id=acme.dataset_id))
    assert report.kinds["right_granted"] == 1 and report.kinds["usage"] == 3
    assert "RESULT: OK" in report.render()


def test_altered_payload_is_detected(world) -> None:  # type: ignore[no-untyped-def]
    seq = world["usages"][0].seq

    def bump(item):  # type: ignore[no-untyped-def]
        item["body"] = item["body"].replace(ACME_ROWS, '"rows":12')

    for lines in (export(), export(dataset_id=world["acme"].dataset_id)):
        found = failures(edit_entry(lines, seq, bump))
        assert any("does not match its signed checkpoint" in f or "not in the signed tree" in f for f in found)
        found = failures(edit_entry(lines, seq, bump), every_signature=True)
        assert any("hub signature: signature does not verify" in f for f in found)


def test_removed_and_reordered_entries_are_detected(world) -> None:  # type: ignore[no-untyped-def]
    lines = export()
    removed = lines[:4] + lines[5:]
    assert any("removed or reordered" in f for f in failures(removed))
    swapped = lines[:4] + [lines[5], lines[4]] + lines[6:]
    assert any("removed, reordered or repeated" in f for f in failures(swapped))
    truncated = lines[:-1]
    assert any("complete bundle holds" in f for f in failures(truncated))


def test_forged_or_missing_hub_signature_is_detected(world) -> None:  # type: ignore[no-untyped-def]
    seq = world["usages"][1].seq
    forged = base64.b64encode(hub_private_key().sign(b"something else")).decode()
    found = failures(edit_entry(export(), seq, lambda i: i.update(hub_sig=forged)), every_signature=True)
    assert any(f"entry #{seq} hub signature: signature does not verify" in f for f in found)
    for missing in ("", "AAAA", None):  # caught even when the checkpoints stand in for entry signatures
        found = failures(edit_entry(export(), seq, lambda i, m=missing: i.update(hub_sig=m)))  # type: ignore[misc]
        assert any(f"entry #{seq} hub signature: missing" in f for f in found), found
    assert any(
        "unknown hub key" in f for f in failures(edit_entry(export(), seq, lambda i: i.update(hub_kid="0" * 16)))
    )


def test_forged_node_receipt_is_detected_even_if_the_hub_signed_it(world) -> None:  # type: ignore[no-untyped-def]
    entry = use(world["acme"])
    receipt = dict(entry.payload["receipt"])
    receipt["payload"] = {**receipt["payload"], "rows": 1}  # the node never signed this
    forge_usage(world["acme"], overrides={"receipt": receipt, "rows": 1})
    services.checkpoint_create()
    found = failures(export())
    assert any("node receipt: signature does not verify" in f for f in found), found


def test_forked_checkpoints_are_detected(world) -> None:  # type: ignore[no-untyped-def]
    lines = export()
    header = json.loads(lines[0])
    size = header["tree_size"]
    evil = notes.Checkpoint("usufruct.local/ledger", size, b"\x07" * 32)
    header["checkpoints"].append(
        {"size": size, "note": notes.sign_checkpoint(evil, evil.origin, hub_private_key()).decode()}
    )
    found = failures([json.dumps(header) + "\n", *lines[1:]])
    assert any("fork: two signed checkpoints" in f for f in found)
    # A smaller head whose root is not a prefix of the later one: the consistency proof fails.
    header = json.loads(lines[0])
    first = header["checkpoints"][0]
    bad = notes.Checkpoint("usufruct.local/ledger", first["size"], b"\x09" * 32)
    first["note"] = notes.sign_checkpoint(bad, bad.origin, hub_private_key()).decode()
    found = failures([json.dumps(header) + "\n", *lines[1:]])
    assert any("fork: checkpoint" in f and "is not consistent" in f for f in found), found


def test_checkpoint_not_signed_by_the_pinned_key_is_rejected(world) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = notes.encode_vkey("usufruct.local/ledger", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    report = verify_lines(export(), log_keys=[other])
    assert not report.ok and any("pinned log keys" in f for f in report.failures)


def test_usage_outside_a_valid_right_is_detected(world) -> None:  # type: ignore[no-untyped-def]
    acme = world["acme"]
    forge_usage(acme, at=later(400))  # after the right's expiry
    forge_usage(acme, operation="psi")  # not permitted by the right
    services.entry_append(
        kind="right_revoked",
        event_id=f"right_revoked:{acme.id}",
        payload={"right": acme.id, "reason": "test"},
        right_id=acme.id,
        dataset_id=acme.dataset_id,
        consumer_id=acme.consumer_id,
    )
    use(acme)  # after revocation
    other = buy(node="acme")
    forge_usage(other, overrides={"right": 999999})  # an unknown right
    services.checkpoint_create()
    found = " | ".join(failures(export()))
    assert "expired" in found
    assert "operation 'psi' is not permitted" in found
    assert "after it ended" in found
    assert "cites right 999999 with no earlier right_granted" in found


def _run_verifier(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # Django, DRF and the rfc8785 library made unimportable: the verifier must not need them.
    code = (
        "import sys, runpy\n"
        "for m in ('django', 'rest_framework', 'rfc8785', 'psycopg2', 'celery', 'compute', 'marketplace'):\n"
        "    sys.modules[m] = None\n"
        f"sys.argv = ['audit.verify', *{[str(path), *extra]!r}]\n"
        "runpy.run_module('audit.verify', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_command_line_verifier_without_django(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "bundle.jsonl"
    good.write_text("".join(export()))
    ok = _run_verifier(good, "--log-key", services.log_vkey(), "--jobs", "2", "--chunk", "3")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "RESULT: OK" in ok.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(edit_entry(export(), 3, lambda i: i.update(body=i["body"].replace('"version":1', '"version":2'))))
    )
    failed = _run_verifier(bad, "--jobs", "2", "--chunk", "2")
    assert failed.returncode == 1 and "RESULT: FAILED" in failed.stdout
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    assert _run_verifier(junk).returncode == 2


def _owneredit_entry(seq: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ledger_ledgerentry DISABLE TRIGGER USER")
        cursor.execute(
            "UPDATE ledger_ledgerentry SET body = replace(body, %s, '\"rows\":1') WHERE seq = %s", [ACME_ROWS, seq]
        )
        cursor.execute("ALTER TABLE ledger_ledgerentry ENABLE TRIGGER USER")
    assert '"rows":1,' in LedgerEntry.objects.get(seq=seq).body


def test_row_edited_by_the_owner_behind_the_triggers_is_caught(world) -> None:  # type: ignore[no-untyped-def]
    target = world["usages"][0]
    _owneredit_entry(target.seq)
    found = failures(export())
    assert any("does not match its signed checkpoint" in f for f in found)
    assert any(f"entry #{target.seq} hub signature" in f for f in failures(export(), every_signature=True))


def test_hub_refuses_to_sign_a_head_over_an_edited_entry(world) -> None:  # type: ignore[no-untyped-def]
    fresh = use(world["acme"])
    _owneredit_entry(fresh.seq)
    with pytest.raises(services.CheckpointRefused, match=f"entry {fresh.seq} does not match"):
        services.checkpoint_create()


def test_signed_checkpoints_stand_in_for_entry_signatures_but_not_for_tampering(world) -> None:  # type: ignore[no-untyped-def]
    seq = world["usages"][1].seq
    forged = base64.b64encode(hub_private_key().sign(b"other")).decode()
    lines = edit_entry(export(), seq, lambda i: i.update(hub_sig=forged))
    report = verify_lines(lines)
    assert report.ok and "covered by the signed checkpoints" in report.render()
    assert not verify_lines(lines, every_signature=True).ok
    altered = edit_entry(export(), seq, lambda i: i.update(body=i["body"].replace(ACME_ROWS, '"rows":99')))
    found = verify_lines(altered).failures
    assert found and all("hub signature" not in f for f in found)
    partial = edit_entry(export(dataset_id=world["acme"].dataset_id), seq, lambda i: i.update(body=i["body"] + " "))
    assert not verify_lines(partial).ok


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_small_blocks_and_worker_processes_find_the_same_problems(world, tmp_path, chunk) -> None:  # type: ignore[no-untyped-def]
    # Blocks of a few entries: each is summarised in one piece (chain, subtrees, facts) and the
    # pieces are joined in order, so problems across block boundaries must still show.
    lines = export()
    key = [services.log_vkey()]
    assert verify_lines(lines, log_keys=key, chunk_size=chunk).ok
    path = tmp_path / "bundle.jsonl"
    path.write_text("".join(lines))
    for jobs in (1, 2):
        report = verify_file(path, log_keys=key, chunk_size=chunk, jobs=jobs)
        assert report.ok, report.failures
        assert report.entries == len(lines) - 1
    assert verify_file(path, log_keys=key, jobs=2, chunk_size=0).ok  # minimal blocks: one read per line

    def found(edited: list[str]) -> str:
        return " | ".join(verify_lines(edited, log_keys=key, chunk_size=chunk).failures)

    assert "removed or reordered" in found(lines[:4] + lines[5:])
    assert "removed, reordered or repeated" in found(lines[:4] + [lines[5], lines[4]] + lines[6:])
    assert "complete bundle holds" in found(lines[:-1])
    seq = world["usages"][0].seq
    bumped = found(edit_entry(lines, seq, lambda i: i.update(body=i["body"].replace(ACME_ROWS, '"rows":12'))))
    assert "does not match its signed checkpoint" in bumped
    assert "prev hash breaks the chain" in bumped
