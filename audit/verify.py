"""Offline verifier of an audit bundle: ``python -m audit.verify BUNDLE [--log-key VKEY] [--witness VKEY]``.

Depends on the standard library and ``cryptography`` only (no Django, no network; a
test enforces it). It trusts nothing in the bundle but the keys: pin the log key and
your witness keys with ``--log-key`` / ``--witness`` (otherwise the bundle's own keys
are used and printed, to be compared with the published ones). It checks:

* every checkpoint's log signature, its witnesses' cosignatures, that sizes only grow
  and each checkpoint is consistent with the one before (RFC 9162 §2.1.4): no fork;
* every entry's body is canonical JSON and is in the tree: a complete bundle is
  re-hashed into the tree (RFC 9162 §2.1.1) and the root compared with every
  checkpoint, along with the SHA-256 chain; a partial bundle checks each entry's
  inclusion proof (§2.1.3) against the last checkpoint. The signed checkpoints thus
  vouch for every body; each entry's own hub signature is checked too with
  ``--every-signature``;
* node keys come from the log alone (``node_enrolled``, ``key_rotated``); a header key
  the log does not hold, or holds for another node, fails the bundle;
* every ``usage`` entry carries a receipt signed by a key the log gave that node, its
  rows and records within the dataset's attested row count (``dataset_listed``) times
  the step's passes, and falls inside a right granted earlier, unrevoked, unexpired,
  for the same consumer, dataset and operation (a free ``psi`` preview needs none);
* charges come from ``settlement`` entries alone: each names exactly its job's uses of
  one right, none charged twice, and only a delivered job is one charged unit, within
  the right's quota of jobs (docs/decisions/0009). A node vouches for
  its receipts either one by one (the receipt's signature) or, in a complete bundle,
  by a ``receipt_batch`` entry: one node signature over the digests of all its
  receipts in a range, recomputed here from the entries (docs/decisions/0008).

Exit status: 0 all good, 1 a check failed, 2 the bundle could not be read.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, BinaryIO

from audit import _examine
from audit._examine import BAD_INPUT, BATCH_KIND, Block, Context, Examined, examine_block
from protocol import checkpoint as notes
from protocol import jcs, merkle

FORMAT = "usufruct-ledger-bundle/1"
STATEMENT_TYPE = "usufruct/receipt-batch/v1"  # as protocol.attest (a test checks they agree)
GENESIS = "0" * 64
_CHUNK = 5000  # entries per unit of work handed to a worker process
MAX_REPORTED = 50


class BundleError(ValueError):
    """The bundle cannot be read at all (not JSON Lines, wrong format, no header)."""


@dataclass
class Report:
    origin: str = ""
    scope: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    log_vkeys: list[str] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    cosigned: dict[int, list[str]] = field(default_factory=dict)
    entries: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    every_signature: bool = False
    receipts_one_by_one: int = 0
    receipts_batched: int = 0
    batches: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def render(self) -> str:
        size = self.checkpoints[-1] if self.checkpoints else 0
        lines = [
            f"Usufruct ledger bundle, log {self.origin!r}, scope {self.scope or 'whole log'}",
            *(f"  log key: {v}" for v in self.log_vkeys),
            f"  checkpoints: {len(self.checkpoints)} (sizes {self.checkpoints[0] if self.checkpoints else '-'}"
            f"..{size}), tree size {size}",
        ]
        for cp_size, names in sorted(self.cosigned.items())[-3:]:
            lines.append(f"  checkpoint {cp_size} cosigned by: {', '.join(names) or 'nobody'}")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        how = "complete: tree rebuilt from the bodies" if self.complete else "partial: inclusion proofs"
        lines.append(f"  entries: {self.entries} ({how}); {kinds}")
        lines.append(
            f"  node receipts: {self.receipts_one_by_one} signatures checked one by one,"
            f" {self.receipts_batched} vouched for by {self.batches} node-signed receipt batch(es)"
        )
        lines.append(
            "  entry hub signatures: "
            + ("each checked" if self.every_signature else "covered by the signed checkpoints (--every-signature)")
        )
        if self.ok:
            lines.append("RESULT: OK - signatures, tree, checkpoints, consistency and usage rights all verify")
        else:
            lines.append(f"RESULT: FAILED - {len(self.failures)} problem(s)")
            lines.extend(f"  - {m}" for m in self.failures[:MAX_REPORTED])
            if len(self.failures) > MAX_REPORTED:
                lines.append(f"  ... and {len(self.failures) - MAX_REPORTED} more")
        return "\n".join(lines)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def _kid(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


@lru_cache(maxsize=1024)  # producer times repeat: every entry of a sequencer batch shares one
def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return parsed


@dataclass
class _Right:
    seq: int
    consumer: Any
    dataset: Any
    provider: Any
    operations: list[str]
    quota: int | None
    expires_at: datetime
    ended_seq: int | None = None
    delivered: int = 0  # jobs charged by a settlement (the quota counts these)
    rows_at_grant: int | None = None  # the dataset's attested row count when the right was sold
    epsilon: Decimal | None = None  # the privacy budget the right was sold with
    epsilon_charged: Decimal = Decimal(0)


_ANY = object()
# How many times each metered step reads each row of a provider's dataset (the algorithms'
# ``passes``): a receipt's rows and records are bounded by the attested row count times this.
PASSES: dict[tuple[Any, Any], int] = {("stats", "partial"): 1, ("psi", "psi_exchange"): 1}


@dataclass
class _NodeKey:
    seq: int  # the entry that put the key on the log
    node: Any
    organization: Any
    public_key: Any
    ended_seq: int | None = None  # the key_rotated entry that retired it


def _epsilon(value: Any) -> Decimal:
    """A privacy budget or charge as the log writes it: a decimal string."""
    if not isinstance(value, str):
        raise ValueError(f"ε {value!r} is not a decimal string")
    try:
        eps = Decimal(value)
    except ArithmeticError:  # decimal.InvalidOperation
        raise ValueError(f"ε {value!r} is not a decimal") from None
    if not eps.is_finite() or not 0 <= eps <= 10**6:
        raise ValueError(f"ε {value!r} is not a number in [0, 10⁶]")
    return eps


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _batch_fields(item: Any) -> tuple[int, dict[str, Any], str, str]:
    """``(entry seq, statement, key id, signature)`` of a header batch, every field of the expected type."""
    if not isinstance(item, dict) or not isinstance(item.get("attestation"), dict):
        raise ValueError("not an object with an attestation")
    seq, wire = item.get("seq"), item["attestation"]
    s, kid, sig = wire.get("payload"), wire.get("kid"), wire.get("sig")
    if type(seq) is not int or not isinstance(s, dict) or not isinstance(kid, str) or not isinstance(sig, str):
        raise ValueError("malformed: seq, payload, kid or sig has the wrong type")
    if not all(isinstance(s.get(k), str) for k in ("type", "log", "node", "digest")):
        raise ValueError("malformed statement: type, log, node and digest must be strings")
    if not all(type(s.get(k)) is int for k in ("first_seq", "last_seq", "count")):
        raise ValueError("malformed statement: first_seq, last_seq and count must be integers")
    if not 0 <= s["first_seq"] <= s["last_seq"] < seq or not 0 < s["count"] <= s["last_seq"] - s["first_seq"] + 1:
        raise ValueError(f"range #{s['first_seq']}..#{s['last_seq']} of {s['count']} receipts is impossible here")
    return seq, s, kid, sig


@dataclass
class _Batch:
    node: str
    first: int
    last: int
    count: int
    digest: str
    sig: str
    hasher: Any = field(default_factory=hashlib.sha256)
    seen: int = 0
    logged: bool = False


class _Checker:
    def __init__(self, header: dict[str, Any], report: Report, pinned_log: list[str], pinned_witnesses: list[str]):
        self.report = report
        self.origin = str(header.get("origin", ""))
        report.origin, report.scope = self.origin, dict(header.get("scope") or {})
        report.complete = header.get("complete") is True
        # A complete bundle holds every entry whatever its header's scope says (the hub writes
        # the header): the checks that need all of a job's uses are never switched off for it.
        self.scope_has_all_usage = report.complete or ("seq_from" not in report.scope and "seq_to" not in report.scope)
        self.tree_size = int(header["tree_size"])
        self.raw_log_keys: dict[str, bytes] = {}
        self.note_keys: list[notes.VerifierKey] = []
        for item in header.get("log_keys", []):
            vk = notes.parse_vkey(item["vkey"])
            raw = _b64(item["public_key"], "log public key")
            if vk.public_key != raw or item["kid"] != _kid(raw) or vk.name != self.origin:
                raise BundleError(f"log key {item['kid']} does not match its vkey or the origin")
            if pinned_log and vk.encode() not in pinned_log:
                continue
            self.raw_log_keys[item["kid"]] = raw
            self.note_keys.append(vk)
        if pinned_log and not self.note_keys:
            report.fail("none of the pinned log keys is in the bundle")
        report.log_vkeys = [k.encode() for k in self.note_keys]
        self.raw_node_keys: dict[str, tuple[bytes, Any, Any]] = {}
        for kid, item in (header.get("node_keys") or {}).items():
            raw = _b64(item["public_key"], f"node key {kid}")
            if _kid(raw) != kid:
                report.fail(f"node key {kid} does not hash to its key id")
                continue
            self.raw_node_keys[kid] = (raw, item.get("organization"), item.get("node"))
        self.batches: dict[int, _Batch] = {}  # by the seq of its receipt_batch entry
        self.node_batches: dict[str, list[_Batch]] = {}  # by node, in log order
        wanted = pinned_witnesses or list(header.get("witness_keys") or [])
        self.witnesses = [notes.parse_vkey(v) for v in wanted]
        self.pinned_witnesses = bool(pinned_witnesses)
        self.roots: dict[int, bytes] = {}
        self.rights: dict[Any, _Right] = {}
        # Node keys as the log introduced them (node_enrolled, key_rotated): kid -> _NodeKey.
        self.log_node_keys: dict[str, _NodeKey] = {}
        self.row_counts: dict[Any, int] = {}  # dataset -> its latest attested row count (dataset_listed)
        self.uses: dict[tuple[str, Any], dict[int, tuple[int, int]]] = {}  # (job, right) -> seq -> (rows, records)
        self.settled: dict[tuple[str, Any], int] = {}  # (job, right) -> seq of its settlement
        self.charged: set[int] = set()  # usage seqs a settlement charges
        self.budgets: dict[Any, Decimal | None] = {}  # dataset -> lifetime ε on the log (dataset_budget_set)
        self.dp_spent: dict[Any, Decimal] = {}  # dataset -> ε its dp_charge entries add up to

    # --- checkpoints -------------------------------------------------------------------
    def checkpoints(self, items: list[dict[str, Any]], consistency: list[dict[str, Any]]) -> None:
        previous: notes.Checkpoint | None = None
        for item in items:
            try:
                note = notes.parse_note(str(item["note"]).encode())
                errors = []
                for vk in self.note_keys:
                    try:
                        notes.verify_note(note, vk.name, vk.public_key)
                        break
                    except notes.CheckpointError as exc:
                        errors.append(str(exc))
                else:
                    raise notes.SignatureError("; ".join(errors) or "no log key to check it with")
                cp = notes.parse_checkpoint(note.text)
            except (notes.CheckpointError, KeyError, TypeError, ValueError, AttributeError) as exc:
                self.report.fail(f"checkpoint {item.get('size') if isinstance(item, dict) else '?'}: {exc}")
                continue
            if cp.origin != self.origin:
                self.report.fail(f"checkpoint {cp.size} is for log {cp.origin!r}")
            if cp.size in self.roots:
                if self.roots[cp.size] != cp.root:
                    self.report.fail(f"fork: two signed checkpoints of size {cp.size} with different roots")
                continue
            if previous is not None and cp.size < previous.size:
                self.report.fail(f"checkpoint {cp.size} comes after {previous.size}: out of order")
            self.roots[cp.size] = cp.root
            self.report.checkpoints.append(cp.size)
            signed_by = []
            for vk in self.witnesses:
                try:
                    ts = notes.verify_cosignature(note, vk.name, vk.public_key)
                    signed_by.append(f"{vk.name} (t={ts})")
                except notes.SignatureError as exc:
                    if "no signature from key" not in str(exc):
                        self.report.fail(f"checkpoint {cp.size}: {exc}")
            self.report.cosigned[cp.size] = signed_by
            previous = cp
        sizes = sorted(self.roots)
        proofs = {(int(c["from"]), int(c["to"])): c["proof"] for c in consistency}
        for a, b in zip(sizes, sizes[1:], strict=False):
            try:
                proof = [_b64(p, "consistency proof hash") for p in proofs[(a, b)]]
                merkle.verify_consistency(a, b, proof, self.roots[a], self.roots[b])
            except KeyError:
                self.report.fail(f"no consistency proof between checkpoints {a} and {b}")
            except (ValueError, merkle.ProofError) as exc:
                self.report.fail(f"fork: checkpoint {b} is not consistent with checkpoint {a}: {exc}")
        if sizes and self.tree_size != sizes[-1]:
            self.report.fail(f"bundle claims tree size {self.tree_size}, last checkpoint is {sizes[-1]}")
        if not sizes:
            self.report.fail("no valid checkpoint in the bundle")
        elif self.pinned_witnesses and len(self.report.cosigned.get(sizes[-1], [])) < len(self.witnesses):
            self.report.fail(f"latest checkpoint {sizes[-1]} lacks a cosignature from a pinned witness")

    # --- receipt batches -----------------------------------------------------------------
    def receipt_batches(self, items: Any) -> None:
        """Check each claimed batch's node signature; the verified ones spare their receipts a check each.

        A node's batches must come in log order without overlap, each listed once, so every
        receipt belongs to at most one batch; each batch is later matched with the log's
        ``receipt_batch`` entry at its sequence number and its digest recomputed.
        """
        if not self.report.complete:
            return  # a partial bundle lacks the other receipts a batch digest covers: one by one, then
        if not isinstance(items, list):
            self.report.fail("receipt_batches in the header is not a list")
            return
        for item in items:
            try:
                seq, s, kid, sig = _batch_fields(item)
                node = self.raw_node_keys.get(kid)
                if node is None or node[2] != s["node"]:
                    raise ValueError(f"signed by {kid!r}, which is not a key of node {s['node']!r}")
                if s["type"] != STATEMENT_TYPE or s["log"] != self.origin:
                    raise ValueError("not a receipt batch statement for this log")
                if seq in self.batches:
                    raise ValueError("listed twice")
                if not _examine.verify_signature(node[0], sig, jcs.dumps_checked(s)):
                    raise ValueError("node signature does not verify")
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                where = item.get("seq") if isinstance(item, dict) else "?"
                self.report.fail(f"receipt batch #{where}: {exc}")
                continue
            mine = self.node_batches.setdefault(s["node"], [])
            if mine and s["first_seq"] <= mine[-1].last:
                self.report.fail(f"receipt batch #{seq} of node {s['node']} overlaps or precedes the one before")
                continue
            batch = _Batch(s["node"], s["first_seq"], s["last_seq"], s["count"], s["digest"], sig)
            self.batches[seq] = batch
            mine.append(batch)

    def batch_receipt(self, seq: int, facts: dict[str, Any]) -> None:
        if facts.get("signature_checked"):
            self.report.receipts_one_by_one += 1
        if "batch" not in facts:  # not in a batch's range
            return
        batch = self.node_batches[facts["node"]][facts["batch"]]  # the worker found which one
        batch.hasher.update(bytes.fromhex(facts["digest"]))
        batch.seen += 1

    def batch_entry(self, seq: int, facts: dict[str, Any]) -> None:
        self._node_key_at(seq, facts.get("kid"), facts.get("node"), f"receipt batch #{seq}")
        batch = self.batches.get(seq)
        if batch is not None:
            batch.logged = batch.sig == facts.get("sig") and batch.node == facts.get("node")

    def batches_done(self) -> None:
        for seq, b in sorted(self.batches.items()):
            where = f"receipt batch #{seq} of node {b.node} over #{b.first}..#{b.last}"
            if not b.logged:
                self.report.fail(f"{where} is not the receipt_batch entry #{seq} of the log")
            elif b.seen != b.count or b.hasher.hexdigest() != b.digest:
                self.report.fail(
                    f"{where}: the node attested {b.count} receipts, the log holds {b.seen} that differ:"
                    " an entry was added, removed or altered"
                )
            else:
                self.report.batches += 1
                self.report.receipts_batched += b.count

    # --- node keys, attested row counts ----------------------------------------------------
    def node_entry(self, seq: int, kind: str, f: dict[str, Any]) -> None:
        """Node keys come from the log alone: enrolment, then each rotation."""
        if kind == "node_enrolled":
            live = [k for k in self.log_node_keys.values() if k.node == f.get("node") and k.ended_seq is None]
            if live:  # a second live key for a node must come through key_rotated, in the open
                self.report.fail(f"entry #{seq}: node {f.get('node')!r} is enrolled again while its key is live")
                return
            self.log_node_keys.setdefault(
                str(f["kid"]), _NodeKey(seq, f.get("node"), f.get("organization"), f.get("public_key"))
            )
        elif kind == "key_rotated" and f.get("key") == "node":
            old = self.log_node_keys.get(str(f.get("old_kid")))
            if old is None:  # enrolled before node_enrolled entries existed: the rotation publishes it
                old = self.log_node_keys[str(f.get("old_kid"))] = _NodeKey(
                    seq, f.get("node"), f.get("organization"), f.get("old_public_key")
                )
            if old.ended_seq is None:
                old.ended_seq = seq
            self.log_node_keys.setdefault(
                str(f["new_kid"]), _NodeKey(seq, f.get("node"), f.get("organization"), f.get("new_public_key"))
            )
        elif kind == "dataset_listed":
            if not _count(f.get("row_count")):
                raise ValueError(f"row_count {f.get('row_count')!r} is not a whole number")
            self.row_counts[f.get("dataset")] = f["row_count"]

    def _node_key_at(self, seq: int, kid: Any, node: Any, where: str, organization: Any = _ANY) -> None:
        """A receipt or batch signed with ``kid`` at ``seq``: the log must hold that key for that node
        (of that organisation) then."""
        logged = self.log_node_keys.get(str(kid))
        header = self.raw_node_keys.get(str(kid))
        if logged is None or logged.seq > seq:
            self.report.fail(f"{where}: node key {kid!r} is not on the log before it (no node_enrolled entry)")
        elif logged.ended_seq is not None and logged.ended_seq < seq:
            self.report.fail(f"{where}: node key {kid!r} was rotated away at #{logged.ended_seq}")
        elif logged.node != node:
            self.report.fail(f"{where}: key {kid!r} belongs to node {logged.node!r} on the log, not {node!r}")
        elif organization is not _ANY and logged.organization != organization:
            self.report.fail(
                f"{where}: key {kid!r} is a node key of organisation {logged.organization}, not {organization}"
            )
        elif header is not None and base64.b64encode(header[0]).decode() != logged.public_key:
            self.report.fail(f"{where}: the bundle header's key {kid!r} differs from the one on the log")

    def node_keys_done(self) -> None:
        """Every key the header offers must be one the log introduced, with the same bytes and owner.

        Partial bundles carry every node key entry too, so this holds for them as well."""
        for kid, (raw, org, node) in sorted(self.raw_node_keys.items()):
            logged = self.log_node_keys.get(kid)
            if logged is None:
                self.report.fail(f"header node key {kid} ({node}) is not on the log")
            elif base64.b64encode(raw).decode() != logged.public_key or (org, node) != (
                logged.organization,
                logged.node,
            ):
                self.report.fail(f"header node key {kid} differs from the one the log holds")

    # --- usage rights ------------------------------------------------------------------
    def rights_entry(self, seq: int, kind: str, f: dict[str, Any]) -> None:
        if kind == "right_granted":
            self.rights[f["right"]] = _Right(
                seq,
                f.get("consumer"),
                f.get("dataset"),
                f.get("provider"),
                list(f.get("operations") or []),
                f.get("quota"),
                _time(f["expires_at"]),
                rows_at_grant=self.row_counts.get(f.get("dataset")),
                epsilon=_epsilon(f.get("epsilon")) if f.get("epsilon") is not None else None,
            )
        elif kind == "right_revoked":
            # Revocation ends a right at its place in the log. Expiry is judged by time instead
            # (each use's hub time against expires_at): a step issued before the right expired
            # may be answered after the right_expired entry.
            right = self.rights.get(f.get("right"))
            if right is not None and right.ended_seq is None:
                right.ended_seq = seq

    def _metered(self, seq: int, f: dict[str, Any], where: str) -> tuple[int, int] | None:
        """rows and records of a usage entry, each within the dataset's attested rows × the step's passes."""
        rows, records, passes = f.get("rows"), f.get("records", 0), f.get("passes", 1)
        declared = PASSES.get((f.get("operation"), f.get("step")))
        if declared is None or passes != declared:  # the protocol's figure, never the hub's word
            self.report.fail(
                f"{where}: {f.get('operation')}/{f.get('step')} meters {declared} pass(es), not {passes!r}"
            )
            return None
        if not isinstance(rows, int) or not isinstance(records, int) or not _count(rows) or not _count(records):
            self.report.fail(f"{where}: rows {rows!r} and records {records!r} must be whole numbers")
            return None
        if type(passes) is not int or not 1 <= passes <= 10_000:
            self.report.fail(f"{where}: passes {passes!r} is not a whole number in [1, 10000]")
            return None
        attested = self.row_counts.get(f.get("dataset"))
        right = self.rights.get(f.get("right"))
        if attested is not None and right is not None and right.rows_at_grant is not None:
            attested = min(attested, right.rows_at_grant)  # as sold: a later announcement cannot raise it
        if attested is None:
            self.report.fail(f"{where}: dataset {f.get('dataset')} has no attested row count on the log before it")
            return rows, records
        bound = attested * passes
        if rows > bound or records > bound:
            self.report.fail(
                f"{where}: {rows} rows / {records} records exceed the dataset's attested {attested} rows × {passes}"
            )
        return rows, records

    def _consumer_key_at(self, seq: int, kid: Any, consumer: Any, where: str) -> None:
        """The consumer node key a provider trusted for the job (it checked the job's key against it)."""
        logged = self.log_node_keys.get(str(kid))
        if logged is None or logged.seq > seq:
            self.report.fail(f"{where}: consumer node key {kid!r} is not on the log before it")
        elif logged.organization != consumer:
            self.report.fail(f"{where}: consumer node key {kid!r} belongs to organisation {logged.organization}")
        elif logged.ended_seq is not None and logged.ended_seq < seq:
            self.report.fail(f"{where}: consumer node key {kid!r} was rotated away at #{logged.ended_seq}")

    def usage(self, seq: int, f: dict[str, Any]) -> None:
        where = f"usage #{seq}"
        self._node_key_at(seq, f.get("kid"), f.get("node"), where, organization=f.get("provider"))
        if "consumer_kid" in f:
            self._consumer_key_at(seq, f["consumer_kid"], f.get("consumer"), where)
        metered = self._metered(seq, f, where)
        if f.get("right") is None and f.get("preview") is True:
            # A free overlap preview: PSI only, never charged, under no right.
            if f.get("operation") != "psi" or f.get("free") is not True:
                self.report.fail(f"{where}: a use without a right must be a free psi preview")
            return
        right = self.rights.get(f.get("right"))
        if right is None:
            self.report.fail(f"{where} cites right {f.get('right')} with no earlier right_granted entry")
            return
        if right.ended_seq is not None and right.ended_seq < seq:
            self.report.fail(f"{where} uses right {f['right']} after it ended at #{right.ended_seq}")
        produced = _time(f["produced"])
        if produced > right.expires_at:
            self.report.fail(f"{where} at {produced.isoformat()} is after right {f['right']} expired")
        for name in ("consumer", "dataset", "provider"):
            if f.get(name) != getattr(right, name):
                self.report.fail(f"{where}: {name} {f.get(name)} differs from right {f['right']}'s")
        if f.get("operation") not in right.operations:
            self.report.fail(f"{where}: operation {f.get('operation')!r} is not permitted by right {f['right']}")
        key = (str(f.get("job")), f.get("right"))
        if key in self.settled:
            self.report.fail(f"{where}: job {key[0]} was already settled at #{self.settled[key]}")
        self.uses.setdefault(key, {})[seq] = metered or (0, 0)

    # --- privacy budgets ----------------------------------------------------------------
    def privacy(self, seq: int, kind: str, f: dict[str, Any]) -> None:
        """No dataset's DP charges exceed its lifetime budget, and no right's its own, at any point."""
        dataset = f.get("dataset")
        spent = self.dp_spent.get(dataset, Decimal(0))
        if kind == "dataset_budget_set":
            budget = None if f.get("epsilon_budget") is None else _epsilon(f["epsilon_budget"])
            self.budgets[dataset] = budget
            if budget is not None and self.scope_has_all_usage and spent > budget:
                self.report.fail(
                    f"entry #{seq}: dataset {dataset}'s budget set to ε {budget}, below its charges ε {spent}"
                )
            return
        eps = _epsilon(f.get("epsilon"))
        if eps <= 0:
            self.report.fail(f"dp_charge #{seq}: ε {f.get('epsilon')!r} is not positive")
        if f.get("right") is not None:
            right = self.rights.get(f.get("right"))
            if right is None:
                self.report.fail(f"dp_charge #{seq} cites right {f.get('right')} with no earlier right_granted entry")
            else:
                if right.dataset != dataset:
                    self.report.fail(f"dp_charge #{seq}: dataset {dataset} differs from right {f['right']}'s")
                right.epsilon_charged += eps
                if right.epsilon is not None and self.scope_has_all_usage and right.epsilon_charged > right.epsilon:
                    self.report.fail(f"dp_charge #{seq}: right {f['right']} charged ε {right.epsilon_charged},"
                                     f" over the ε {right.epsilon} it was sold with")  # fmt: skip
        spent = self.dp_spent[dataset] = spent + eps
        budget = self.budgets.get(dataset)
        if budget is not None and self.scope_has_all_usage and spent > budget:
            self.report.fail(
                f"dp_charge #{seq}: dataset {dataset}'s charges reach ε {spent}, over its budget ε {budget}"
            )

    def settlement(self, seq: int, f: dict[str, Any]) -> None:
        """A job's settlement names exactly its uses of one right; only a delivered one charges, once."""
        where = f"settlement #{seq}"
        key = (str(f.get("job")), f.get("right"))
        right = self.rights.get(f.get("right"))
        if right is None:
            self.report.fail(f"{where} cites right {f.get('right')} with no earlier right_granted entry")
            return
        for name in ("consumer", "dataset", "provider"):
            if f.get(name) != getattr(right, name):
                self.report.fail(f"{where}: {name} {f.get(name)} differs from right {f['right']}'s")
        if key in self.settled:
            self.report.fail(f"{where}: job {key[0]} was already settled at #{self.settled[key]}")
            return
        self.settled[key] = seq
        cited = f.get("usage")
        if not isinstance(cited, list) or not cited or not all(type(u) is int for u in cited):
            self.report.fail(f"{where}: usage must list the usage entries it settles")
            return
        uses = self.uses.get(key, {})
        if self.scope_has_all_usage:
            for u in sorted(set(uses) - set(cited)):
                self.report.fail(f"usage #{u} of job {key[0]} is outside its settlement #{seq}")
        for u in cited:
            if u not in uses and self.scope_has_all_usage:
                self.report.fail(f"{where} cites #{u}, which is no earlier use of job {key[0]} under this right")
            if u in self.charged:
                self.report.fail(f"{where} charges usage #{u} a second time")
        outcome = f.get("outcome")
        if outcome == "delivered":
            self.charged.update(cited)
            rows = sum(uses[u][0] for u in cited if u in uses)
            records = sum(uses[u][1] for u in cited if u in uses)
            if self.scope_has_all_usage and (f.get("rows"), f.get("records")) != (rows, records):
                self.report.fail(f"{where} charges {f.get('rows')} rows / {f.get('records')} records, its uses hold"
                                 f" {rows} / {records}")  # fmt: skip
            right.delivered += 1
            if f.get("units") != 1 or (self.scope_has_all_usage and f.get("use") != right.delivered):
                self.report.fail(f"{where}: a delivered job is use {right.delivered} of right {f['right']}, one unit")
            if self.scope_has_all_usage and right.quota is not None and right.delivered > int(right.quota):
                self.report.fail(f"{where}: right {f['right']} charged for {right.delivered} jobs, quota {right.quota}")
        elif outcome in ("failed", "cancelled"):
            if f.get("units") != 0 or f.get("use") is not None:
                self.report.fail(f"{where}: a {outcome} job charges nothing")
        else:
            self.report.fail(f"{where}: unknown outcome {outcome!r}")

    def context(self, every_signature: bool) -> Context:
        return Context(
            log_keys=dict(self.raw_log_keys),
            node_keys=dict(self.raw_node_keys),
            tree_size=self.tree_size,
            root=self.roots.get(self.tree_size),
            complete=self.report.complete,
            every_signature=every_signature,
            checkpoint_sizes=tuple(sorted(self.roots)),
            batches={node: tuple((b.first, b.last) for b in mine) for node, mine in self.node_batches.items()},
        )


def _line_blocks(lines: Iterator[str], size: int) -> Iterator[bytes]:
    chunk: list[str] = []
    for line in lines:
        if line.strip():
            chunk.append(line if line.endswith("\n") else line + "\n")
            if len(chunk) >= size:
                yield "".join(chunk).encode("utf-8", "surrogateescape")
                chunk = []
    if chunk:
        yield "".join(chunk).encode("utf-8", "surrogateescape")


def _file_blocks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """Runs of whole lines of about ``size`` bytes: read in one call each, never split or decoded here."""
    rest = b""
    while True:
        data = fh.read(size)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]
    if rest.strip():
        yield rest


