"""Writes to the ledger: appends (one, or the writer's batches), checkpoints, witnesses and their cosignatures.

Appends are serialised so the hash chain never forks or skips: on PostgreSQL with a
transaction-scoped advisory lock, on SQLite by its single writer (``BEGIN IMMEDIATE``).
Each append stores the entry and the Merkle subtrees it completes in the same
transaction, so the tree can never lag behind or run ahead of the entries.

Lock order: callers lock their own rows (rights, jobs) first; then the ledger head;
then the checkpoint lock. Both locks are held until the caller's transaction commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ledger import bulk, tree
from ledger.exceptions import CheckpointRefused, CosignatureRejected, LedgerConflict, ProofUnavailable
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import Checkpoint, Cosignature, LedgerEntry, MerkleNode, PendingEntry, RefusedReceipt, Witness
from protocol import attest, jcs, merkle
from protocol import checkpoint as notes
from protocol.canonical import canonical
from protocol.envelope import format_time

GENESIS = "0" * 64
LEDGER_LOCK_ID = 0x5553_5546  # "USUF": the advisory lock key of the ledger head
CHECKPOINT_LOCK_ID = 0x5553_4350  # "USCP": only one checkpoint is signed at a time


def _lock(key: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@dataclass(frozen=True)
class Draft:
    """One entry to append, as the action that causes it describes it."""

    kind: str
    event_id: str
    payload: dict[str, Any] | bytes  # bytes: its RFC 8785 text already (a pending entry's)
    producer_time: datetime | None = None
    dataset_id: int | None = None
    consumer_id: int | None = None
    provider_id: int | None = None
    right_id: int | None = None


def _same(existing: LedgerEntry, draft: Draft) -> bool:
    return existing.kind == draft.kind and canonical(existing.payload) == canonical(draft.payload)


def _build(draft: Draft, *, seq: int, prev: str, now: datetime) -> tuple[LedgerEntry, bytes]:
    produced = draft.producer_time or now
    body = canonical(
        {
            "seq": seq,
            "kind": draft.kind,
            "version": 1,
            "event_id": draft.event_id,
            "producer_time": format_time(produced),
            "integrated_time": format_time(now),
            "payload": draft.payload,
            "prev": prev,
        }
    )
    leaf = merkle.leaf_hash(body)  # RFC 9162 §2.1.1: SHA-256(0x00 || body)
    entry = LedgerEntry(
        seq=seq,
        kind=draft.kind,
        event_id=draft.event_id,
        payload=draft.payload,
        body=body.decode(),
        prev_hash=prev,
        entry_hash=hashlib.sha256(body).hexdigest(),
        leaf_hash=leaf.hex(),
        hub_kid=hub_kid(),
        hub_sig="",
        producer_time=produced,
        integrated_at=now,
        dataset_id=draft.dataset_id,
        consumer_id=draft.consumer_id,
        provider_id=draft.provider_id,
        right_id=draft.right_id,
    )
    return entry, body


def _head() -> tuple[int, str]:
    last = LedgerEntry.objects.order_by("-seq").only("seq", "entry_hash").first()
    return (last.seq + 1, last.entry_hash) if last else (0, GENESIS)


def entry_append(
    *,
    kind: str,
    event_id: str,
    payload: dict[str, Any],
    producer_time: datetime | None = None,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    provider_id: int | None = None,
    right_id: int | None = None,
) -> LedgerEntry:
    """Append one entry, or return the existing one for a repeated ``event_id``.

    A repeated id with a different kind or payload raises ``LedgerConflict``.
    """
    draft = Draft(kind, event_id, payload, producer_time, dataset_id, consumer_id, provider_id, right_id)
    with transaction.atomic():
        _lock(LEDGER_LOCK_ID)
        pending_flush_locked()
        existing = LedgerEntry.objects.filter(event_id=event_id).first()
        if existing is not None:
            if _same(existing, draft):
                return existing
            raise LedgerConflict(f"event {event_id!r} was recorded with a different body")
        seq, prev = _head()
        edge = tree.frontier(seq)
        entry, body = _build(draft, seq=seq, prev=prev, now=timezone.now())
        entry.hub_sig = base64.b64encode(hub_private_key().sign(body)).decode()
        entry.save(force_insert=True)
        MerkleNode.objects.bulk_create(MerkleNode(level=lv, index=ix, hash=h) for lv, ix, h in edge.append(leaf(entry)))
        return entry


PENDING_BATCH = 20_000  # pending entries integrated per writer transaction
PENDING_PART = 2_500  # entries per prepared part: part k+1 is sequenced while part k is written


@lru_cache(maxsize=1)
def _pending_signer() -> Callable[[list[bytes]], list[bytes]]:
    from ledger.sequencer import ParallelSigner  # the sequencer module imports this one

    return ParallelSigner(hub_private_key(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="ledger-sign"))


@lru_cache(maxsize=1)
def _sequencing_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sequence")


def pending_flush_locked() -> None:
    """Integrate everything the writer has not yet (see :mod:`ledger.writer`); the caller holds the ledger lock.

    Every append and every checkpoint does this first, so the log keeps the order in
    which the hub accepted things.
    """
    while pending_integrate_locked(PENDING_BATCH) == PENDING_BATCH:
        pass


def pending_integrate_locked(limit: int) -> int:
    """Sequence up to ``limit`` pending entries, oldest first; the caller holds the ledger lock.

    The entries are sequenced (bodies, chain, Merkle rows; signatures on two threads) in
    parts of :data:`PENDING_PART`, on a thread of their own, while the part before is
    being written by COPY: the database works on part k while Python builds part k+1.
    Sequencing is pure CPU, so the chain and the frontier pass from one part to the next
    without waiting for the write.
    """
    fields = (
        "id",
        "kind",
        "event_id",
        "payload_json",
        "producer_time",
        "dataset_id",
        "consumer_id",
        "provider_id",
        "right_id",
    )
    rows = list(PendingEntry.objects.order_by("id").values_list(*fields)[:limit])
    if not rows:
        return 0
    known = _known_events([r[2] for r in rows])  # a redelivered acceptance: on the log already
    fresh = [r for r in rows if r[2] not in known]
    seq, prev = _head()
    at = {r[2]: seq + i for i, r in enumerate(fresh)}
    at.update({e: entry.seq for e, entry in known.items()})
    settle = LedgerEntry.Kind.SETTLEMENT
    drafts = []
    for _, kind, event_id, text, produced, dataset, consumer, provider, right in fresh:
        payload: dict[str, Any] | bytes = text.encode()
        if kind == settle:  # the uses it charges: event ids → their seqs on the log
            body = json.loads(text)
            wanted = [e for e in body["usage"] if e not in at]
            if wanted:
                at.update(LedgerEntry.objects.filter(event_id__in=wanted).values_list("event_id", "seq"))
            payload = {**body, "usage": [at[e] for e in body["usage"]]}
        drafts.append(Draft(kind, event_id, payload, produced, dataset, consumer, provider, right))
    if drafts:
        parts = [drafts[i : i + PENDING_PART] for i in range(0, len(drafts), PENDING_PART)]
        edge, now, signer = tree.frontier(seq), timezone.now(), _pending_signer()
        p = _prepare(parts[0], seq=seq, prev=prev, edge=edge, now=now, signer=signer)
        for part in parts[1:]:
            after = p.first + len(p.bodies)
            nxt = _sequencing_pool().submit(
                _prepare, part, seq=after, prev=p.chain[-1], edge=edge, now=now, signer=signer
            )
            try:
                _write(p, make_checkpoint=False)
            finally:
                p = nxt.result()  # on a failed write: wait for it, then the transaction rolls back
        _write(p, make_checkpoint=False)
    # In the transaction that wrote the entries: each is pending or on the log. By id, not by
    # range: a row with a smaller id may commit after this batch was read.
    PendingEntry.objects.filter(id__in=[r[0] for r in rows])._raw_delete(PendingEntry.objects.db)
    return len(rows)


def leaf(entry: LedgerEntry) -> bytes:
    return bytes.fromhex(entry.leaf_hash)


_ENTRY_COLUMNS = (
    "seq",
    "kind",
    "version",
    "event_id",
    "payload",
    "body",
    "prev_hash",
    "entry_hash",
    "leaf_hash",
    "hub_kid",
    "hub_sig",
    "producer_time",
    "integrated_at",
    "dataset_id",
    "consumer_id",
    "provider_id",
    "right_id",
)


def _known_events(event_ids: list[str]) -> dict[str, LedgerEntry]:
    """The entries already recorded under any of ``event_ids``."""
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of placeholders; almost always finds nothing.
        table = connection.ops.quote_name(LedgerEntry._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT event_id FROM {table} WHERE event_id = ANY(%s)", [event_ids])  # noqa: S608
            event_ids = [row[0] for row in cursor.fetchall()]
        if not event_ids:
            return {}
    return {e.event_id: e for e in LedgerEntry.objects.filter(event_id__in=event_ids)}


def _id(value: int | None) -> str:
    return "\\N" if value is None else str(int(value))


@dataclass
class _Prepared:
    """A batch sequenced in memory: bodies, chain and Merkle rows, signatures (possibly still being made)."""

    fresh: list[Draft]
    first: int
    now: datetime
    times: dict[datetime, str]
    payloads: list[bytes]
    bodies: list[bytes]
    chain: list[str]  # prev of each entry, then the last entry's hash
    leaves: list[bytes]
    nodes: list[tuple[int, int, bytes]]
    edge: merkle.Frontier  # after the batch
    signatures: Callable[[], list[bytes]]


def _prepare(
    fresh: list[Draft],
    *,
    seq: int,
    prev: str,
    edge: merkle.Frontier,
    now: datetime,
    signer: Callable[[list[bytes]], list[bytes]] | None,
) -> _Prepared:
    """Sequence ``fresh`` after entry ``seq - 1`` (hash ``prev``), extending ``edge`` in place; pure CPU, no I/O.

    A signer that can ``submit`` (see :class:`ledger.sequencer.ParallelSigner`) signs
    each part as soon as its bodies exist; the signatures are collected by the caller.
    """
    first = seq
    integrated = format_time(now)
    kinds: dict[str, str] = {}
    times: dict[datetime, str] = {now: integrated}
    payloads: list[bytes] = []
    bodies: list[bytes] = []
    chain: list[str] = []
    leaves: list[bytes] = []
    nodes: list[tuple[int, int, bytes]] = []
    submit = getattr(signer, "submit", None)
    step = int(getattr(signer, "chunk", 512))
    signing: list[Future[list[bytes]]] = []
    for d in fresh:
        produced = d.producer_time or now
        produced_s = times.get(produced)
        if produced_s is None:
            produced_s = times[produced] = format_time(produced)
        kind = kinds.get(d.kind)
        if kind is None:
            kind = kinds[d.kind] = jcs.string(d.kind)
        payload_json = d.payload if isinstance(d.payload, bytes) else jcs.dumps_checked(d.payload, exact=canonical)
        # RFC 8785 orders the members by key: event_id, integrated_time, kind, payload, prev,
        # producer_time, seq, version; the times and prev are ASCII strings without escapes.
        body = b"".join(
            (
                f'{{"event_id":{jcs.string(d.event_id)},"integrated_time":"{integrated}","kind":{kind},'
                '"payload":'.encode(),
                payload_json,
                f',"prev":"{prev}","producer_time":"{produced_s}","seq":{seq},"version":1}}'.encode(),
            )
        )
        leaf = merkle.leaf_hash(body)
        nodes.extend(edge.append(leaf))
        payloads.append(payload_json)
        bodies.append(body)
        chain.append(prev)
        leaves.append(leaf)
        seq, prev = seq + 1, hashlib.sha256(body).hexdigest()
        if submit is not None and len(bodies) % step == 0:
            signing.append(submit(bodies[-step:]))
    chain.append(prev)
    if submit is not None:
        if len(bodies) % step:
            signing.append(submit(bodies[len(signing) * step :]))

        def signatures() -> list[bytes]:
            return [sig for part in signing for sig in part.result()]

    elif signer is not None:

        def signatures() -> list[bytes]:
            return signer(bodies)

    else:

        def signatures() -> list[bytes]:
            key = hub_private_key()
            return [key.sign(b) for b in bodies]

    return _Prepared(fresh, first, now, times, payloads, bodies, chain, leaves, nodes, edge, signatures)


def _write(p: _Prepared, make_checkpoint: bool) -> Checkpoint | None:
    """Store a prepared batch (two COPYs) and sign its checkpoint; inside the caller's transaction and lock."""
    sigs = p.signatures()
    if len(sigs) != len(p.bodies):
        raise ValueError("the signer returned a different number of signatures")
    kid, now, first, fresh = hub_kid(), p.now, p.first, p.fresh
    payloads, bodies, chain, leaves = p.payloads, p.bodies, p.chain, p.leaves
    if connection.vendor == "postgresql":
        now_iso = now.isoformat()
        isos = {t: t.isoformat() for t in p.times}
        b64 = base64.b64encode
        esc = bulk.escape
        bulk.copy_text(
            LedgerEntry,
            _ENTRY_COLUMNS,
            (
                f"{first + i}\t{esc(d.kind)}\t1\t{esc(d.event_id)}\t{esc(payloads[i].decode())}\t"
                f"{esc(bodies[i].decode())}\t{chain[i]}\t{chain[i + 1]}\t{leaves[i].hex()}\t{kid}\t"
                f"{b64(sigs[i]).decode()}\t{isos[d.producer_time or now]}\t{now_iso}\t{_id(d.dataset_id)}\t"
                f"{_id(d.consumer_id)}\t{_id(d.provider_id)}\t{_id(d.right_id)}\n"
                for i, d in enumerate(fresh)
            ),
        )
        bulk.copy_text(
            MerkleNode, ("level", "index", "hash"), (f"{lv}\t{ix}\t\\\\x{h.hex()}\n" for lv, ix, h in p.nodes)
        )
    else:
        bulk.insert_rows(
            LedgerEntry,
            _ENTRY_COLUMNS,
            (
                (
                    first + i,
                    d.kind,
                    1,
                    d.event_id,
                    bulk.Json(payloads[i].decode()),
                    bodies[i].decode(),
                    chain[i],
                    chain[i + 1],
                    leaves[i].hex(),
                    kid,
                    base64.b64encode(sigs[i]).decode(),
                    d.producer_time or now,
                    now,
                    d.dataset_id,
                    d.consumer_id,
                    d.provider_id,
                    d.right_id,
                )
                for i, d in enumerate(fresh)
            ),
        )
        bulk.insert_rows(MerkleNode, ("level", "index", "hash"), p.nodes)
    if make_checkpoint and fresh:
        return checkpoint_create(expected_root=p.edge.root(), size=p.edge.size)
    return None


