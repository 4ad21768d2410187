"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and verification.

Pure functions over SHA-256, no I/O.  Proof *generation* never rehashes the log:
it asks a caller-supplied ``subtree(start, end)`` for the Merkle Tree Hash (MTH)
of leaves ``[start, end)``.  For the ranges RFC 9162 proofs need, that hash is
either one stored perfect subtree (2^k leaves starting at a multiple of 2^k) or
a combination of O(log n) of them, so a store keeping those perfect subtrees
(see :class:`MemoryTree`, which a database table ``(level, index, hash)`` can
mirror) answers any proof in O(log n) lookups.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and raises
:class:`ProofError` on any failure instead of returning a boolean, so a
forgotten check cannot silently pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "MemoryTree",
    "ProofError",
    "SubtreeHash",
    "consistency_path_length",
    "consistency_proof",
    "inclusion_path_length",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_from_leaf_hashes",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: domain separation between leaves and interior nodes, so a
# leaf can never be passed off as an interior node (second-preimage defence).
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]
"""``subtree(start, end)`` returns MTH(D[start:end]) of the log's leaves."""

PerfectHash = Callable[[int, int], bytes]
"""``perfect(level, index)`` returns MTH(D[index * 2**level : (index + 1) * 2**level])."""


class ProofError(ValueError):
    """A Merkle proof, or a claim it was checked against, is invalid."""


def leaf_hash(data: bytes) -> bytes:
    """MTH of a one-entry list: SHA-256(0x00 || data) (RFC 9162 §2.1.1)."""
    return sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash: SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two strictly smaller than ``n`` (n >= 2), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes (RFC 9162 §2.1.1); the empty tree is SHA-256("").

    Computed level by level, promoting an unpaired last node unchanged; that
    yields exactly the tree of the RFC's "largest power of two < n" split.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [sha256(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def subtree_hash(start: int, end: int, perfect: PerfectHash) -> bytes:
    """MTH(D[start:end]) assembled from stored perfect subtree hashes.

    A range that is itself a perfect aligned subtree is one lookup; anything
    else is split per RFC 9162 §2.1.1 at k = largest power of two < n.  Ranges
    met by proof generation cost O(log n) lookups; an arbitrary unaligned range
    can cost up to O(n).
    """
    n = end - start
    if start < 0 or n < 0:
        raise ValueError(f"invalid leaf range [{start}, {end})")
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start & (n - 1) == 0:
        level = n.bit_length() - 1
        return perfect(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, perfect), subtree_hash(start + k, end, perfect))


def inclusion_proof(index: int, tree_size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[tree_size]) of RFC 9162 §2.1.3.1, ordered leaf-to-root."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} out of range for tree size {tree_size}")
    path: list[bytes] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo += k
    # The RFC recursion appends each sibling after the deeper part of the path.
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(size1, D[size2]) = SUBPROOF(size1, D[size2], true) of RFC 9162 §2.1.4.1.

    Empty when ``size1`` is 0 or equals ``size2``: there is nothing to prove.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"invalid tree sizes {size1} -> {size2}")
    if size1 == 0 or size1 == size2:
        return []
    path: list[bytes] = []
    lo, hi = 0, size2
    # The RFC's flag b: stays true while the current subtree is a prefix of the
    # old tree the verifier already holds the root of, so it need not be sent.
    known = True
    while size1 != hi:
        k = _split(hi - lo)
        if size1 - lo <= k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo += k
            known = False
    if not known:
        path.append(subtree(lo, hi))
    path.reverse()
    return path


