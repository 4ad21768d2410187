"""Parallel Ed25519 for the batched sequencer: node receipts verified, hub signatures made, across a pool.

The sequencer itself stays single-threaded (one writer, one chain); the signature
work, which releases the GIL, runs in a thread pool. With PyNaCl installed it goes
through libsodium, which verifies in ~39 µs and signs in ~15 µs here against ~62 µs
and ~20 µs for ``cryptography`` (OpenSSL); without it, ``cryptography`` is used.
Ed25519 signatures are deterministic, so both produce the same bytes for the hub
(a test checks it), and libsodium's verification is the stricter one (it also refuses
small-order keys and points), so every receipt accepted here is accepted by the
offline verifier, which uses ``cryptography``. Pure module: no Django.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.canonical import canonical
from protocol.jcs import dumps_checked

try:  # libsodium through PyNaCl: the faster Ed25519 on this machine
    from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    from nacl.exceptions import BadSignatureError
except ImportError:  # pragma: no cover - cryptography alone is enough, only slower
    crypto_sign = crypto_sign_open = crypto_sign_seed_keypair = None  # type: ignore[assignment]
    BadSignatureError = InvalidSignature  # type: ignore[assignment,misc]

BACKEND = "libsodium (PyNaCl)" if crypto_sign is not None else "OpenSSL (cryptography)"


class ReceiptRejected(ValueError):
    """A receipt is malformed, from an unknown key, or its signature does not verify."""


def _verifier(key: Ed25519PublicKey) -> Callable[[bytes, bytes], None]:
    """``verify(signature, message)``, raising on a bad signature."""
    if crypto_sign_open is None:
        return key.verify
    raw = key.public_bytes_raw()

    def verify(signature: bytes, message: bytes) -> None:
        if len(signature) != 64:
            raise ReceiptRejected("signature is not 64 bytes")
        crypto_sign_open(signature + message, raw)

    return verify


def _verify_chunk(
    wires: Sequence[Mapping[str, Any]], resolve_key: Callable[[str], Ed25519PublicKey | None]
) -> list[str | None]:
    out: list[str | None] = []
    verifiers: dict[str, Callable[[bytes, bytes], None] | None] = {}
    for wire in wires:
        try:
            kid = str(wire["kid"])
            if kid not in verifiers:
                key = resolve_key(kid)
                verifiers[kid] = None if key is None else _verifier(key)
            verify = verifiers[kid]
            if verify is None:
                raise ReceiptRejected(f"unknown key id {wire['kid']!r}")
            verify(base64.b64decode(wire["sig"], validate=True), dumps_checked(wire["payload"], exact=canonical))
            out.append(None)
        except (InvalidSignature, BadSignatureError):
            out.append("signature does not verify")
        except (KeyError, TypeError, binascii.Error, ValueError) as exc:
            out.append(str(exc) or "malformed receipt")
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


def _sign_one(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    if crypto_sign is None:
        return key.sign
    _, secret = crypto_sign_seed_keypair(key.private_bytes_raw())
    return lambda message: crypto_sign(message, secret)[:64]


class ParallelSigner:
    """A ``signer`` for ``entries_append_batch``: hub signatures computed across a thread pool.

    Called with all the bodies of a batch it returns their signatures; ``submit``
    starts signing a part while the sequencer goes on building the next bodies.
    Give it a pool of its own, so that signing never queues behind the next batch's
    receipt verification.
    """

    def __init__(self, key: Ed25519PrivateKey, pool: ThreadPoolExecutor, chunk: int = 512) -> None:
        self._sign = _sign_one(key)
        self._pool = pool
        self.chunk = chunk

    def _part(self, bodies: Sequence[bytes]) -> list[bytes]:
        sign = self._sign
        return [sign(b) for b in bodies]

    def submit(self, bodies: Sequence[bytes]) -> Future[list[bytes]]:
        return self._pool.submit(self._part, bodies)

    def __call__(self, bodies: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for part in [self.submit(bodies[i : i + self.chunk]) for i in range(0, len(bodies), self.chunk)]:
            out.extend(part.result())
        return out


def parallel_signer(key: Ed25519PrivateKey, pool: ThreadPoolExecutor, chunk: int = 512) -> ParallelSigner:
    """A ``signer`` for ``entries_append_batch``: hub signatures computed across the pool."""
    return ParallelSigner(key, pool, chunk)