def log_vkey() -> str:
    """The signed-note verifier key of the log: key name = origin, type 0x01 Ed25519."""
    return notes.encode_vkey(settings.USUFRUCT_LOG_ORIGIN, hub_private_key().public_key().public_bytes_raw())


def _check_new_leaves(start: int, end: int) -> None:
    """Recompute the leaf hashes of entries [start, end) from their bodies and compare with the tree.

    Catches a body or a stored leaf changed behind the triggers' back before the
    hub puts its signature on a root that would cover it.
    """
    leaves = MerkleNode.objects.filter(level=0, index__gte=start, index__lt=end).values_list("index", "hash")
    stored = {index: bytes(value) for index, value in leaves}
    for seq, body in LedgerEntry.objects.filter(seq__gte=start, seq__lt=end).values_list("seq", "body").iterator():
        if stored.get(seq) != merkle.leaf_hash(body.encode()):
            raise CheckpointRefused(f"entry {seq} does not match its stored leaf hash")
    if len(stored) != end - start:
        raise CheckpointRefused(f"the tree holds {len(stored)} leaves in [{start}, {end})")


def checkpoint_create(
    *, size: int | None = None, expected_root: bytes | None = None, now: datetime | None = None
) -> Checkpoint | None:
    """Sign a checkpoint of the log at ``size`` (default: now), or return the latest if nothing is new.

    Before signing, the new root must be provably consistent with the previous
    checkpoint's (RFC 9162 §2.1.4), so two signed heads can always be reconciled.
    Returns None for an empty log.
    """
    with transaction.atomic():  # what was accepted before the checkpoint is in it (ledger lock first)
        _lock(LEDGER_LOCK_ID)
        pending_flush_locked()
    with transaction.atomic():
        _lock(CHECKPOINT_LOCK_ID)
        current = tree.tree_size()
        size = current if size is None else size
        if size == 0:
            return None
        last = Checkpoint.objects.order_by("-size").first()
        if last is not None and last.size >= size:
            return last
        root = tree.root(size, current=current)
        if expected_root is not None and root != expected_root:
            raise CheckpointRefused("the stored tree's root differs from the sequencer's")
        if expected_root is None:
            _check_new_leaves(last.size if last else 0, size)
        if last is not None:
            proof = tree.consistency_proof(last.size, size, current=current)
            try:
                merkle.verify_consistency(last.size, size, proof, bytes(last.root), root)
            except merkle.ProofError as exc:
                raise CheckpointRefused(f"tree of size {size} does not extend checkpoint {last.size}: {exc}")
        moment = now or timezone.now()
        origin = settings.USUFRUCT_LOG_ORIGIN
        head = notes.Checkpoint(origin, size, root, (f"time {format_time(moment)}",))
        note = notes.sign_checkpoint(head, origin, hub_private_key())
        return Checkpoint.objects.create(
            size=size,
            root=root,
            origin=origin,
            note=note.decode(),
            key_name=origin,
            hub_kid=hub_kid(),
            created_at=moment,
        )


