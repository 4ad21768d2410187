"""The DB-backed Merkle tree agrees with the pure in-memory one for every size and proof."""

from __future__ import annotations

import pytest

from ledger import services, tree
from ledger.models import LedgerEntry, MerkleNode
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
def test_batch_append_continues_the_same_tree_and_chain() -> None:
    _append(5)
    drafts = [services.Draft("refund", f"b:{i}", {"i": i}) for i in range(13)]
    result = services.entries_append_batch(drafts=drafts)
    assert result.appended == 13
    assert result.checkpoint is not None and result.checkpoint.size == 18
    _append(2, start=100)
    mem = _memory()
    assert tree.root(20) == mem.root()
    assert bytes(result.checkpoint.root) == mem.root(18)
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(20))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))


@pytest.mark.django_db
def test_batch_repeating_known_event_returns_original() -> None:
    first = services.entries_append_batch(drafts=[services.Draft("refund", "x", {"a": 1})])
    again = services.entries_append_batch(drafts=[services.Draft("refund", "x", {"a": 1})])
    assert again.appended == 0 and again.seqs == first.seqs
    with pytest.raises(services.LedgerConflict):
        services.entries_append_batch(drafts=[services.Draft("refund", "x", {"a": 2})])


@pytest.mark.django_db
def test_batch_bodies_are_exactly_rfc8785_and_match_single_appends() -> None:
    import json

    import rfc8785

    awkward = {"f": 1.5, "big": 2**60 // 2**10, "s": "tab\\t é \U0001f600", "k": {"\U0001f600": 1, "\ufb01": 2}}
    drafts = [
        services.Draft("refund", f"j:{i}", {"i": i, "nested": awkward if i % 2 else {"x": [1, None, True]}})
        for i in range(6)
    ]
    services.entries_append_batch(drafts=drafts)
    for e in LedgerEntry.objects.order_by("seq"):
        assert e.body.encode() == rfc8785.dumps(json.loads(e.body))
        assert e.payload == json.loads(e.body)["payload"]
