"""Known answers for the 8 RFC 6962 test leaves, checked against the published vectors."""

from __future__ import annotations

import hashlib

import pytest

from protocol.merkle import (
    EMPTY_ROOT,
    LEAF_PREFIX,
    NODE_PREFIX,
    MemoryTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
)

from ._vectors import (
    LEAVES,
    ConsistencyVector,
    InclusionVector,
    consistency_vectors,
    inclusion_vectors,
)

HAPPY_INCLUSION = [v for v in inclusion_vectors() if not v.want_err]
# consistency/additional/ holds placeholder roots, not trees of the test leaves.
HAPPY_CONSISTENCY = [
    v for v in consistency_vectors() if not v.want_err and not v.name.startswith("consistency/additional/")
]


def _tree(size: int) -> MemoryTree:
    return MemoryTree(leaf_hash(d) for d in LEAVES[:size])


def _roots_published_in_vectors() -> dict[int, bytes]:
    """Tree size -> root, from happy-path vectors built from the RFC 6962 leaves."""
    roots: dict[int, set[bytes]] = {}
    for iv in HAPPY_INCLUSION:
        if iv.name.split("/")[1].isdigit():
            roots.setdefault(iv.tree_size, set()).add(iv.root)
    for cv in HAPPY_CONSISTENCY:
        roots.setdefault(cv.size1, set()).add(cv.root1)
        roots.setdefault(cv.size2, set()).add(cv.root2)
    assert all(len(r) == 1 for r in roots.values()), "vectors disagree on a root"
    return {size: r.pop() for size, r in roots.items()}


# transparency-dev/merkle testonly/constants.go, RootHashes()[4]: the only size
# up to 8 that no happy-path vector states.
ROOT_OF_SIZE_4 = bytes.fromhex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")


def test_prefixes_and_empty_root_are_the_rfc_constants() -> None:
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MemoryTree().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_use_their_domain_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_vectors_state_the_roots_of_sizes_1_2_3_5_6_7_8() -> None:
    assert set(_roots_published_in_vectors()) == {1, 2, 3, 5, 6, 7, 8}


@pytest.mark.parametrize("size", range(1, 9))
def test_root_of_each_prefix_of_the_test_leaves_matches_the_published_root(
    size: int,
) -> None:
    published = _roots_published_in_vectors()
    want = published.get(size, ROOT_OF_SIZE_4 if size == 4 else None)
    assert want is not None
    hashes = [leaf_hash(d) for d in LEAVES[:size]]
    assert root_from_leaf_hashes(hashes) == want
    assert _tree(size).root() == want
    assert _tree(8).root(size) == want


def test_vector_leaf_hashes_are_the_hashes_of_the_test_leaves() -> None:
    for v in HAPPY_INCLUSION:
        if v.name.startswith("inclusion/single-entry/"):
            continue  # built from an arbitrary leaf, not the RFC 6962 set
        assert v.leaf_hash == leaf_hash(LEAVES[v.leaf_index]), v.name


def test_memory_tree_levels_hold_the_published_perfect_subtree_hashes() -> None:
    # transparency-dev/merkle testonly/constants.go NodeHashes(), levels 1 to 3.
    published = {
        (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    tree = _tree(8)
    for (level, index), want in published.items():
        assert tree.perfect(level, index).hex() == want


def test_appending_returns_exactly_the_new_level_rows() -> None:
    tree = MemoryTree()
    rows = [tree.append(leaf_hash(d)) for d in LEAVES]
    assert [[(lvl, idx) for lvl, idx, _ in r] for r in rows] == [
        [(0, 0)],
        [(0, 1), (1, 0)],
        [(0, 2)],
        [(0, 3), (1, 1), (2, 0)],
        [(0, 4)],
        [(0, 5), (1, 2)],
        [(0, 6)],
        [(0, 7), (1, 3), (2, 1), (3, 0)],
    ]
    for r in rows:
        for level, index, h in r:
            assert tree.perfect(level, index) == h


@pytest.mark.parametrize("vector", HAPPY_INCLUSION, ids=lambda v: v.name)
def test_generated_inclusion_proof_equals_the_published_proof(
    vector: InclusionVector,
) -> None:
    if vector.name.startswith("inclusion/single-entry/"):
        tree = MemoryTree([vector.leaf_hash])
    else:
        tree = _tree(vector.tree_size)
    assert tree.root() == vector.root
    assert tree.inclusion_proof(vector.leaf_index) == vector.proof


@pytest.mark.parametrize("vector", HAPPY_CONSISTENCY, ids=lambda v: v.name)
def test_generated_consistency_proof_equals_the_published_proof(
    vector: ConsistencyVector,
) -> None:
    tree = _tree(vector.size2)
    assert tree.root(vector.size1) == vector.root1
    assert tree.root() == vector.root2
    assert tree.consistency_proof(vector.size1) == vector.proof
