"""Parallel verification of node-signed receipts for the batched sequencer.

Ed25519 verification in ``cryptography`` releases the GIL, so a thread pool uses
every core while the sequencer itself stays single-threaded (one writer, one chain).
Pure module: no Django.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compute.protocol.canonical import canonical
from ledger.jcs import dumps_checked


class ReceiptRejected(ValueError):
    """A receipt is malformed, from an unknown key, or its signature does not verify."""


def _verify_chunk(
    wires: Sequence[Mapping[str, Any]], resolve_key: Callable[[str], Ed25519PublicKey | None]
) -> list[str | None]:
    out: list[str | None] = []
    for wire in wires:
        try:
            key = resolve_key(str(wire["kid"]))
            if key is None:
                raise ReceiptRejected(f"unknown key id {wire['kid']!r}")
            key.verify(base64.b64decode(wire["sig"], validate=True), dumps_checked(wire["payload"], exact=canonical))
            out.append(None)
        except (InvalidSignature, KeyError, TypeError, binascii.Error, ValueError) as exc:
            out.append(str(exc) or "signature does not verify")
    return out


def verify_receipts(
    wires: Sequence[Mapping[str, Any]],
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    pool: ThreadPoolExecutor,
    chunk: int = 512,
) -> list[str | None]:
    """For each signed receipt, None if its node signature verifies, else the reason."""
    parts = [wires[i : i + chunk] for i in range(0, len(wires), chunk)]
    results: list[str | None] = []
    for part in pool.map(lambda p: _verify_chunk(p, resolve_key), parts):
        results.extend(part)
    return results


def parallel_signer(
    key: Ed25519PrivateKey, pool: ThreadPoolExecutor, chunk: int = 512
) -> Callable[[list[bytes]], list[bytes]]:
    """A ``signer`` for ``entries_append_batch``: hub signatures computed across the pool."""

    def sign(bodies: list[bytes]) -> list[bytes]:
        parts = [bodies[i : i + chunk] for i in range(0, len(bodies), chunk)]
        out: list[bytes] = []
        for part in pool.map(lambda p: [key.sign(b) for b in p], parts):
            out.extend(part)
        return out

    return sign
