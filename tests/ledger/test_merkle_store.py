"""The DB-backed Merkle tree agrees with the pure in-memory one for every size and proof."""

from __future__ import annotations

import pytest

from ledger import services, tree, writer
from ledger.models import LedgerEntry, MerkleNode, PendingEntry
from protocol import merkle


def _append(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        services.entry_append(kind="refund", event_id=f"t:{i}", payload={"i": i})


def _memory() -> merkle.MemoryTree:
    return merkle.MemoryTree(bytes.fromhex(h) for h in LedgerEntry.objects.values_list("leaf_hash", flat=True))


@pytest.mark.django_db
def test_each_append_stores_the_subtrees_it_completes() -> None:
    _append(8)
    rows = sorted((n.level, n.index) for n in MerkleNode.objects.all())
    assert rows == sorted([(0, i) for i in range(8)] + [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (3, 0)])


@pytest.mark.django_db
def test_roots_and_proofs_for_every_size_match_the_memory_tree() -> None:
    _append(21)
    mem = _memory()
    n = tree.tree_size()
    assert n == 21
    for size in range(1, n + 1):
        assert tree.root(size) == mem.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == mem.inclusion_proof(index, size)
            merkle.verify_inclusion(mem.perfect(0, index), index, size, proof, mem.root(size))
        for size1 in range(1, size + 1):
            proof = tree.consistency_proof(size1, size)
            merkle.verify_consistency(size1, size, proof, mem.root(size1), mem.root(size))


@pytest.mark.django_db
def test_proof_beyond_the_log_is_refused() -> None:
    _append(3)
    with pytest.raises(services.LedgerConflict.__mro__[1]):  # LedgerError
        tree.inclusion_proof(0, 4)
    with pytest.raises(services.LedgerConflict.__mro__[1]):
        tree.inclusion_proof(3, 3)


@pytest.mark.django_db
def test_the_writer_continues_the_same_tree_and_chain_across_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "PENDING_PART", 4)  # 13 entries: parts of 4, 4, 4, 1, each sequenced ahead
    _append(5)
    for i in range(13):
        writer.entry_enqueue(kind="refund", event_id=f"b:{i}", payload={"i": i})
    assert writer.integrate() == 13
    cp = services.checkpoint_create()
    assert cp is not None and cp.size == 18
    _append(2, start=100)
    mem = _memory()
    assert tree.root(20) == mem.root()
    assert bytes(cp.root) == mem.root(18)
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(20))
    assert [e.event_id for e in entries[5:18]] == [f"b:{i}" for i in range(13)]
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))


@pytest.mark.django_db
def test_a_part_that_fails_to_write_leaves_everything_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "PENDING_PART", 3)
    for i in range(8):
        writer.entry_enqueue(kind="refund", event_id=f"f:{i}", payload={"i": i})
    real, calls = services._write, []

    def failing(p, make_checkpoint):  # type: ignore[no-untyped-def]
        calls.append(len(p.bodies))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(p, make_checkpoint)

    monkeypatch.setattr(services, "_write", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        writer.integrate()
    assert LedgerEntry.objects.count() == 0 and PendingEntry.objects.count() == 8
    assert not MerkleNode.objects.exists()
    monkeypatch.setattr(services, "_write", real)
    assert writer.integrate() == 8 and tree.root(8) == _memory().root()


@pytest.mark.django_db
def test_writer_bodies_are_exactly_rfc8785() -> None:
    import json

    import rfc8785

    awkward = {"f": 1.5, "big": 2**60 // 2**10, "s": "tab\\t é \U0001f600", "k": {"\U0001f600": 1, "\ufb01": 2}}
    for i in range(6):
        payload = {"i": i, "nested": awkward if i % 2 else {"x": [1, None, True]}}
        writer.entry_enqueue(kind="refund", event_id=f"j:{i}", payload=payload)
    writer.integrate()
    assert LedgerEntry.objects.count() == 6
    for e in LedgerEntry.objects.order_by("seq"):
        assert e.body.encode() == rfc8785.dumps(json.loads(e.body))
        assert e.payload == json.loads(e.body)["payload"]
