"""Reads of the ledger: who may see which entries, filters, checkpoints with cosignatures, proofs."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from ledger import tree
from ledger.exceptions import ProofUnavailable
from ledger.models import Checkpoint, LedgerEntry


def entries_filter(
    qs: QuerySet[LedgerEntry],
    *,
    kind: str | None = None,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    provider_id: int | None = None,
    right_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
) -> QuerySet[LedgerEntry]:
    """Entries by kind, party, integration time ``[since, until)`` and sequence range ``[seq_from, seq_to)``."""
    filters: dict[str, Any] = {
        "kind": kind,
        "dataset_id": dataset_id,
        "consumer_id": consumer_id,
        "provider_id": provider_id,
        "right_id": right_id,
        "integrated_at__gte": since,
        "integrated_at__lt": until,
        "seq__gte": seq_from,
        "seq__lt": seq_to,
    }
    return qs.filter(**{k: v for k, v in filters.items() if v is not None})


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-size").first()


def checkpoint_note(cp: Checkpoint) -> str:
    """The hub's signed note with every stored witness cosignature line appended (signed-note allows many)."""
    lines = [c.line for c in cp.cosignatures.order_by("witness__name")]
    return cp.note + "".join(lines)


def b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in items]


def inclusion(entry: LedgerEntry, tree_size: int | None = None) -> dict[str, Any]:
    """Inclusion proof of ``entry``: against ``tree_size``, else the latest checkpoint covering it, else now."""
    current = tree.tree_size()
    if tree_size is None:
        latest = checkpoint_latest()
        tree_size = latest.size if latest and latest.size > entry.seq else current
    if tree_size <= entry.seq:
        raise ProofUnavailable(f"entry {entry.seq} is not in the tree of size {tree_size}")
    cp = Checkpoint.objects.filter(size=tree_size).first()
    return {
        "leaf_index": entry.seq,
        "tree_size": tree_size,
        "leaf_hash": base64.b64encode(bytes.fromhex(entry.leaf_hash)).decode(),
        "root": base64.b64encode(tree.root(tree_size, current=current)).decode(),
        "proof": b64(tree.inclusion_proof(entry.seq, tree_size, current=current)),
        "checkpoint": checkpoint_note(cp) if cp else None,
    }


def consistency(size1: int, size2: int) -> dict[str, Any]:
    current = tree.tree_size()
    return {
        "size1": size1,
        "size2": size2,
        "root1": base64.b64encode(tree.root(size1, current=current)).decode(),
        "root2": base64.b64encode(tree.root(size2, current=current)).decode(),
        "proof": b64(tree.consistency_proof(size1, size2, current=current)),
    }


def receipt_attestation(entry: LedgerEntry) -> dict[str, Any] | None:
    """For a ``usage`` entry: the node-signed ``receipt_batch`` that vouches for its receipt, if any yet."""
    if entry.kind != LedgerEntry.Kind.USAGE or not isinstance(entry.payload.get("receipt"), dict):
        return None
    node = entry.payload["receipt"].get("payload", {}).get("node")
    batch = (
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.RECEIPT_BATCH,
            provider_id=entry.provider_id,
            seq__gt=entry.seq,
            payload__node=node,
            payload__first_seq__lte=entry.seq,
            payload__last_seq__gte=entry.seq,
        )
        .order_by("seq")
        .first()
    )
    if batch is None:
        return None
    p = batch.payload
    return {
        "seq": batch.seq,
        "node": p["node"],
        "first_seq": p["first_seq"],
        "last_seq": p["last_seq"],
        "count": p["count"],
        "kid": p["attestation"]["kid"],
    }
