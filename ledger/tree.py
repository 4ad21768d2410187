"""The Merkle tree as stored in ``MerkleNode``: roots and proofs for any size, from O(log n) rows.

Each computation runs twice over :mod:`protocol.merkle`: once with a recorder that
only notes which perfect subtrees ``(level, index)`` it needs, then, after one
query fetching exactly those rows, for real. The proof code thus stays the pure,
vector-tested one and the database sees one round trip per proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import connection
from django.db.models import Max

from ledger.exceptions import ProofUnavailable, TreeCorrupt
from ledger.models import LedgerEntry, MerkleNode
from protocol import merkle

T = TypeVar("T")
_PLACEHOLDER = bytes(32)
_MAX_PARAMS = 400  # pairs per query; far above the ~2 log2(n) a proof needs


def tree_size() -> int:
    """Number of leaves in the log as this transaction sees it (seqs are gap-free from 0)."""
    top = LedgerEntry.objects.aggregate(top=Max("seq"))["top"]
    return 0 if top is None else top + 1


def fetch_nodes(keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the given perfect subtrees; raises if any is missing."""
    wanted = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    table = connection.ops.quote_name(MerkleNode._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(wanted), _MAX_PARAMS):
            chunk = wanted[start : start + _MAX_PARAMS]
            pairs = ",".join(["(%s,%s)"] * len(chunk))
            cursor.execute(
                f'SELECT level, "index", hash FROM {table} WHERE (level, "index") IN (VALUES {pairs})',  # noqa: S608
                [v for pair in chunk for v in pair],
            )
            for level, index, value in cursor.fetchall():
                found[(level, index)] = bytes(value)
    missing = [k for k in wanted if k not in found]
    if missing:
        raise TreeCorrupt(f"Merkle subtrees missing from the store: {missing[:5]}")
    return found


def _compute(fn: Callable[[merkle.PerfectHash], T]) -> T:
    needed: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        needed.add((level, index))
        return _PLACEHOLDER

    fn(record)
    hashes = fetch_nodes(needed)
    return fn(lambda level, index: hashes[(level, index)])


def _check_size(size: int, current: int | None) -> int:
    current = tree_size() if current is None else current
    if not 0 <= size <= current:
        raise ProofUnavailable(f"tree size {size} is outside the log (current size {current})")
    return current


def root(size: int, *, current: int | None = None) -> bytes:
    """RFC 9162 root of the first ``size`` entries."""
    _check_size(size, current)
    return _compute(lambda perfect: merkle.subtree_hash(0, size, perfect))


def inclusion_proof(index: int, size: int, *, current: int | None = None) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1) from stored subtrees."""
    _check_size(size, current)
    if not 0 <= index < size:
        raise ProofUnavailable(f"entry {index} is not in the tree of size {size}")
    return _compute(
        lambda perfect: merkle.inclusion_proof(index, size, lambda s, e: merkle.subtree_hash(s, e, perfect))
    )


def consistency_proof(size1: int, size2: int, *, current: int | None = None) -> list[bytes]:
    """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from stored subtrees."""
    _check_size(size2, current)
    if not 0 <= size1 <= size2:
        raise ProofUnavailable(f"no consistency proof from size {size1} to {size2}")
    return _compute(
        lambda perfect: merkle.consistency_proof(size1, size2, lambda s, e: merkle.subtree_hash(s, e, perfect))
    )


def frontier(size: int) -> merkle.Frontier:
    """The right edge of the tree of ``size`` leaves, ready to append leaf ``size``."""
    positions = merkle.Frontier.positions(size)
    hashes = fetch_nodes(positions)
    return merkle.Frontier(size, {level: hashes[(level, index)] for level, index in positions})


def inclusion_proofs(indices: Iterable[int], size: int, *, current: int | None = None) -> dict[int, list[bytes]]:
    """Inclusion proofs of many entries against one tree size, with one fetch per few hundred rows."""
    _check_size(size, current)
    wanted = sorted(set(indices))
    if wanted and not 0 <= wanted[0] <= wanted[-1] < size:
        raise ProofUnavailable(f"entries {wanted[0]}..{wanted[-1]} are not all in the tree of size {size}")
    needed: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        needed.add((level, index))
        return _PLACEHOLDER

    def proof(index: int, perfect: merkle.PerfectHash) -> list[bytes]:
        return merkle.inclusion_proof(index, size, lambda s, e: merkle.subtree_hash(s, e, perfect))

    for index in wanted:
        proof(index, record)
    hashes = fetch_nodes(needed)
    return {index: proof(index, lambda level, i: hashes[(level, i)]) for index in wanted}
