"""Receipt batches: one node signature that vouches for many of its usage receipts.

Every ``usage`` ledger entry carries the node's own signed receipt (verified by the
hub when it is recorded). Later the hub asks the node to attest, in one signature,
the receipts the ledger attributes to it in a range of sequence numbers; the node
signs only if it issued every one of them (it remembers the digest of each receipt
it signs). An offline verifier then checks one signature per batch instead of one
per entry (docs/decisions/0008-receipt-batches.md).

The statement, signed like any payload (RFC 8785 + Ed25519)::

    {"type": "usufruct/receipt-batch/v1", "log": ORIGIN, "node": SLUG,
     "first_seq": A, "last_seq": B, "count": N, "digest": HEX}

``digest`` is SHA-256 over the concatenated 32-byte digests of the node's receipts
at sequence numbers ``A..B``, in ledger order; a receipt's digest is SHA-256 of the
canonical bytes of the whole signed receipt (payload, kid and signature).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from protocol import jcs

STATEMENT_TYPE = "usufruct/receipt-batch/v1"
MAX_RECEIPTS = 5000  # receipts per batch: the request stays well under a broker message's size


def receipt_digest(wire: Mapping[str, Any]) -> str:
    """SHA-256 hex of a signed receipt's canonical bytes: what a node remembers and attests.

    ``jcs.dumps_checked`` is the C encoder where its bytes equal RFC 8785's, the exact
    encoder otherwise: node, hub and offline verifier all compute it this one way.
    """
    return hashlib.sha256(jcs.dumps_checked(dict(wire))).hexdigest()


def batch_digest(digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    for d in digests:
        h.update(bytes.fromhex(d))
    return h.hexdigest()


def statement(*, log: str, node: str, first_seq: int, last_seq: int, digests: list[str]) -> dict[str, Any]:
    return {
        "type": STATEMENT_TYPE,
        "log": log,
        "node": node,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "count": len(digests),
        "digest": batch_digest(digests),
    }
