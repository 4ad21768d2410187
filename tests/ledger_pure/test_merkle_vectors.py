"""Every transparency-dev/merkle proof vector: happy paths verify, broken ones raise ProofError."""

from __future__ import annotations

import pytest

from protocol.merkle import ProofError, verify_consistency, verify_inclusion

from ._vectors import (
    VECTOR_DIR,
    ConsistencyVector,
    InclusionVector,
    consistency_vectors,
    inclusion_vectors,
)

INCLUSION = inclusion_vectors()
CONSISTENCY = consistency_vectors()


def test_vector_directory_holds_every_case() -> None:
    # Guards against a missing or truncated directory silently parametrizing nothing.
    assert VECTOR_DIR.is_dir(), f"vectors not found at {VECTOR_DIR}; set USUFRUCT_VECTORS_DIR"
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98
    assert sum(not v.want_err for v in INCLUSION) == 6
    assert sum(not v.want_err for v in CONSISTENCY) == 6


@pytest.mark.parametrize("vector", INCLUSION, ids=lambda v: v.name)
def test_inclusion_vector_is_accepted_exactly_when_valid(
    vector: InclusionVector,
) -> None:
    def verify() -> None:
        verify_inclusion(
            vector.leaf_hash,
            vector.leaf_index,
            vector.tree_size,
            vector.proof,
            vector.root,
        )

    if vector.want_err:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


@pytest.mark.parametrize("vector", CONSISTENCY, ids=lambda v: v.name)
def test_consistency_vector_is_accepted_exactly_when_valid(
    vector: ConsistencyVector,
) -> None:
    def verify() -> None:
        verify_consistency(vector.size1, vector.size2, vector.proof, vector.root1, vector.root2)

    if vector.want_err:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()