# --- witnesses -------------------------------------------------------------------------------


def witness_register(*, organization_id: int, vkey: str) -> Witness:
    """Register a regulator's cosigner key (vkey of type 0x04); idempotent for the same key."""
    try:
        parsed = notes.parse_vkey(vkey.strip())
    except notes.CheckpointError as exc:
        raise CosignatureRejected(f"invalid witness key: {exc}")
    if parsed.sig_type != notes.SIG_COSIGNATURE_V1:
        raise CosignatureRejected("a witness key must be of type 0x04 (cosignature/v1)")
    existing = Witness.objects.filter(vkey=parsed.encode()).first()
    if existing is not None:
        if existing.organization_id != organization_id:
            raise LedgerConflict("this witness key belongs to another organisation")
        return existing
    if Witness.objects.filter(name=parsed.name).exists():
        raise LedgerConflict(f"a witness named {parsed.name!r} exists with another key")
    return Witness.objects.create(organization_id=organization_id, name=parsed.name, vkey=parsed.encode())


def cosignature_add(*, checkpoint: Checkpoint, note: bytes, organization_id: int) -> list[Cosignature]:
    """Store the cosignatures a witness of ``organization_id`` put on ``checkpoint``'s note.

    The posted note must carry exactly the checkpoint's text; each cosignature line
    from the organisation's active witnesses is verified (cosignature/v1) and kept.
    """
    try:
        parsed = notes.parse_note(note)
    except notes.CheckpointError as exc:
        raise CosignatureRejected(f"malformed note: {exc}")
    if parsed.text != notes.parse_note(checkpoint.note.encode()).text:
        raise CosignatureRejected(f"the note is not checkpoint {checkpoint.size}")
    stored: list[Cosignature] = []
    with transaction.atomic():
        for witness in Witness.objects.filter(organization_id=organization_id, active=True):
            key = notes.parse_vkey(witness.vkey)
            lines = [s for s in parsed.signatures if s.name == key.name and s.key_id == key.key_id]
            if not lines:
                continue
            try:
                ts = notes.verify_cosignature(parsed, key.name, key.public_key)
            except notes.CheckpointError as exc:
                raise CosignatureRejected(str(exc))
            line = next(s for s in lines if int.from_bytes(s.signature[:8], "big") == ts)
            cosig, _ = Cosignature.objects.get_or_create(
                checkpoint=checkpoint, witness=witness, defaults={"timestamp": ts, "line": line.line().decode()}
            )
            stored.append(cosig)
    if not stored:
        raise CosignatureRejected("the note carries no cosignature from a witness of your organisation")
    return stored


