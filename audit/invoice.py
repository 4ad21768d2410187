"""Verify an issued invoice, credit note or provider statement offline: stdlib + cryptography.

    python -m ledger.verify invoice.json [--log-key VKEY] [--witness-key VKEY ...]

A document (``usufruct/invoice/v1``, schema in ``docs/invoices.md``) carries, for each of its
lines, the ledger entry the line stands for, the hub's signature on it and its inclusion proof
in the signed checkpoint the document cites; for a use, also the ``right_granted`` entry that
holds the price it was sold at, with its own proof. This checks, without the hub:

- the document's digest (SHA-256 of its RFC 8785 form without ``digest``);
- the checkpoint's log signature (by a pinned log key, or the one the document names) and every
  witness cosignature it carries (each pinned witness must have cosigned);
- every line's entry: canonical, signed by a log key, in the checkpoint's tree, of a charged
  kind, under a right granted to this document's party (the grant, with its proof, is in the
  document for every right a line does not itself grant), and its amount recomputed from the entry with the pricing
  rule (``protocol.pricing``) — a tampered amount, entry or proof fails;
- the totals: subtotal, tax and total (an invoice or credit note); gross, refunds, the
  platform's fee, net and the breakdowns by dataset, consumer and plan (a statement).

Exit status 0 when everything holds, 1 when something does not (one line each), 2 when the
file cannot be read as a document.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import checkpoint as notes
from protocol import jcs, merkle, pricing

FORMAT = "usufruct/invoice/v1"
TYPES = ("invoice", "credit_note", "statement")
CHARGED = ("right_granted", "settlement", "refund")


class DocumentError(ValueError):
    """The file is not a document this verifier reads."""


@dataclass
class Result:
    number: str = "?"
    lines: int = 0
    failures: list[str] = field(default_factory=list)
    cosigned_by: list[str] = field(default_factory=list)
    checkpoint: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        self.failures.append(message)


def digest(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the document's RFC 8785 form without its ``digest`` field."""
    return hashlib.sha256(jcs.dumps({k: v for k, v in document.items() if k != "digest"})).hexdigest()


