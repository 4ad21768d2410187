"""Audit bundles: what a regulator downloads and ``python -m audit.verify`` checks offline.

Format ``usufruct-ledger-bundle/1``, JSON Lines so a million entries stream both ways:

* line 1, the header: origin, scope, log (hub) keys, node keys, witness keys, every
  checkpoint up to the bundle's tree size with its cosignatures, consistency proofs
  between successive checkpoints, the nodes' signed receipt batches (complete
  bundles), and ``complete`` (entries are the whole log
  ``[0, tree_size)``, so the verifier rebuilds the tree; otherwise each entry carries
  an inclusion proof against ``tree_size``);
* each further line, one entry: ``seq``, ``body`` (the RFC 8785 bytes that were hashed
  and signed), ``hub_kid``, ``hub_sig`` and, in partial bundles, ``proof``.

Nothing in it is trusted by the verifier except the keys the auditor pins.
A partial bundle also carries the ``right_*`` entries of every right its usage and
settlement entries cite, the ``dataset_listed`` entries of their datasets and every
node key entry, so the rights, row-count and node-key checks need nothing else.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from ledger import selectors, tree
from ledger.exceptions import ProofUnavailable
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import Checkpoint, LedgerEntry, Witness
from protocol.checkpoint import encode_vkey

FORMAT = "usufruct-ledger-bundle/1"
RIGHT_KINDS = (LedgerEntry.Kind.RIGHT_GRANTED, LedgerEntry.Kind.RIGHT_REVOKED, LedgerEntry.Kind.RIGHT_EXPIRED)
CITING_KINDS = (LedgerEntry.Kind.USAGE, LedgerEntry.Kind.SETTLEMENT, LedgerEntry.Kind.DP_CHARGE)
NODE_KINDS = (LedgerEntry.Kind.NODE_ENROLLED, LedgerEntry.Kind.KEY_ROTATED)
_CHUNK = 2000


def log_keys() -> list[dict[str, str]]:
    """Hub keys: the current one and every one announced by a ``key_rotated`` entry."""
    keys: dict[str, str] = {hub_kid(): base64.b64encode(hub_private_key().public_key().public_bytes_raw()).decode()}
    for payload in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.KEY_ROTATED).values_list("payload", flat=True):
        if payload.get("key") == "hub":
            keys.setdefault(payload["old_kid"], payload["old_public_key"])
            keys.setdefault(payload["new_kid"], payload["new_public_key"])
    origin = settings.USUFRUCT_LOG_ORIGIN
    return [{"kid": k, "public_key": v, "vkey": encode_vkey(origin, base64.b64decode(v))} for k, v in keys.items()]


def witness_keys() -> list[str]:
    """Every registered witness's vkey, by name: whose cosignatures a reader may check."""
    return [w.vkey for w in Witness.objects.order_by("name")]


def _node_keys(size: int) -> dict[str, dict[str, Any]]:
    """Every node key the log introduced before ``size`` (``node_enrolled``, ``key_rotated``),
    so receipts signed before a rotation still verify. Read from the log, never from the
    hub's live tables: the header offers only what the verifier will find on the log."""
    keys: dict[str, dict[str, Any]] = {}
    kinds = (LedgerEntry.Kind.NODE_ENROLLED, LedgerEntry.Kind.KEY_ROTATED)
    for kind, p in (
        LedgerEntry.objects.filter(kind__in=kinds, seq__lt=size).order_by("seq").values_list("kind", "payload")
    ):
        owner = {"node": p.get("node"), "organization": p.get("organization")}
        if kind == LedgerEntry.Kind.NODE_ENROLLED:
            keys.setdefault(p["kid"], {**owner, "public_key": p["public_key"]})
        elif p.get("key") == "node":
            keys.setdefault(p["old_kid"], {**owner, "public_key": p["old_public_key"]})
            keys.setdefault(p["new_kid"], {**owner, "public_key": p["new_public_key"]})
    return dict(sorted(keys.items(), key=lambda kv: (str(kv[1]["node"]), kv[0])))


def _receipt_batches(size: int) -> list[dict[str, Any]]:
    rows = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RECEIPT_BATCH, seq__lt=size).order_by("seq")
    return [{"seq": seq, "attestation": p["attestation"]} for seq, p in rows.values_list("seq", "payload")]