# --- receipt batches (docs/decisions/0008-receipt-batches.md) ---------------------------------


@dataclass(frozen=True)
class ReceiptBatch:
    """The node's ``usage`` entries ``first_seq..last_seq`` and their receipts' digests, in ledger order."""

    node: str
    seqs: list[int]
    digests: list[str]

    @property
    def first_seq(self) -> int:
        return self.seqs[0]

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]


def _node_usage(node_slug: str, organization_id: int):  # type: ignore[no-untyped-def]
    return LedgerEntry.objects.filter(
        provider_id=organization_id, kind=LedgerEntry.Kind.USAGE, payload__receipt__payload__node=node_slug
    )


def _next_unattested(node_slug: str, organization_id: int) -> int:
    last = (
        LedgerEntry.objects.filter(
            provider_id=organization_id, kind=LedgerEntry.Kind.RECEIPT_BATCH, payload__node=node_slug
        )
        .order_by("-seq")
        .values_list("payload", flat=True)
        .first()
    )
    return int(last["last_seq"]) + 1 if last else 0


def receipt_batch_pending(
    *, node_slug: str, organization_id: int, limit: int = attest.MAX_RECEIPTS
) -> ReceiptBatch | None:
    """The next batch of the node's receipts to attest: its usage entries after its last batch, oldest first.

    The range is tight (its first and last entries are the node's) and never spans a
    receipt the node refused to attest: those are skipped, and a batch stops before one.
    """
    after = _next_unattested(node_slug, organization_id)
    refused = set(RefusedReceipt.objects.filter(node=node_slug, seq__gte=after).values_list("seq", flat=True))
    rows: list[tuple[int, Any]] = []
    query = _node_usage(node_slug, organization_id).filter(seq__gte=after).order_by("seq")
    for seq, receipt in query.values_list("seq", "payload__receipt")[: limit + len(refused)]:
        if seq in refused:
            if rows:
                break
            continue
        rows.append((seq, receipt))
        if len(rows) == limit:
            break
    if not rows:
        return None
    return ReceiptBatch(node_slug, [seq for seq, _ in rows], [attest.receipt_digest(r) for _, r in rows])


