"""Property tests: generated proofs verify, and any tampering makes verification raise."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    consistency_path_length,
    consistency_proof,
    inclusion_path_length,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_from_leaf_hashes,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 300
# Distinct leaves, so no two subtrees share a hash by accident.
HASHES = [leaf_hash(b"entry %d" % i) for i in range(MAX_SIZE)]
TREE = MemoryTree(HASHES)  # a tree of size n is the first n leaves of this one


def reference_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH written as the literal RFC 9162 §2.1.1 recursion."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(reference_mth(hashes[:k]), reference_mth(hashes[k:]))


def reference_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) as the literal RFC 9162 §2.1.3.1 recursion."""
    n = len(hashes)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*reference_path(m, hashes[:k]), reference_mth(hashes[k:])]
    return [*reference_path(m - k, hashes[k:]), reference_mth(hashes[:k])]


def reference_subproof(m: int, hashes: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) as the literal RFC 9162 §2.1.4.1 recursion."""
    n = len(hashes)
    if m == n:
        return [] if b else [reference_mth(hashes)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*reference_subproof(m, hashes[:k], b), reference_mth(hashes[k:])]
    return [*reference_subproof(m - k, hashes[k:], False), reference_mth(hashes[:k])]


def flip(value: bytes, bit: int) -> bytes:
    buf = bytearray(value)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, size2)), size2


@st.composite
def growing_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, MAX_SIZE))
    return draw(st.integers(1, size2 - 1)), size2


bits = st.integers(0, 255)


def test_level_by_level_root_equals_the_rfc_recursion() -> None:
    for n in range(MAX_SIZE + 1):
        assert root_from_leaf_hashes(HASHES[:n]) == reference_mth(HASHES[:n])


@given(st.integers(0, MAX_SIZE).flatmap(lambda end: st.tuples(st.integers(0, end), st.just(end))))
def test_memory_tree_subtree_equals_the_naive_hash_of_any_range(
    r: tuple[int, int],
) -> None:
    start, end = r
    assert TREE.subtree(start, end) == root_from_leaf_hashes(HASHES[start:end])


def test_memory_tree_rejects_ranges_outside_the_tree() -> None:
    for start, end in [(-1, 3), (5, 4), (0, MAX_SIZE + 1)]:
        with pytest.raises(ValueError, match="outside the tree"):
            TREE.subtree(start, end)


@given(size_and_index())
def test_generated_inclusion_proof_matches_the_rfc_and_verifies(
    si: tuple[int, int],
) -> None:
    size, index = si
    proof = TREE.inclusion_proof(index, size)
    assert proof == reference_path(index, HASHES[:size])
    assert len(proof) == inclusion_path_length(index, size)
    verify_inclusion(HASHES[index], index, size, proof, TREE.root(size))
    assert root_from_inclusion(HASHES[index], index, size, proof) == TREE.root(size)


@given(two_sizes())
def test_generated_consistency_proof_matches_the_rfc_and_verifies(
    sizes: tuple[int, int],
) -> None:
    size1, size2 = sizes
    proof = TREE.consistency_proof(size1, size2)
    assert proof == reference_subproof(size1, HASHES[:size2], True)
    assert len(proof) == consistency_path_length(size1, size2)
    verify_consistency(size1, size2, proof, TREE.root(size1), TREE.root(size2))


@given(size_and_index())
def test_proof_generation_reads_only_logarithmically_many_stored_subtrees(
    si: tuple[int, int],
) -> None:
    size, index = si
    lookups: list[tuple[int, int]] = []

    def perfect(level: int, idx: int) -> bytes:
        lookups.append((level, idx))
        return TREE.perfect(level, idx)

    def subtree(start: int, end: int) -> bytes:
        return subtree_hash(start, end, perfect)

    inclusion_proof(index, size, subtree)
    assert len(lookups) <= 2 * size.bit_length()
    lookups.clear()
    consistency_proof(index + 1, size, subtree)
    assert len(lookups) <= 2 * size.bit_length()


@given(size_and_index(), st.data())
def test_flipping_any_bit_of_an_inclusion_proof_element_is_rejected(si: tuple[int, int], data: st.DataObject) -> None:
    size, index = si
    proof = TREE.inclusion_proof(index, size)
    if not proof:
        return  # a one-leaf tree has no proof elements to flip
    i = data.draw(st.integers(0, len(proof) - 1))
    proof[i] = flip(proof[i], data.draw(bits))
    with pytest.raises(ProofError):
        verify_inclusion(HASHES[index], index, size, proof, TREE.root(size))


@given(size_and_index(), bits)
def test_flipping_any_bit_of_the_root_or_leaf_rejects_an_inclusion_proof(si: tuple[int, int], bit: int) -> None:
    size, index = si
    proof, root = TREE.inclusion_proof(index, size), TREE.root(size)
    with pytest.raises(ProofError):
        verify_inclusion(HASHES[index], index, size, proof, flip(root, bit))
    with pytest.raises(ProofError):
        verify_inclusion(flip(HASHES[index], bit), index, size, proof, root)


@given(size_and_index(), st.data())
def test_an_inclusion_proof_is_rejected_for_any_other_index(si: tuple[int, int], data: st.DataObject) -> None:
    size, index = si
    other = data.draw(st.integers(0, 2 * MAX_SIZE).filter(lambda i: i != index))
    proof = TREE.inclusion_proof(index, size)
    with pytest.raises(ProofError):
        verify_inclusion(HASHES[index], other, size, proof, TREE.root(size))


@given(size_and_index(), st.integers(1, MAX_SIZE))
def test_an_inclusion_proof_is_rejected_against_another_checkpoint(si: tuple[int, int], other_size: int) -> None:
    # A checkpoint binds size and root together; the proof must fail for any other pair.
    size, index = si
    if other_size == size:
        return
    proof = TREE.inclusion_proof(index, size)
    with pytest.raises(ProofError):
        verify_inclusion(HASHES[index], index, other_size, proof, TREE.root(other_size))


def test_an_inclusion_proof_alone_does_not_bind_the_tree_size() -> None:
    # Why the tree size must come from the same signed checkpoint as the root:
    # leaf 0 has the same proof shape in trees of 3 and 4 leaves.
    proof = TREE.inclusion_proof(0, 3)
    verify_inclusion(HASHES[0], 0, 4, proof, TREE.root(3))


@given(two_sizes(), st.data())
def test_flipping_any_bit_of_a_consistency_proof_element_is_rejected(
    sizes: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = sizes
    proof = TREE.consistency_proof(size1, size2)
    if not proof:
        return  # equal sizes: nothing to flip
    i = data.draw(st.integers(0, len(proof) - 1))
    proof[i] = flip(proof[i], data.draw(bits))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, TREE.root(size1), TREE.root(size2))


@given(two_sizes(), bits)
def test_flipping_any_bit_of_either_root_rejects_a_consistency_proof(sizes: tuple[int, int], bit: int) -> None:
    size1, size2 = sizes
    proof, root1, root2 = (
        TREE.consistency_proof(size1, size2),
        TREE.root(size1),
        TREE.root(size2),
    )
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, flip(root1, bit), root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, bit))


@given(growing_sizes(), two_sizes())
def test_a_consistency_proof_is_rejected_between_any_other_pair_of_checkpoints(
    sizes: tuple[int, int], other: tuple[int, int]
) -> None:
    # Equal sizes need no proof, so only proofs between different sizes can be misused.
    if other == sizes:
        return
    proof = TREE.consistency_proof(*sizes)
    o1, o2 = other
    with pytest.raises(ProofError):
        verify_consistency(o1, o2, proof, TREE.root(o1), TREE.root(o2))


@given(two_sizes())
def test_truncated_or_padded_consistency_proofs_are_rejected(
    sizes: tuple[int, int],
) -> None:
    size1, size2 = sizes
    proof, root1, root2 = (
        TREE.consistency_proof(size1, size2),
        TREE.root(size1),
        TREE.root(size2),
    )
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, [*proof, root2], root1, root2)
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof[:-1], root1, root2)


def test_a_log_cannot_shrink_or_prove_from_the_empty_tree() -> None:
    with pytest.raises(ProofError, match="cannot shrink"):
        verify_consistency(5, 4, [], TREE.root(5), TREE.root(4))
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 4, [], EMPTY_ROOT, TREE.root(4))


def test_verification_errors_name_the_defect() -> None:
    proof, root = TREE.inclusion_proof(5, 8), TREE.root(8)
    with pytest.raises(ProofError, match="not below tree size"):
        verify_inclusion(HASHES[8], 8, 8, proof, root)
    with pytest.raises(ProofError, match="has 4 hashes, expected 3"):
        verify_inclusion(HASHES[5], 5, 8, [*proof, root], root)
    with pytest.raises(ProofError, match="element 1 is 31 bytes"):
        verify_inclusion(HASHES[5], 5, 8, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(ProofError, match="leaf hash is 3 bytes"):
        verify_inclusion(b"abc", 5, 8, proof, root)
    with pytest.raises(ProofError, match="does not lead to the given root"):
        verify_inclusion(HASHES[4], 5, 8, proof, root)
    with pytest.raises(ProofError, match="proof is not empty"):
        verify_consistency(3, 3, [root], root, root)
    with pytest.raises(ProofError, match="consistency proof is empty"):
        verify_consistency(3, 8, [], TREE.root(3), root)


def test_proof_generation_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="out of range"):
        TREE.inclusion_proof(3, 3)
    with pytest.raises(ValueError, match="exceeds current size"):
        TREE.inclusion_proof(0, MAX_SIZE + 1)
    with pytest.raises(ValueError, match="invalid tree sizes"):
        TREE.consistency_proof(4, 3)
    assert TREE.consistency_proof(0, 10) == []
    assert TREE.consistency_proof(10, 10) == []