def scoped_entries(
    *,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
) -> QuerySet[LedgerEntry]:
    return selectors.entries_filter(
        LedgerEntry.objects.all(), dataset_id=dataset_id, consumer_id=consumer_id, seq_from=seq_from, seq_to=seq_to
    )


def bundle_lines(
    *,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
    tree_size: int | None = None,
) -> Iterator[str]:
    """The bundle, line by line, covering entries up to the latest checkpoint (or ``tree_size``)."""
    latest = selectors.checkpoint_latest()
    size = tree_size if tree_size is not None else (latest.size if latest else 0)
    checkpoints = list(Checkpoint.objects.filter(size__lte=size).order_by("size").prefetch_related("cosignatures"))
    if not checkpoints or checkpoints[-1].size != size:
        raise ProofUnavailable(f"no checkpoint at tree size {size}: sign one first")
    scope = {
        k: v
        for k, v in {"dataset": dataset_id, "consumer": consumer_id, "seq_from": seq_from, "seq_to": seq_to}.items()
        if v is not None
    }
    complete = not scope or (set(scope) <= {"seq_from", "seq_to"} and not seq_from and (seq_to or size) >= size)
    current = tree.tree_size()
    header = {
        "format": FORMAT,
        "origin": settings.USUFRUCT_LOG_ORIGIN,
        "scope": scope,
        "complete": complete,
        "tree_size": size,
        "log_keys": log_keys(),
        "node_keys": _node_keys(size),
        "witness_keys": witness_keys(),
        "checkpoints": [{"size": c.size, "note": selectors.checkpoint_note(c)} for c in checkpoints],
        # Complete bundles: each node's receipt batches, so the verifier checks one node
        # signature per batch instead of one per receipt (docs/decisions/0008).
        "receipt_batches": _receipt_batches(size) if complete else [],
        "consistency": [
            {
                "from": a.size,
                "to": b.size,
                "proof": selectors.b64(tree.consistency_proof(a.size, b.size, current=current)),
            }
            for a, b in zip(checkpoints, checkpoints[1:], strict=False)
        ],
    }
    yield json.dumps(header, separators=(",", ":")) + "\n"
    if complete:
        seqs = None
    else:
        chosen = scoped_entries(dataset_id=dataset_id, consumer_id=consumer_id, seq_from=seq_from, seq_to=seq_to)
        chosen = chosen.filter(seq__lt=size)
        rights = chosen.filter(kind__in=CITING_KINDS, right_id__isnull=False).values("right_id")
        datasets = chosen.filter(kind=LedgerEntry.Kind.USAGE).values("dataset_id")
        extra = LedgerEntry.objects.filter(seq__lt=size).filter(
            Q(kind__in=RIGHT_KINDS, right_id__in=rights)
            | Q(kind=LedgerEntry.Kind.DATASET_LISTED, dataset_id__in=datasets)
            | Q(kind__in=NODE_KINDS)  # node keys come from the log: every node's, they are few
        )
        seqs = sorted(set(chosen.values_list("seq", flat=True)) | set(extra.values_list("seq", flat=True)))
    fields = ("seq", "body", "hub_kid", "hub_sig")
    if seqs is None:
        for start in range(0, size, _CHUNK):
            rows = LedgerEntry.objects.filter(seq__gte=start, seq__lt=min(start + _CHUNK, size)).order_by("seq")
            for seq, body, kid, sig in rows.values_list(*fields):
                yield json.dumps({"seq": seq, "body": body, "hub_kid": kid, "hub_sig": sig}) + "\n"
        return
    for start in range(0, len(seqs), _CHUNK):
        chunk = seqs[start : start + _CHUNK]
        proofs = tree.inclusion_proofs(chunk, size, current=current)
        for seq, body, kid, sig in LedgerEntry.objects.filter(seq__in=chunk).order_by("seq").values_list(*fields):
            line = {"seq": seq, "body": body, "hub_kid": kid, "hub_sig": sig, "proof": selectors.b64(proofs[seq])}
            yield json.dumps(line) + "\n"