def _node_receipts(node_slug: str, organization_id: int, first: int, last: int) -> list[tuple[int, str]]:
    rows = _node_usage(node_slug, organization_id).filter(seq__gte=first, seq__lte=last).order_by("seq")
    return [(seq, attest.receipt_digest(r)) for seq, r in rows.values_list("seq", "payload__receipt")]


def receipt_batch_record(*, node_slug: str, organization_id: int, attestation: dict[str, Any]) -> LedgerEntry:
    """Append the ``receipt_batch`` entry for a node's signed attestation (its signature already verified).

    The statement must cover exactly the node's usage entries in its range, which starts
    at one of them after the node's last batch and ends at one: batches never overlap.
    A repeated attestation returns the entry it made.
    """
    s = attestation["payload"]
    if s.get("type") != attest.STATEMENT_TYPE or s.get("log") != settings.USUFRUCT_LOG_ORIGIN:
        raise LedgerConflict("not a receipt batch statement for this log")
    if s.get("node") != node_slug:
        raise LedgerConflict(f"the statement is for node {s.get('node')!r}, not {node_slug!r}")
    first, last = s.get("first_seq"), s.get("last_seq")
    if type(first) is not int or type(last) is not int or not 0 <= first <= last:
        raise LedgerConflict("first_seq and last_seq must be integers, 0 <= first_seq <= last_seq")
    event_id = f"receipt_batch:{node_slug}:{first}-{last}"
    payload = {
        "node": node_slug,
        "organization": organization_id,
        "first_seq": first,
        "last_seq": last,
        "count": s.get("count"),
        "digest": s.get("digest"),
        "attestation": attestation,
    }
    with transaction.atomic():
        _lock(LEDGER_LOCK_ID)
        if not LedgerEntry.objects.filter(event_id=event_id).exists():
            expected = _next_unattested(node_slug, organization_id)
            if first < expected:
                raise LedgerConflict(f"node {node_slug}'s receipts up to #{expected - 1} are already in a batch")
            rows = _node_receipts(node_slug, organization_id, first, last)
            if not rows or rows[0][0] != first or rows[-1][0] != last:
                raise LedgerConflict(f"#{first}..#{last} does not start and end at usage entries of node {node_slug}")
            digests = [d for _, d in rows]
            if s.get("count") != len(digests) or s.get("digest") != attest.batch_digest(digests):
                raise LedgerConflict(f"the statement does not match node {node_slug}'s receipts in #{first}..#{last}")
        return entry_append(
            kind=LedgerEntry.Kind.RECEIPT_BATCH,
            event_id=event_id,
            payload=payload,
            provider_id=organization_id,
        )


