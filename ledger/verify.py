"""Offline verifier of an audit bundle: ``python -m ledger.verify BUNDLE [--log-key VKEY] [--witness VKEY]``.

Depends on the standard library and ``cryptography`` only (no Django, no network; a
test enforces it). It trusts nothing in the bundle but the keys: pin the log key and
your witness keys with ``--log-key`` / ``--witness`` (otherwise the bundle's own keys
are used and printed, to be compared with the published ones). It checks:

* every checkpoint's log signature, its witnesses' cosignatures, that sizes only grow
  and each checkpoint is consistent with the one before (RFC 9162 §2.1.4): no fork;
* every entry's body is canonical JSON, its hub signature verifies, and it is in the
  tree: a complete bundle is re-hashed into the tree (RFC 9162 §2.1.1) and the root
  compared with every checkpoint, along with the SHA-256 chain; a partial bundle
  checks each entry's inclusion proof (§2.1.3) against the last checkpoint;
* every ``usage`` entry carries a receipt signed by a node of the provider that
  matches it, and falls inside a right granted earlier, unrevoked, unexpired, for the
  same consumer, dataset and operation, within its quota of jobs.

Exit status: 0 all good, 1 a check failed, 2 the bundle could not be read.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint as notes
from ledger import jcs, merkle

FORMAT = "usufruct-ledger-bundle/1"
GENESIS = "0" * 64
_SIG_CHUNK = 4096
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


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return parsed


class _Signatures:
    """Ed25519 verifications in a thread pool (``cryptography`` releases the GIL), reported in order."""

    def __init__(self, report: Report, threads: int) -> None:
        self.report = report
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.batch: list[tuple[Ed25519PublicKey, bytes, bytes, str, Callable[[], bytes] | None]] = []
        self.pending: list[Future[list[str]]] = []

    @staticmethod
    def _run(batch: list[tuple[Ed25519PublicKey, bytes, bytes, str, Callable[[], bytes] | None]]) -> list[str]:
        bad = []
        for key, sig, message, label, fallback in batch:
            try:
                key.verify(sig, message)
            except InvalidSignature:
                # The fast canonical form may differ from RFC 8785 on floats: retry with the exact one.
                alt = fallback() if fallback else None
                try:
                    if alt is None or alt == message:
                        raise InvalidSignature
                    key.verify(sig, alt)
                except InvalidSignature:
                    bad.append(f"{label}: signature does not verify")
        return bad

    def add(
        self, key: Ed25519PublicKey, sig: bytes, message: bytes, label: str, fallback: Callable[[], bytes] | None = None
    ) -> None:
        self.batch.append((key, sig, message, label, fallback))
        if len(self.batch) >= _SIG_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.pending.append(self.pool.submit(self._run, self.batch))
            self.batch = []
        # Bound memory: collect finished work once a few chunks are in flight.
        while len(self.pending) > 8:
            self.report.failures.extend(self.pending.pop(0).result())

    def close(self) -> None:
        self.flush()
        for fut in self.pending:
            self.report.failures.extend(fut.result())
        self.pool.shutdown()


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
    jobs: set[str] = field(default_factory=set)


class _Checker:
    def __init__(self, header: dict[str, Any], report: Report, pinned_log: list[str], pinned_witnesses: list[str]):
        self.report = report
        self.origin = str(header.get("origin", ""))
        report.origin, report.scope = self.origin, dict(header.get("scope") or {})
        report.complete = header.get("complete") is True
        self.scope_has_all_usage = "seq_from" not in report.scope and "seq_to" not in report.scope
        self.tree_size = int(header["tree_size"])
        self.log_keys: dict[str, Ed25519PublicKey] = {}
        self.note_keys: list[notes.VerifierKey] = []
        for item in header.get("log_keys", []):
            vk = notes.parse_vkey(item["vkey"])
            raw = _b64(item["public_key"], "log public key")
            if vk.public_key != raw or item["kid"] != _kid(raw) or vk.name != self.origin:
                raise BundleError(f"log key {item['kid']} does not match its vkey or the origin")
            if pinned_log and vk.encode() not in pinned_log:
                continue
            self.log_keys[item["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
            self.note_keys.append(vk)
        if pinned_log and not self.note_keys:
            report.fail("none of the pinned log keys is in the bundle")
        report.log_vkeys = [k.encode() for k in self.note_keys]
        self.node_keys: dict[str, tuple[Ed25519PublicKey, Any]] = {}
        for kid, item in (header.get("node_keys") or {}).items():
            raw = _b64(item["public_key"], f"node key {kid}")
            if _kid(raw) != kid:
                report.fail(f"node key {kid} does not hash to its key id")
                continue
            self.node_keys[kid] = (Ed25519PublicKey.from_public_bytes(raw), item.get("organization"))
        wanted = pinned_witnesses or list(header.get("witness_keys") or [])
        self.witnesses = [notes.parse_vkey(v) for v in wanted]
        self.pinned_witnesses = bool(pinned_witnesses)
        self.roots: dict[int, bytes] = {}
        self.rights: dict[Any, _Right] = {}

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
            except (notes.CheckpointError, KeyError) as exc:
                self.report.fail(f"checkpoint {item.get('size')}: {exc}")
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

    # --- usage rights ------------------------------------------------------------------
    def rights_entry(self, seq: int, kind: str, p: dict[str, Any], producer_time: datetime) -> None:
        if kind == "right_granted":
            self.rights[p["right"]] = _Right(
                seq,
                p.get("consumer"),
                p.get("dataset"),
                p.get("provider"),
                list(p.get("operations") or []),
                p.get("quota"),
                _time(p["expires_at"]),
            )
        elif kind in ("right_revoked", "right_expired"):
            right = self.rights.get(p.get("right"))
            if right is not None and right.ended_seq is None:
                right.ended_seq = seq

    def usage(self, seq: int, p: dict[str, Any], produced: datetime, sigs: _Signatures) -> None:
        where = f"usage #{seq}"
        right = self.rights.get(p.get("right"))
        if right is None:
            self.report.fail(f"{where} cites right {p.get('right')} with no earlier right_granted entry")
        else:
            if right.ended_seq is not None and right.ended_seq < seq:
                self.report.fail(f"{where} uses right {p['right']} after it ended at #{right.ended_seq}")
            if produced > right.expires_at:
                self.report.fail(f"{where} at {produced.isoformat()} is after right {p['right']} expired")
            for name in ("consumer", "dataset", "provider"):
                if p.get(name) != getattr(right, name):
                    self.report.fail(f"{where}: {name} {p.get(name)} differs from right {p['right']}'s")
            if p.get("operation") not in right.operations:
                self.report.fail(f"{where}: operation {p.get('operation')!r} is not permitted by right {p['right']}")
            right.jobs.add(str(p.get("job")))
            if self.scope_has_all_usage and right.quota is not None and len(right.jobs) > int(right.quota):
                self.report.fail(f"{where}: right {p['right']} used by {len(right.jobs)} jobs, quota {right.quota}")
        receipt = p.get("receipt")
        if not isinstance(receipt, dict) or not isinstance(receipt.get("payload"), dict):
            self.report.fail(f"{where} carries no node receipt")
            return
        r = receipt["payload"]
        node = self.node_keys.get(receipt.get("kid"))
        if node is None:
            self.report.fail(f"{where}: receipt key {receipt.get('kid')!r} is not a known node key")
            return
        if node[1] is not None and node[1] != p.get("provider"):
            self.report.fail(f"{where}: receipt signed by a node of organisation {node[1]}, not the provider")
        for name in ("job", "dataset", "right", "operation", "rows", "step"):
            if r.get(name) != p.get(name):
                self.report.fail(f"{where}: receipt {name} {r.get(name)!r} differs from the entry's {p.get(name)!r}")
        try:
            sig = _b64(receipt.get("sig"), "receipt signature")
        except ValueError as exc:
            self.report.fail(f"{where}: {exc}")
            return
        sigs.add(node[0], sig, jcs.dumps_fast(r), f"{where} node receipt", lambda: jcs.dumps(r))


def _entries(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=2):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise BundleError(f"line {number} is not JSON: {exc}") from None


def verify_lines(
    lines: Iterable[str], *, log_keys: list[str] = (), witnesses: list[str] = (), threads: int = 2
) -> Report:
    """Verify a bundle given as lines of JSON; problems are collected in the report, never raised."""
    report = Report()
    it = iter(lines)
    try:
        header = json.loads(next(it))
    except (StopIteration, json.JSONDecodeError):
        raise BundleError("the bundle has no JSON header line") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle")
    try:
        checker = _Checker(header, report, list(log_keys), list(witnesses))
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"bad bundle header: {exc}") from None
    checker.checkpoints(header.get("checkpoints") or [], header.get("consistency") or [])
    target_root = checker.roots.get(checker.tree_size)
    sigs = _Signatures(report, threads)
    frontier = merkle.Frontier()
    prev_hash, last_seq = GENESIS, -1
    try:
        for item in _entries(it):
            _entry(item, checker, report, sigs, frontier, target_root, prev_hash, last_seq)
            last_seq = item.get("seq", last_seq)
            prev_hash = hashlib.sha256(str(item.get("body", "")).encode()).hexdigest()
    finally:
        sigs.close()
    if report.complete and frontier.size != checker.tree_size:
        report.fail(f"complete bundle holds {frontier.size} entries, its checkpoint {checker.tree_size}")
    return report


def _entry(
    item: dict[str, Any],
    checker: _Checker,
    report: Report,
    sigs: _Signatures,
    frontier: merkle.Frontier,
    target_root: bytes | None,
    prev_hash: str,
    last_seq: int,
) -> None:
    seq = item.get("seq")
    where = f"entry #{seq}"
    if not isinstance(seq, int) or seq <= last_seq:
        report.fail(f"{where} comes after #{last_seq}: entries removed, reordered or repeated")
        return
    report.entries += 1
    raw = str(item.get("body", "")).encode()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        report.fail(f"{where}: body is not JSON")
        return
    if jcs.dumps_fast(body) != raw and jcs.dumps(body) != raw:
        report.fail(f"{where}: body is not canonical JSON (RFC 8785)")
    kind = str(body.get("kind"))
    report.kinds[kind] = report.kinds.get(kind, 0) + 1
    if body.get("seq") != seq:
        report.fail(f"{where}: body says seq {body.get('seq')}")
    leaf = merkle.leaf_hash(raw)
    if report.complete:
        if seq != frontier.size:
            report.fail(f"{where} found where #{frontier.size} belongs: entries removed or reordered")
        if body.get("prev") != prev_hash:
            report.fail(f"{where}: prev hash breaks the chain")
        frontier.append(leaf)
        root = checker.roots.get(frontier.size)
        if root is not None and frontier.root() != root:
            report.fail(f"tree of the first {frontier.size} entries does not match its signed checkpoint")
    elif target_root is not None:
        try:
            proof = [_b64(p, "proof hash") for p in item.get("proof") or []]
            merkle.verify_inclusion(leaf, seq, checker.tree_size, proof, target_root)
        except (ValueError, merkle.ProofError) as exc:
            report.fail(f"{where} is not in the signed tree: {exc}")
    key = checker.log_keys.get(str(item.get("hub_kid")))
    if key is None:
        report.fail(f"{where}: signed by unknown hub key {item.get('hub_kid')!r}")
    else:
        try:
            sigs.add(key, _b64(item.get("hub_sig"), "hub signature"), raw, f"{where} hub signature")
        except ValueError as exc:
            report.fail(f"{where}: {exc}")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        report.fail(f"{where}: payload is not an object")
        return
    try:
        produced = _time(body.get("producer_time"))
        if kind in ("right_granted", "right_revoked", "right_expired"):
            checker.rights_entry(seq, kind, payload, produced)
        elif kind == "usage":
            checker.usage(seq, payload, produced, sigs)
    except (KeyError, ValueError, TypeError) as exc:
        report.fail(f"{where}: malformed {kind} entry: {exc}")


def verify_file(path: str, **kwargs: Any) -> Report:
    with open(path, encoding="utf-8") as fh:
        return verify_lines(fh, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="bundle file (JSON Lines), '-' for standard input")
    parser.add_argument("--log-key", action="append", default=[], help="pin the log's vkey (repeatable)")
    parser.add_argument("--witness", action="append", default=[], help="require this witness vkey's cosignature")
    parser.add_argument("--threads", type=int, default=2, help="signature verification threads")
    args = parser.parse_args(argv)
    options = {"log_keys": args.log_key, "witnesses": args.witness, "threads": args.threads}
    try:
        report = verify_lines(sys.stdin, **options) if args.bundle == "-" else verify_file(args.bundle, **options)
    except (OSError, BundleError, notes.CheckpointError) as exc:
        print(f"cannot read bundle: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
