"""The sequencer's and the verifier's fast paths agree with the plain ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from audit._examine import pieces
from ledger import sequencer
from protocol.merkle import Frontier, leaf_hash, root_from_leaf_hashes

HASHES = [leaf_hash(b"entry %d" % i) for i in range(300)]


@given(st.integers(0, 150), st.integers(0, 150), st.integers(0, 150))
def test_pieces_appended_as_subtrees_give_the_leaf_by_leaf_tree(start, n, cut) -> None:  # type: ignore[no-untyped-def]
    cut = min(cut, n)
    by_leaf = Frontier()
    for h in HASHES[:start]:
        by_leaf.append(h)
    by_piece = by_leaf.copy()
    for level, h in pieces(start, HASHES[start : start + cut]):
        by_piece.append_subtree(level, h)
    assert by_piece.size == start + cut
    assert by_piece.root() == root_from_leaf_hashes(HASHES[: start + cut])
    for level, h in pieces(start + cut, HASHES[start + cut : start + n]):
        by_piece.append_subtree(level, h)
    assert by_piece.root() == root_from_leaf_hashes(HASHES[: start + n])


def test_a_subtree_must_be_aligned() -> None:
    f = Frontier()
    f.append(HASHES[0])
    with pytest.raises(ValueError):
        f.append_subtree(1, HASHES[1])


def test_parallel_signer_gives_the_signatures_of_the_key() -> None:
    key = Ed25519PrivateKey.generate()
    bodies = [b"body %d" % i for i in range(1100)]
    with ThreadPoolExecutor(2) as pool:
        signer = sequencer.ParallelSigner(key, pool, chunk=256)
        assert signer(bodies) == [key.sign(b) for b in bodies]  # Ed25519 is deterministic
        assert signer.submit(bodies[:3]).result() == [key.sign(b) for b in bodies[:3]]