def _kid(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    return base64.b64decode(value, validate=True)


class _Verifier:
    def __init__(self, doc: dict[str, Any], pinned_log: Sequence[str], pinned_witnesses: Sequence[str]) -> None:
        self.doc, self.result = doc, Result(number=str(doc.get("number", "?")))
        self.log_keys: dict[str, bytes] = {}
        self.note_keys: list[notes.VerifierKey] = []
        self.pinned_witnesses = list(pinned_witnesses)
        for item in doc.get("log_keys") or []:
            vk = notes.parse_vkey(str(item["vkey"]))
            raw = _b64(item["public_key"])
            if vk.public_key != raw or item.get("kid") != _kid(raw):
                raise DocumentError(f"log key {item.get('kid')!r} does not match its vkey")
            if pinned_log and vk.encode() not in pinned_log:
                continue
            self.log_keys[str(item["kid"])] = raw
            self.note_keys.append(vk)
        if not self.note_keys:
            self.result.fail("none of the log keys to check it with is in the document" if pinned_log else "no log key")
        self.size = 0
        self.root = b""

    # --- the checkpoint ----------------------------------------------------------------
    def checkpoint(self) -> None:
        cp = self.doc.get("checkpoint") or {}
        try:
            note = notes.parse_note(str(cp["note"]).encode())
        except (KeyError, notes.CheckpointError) as exc:
            self.result.fail(f"checkpoint: {exc}")
            return
        for vk in self.note_keys:
            try:
                notes.verify_note(note, vk.name, vk.public_key)
                break
            except notes.CheckpointError:
                continue
        else:
            self.result.fail("checkpoint: not signed by the log key")
            return
        parsed = notes.parse_checkpoint(note.text)
        if parsed.size != cp.get("size"):
            self.result.fail(f"checkpoint: the note is of size {parsed.size}, the document says {cp.get('size')}")
        self.size, self.root = parsed.size, parsed.root
        self.result.checkpoint = parsed.size
        witnesses = self.pinned_witnesses or [str(w) for w in self.doc.get("witness_keys") or []]
        for vkey in witnesses:
            try:
                vk = notes.parse_vkey(vkey)
                ts = notes.verify_cosignature(note, vk.name, vk.public_key)
                self.result.cosigned_by.append(f"{vk.name} (t={ts})")
            except notes.CheckpointError as exc:
                if vkey in self.pinned_witnesses or "no signature from key" not in str(exc):
                    self.result.fail(f"checkpoint cosignature of {vkey.split('+', 1)[0]}: {exc}")

    # --- entries -------------------------------------------------------------------------
    def entry(self, item: Any, seq: Any, where: str) -> dict[str, Any] | None:
        """The verified body of one entry (canonical, hub-signed, in the tree), or None."""
        try:
            raw = str(item["body"]).encode()
            body = json.loads(raw)
            if not isinstance(body, dict) or jcs.dumps(body) != raw:
                self.result.fail(f"{where}: the entry is not canonical JSON")
                return None
            if body.get("seq") != seq or type(seq) is not int:
                self.result.fail(f"{where}: the entry is #{body.get('seq')}, the line says #{seq}")
                return None
            key = self.log_keys.get(str(item.get("hub_kid")))
            if key is None:
                self.result.fail(f"{where}: signed by an unknown hub key {item.get('hub_kid')!r}")
                return None
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(_b64(item.get("hub_sig")), raw)
            except (InvalidSignature, ValueError, binascii.Error):
                self.result.fail(f"{where}: the hub's signature does not verify")
                return None
            try:
                proof = [_b64(h) for h in item.get("proof") or []]
            except (ValueError, binascii.Error):
                self.result.fail(f"{where}: its proof is not a list of base64 hashes")
                return None
            merkle.verify_inclusion(merkle.leaf_hash(raw), seq, self.size, proof, self.root)
        except merkle.ProofError as exc:
            self.result.fail(f"{where}: not in the signed tree of size {self.size}: {exc}")
            return None
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self.result.fail(f"{where}: {exc}")
            return None
        return body

    def lines(self) -> list[tuple[dict[str, Any], int]]:
        """(line, the amount its entry stands for) for every line whose entry verifies."""
        doc = self.doc
        party_field = "provider" if doc.get("type") == "statement" else "consumer"
        prices: dict[str, dict[str, Any]] = {}
        for right, item in (doc.get("prices") or {}).items():
            body = self.entry(item.get("entry"), item.get("seq"), f"price of right {right}")
            if body is None:
                continue
            if body.get("kind") != "right_granted" or str((body.get("payload") or {}).get("right")) != str(right):
                self.result.fail(f"price of right {right}: entry #{item.get('seq')} is not that right's grant")
                continue
            prices[str(right)] = body["payload"]
        out = []
        seen: set[int] = set()
        for i, line in enumerate(doc.get("lines") or []):
            where = f"line {i + 1} (entry #{line.get('seq')})"
            if line.get("seq") in seen:
                self.result.fail(f"{where}: the same entry twice")
                continue
            body = self.entry(line.get("entry"), line.get("seq"), where)
            if body is None:
                continue
            seen.add(line["seq"])
            kind, payload = body.get("kind"), body.get("payload") or {}
            if kind not in CHARGED:
                self.result.fail(f"{where}: a {kind!r} entry charges nothing")
                continue
            # The right's grant names its consumer and provider (and the price a use is charged at).
            grant = payload if kind == "right_granted" else prices.get(str(payload.get("right")))
            if grant is None:
                self.result.fail(f"{where}: the grant of right {payload.get('right')} is not in the document")
                continue
            if grant.get(party_field) != doc.get("party_id"):
                self.result.fail(f"{where}: the right is {party_field} {grant.get(party_field)}'s, not this document's")
                continue
            try:
                amount = pricing.line_amount(str(kind), payload, grant.get("price"))
                currency = (grant.get("price") or {}).get("currency")
            except (TypeError, ValueError) as exc:
                self.result.fail(f"{where}: cannot be priced: {exc}")
                continue
            if currency != doc.get("currency"):
                self.result.fail(f"{where}: priced in {currency}, the document is in {doc.get('currency')}")
            if line.get("amount_minor") != amount:
                self.result.fail(f"{where}: says {line.get('amount_minor')}, the ledger entry stands for {amount}")
            out.append((line, amount))
        self.result.lines = len(out)
        return out

    # --- totals --------------------------------------------------------------------------
    def totals(self, lines: list[tuple[dict[str, Any], int]]) -> None:
        doc = self.doc
        claimed = [line.get("amount_minor") for line, _ in lines]
        if not all(type(a) is int for a in claimed) or len(lines) != len(doc.get("lines") or []):
            return  # every bad line is reported already; totals over them would only repeat it
        amounts: list[int] = [int(a) for a in claimed]  # type: ignore[arg-type]
        if doc.get("type") == "statement":
            gross = sum(a for (line, _), a in zip(lines, amounts, strict=True) if line.get("kind") != "refund")
            refunds = sum(a for (line, _), a in zip(lines, amounts, strict=True) if line.get("kind") == "refund")
            fee = doc.get("fee") or {}
            want = {
                "gross_minor": gross,
                "refunds_minor": refunds,
                "fee": pricing.share_bps(gross + refunds, int(fee.get("rate_bps", -1))),
            }
            want["net_minor"] = gross + refunds - want["fee"]
            got = {
                **{k: doc.get(k) for k in ("gross_minor", "refunds_minor", "net_minor")},
                "fee": fee.get("amount_minor"),
            }
            for name in want:
                if got[name] != want[name]:
                    self.result.fail(f"{name.replace('_minor', '')}: says {got[name]}, the lines give {want[name]}")
            for key, name in (("dataset", "by_dataset"), ("counterparty", "by_consumer"), ("plan", "by_plan")):
                sums: dict[str, int] = {}
                for line, a in zip((li for li, _ in lines), amounts, strict=True):
                    sums[str(line.get(key))] = sums.get(str(line.get(key)), 0) + a
                if (doc.get(name) or {}) != sums:
                    self.result.fail(f"{name}: does not add up to the lines")
            return
        subtotal = sum(amounts)
        tax = doc.get("tax") or {}
        want_tax = pricing.share_bps(subtotal, int(tax.get("rate_bps", -1)))
        if doc.get("subtotal_minor") != subtotal:
            self.result.fail(f"subtotal: says {doc.get('subtotal_minor')}, the lines add up to {subtotal}")
        if tax.get("amount_minor") != want_tax:
            self.result.fail(
                f"tax: says {tax.get('amount_minor')}, {tax.get('rate_bps')} bp of {subtotal} is {want_tax}"
            )
        if doc.get("total_minor") != subtotal + want_tax:
            self.result.fail(f"total: says {doc.get('total_minor')}, subtotal and tax are {subtotal + want_tax}")


def verify_document(doc: Any, *, log_keys: Sequence[str] = (), witnesses: Sequence[str] = ()) -> Result:
    """Every check above on a parsed document; raises :class:`DocumentError` if it is not one."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("type") not in TYPES:
        raise DocumentError(f"not a {FORMAT} document")
    try:
        v = _Verifier(doc, log_keys, witnesses)
    except (notes.CheckpointError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise DocumentError(f"its log keys cannot be read: {exc}") from None
    if doc.get("digest") != digest(doc):
        v.result.fail("digest: the document is not the one that was issued (its SHA-256 differs)")
    v.checkpoint()
    if v.size:
        v.totals(v.lines())
    return v.result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.verify", description=__doc__.splitlines()[0])
    parser.add_argument("document", help="an invoice, credit note or statement in its JSON form")
    parser.add_argument("--log-key", action="append", default=[], help="pin the log's verifier key (vkey)")
    parser.add_argument("--witness-key", action="append", default=[], help="require this witness's cosignature")
    args = parser.parse_args(argv)
    try:
        with open(args.document, encoding="utf-8") as fh:
            doc = json.load(fh)
        result = verify_document(doc, log_keys=args.log_key, witnesses=args.witness_key)
    except (OSError, ValueError) as exc:
        print(f"error: {args.document}: {exc}", file=sys.stderr)
        return 2
    for failure in result.failures:
        print(f"FAIL {result.number}: {failure}")
    if result.ok:
        cosigned = ", ".join(result.cosigned_by) or "no witness"
        print(
            f"OK {result.number}: {result.lines} lines, totals hold, every entry in signed checkpoint"
            f" {result.checkpoint} (cosigned by {cosigned})"
        )
        return 0
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
