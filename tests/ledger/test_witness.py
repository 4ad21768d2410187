"""Witnesses: a regulator cosigns checkpoints it checked, and refuses a rewritten history."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys

import pytest
from django.db import connection

from audit.witness import WitnessError, cosign
from ledger import services
from ledger.hubkey import hub_private_key
from ledger.models import Checkpoint, Cosignature, LedgerEntry, MerkleNode
from protocol import checkpoint as notes
from protocol import merkle
from tests.conftest import ROOT, api_for, wait_for

from .conftest import WITNESS_NAME, dpa_id, register_witness, use


def api_fetch(username: str = "regulator"):  # type: ignore[no-untyped-def]
    client = api_for(username)

    def fetch(method: str, path: str, body=None):  # type: ignore[no-untyped-def]
        r = client.get(path) if method == "GET" else client.post(path, body, format="json")
        if r.status_code >= 400:
            raise RuntimeError(f"{r.status_code}: {r.content[:300]!r}")
        return r.json()

    return fetch


@pytest.mark.django_db
def test_witness_cosigns_then_follows_the_log(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, key = register_witness(tmp_path)
    state = tmp_path / "state.json"
    first = cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    assert first.cosigned and first.previous is None
    served = api_for("bank").get("/api/ledger/checkpoints/latest/").json()
    assert [c["witness"] for c in served["cosignatures"]] == [WITNESS_NAME]
    parsed = notes.parse_note(served["note"].encode())
    witnesses = api_for("bank").get("/api/ledger/witnesses/").json()["results"]
    vkey = notes.parse_vkey(next(w["vkey"] for w in witnesses if w["name"] == WITNESS_NAME))
    assert notes.verify_cosignature(parsed, vkey.name, vkey.public_key) > 0
    use(world["acme"])  # a delivered job: its usage and its settlement
    services.checkpoint_create()
    second = cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    assert second.cosigned and second.previous == first.size and second.size == first.size + 2
    assert json.loads(state.read_text())["size"] == second.size
    assert Cosignature.objects.count() == 2


@pytest.mark.django_db
def test_hub_rejects_bad_or_foreign_cosignatures(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, key = register_witness(tmp_path)
    cp = Checkpoint.objects.order_by("-size").first()
    url = f"/api/ledger/checkpoints/{cp.size}/cosignatures/"
    good = notes.add_cosignature(cp.note.encode(), name, key)
    other = Checkpoint.objects.order_by("size").first()
    wrong_text = notes.add_cosignature(other.note.encode(), name, key)
    forged = good.replace(good.split(b"\n")[-2][-10:], b"AAAAAAAAAA")
    api = api_for("regulator")
    assert api.post(url, {"note": wrong_text.decode()}, format="json").json()["error"]["code"] == "cosignature_rejected"
    assert api.post(url, {"note": forged.decode()}, format="json").status_code == 400
    assert api.post(url, {"note": cp.note}, format="json").status_code == 400  # no cosignature at all
    assert api_for("bank").post(url, {"note": good.decode()}, format="json").status_code == 403
    assert api.post(url, {"note": good.decode()}, format="json").status_code == 201
    assert api.get(f"/api/ledger/checkpoints/{cp.size}/").json()["note"].endswith(Cosignature.objects.get().line)
    assert api_for("bank").post("/api/ledger/witnesses/", {"vkey": "x+y+z"}, format="json").status_code == 403
    assert api.post("/api/ledger/witnesses/", {"vkey": services.log_vkey()}, format="json").status_code == 400
    assert Cosignature.objects.filter(witness__organization_id=dpa_id()).count() == 1


@pytest.mark.django_db
def test_witness_refuses_a_rewritten_history(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, key = register_witness(tmp_path)
    state = tmp_path / "state.json"
    cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    # The database owner rewrites entry 1 behind the triggers, rebuilds the tree, drops the
    # old checkpoints and has the hub sign the new history.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush deferred FK checks before ALTER TABLE
        for table in ("ledger_ledgerentry", "ledger_merklenode", "ledger_checkpoint", "ledger_cosignature"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        entry = LedgerEntry.objects.get(seq=1)
        body = entry.body.replace('"version":1', '"version":9').encode()
        cursor.execute(
            "UPDATE ledger_ledgerentry SET body = %s, leaf_hash = %s WHERE seq = 1",
            [body.decode(), merkle.leaf_hash(body).hex()],
        )
        cursor.execute("DELETE FROM ledger_cosignature")
        cursor.execute("DELETE FROM ledger_checkpoint")
        cursor.execute("DELETE FROM ledger_merklenode")
    tree = merkle.MemoryTree()
    for leaf in LedgerEntry.objects.order_by("seq").values_list("leaf_hash", flat=True):
        for lv, ix, h in tree.append(bytes.fromhex(leaf)):
            MerkleNode.objects.create(level=lv, index=ix, hash=h)
    use(world["acme"])
    services.checkpoint_create()
    with pytest.raises(WitnessError, match="fork"):
        cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    assert not Cosignature.objects.exists()


@pytest.mark.django_db
def test_witness_refuses_a_rollback_and_a_bad_log_signature(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, key = register_witness(tmp_path)
    state = tmp_path / "state.json"
    cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "size": saved["size"] + 5}))
    with pytest.raises(WitnessError, match="rollback"):
        cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    state.write_text(json.dumps({**saved, "root": base64.b64encode(b"\x01" * 32).decode()}))
    with pytest.raises(WitnessError, match="fork"):
        cosign(fetch=api_fetch(), log_vkey=services.log_vkey(), name=name, key=key, state_file=state)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    impostor = notes.encode_vkey("usufruct.local/ledger", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    with pytest.raises(WitnessError, match="does not verify"):
        cosign(fetch=api_fetch(), log_vkey=impostor, name=name, key=key, state_file=tmp_path / "fresh.json")
    assert hub_private_key()  # the real key was never needed by the witness


@pytest.mark.django_db(transaction=True)
def test_witness_command_over_http(live_server, tdemo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    services.checkpoint_create()
    token = Token.objects.get_or_create(user=get_user_model().objects.get(username="regulator"))[0].key
    key_file = tmp_path / "w.pem"
    base = [sys.executable, "-c", _no_django() + "from audit.witness import main; sys.exit(main(sys.argv[1:]))"]
    vkey = subprocess.run(
        [*base, "keygen", "--key", str(key_file), "--name", WITNESS_NAME],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert api_for("regulator").post("/api/ledger/witnesses/", {"vkey": vkey}, format="json").status_code == 201
    args = [
        "cosign",
        "--url",
        live_server.url,
        f"--token={token}",  # an API token may begin with "-"
        "--key",
        str(key_file),
        "--name",
        WITNESS_NAME,
        "--log-key",
        services.log_vkey(),
        "--state",
        str(tmp_path / "state.json"),
    ]
    done = subprocess.run([*base, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cosigned checkpoint" in done.stdout
    assert Cosignature.objects.count() == 1

    # As a service: --every keeps following the log, cosigning each new checkpoint. Its output
    # goes to a file the test reads while it runs (a pipe is read only once it has stopped).
    out_file, err_file = tmp_path / "follower.out", tmp_path / "follower.err"
    with out_file.open("w") as out_fh, err_file.open("w") as err_fh:
        follower = subprocess.Popen([*base, *args, "--every", "0.3"], cwd=ROOT, stdout=out_fh, stderr=err_fh)
    try:
        services.entry_append(kind="correction", event_id="w-1", payload={"corrects": 0, "reason": "test"})
        newer = services.checkpoint_create()
        wait_for(lambda: f"cosigned checkpoint {newer.size}" in out_file.read_text(), timeout=60)
        assert Cosignature.objects.filter(checkpoint=newer).exists()
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)
    assert follower.returncode == 0, out_file.read_text() + err_file.read_text()

    # A hub that shows another root for a size this witness cosigned: it stops for good (exit 1).
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps({**state, "root": base64.b64encode(b"\x01" * 32).decode()}))
    forked = subprocess.run([*base, *args, "--every", "0.3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert forked.returncode == 1 and "REFUSED: fork" in forked.stderr, forked.stdout + forked.stderr


def test_a_following_witness_is_quiet_until_there_is_something_to_cosign(live_server, tdemo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    assert not Checkpoint.objects.exists()  # a fresh hub: nothing signed yet
    token = Token.objects.get_or_create(user=get_user_model().objects.get(username="regulator"))[0].key
    key_file = tmp_path / "w.pem"
    base = [sys.executable, "-c", _no_django() + "from audit.witness import main; sys.exit(main(sys.argv[1:]))"]
    vkey = subprocess.run(
        [*base, "keygen", "--key", str(key_file), "--name", WITNESS_NAME], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert api_for("regulator").post("/api/ledger/witnesses/", {"vkey": vkey}, format="json").status_code == 201
    args = [
        "cosign", "--url", live_server.url, f"--token={token}", "--key", str(key_file), "--name", WITNESS_NAME,
        "--log-key", services.log_vkey(), "--state", str(tmp_path / "state.json"), "--every", "0.2",
    ]  # fmt: skip
    out_file, err_file = tmp_path / "quiet.out", tmp_path / "quiet.err"
    with out_file.open("w") as out_fh, err_file.open("w") as err_fh:
        follower = subprocess.Popen([*base, *args], cwd=ROOT, stdout=out_fh, stderr=err_fh)
    try:
        time.sleep(2)  # ten rounds with no checkpoint to cosign
        assert out_file.read_text() == "" and err_file.read_text() == ""
        first = services.checkpoint_create()
        wait_for(lambda: f"cosigned checkpoint {first.size}" in out_file.read_text(), timeout=30)
        time.sleep(1)  # more rounds with nothing new: still one line
        assert out_file.read_text().count("\n") == 1, out_file.read_text()
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)
    assert err_file.read_text() == ""


def _no_django() -> str:
    return "import sys\nfor m in ('django', 'rest_framework', 'rfc8785'):\n    sys.modules[m] = None\n"