def _outcomes(blocks: Iterator[bytes], ctx: Context, jobs: int) -> Iterator[Block | list[Examined]]:
    """``examine_block`` of each block, in order; in ``jobs`` processes once there are two blocks or more."""
    first = next(blocks, None)
    if first is None:
        return
    second = next(blocks, None)
    if second is None or jobs <= 1:
        for block in (first, second, *blocks) if second is not None else (first,):
            yield examine_block(block, ctx)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        pending: deque[Future[Block | list[Examined]]] = deque(
            pool.submit(examine_block, b, ctx) for b in (first, second)
        )
        for block in blocks:
            # Bounded read-ahead: at most a few blocks per worker are in memory at once.
            while len(pending) >= 3 * jobs:
                yield pending.popleft().result()
            pending.append(pool.submit(examine_block, block, ctx))
        while pending:
            yield pending.popleft().result()


class _Sequence:
    """The checks that need the entries in bundle order: sequence, chain, tree against the checkpoints, rights."""

    def __init__(self, checker: _Checker, report: Report) -> None:
        self.checker, self.report = checker, report
        self.frontier = merkle.Frontier()
        self.prev_hash, self.last_seq = GENESIS, -1

    def _tree_at(self, size: int, root: bytes) -> None:
        if root != self.checker.roots.get(size):
            self.report.fail(f"tree of the first {size} entries does not match its signed checkpoint")

    def _facts(self, seq: int, kind: str, facts: dict[str, Any]) -> None:
        try:
            if kind == "usage":
                self.checker.batch_receipt(seq, facts)
                self.checker.usage(seq, facts)
            elif kind == BATCH_KIND:
                self.checker.batch_entry(seq, facts)
            elif kind == "settlement":
                self.checker.settlement(seq, facts)
            elif kind in ("dp_charge", "dataset_budget_set"):
                self.checker.privacy(seq, kind, facts)
            elif kind in ("node_enrolled", "key_rotated", "dataset_listed"):
                self.checker.node_entry(seq, kind, facts)
            else:
                self.checker.rights_entry(seq, kind, facts)
        except BAD_INPUT as exc:
            self.report.fail(f"entry #{seq}: malformed {kind} entry: {exc}")

    def entries(self, examined: list[Examined]) -> None:
        report, roots, frontier = self.report, self.checker.roots, self.frontier
        for seq, leaf, body_hash, prev, kind, facts, fails in examined:
            report.failures.extend(fails)
            if seq is None:
                continue
            if not isinstance(seq, int) or seq <= self.last_seq:
                report.fail(f"entry #{seq} comes after #{self.last_seq}: entries removed, reordered or repeated")
                continue
            report.entries += 1
            report.kinds[kind] = report.kinds.get(kind, 0) + 1
            if report.complete:
                if seq != frontier.size:
                    report.fail(f"entry #{seq} found where #{frontier.size} belongs: entries removed or reordered")
                if prev != self.prev_hash:
                    report.fail(f"entry #{seq}: prev hash breaks the chain")
                frontier.append(leaf)
                if frontier.size in roots:
                    self._tree_at(frontier.size, frontier.root())
            self.last_seq, self.prev_hash = seq, body_hash
            if facts is not None:
                self._facts(seq, kind, facts)

    def block(self, b: Block) -> None:
        report, roots, frontier = self.report, self.checker.roots, self.frontier
        report.failures.extend(b.failures)
        if b.first_seq <= self.last_seq:
            report.fail(f"entry #{b.first_seq} comes after #{self.last_seq}: entries removed, reordered or repeated")
        if b.first_seq != frontier.size:
            report.fail(f"entry #{b.first_seq} found where #{frontier.size} belongs: entries removed or reordered")
        if b.first_prev != self.prev_hash:
            report.fail(f"entry #{b.first_seq}: prev hash breaks the chain")
        report.entries += b.last_seq - b.first_seq + 1
        for kind, n in b.kinds.items():
            report.kinds[kind] = report.kinds.get(kind, 0) + n
        if b.first_seq == frontier.size:
            for size, prefix in b.prefixes.items():
                if size in roots:
                    partial = frontier.copy()
                    for level, h in prefix:
                        partial.append_subtree(level, h)
                    self._tree_at(size, partial.root())
            for level, h in b.pieces:
                frontier.append_subtree(level, h)
            if frontier.size in roots:
                self._tree_at(frontier.size, frontier.root())
        else:  # not where it belongs: rebuild leaf by leaf, as the per-entry path would
            for i in range(0, len(b.leaves), 32):
                frontier.append(b.leaves[i : i + 32])
                if frontier.size in roots:
                    self._tree_at(frontier.size, frontier.root())
        self.last_seq, self.prev_hash = b.last_seq, b.last_hash
        for seq, kind, facts in b.facts:
            self._facts(seq, kind, facts)


