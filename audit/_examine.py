"""Per-entry checks of the offline verifier that need no other entry, so they run in worker processes.

Standard library + ``cryptography`` only. For each bundle line: parse, canonical
form, RFC 9162 leaf hash, the node receipt's agreement with the entry and its
digest, the receipt's own signature unless a node-signed receipt batch claims it,
the entry's own hub signature if asked to (the signed checkpoints cover every body),
and (partial bundles) the inclusion proof. What the sequential pass needs (chain
link, leaf, facts about rights, usage and receipt batches) comes back as a small tuple.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import attest, jcs, merkle

RIGHT_KINDS = ("right_granted", "right_revoked", "right_expired")
BATCH_KIND = "receipt_batch"
# Kinds whose payload the sequential pass reads whole: node keys, attested row counts, settlements.
WHOLE_KINDS = ("node_enrolled", "key_rotated", "dataset_listed", "settlement", "dp_charge", "dataset_budget_set")


@dataclass(frozen=True)
class Context:
    log_keys: dict[str, bytes]  # hub kid -> raw Ed25519 public key
    node_keys: dict[str, tuple[bytes, Any, Any]]  # node kid -> (raw public key, organisation id, node slug)
    tree_size: int
    root: bytes | None  # the signed root of ``tree_size``: inclusion proofs of a partial bundle lead there
    complete: bool
    every_signature: bool = False  # also each entry's hub signature, and receipts a node batch covers
    checkpoint_sizes: tuple[int, ...] = ()  # sizes of the verified checkpoints, whose roots the tree must match
    # node slug -> sorted (first_seq, last_seq) of its receipt batches whose node signature verified:
    # receipts there are vouched for by that one signature, if the batch digest matches (checked in order).
    batches: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def batch_of(self, node: str, seq: int) -> int | None:
        """Index in ``batches[node]`` of the batch whose range holds ``seq``, if any."""
        ranges = self.batches.get(node)
        if not ranges:
            return None
        i = bisect.bisect_right(ranges, (seq, _SEQ_MAX)) - 1
        return i if i >= 0 and ranges[i][0] <= seq <= ranges[i][1] else None


_SEQ_MAX = 1 << 63
_FACTS = ("right", "consumer", "dataset", "provider", "operation", "job")


# (seq, leaf hash, sha256 hex of body, prev, kind, facts, failures); seq None = unusable line
Examined = tuple[Any, bytes, str, Any, str, dict[str, Any] | None, list[str]]

_keys: dict[bytes, Ed25519PublicKey] = {}


def _key(raw: bytes) -> Ed25519PublicKey:
    key = _keys.get(raw)
    if key is None:
        key = _keys[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(value, validate=True)


def verify_signature(raw_key: bytes, sig: Any, message: bytes, exact: Any = None) -> bool:
    try:
        key, signature = _key(raw_key), _b64(sig)
    except (ValueError, binascii.Error):
        return False
    try:
        key.verify(signature, message)
        return True
    except InvalidSignature:
        # The fast canonical form differs from RFC 8785 only on rare values: retry with the exact one.
        if exact is None:
            return False
        alt = exact()
        if alt == message:
            return False
        try:
            key.verify(signature, alt)
            return True
        except InvalidSignature:
            return False


receipt_digest = attest.receipt_digest  # SHA-256 of a whole signed receipt, as the node attests it


def _receipt(seq: int, p: dict[str, Any], ctx: Context, fail: list[str], facts: dict[str, Any]) -> None:
    where = f"usage #{seq}"
    receipt = p.get("receipt")
    if not isinstance(receipt, dict) or not isinstance(receipt.get("payload"), dict):
        fail.append(f"{where} carries no node receipt")
        return
    r = receipt["payload"]
    node = ctx.node_keys.get(str(receipt.get("kid")))
    if node is None:
        fail.append(f"{where}: receipt key {receipt.get('kid')!r} is not a known node key")
        return
    if node[1] is not None and node[1] != p.get("provider"):
        fail.append(f"{where}: receipt signed by a node of organisation {node[1]}, not the provider")
    if node[2] is not None and node[2] != r.get("node"):
        fail.append(f"{where}: receipt names node {r.get('node')!r} but is signed by node {node[2]!r}'s key")
    for name in (
        "job",
        "dataset",
        "right",
        "operation",
        "rows",
        "step",
        *(("records", "round") if "records" in p else ()),
    ):
        if r.get(name) != p.get(name):
            fail.append(f"{where}: receipt {name} {r.get(name)!r} differs from the entry's {p.get(name)!r}")
    node_name = r.get("node")
    batch = ctx.batch_of(node_name, seq) if isinstance(node_name, str) else None
    if batch is not None:  # the sequential pass folds the digest into the batch's, which the node signed
        try:
            facts.update(digest=receipt_digest(receipt), node=node_name, batch=batch)
        except (TypeError, ValueError) as exc:
            fail.append(f"{where}: receipt is not JSON: {exc}")
            return
    if ctx.every_signature or batch is None:
        facts["signature_checked"] = True
        if not verify_signature(node[0], receipt.get("sig"), jcs.dumps_fast(r), lambda: jcs.dumps(r)):
            fail.append(f"{where} node receipt: signature does not verify")


def _signature_shaped(value: Any) -> bool:
    try:
        return len(_b64(value)) == 64
    except (ValueError, binascii.Error):
        return False


# What crafted input can raise while an entry is checked: reported as a failure of that entry.
BAD_INPUT = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError, UnicodeError)


def examine_one(line: str, ctx: Context) -> Examined:
    try:
        return _examine_one(line, ctx)
    except BAD_INPUT as exc:
        return (None, b"", "", None, "", None, [f"entry line cannot be checked: {type(exc).__name__}: {exc}"])


def _examine_one(line: str, ctx: Context) -> Examined:
    fail: list[str] = []
    try:
        item = json.loads(line)
        seq, text = item["seq"], str(item["body"])
        body, raw = json.loads(text), text.encode()
    except (ValueError, KeyError, TypeError) as exc:
        return (None, b"", "", None, "", None, [f"unreadable entry line: {exc}"])
    where = f"entry #{seq}"
    if not isinstance(body, dict):
        return (None, b"", "", None, "", None, [f"{where}: body is not an object"])
    if jcs.dumps_fast(body) != raw and jcs.dumps(body) != raw:
        fail.append(f"{where}: body is not canonical JSON (RFC 8785)")
    if body.get("seq") != seq:
        fail.append(f"{where}: body says seq {body.get('seq')}")
    leaf = merkle.leaf_hash(raw)
    if not ctx.complete and ctx.root is not None:
        try:
            proof = [_b64(p) for p in item.get("proof") or []]
            merkle.verify_inclusion(leaf, seq, ctx.tree_size, proof, ctx.root)
        except (ValueError, binascii.Error, merkle.ProofError) as exc:
            fail.append(f"{where} is not in the signed tree: {exc}")
    hub = ctx.log_keys.get(str(item.get("hub_kid")))
    if hub is None:
        fail.append(f"{where}: signed by unknown hub key {item.get('hub_kid')!r}")
    elif ctx.every_signature:
        if not verify_signature(hub, item.get("hub_sig"), raw):
            fail.append(f"{where} hub signature: signature does not verify")
    elif not _signature_shaped(item.get("hub_sig")):
        fail.append(f"{where} hub signature: missing or not a 64-byte Ed25519 signature")
    kind = str(body.get("kind"))
    p = body.get("payload")
    facts: dict[str, Any] | None = None
    if not isinstance(p, dict):
        fail.append(f"{where}: payload is not an object")
    elif kind in RIGHT_KINDS or kind == "usage":
        facts = {k: p.get(k) for k in _FACTS}
        facts["produced"] = body.get("producer_time")
        if kind == "right_granted":
            facts.update(operations=p.get("operations"), quota=p.get("quota"), expires_at=p.get("expires_at"))
            facts["epsilon"] = p.get("epsilon")
        if kind == "usage" and isinstance(seq, int):
            facts.update({k: p.get(k) for k in ("rows", "records", "passes", "preview", "free", "step")})
            receipt = p.get("receipt")
            facts["kid"] = receipt.get("kid") if isinstance(receipt, dict) else None
            r = receipt.get("payload") if isinstance(receipt, dict) else None
            facts["node"] = r.get("node") if isinstance(r, dict) else None
            if isinstance(r, dict) and "consumer_kid" in r:
                facts["consumer_kid"] = r["consumer_kid"]
            _receipt(seq, p, ctx, fail, facts)
    elif kind == BATCH_KIND:
        attestation = p.get("attestation")
        facts = {"node": p.get("node"), "sig": attestation.get("sig") if isinstance(attestation, dict) else None}
        facts["kid"] = attestation.get("kid") if isinstance(attestation, dict) else None
    elif kind in WHOLE_KINDS:
        facts = dict(p)
    return (seq, leaf, hashlib.sha256(raw).hexdigest(), body.get("prev"), kind, facts, fail)


def examine(lines: list[str], ctx: Context) -> list[Examined]:
    return [examine_one(line, ctx) for line in lines]


@dataclass
class Block:
    """What the sequential pass needs of a run of entries that is in order and chained (complete bundles).

    Entries ``first_seq .. last_seq``, consecutive, each ``prev`` the SHA-256 of the
    body before it; the tree as the aligned perfect subtrees covering the run
    (``pieces``) and, for each checkpoint size inside it, those covering its prefix.
    ``leaves`` (32 bytes each) lets the caller rebuild the tree leaf by leaf if the
    run does not continue where the previous one ended.
    """

    first_seq: int
    first_prev: Any
    last_seq: int
    last_hash: str
    leaves: bytes
    pieces: list[tuple[int, bytes]]
    prefixes: dict[int, list[tuple[int, bytes]]]
    kinds: dict[str, int]
    facts: list[tuple[int, str, dict[str, Any]]]
    failures: list[str]


def pieces(start: int, leaves: list[bytes]) -> list[tuple[int, bytes]]:
    """The aligned perfect subtrees ``(level, hash)`` covering leaves ``[start, start + len(leaves))``, in order."""
    out: list[tuple[int, bytes]] = []
    pos, end = start, start + len(leaves)
    while pos < end:
        level = (pos & -pos).bit_length() - 1 if pos else 63
        while pos + (1 << level) > end:
            level -= 1
        out.append((level, merkle.root_from_leaf_hashes(leaves[pos - start : pos - start + (1 << level)])))
        pos += 1 << level
    return out


def _lines(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # the bad line is reported as unreadable, the others are checked
        return [line.decode("utf-8", "surrogateescape") for line in data.split(b"\n") if line.strip()]
    return [line for line in text.split("\n") if line.strip()]


def examine_block(data: bytes, ctx: Context) -> Block | list[Examined]:
    """Examine a run of bundle lines (UTF-8, newline-separated) in a worker.

    For a complete bundle whose run is in order and chained, the sequential work
    within the run is done here too and a :class:`Block` comes back; otherwise the
    per-entry results, for the caller to check one by one.
    """
    results = [examine_one(line, ctx) for line in _lines(data)]
    if not ctx.complete or not results:
        return results
    previous = None
    for r in results:
        if type(r[0]) is not int or (previous is not None and (r[0] != previous[0] + 1 or r[3] != previous[2])):
            return results
        previous = r
    start = results[0][0]
    leaves = [r[1] for r in results]
    end = start + len(leaves)
    kinds: dict[str, int] = {}
    failures: list[str] = []
    facts: list[tuple[int, str, dict[str, Any]]] = []
    for seq, _, _, _, kind, fact, fails in results:
        kinds[kind] = kinds.get(kind, 0) + 1
        if fails:
            failures.extend(fails)
        if fact is not None:
            facts.append((seq, kind, fact))
    return Block(
        first_seq=start,
        first_prev=results[0][3],
        last_seq=results[-1][0],
        last_hash=results[-1][2],
        leaves=b"".join(leaves),
        pieces=pieces(start, leaves),
        prefixes={size: pieces(start, leaves[: size - start]) for size in ctx.checkpoint_sizes if start < size < end},
        kinds=kinds,
        facts=facts,
        failures=failures,
    )