def receipt_refusal_record(*, node_slug: str, organization_id: int, unknown: list[str], reason: str) -> list[int]:
    """Note the node's usage entries whose receipts it refused to attest; later batches leave them out.

    Only the batch the hub would ask for now is searched: a node can neither mark entries
    already in a batch nor make the hub scan its whole history.
    """
    pending = receipt_batch_pending(node_slug=node_slug, organization_id=organization_id)
    if pending is None:
        return []
    wanted = set(unknown)
    refused = [(seq, d) for seq, d in zip(pending.seqs, pending.digests, strict=True) if d in wanted]
    with transaction.atomic():
        for seq, digest in refused:
            RefusedReceipt.objects.get_or_create(
                seq=seq, defaults={"node": node_slug, "digest": digest, "reason": reason[:200]}
            )
    return [seq for seq, _ in refused]


# --- corrections and key rotation ------------------------------------------------------------


def entry_correct(*, corrects_seq: int, reason: str, amends: dict[str, Any], event_id: str) -> LedgerEntry:
    """A compensating ``correction`` entry pointing at (seq and hash of) the entry it corrects; nothing is edited."""
    target = LedgerEntry.objects.filter(seq=corrects_seq).first()
    if target is None:
        raise ProofUnavailable(f"no entry {corrects_seq} to correct")
    if not reason.strip():
        raise LedgerConflict("a correction needs a reason")
    return entry_append(
        kind=LedgerEntry.Kind.CORRECTION,
        event_id=event_id,
        payload={
            "corrects": target.seq,
            "corrects_entry_hash": target.entry_hash,
            "corrects_kind": target.kind,
            "reason": reason.strip(),
            "amends": amends,
        },
        dataset_id=target.dataset_id,
        consumer_id=target.consumer_id,
        provider_id=target.provider_id,
        right_id=target.right_id,
    )