def inclusion_path_length(index: int, tree_size: int) -> int:
    """Exact length of the inclusion proof for ``0 <= index < tree_size``."""
    # Below the level where the paths to `index` and to the last leaf diverge
    # every level has a sibling; above it, only levels where `index` is a right child.
    inner = (index ^ (tree_size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_path_length(size1: int, size2: int) -> int:
    """Exact length of the consistency proof for ``0 < size1 <= size2``."""
    if size1 == size2:
        return 0
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    # A power-of-two old tree is its own seed, so its root is not in the proof.
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner - shift + border


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_path(proof: Sequence[bytes], want: int, kind: str) -> None:
    # Length first: it pins the proof's shape before any hashing happens.
    if len(proof) != want:
        raise ProofError(f"{kind} proof has {len(proof)} hashes, expected {want}")
    for i, h in enumerate(proof):
        _check_hash(h, f"{kind} proof element {i}")


def root_from_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof commits to (RFC 9162 §2.1.3.2 steps 1-3)."""
    if index < 0 or tree_size < 0:
        raise ProofError(f"negative leaf index or tree size ({index}, {tree_size})")
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not below tree size {tree_size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_path(proof, inclusion_path_length(index, tree_size), "inclusion")
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = sha256(NODE_PREFIX + p + r).digest()
            # Skip levels where this node is the last one and has no sibling.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` and ``root``.

    RFC 9162 §2.1.3.2.  Raises :class:`ProofError` on any failure.  An inclusion
    proof does not bind the tree size on its own; the size must come from the
    same signed checkpoint as ``root``.
    """
    _check_hash(root, "root")
    if root_from_inclusion(leaf_hash, index, tree_size, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the given root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2``/``root2`` extends the one of ``size1``/``root1``.

    RFC 9162 §2.1.4.2.  Raises :class:`ProofError` on any failure.  As in
    transparency-dev/merkle, a proof from the empty tree is rejected as
    meaningless (every tree extends it; callers should not ask), and equal sizes
    need an empty proof and byte-identical roots (nothing is hashed then, so the
    roots are only compared).
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size ({size1}, {size2})")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}: a log cannot shrink")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("tree sizes are equal but the consistency proof is not empty")
        if root1 != root2:
            raise ProofError("tree sizes are equal but the roots differ")
        return
    if not proof:
        raise ProofError("consistency proof is empty but the tree sizes differ")
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    _check_path(proof, consistency_path_length(size1, size2), "consistency")

    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = sha256(NODE_PREFIX + c + fr).digest()
            sr = sha256(NODE_PREFIX + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to root1 of tree size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to root2 of tree size {size2}")


class MemoryTree:
    """Append-only log holding, per level k, the hashes of its complete aligned 2^k subtrees.

    ``levels[k][i]`` is MTH(D[i * 2**k : (i + 1) * 2**k]); level 0 holds the
    leaf hashes.  Appending leaf n stores it at (0, n) and then, while the new
    node's index is odd, combines it with its left sibling one level up: at most
    log2(n) + 1 new rows, which :meth:`append` returns so a database table
    ``(level, index, hash)`` can store exactly the same rows.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the new ``(level, index, hash)`` rows, leaf first."""
        _check_hash(leaf_hash, "leaf hash")
        levels = self._levels
        levels[0].append(leaf_hash)
        rows = [(0, len(levels[0]) - 1, leaf_hash)]
        level = 0
        while not len(levels[level]) & 1:
            if level + 1 == len(levels):
                levels.append([])
            below = levels[level]
            h = sha256(NODE_PREFIX + below[-2] + below[-1]).digest()
            levels[level + 1].append(h)
            level += 1
            rows.append((level, len(levels[level]) - 1, h))
        return rows

    def append_data(self, data: bytes) -> list[tuple[int, int, bytes]]:
        return self.append(leaf_hash(data))

    def perfect(self, level: int, index: int) -> bytes:
        """Stored hash of the complete subtree ``index`` at ``level``."""
        if not 0 <= level < len(self._levels) or not 0 <= index < len(self._levels[level]):
            raise ValueError(f"no complete subtree stored at level {level}, index {index}")
        return self._levels[level][index]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for any ``0 <= start <= end <= size``."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range [{start}, {end}) is outside the tree of size {self.size}")
        return subtree_hash(start, end, self.perfect)

    def root(self, size: int | None = None) -> bytes:
        """Root of the tree as it was at ``size`` leaves (default: now)."""
        return self.subtree(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"tree size {size} exceeds current size {self.size}")
        return inclusion_proof(index, size, self.subtree)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        if size2 > self.size:
            raise ValueError(f"tree size {size2} exceeds current size {self.size}")
        return consistency_proof(size1, size2, self.subtree)


class Frontier:
    """The right edge of a tree: for each set bit ``k`` of ``size``, the perfect subtree at level ``k``.

    That is all an append needs (RFC 9162 §2.1.1 tree shape): appending leaf n
    combines it with the frontier hashes of the trailing one-bits of n.  A
    sequencer keeps one in memory for a batch, or loads it from stored
    ``(level, index)`` rows named by :meth:`positions`.
    """

    def __init__(self, size: int = 0, hashes: dict[int, bytes] | None = None) -> None:
        hashes = dict(hashes or {})
        if sorted(hashes) != sorted(lv for lv, _ in self.positions(size)):
            raise ValueError(f"frontier of size {size} needs exactly the levels of its set bits")
        for h in hashes.values():
            _check_hash(h, "frontier hash")
        self.size = size
        self._hashes = hashes

    @staticmethod
    def positions(size: int) -> list[tuple[int, int]]:
        """The ``(level, index)`` of each perfect subtree on the right edge, highest first."""
        return [(lv, (size >> lv) - 1) for lv in range(size.bit_length() - 1, -1, -1) if size >> lv & 1]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the new ``(level, index, hash)`` rows, as :meth:`MemoryTree.append`."""
        _check_hash(leaf, "leaf hash")
        n = self.size
        rows = [(0, n, leaf)]
        level, h = 0, leaf
        while n >> level & 1:
            h = sha256(NODE_PREFIX + self._hashes.pop(level) + h).digest()
            level += 1
            rows.append((level, n >> level, h))
        self._hashes[level] = h
        self.size = n + 1
        return rows

    def append_subtree(self, level: int, subtree: bytes) -> None:
        """Add ``2**level`` leaves at once, given as the hash of their perfect subtree (size must be aligned)."""
        _check_hash(subtree, "subtree hash")
        n = self.size
        if n & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {n}")
        lv, h = level, subtree
        while n >> lv & 1:
            h = sha256(NODE_PREFIX + self._hashes.pop(lv) + h).digest()
            lv += 1
        self._hashes[lv] = h
        self.size = n + (1 << level)

    def copy(self) -> Frontier:
        return Frontier(self.size, dict(self._hashes))

    def root(self) -> bytes:
        """MTH of the whole tree so far: the frontier folded from the smallest subtree up."""
        acc: bytes | None = None
        for level in sorted(self._hashes):
            acc = self._hashes[level] if acc is None else sha256(NODE_PREFIX + self._hashes[level] + acc).digest()
        return EMPTY_ROOT if acc is None else acc
