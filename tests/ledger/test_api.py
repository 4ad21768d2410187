"""The ledger's read API: checkpoints, entries with filters and proofs, consistency proofs."""

from __future__ import annotations

import base64

import pytest

from ledger import services
from ledger.hubkey import hub_private_key
from ledger.models import Checkpoint
from protocol import checkpoint as notes
from protocol import merkle
from tests.conftest import api_for

pytestmark = pytest.mark.django_db


def _vk() -> notes.VerifierKey:
    return notes.parse_vkey(services.log_vkey())


def test_staff_signs_a_checkpoint_on_demand_and_others_may_not(demo) -> None:  # type: ignore[no-untyped-def]
    assert api_for("bank").post("/api/ledger/checkpoints/").status_code == 403
    r = api_for("admin").post("/api/ledger/checkpoints/")
    assert r.status_code == 201, r.content
    vk = _vk()
    cp = notes.open_checkpoint(r.json()["note"].encode(), vk.name, vk.public_key)
    assert cp.size == r.json()["size"] > 0
    assert cp.origin == "usufruct.local/ledger"
    # Nothing new: the same checkpoint comes back, no second signature at the same size.
    again = api_for("admin").post("/api/ledger/checkpoints/")
    assert again.json()["size"] == cp.size and Checkpoint.objects.count() == 1


def test_latest_and_by_size(world) -> None:  # type: ignore[no-untyped-def]
    api = api_for("regulator")
    first, second = world["checkpoints"]
    latest = api.get("/api/ledger/checkpoints/latest/").json()
    assert latest["size"] == second.size
    assert api.get(f"/api/ledger/checkpoints/{first.size}/").json()["root"] == base64.b64encode(first.root).decode()
    assert api.get("/api/ledger/checkpoints/999999/").status_code == 404
    listed = api.get("/api/ledger/checkpoints/").json()["results"]
    assert [c["size"] for c in listed] == [second.size, first.size]


def test_entry_detail_proves_inclusion_in_the_signed_checkpoint(world) -> None:  # type: ignore[no-untyped-def]
    entry = world["usages"][0]
    data = api_for("bank").get(f"/api/ledger/entries/{entry.seq}/").json()
    inc = data["inclusion"]
    vk = _vk()
    cp = notes.open_checkpoint(inc["checkpoint"].encode(), vk.name, vk.public_key)
    assert cp.size == inc["tree_size"] == world["checkpoints"][1].size
    leaf = merkle.leaf_hash(data["body"].encode())
    merkle.verify_inclusion(leaf, entry.seq, cp.size, [base64.b64decode(h) for h in inc["proof"]], cp.root)
    hub_private_key().public_key().verify(base64.b64decode(data["hub_sig"]), data["body"].encode())


def test_entry_proof_against_an_older_size_and_beyond_the_log(world) -> None:  # type: ignore[no-untyped-def]
    api = api_for("regulator")
    first = world["checkpoints"][0]
    r = api.get(f"/api/ledger/entries/0/?tree_size={first.size}").json()["inclusion"]
    merkle.verify_inclusion(
        merkle.leaf_hash(api.get("/api/ledger/entries/0/").json()["body"].encode()),
        0,
        first.size,
        [base64.b64decode(h) for h in r["proof"]],
        first.root,
    )
    late = world["usages"][-1].seq
    bad = api.get(f"/api/ledger/entries/{late}/?tree_size={first.size}")
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "proof_unavailable"


def test_consistency_proof_between_two_checkpoints(world) -> None:  # type: ignore[no-untyped-def]
    first, second = world["checkpoints"]
    r = api_for("regulator").get(f"/api/ledger/proofs/consistency/?from={first.size}&to={second.size}")
    proof = [base64.b64decode(h) for h in r.json()["proof"]]
    merkle.verify_consistency(first.size, second.size, proof, bytes(first.root), bytes(second.root))
    assert api_for("regulator").get("/api/ledger/proofs/consistency/?from=5&to=99999").status_code == 404
    assert api_for("regulator").get("/api/ledger/proofs/consistency/?from=5&to=3").status_code == 400
    assert api_for("regulator").get("/api/ledger/proofs/consistency/?from=x").status_code == 400


def test_entries_filter_by_kind_dataset_consumer_time_and_range(world) -> None:  # type: ignore[no-untyped-def]
    api = api_for("regulator")
    acme = world["acme"]

    def seqs(query: str) -> list[int]:
        r = api.get(f"/api/ledger/entries/?limit=500&{query}")
        assert r.status_code == 200, r.content
        return [e["seq"] for e in r.json()["results"]]

    usage_acme = [u.seq for u in world["usages"] if u.dataset_id == acme.dataset_id]
    assert seqs(f"kind=usage&dataset_id={acme.dataset_id}") == usage_acme
    assert len(seqs(f"kind=usage&consumer_id={acme.consumer_id}")) == 4
    assert seqs("seq_from=2&seq_to=4") == [2, 3]
    moment = world["usages"][2].integrated_at.isoformat().replace("+00:00", "Z")
    assert seqs(f"kind=usage&since={moment}") == [u.seq for u in world["usages"][2:]]
    assert seqs(f"kind=usage&until={moment}") == [u.seq for u in world["usages"][:2]]
    assert api.get("/api/ledger/entries/?kind=bogus").status_code == 400


def test_a_consumer_sees_only_its_entries(world) -> None:  # type: ignore[no-untyped-def]
    r = api_for("taxco").get("/api/ledger/entries/?kind=usage&limit=100").json()["results"]
    assert {e["seq"] for e in r} == {world["usages"][2].seq}
    other = world["usages"][0].seq
    assert api_for("taxco").get(f"/api/ledger/entries/{other}/").status_code == 404


def test_pages_render_for_a_regulator(world) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from django.test import Client

    users = get_user_model().objects
    client = Client()
    client.force_login(users.get(username="regulator"))  # client.login() has no request for django-axes
    seq = world["usages"][0].seq
    assert b'id="proof"' in client.get(f"/ledger/entries/{seq}/").content
    page = client.get(f"/ledger/checkpoints/?from={world['checkpoints'][0].size}&to={world['checkpoints'][1].size}")
    assert b'id="consistency"' in page.content and services.log_vkey().encode() in page.content
    trail = client.get(f"/ledger/audit/?dataset={world['acme'].dataset_id}").content.decode()
    assert "credit risk" in trail and trail.count('<tr><td><a href="/ledger/entries/') == 3
    assert client.get("/ledger/?kind=usage&dataset=1").status_code == 200
    bank = Client()
    bank.force_login(users.get(username="bank"))
    assert bank.get("/ledger/audit/").status_code == 403