def _verify(
    header_line: str | bytes,
    blocks: Callable[[], Iterator[bytes]],
    *,
    log_keys: Sequence[str] = (),
    witnesses: Sequence[str] = (),
    jobs: int = 1,
    every_signature: bool = False,
) -> Report:
    report = Report(every_signature=every_signature)
    try:
        header = json.loads(header_line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BundleError("the bundle has no JSON header line") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle")
    try:
        checker = _Checker(header, report, list(log_keys), list(witnesses))
        checker.checkpoints(header.get("checkpoints") or [], header.get("consistency") or [])
        checker.receipt_batches(header.get("receipt_batches") or [])
    except BAD_INPUT as exc:
        raise BundleError(f"bad bundle header: {type(exc).__name__}: {exc}") from None
    order = _Sequence(checker, report)
    for outcome in _outcomes(blocks(), checker.context(every_signature), jobs):
        if isinstance(outcome, Block):
            order.block(outcome)
        else:
            order.entries(outcome)
    checker.batches_done()
    checker.node_keys_done()
    if report.complete and order.frontier.size != checker.tree_size:
        report.fail(f"complete bundle holds {order.frontier.size} entries, its checkpoint {checker.tree_size}")
    return report


def verify_lines(
    lines: Iterable[str],
    *,
    log_keys: Sequence[str] = (),
    witnesses: Sequence[str] = (),
    jobs: int = 1,
    chunk_size: int = _CHUNK,
    every_signature: bool = False,
) -> Report:
    """Verify a bundle given as lines of JSON; problems are collected in the report, never raised."""
    it = iter(lines)
    header = next(it, None)
    if header is None:
        raise BundleError("the bundle has no JSON header line")
    return _verify(
        header,
        lambda: _line_blocks(it, chunk_size),
        log_keys=log_keys,
        witnesses=witnesses,
        jobs=jobs,
        every_signature=every_signature,
    )


def verify_file(
    path: str | os.PathLike[str],
    *,
    log_keys: Sequence[str] = (),
    witnesses: Sequence[str] = (),
    jobs: int = 1,
    chunk_size: int = _CHUNK,
    every_signature: bool = False,
) -> Report:
    """Verify a bundle file; it is read in blocks of about ``chunk_size`` entries (1 KiB each) handed to the workers."""
    with open(path, "rb") as fh:
        header = fh.readline()
        return _verify(
            header,
            lambda: _file_blocks(fh, max(1, chunk_size) * 1024),
            log_keys=log_keys,
            witnesses=witnesses,
            jobs=jobs,
            every_signature=every_signature,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="bundle file (JSON Lines), '-' for standard input")
    parser.add_argument("--log-key", action="append", default=[], help="pin the log's vkey (repeatable)")
    parser.add_argument("--witness", action="append", default=[], help="require this witness vkey's cosignature")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--chunk", type=int, default=_CHUNK, help="entries per unit of work of a worker")
    parser.add_argument(
        "--every-signature",
        action="store_true",
        help="also check each entry's own hub signature and each receipt a node-signed batch already vouches for",
    )
    args = parser.parse_args(argv)
    options = {
        "log_keys": args.log_key,
        "witnesses": args.witness,
        "jobs": args.jobs,
        "chunk_size": args.chunk,
        "every_signature": args.every_signature,
    }
    try:
        report = verify_lines(sys.stdin, **options) if args.bundle == "-" else verify_file(args.bundle, **options)
    except (OSError, BundleError, notes.CheckpointError) as exc:
        print(f"cannot read bundle: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