def hub_key_rotate() -> LedgerEntry:
    """Replace the hub's signing key; the ``key_rotated`` entry is signed by the old key and endorsed by the new.

    The old key file is kept beside the new one (``.retired-<kid>``) so that
    bundles keep listing it; checkpoints before the rotation stay verifiable.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.hubkey import hub_public_b64
    from protocol import keys

    path = settings.USUFRUCT_HUB_KEY_FILE
    old_kid, old_public = hub_kid(), hub_public_b64()
    new = Ed25519PrivateKey.generate()
    new_public = keys.public_b64(new)
    statement = canonical(
        {"rotate_from": old_kid, "rotate_to": keys.key_id(new), "origin": settings.USUFRUCT_LOG_ORIGIN}
    )
    with transaction.atomic():
        entry = entry_append(
            kind=LedgerEntry.Kind.KEY_ROTATED,
            event_id=f"key_rotated:hub:{old_kid}",
            payload={
                "key": "hub",
                "old_kid": old_kid,
                "old_public_key": old_public,
                "new_kid": keys.key_id(new),
                "new_public_key": new_public,
                "endorsement": base64.b64encode(new.sign(statement)).decode(),
            },
        )
        # After commit only: a rolled-back rotation must leave the old key in place.
        # Other processes cache the key: restart them (they keep signing with the old,
        # still listed, key until then).
        transaction.on_commit(lambda: _swap_key_file(path, new, old_kid))
    return entry


def _swap_key_file(path: Any, new: Any, old_kid: str) -> None:
    import os
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from ledger.hubkey import hub_private_key

    path = Path(path)
    os.replace(path, path.with_name(f"{path.name}.retired-{old_kid}"))
    pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    hub_private_key.cache_clear()
