"""Envelope bodies encrypted to their recipient: libsodium sealed boxes under the recipient's own key.

Every party already has one authenticated key, the Ed25519 key on the ledger
(``node_enrolled``, the hub's log key). Its X25519 form (the birational map of RFC 7748
§4.1 from edwards25519 to curve25519, libsodium's ``crypto_sign_ed25519_pk_to_curve25519``;
the secret scalar is the clamped SHA-512 of the seed, as Ed25519's own) receives a
``crypto_box_seal``: an ephemeral X25519 key, X25519 + XSalsa20-Poly1305, anonymous and
authenticated as ciphertext. The sender's Ed25519 signature over the envelope, which
covers the sealed body, authenticates who sent it. Using one key pair for EdDSA and for
an X25519-based KEM is shown secure by Thormarker, "On using the same key pair for
Ed25519 and an X25519 based KEM" (IACR ePrint 2021/509); it spares a second key to
enrol, publish and rotate.

The broker, and any party that reads another's queue, sees only ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from protocol import keys
from protocol.canonical import canonical

SEALED = "sealed"  # a sealed body is exactly {"sealed": "<base64 of crypto_box_seal>"}


class SealError(ValueError):
    """A body that is not sealed, or does not open with the recipient's key."""


def x25519_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> PublicKey:
    return _x25519_public(keys.raw_public(key))


@functools.lru_cache(maxsize=1024)
def _x25519_public(raw: bytes) -> PublicKey:  # a public map of public bytes: safe to remember
    return PublicKey(crypto_sign_ed25519_pk_to_curve25519(raw))


def x25519_private(key: Ed25519PrivateKey) -> PrivateKey:
    return PrivateKey(crypto_sign_ed25519_sk_to_curve25519(key.private_bytes_raw() + keys.raw_public(key)))


@functools.lru_cache(maxsize=16)
def _opener(key: Ed25519PrivateKey) -> SealedBox:  # type: ignore[type-arg]
    """The box that opens bodies sealed to ``key`` (the same key object: the hub's, a node's)."""
    return SealedBox(x25519_private(key))


def seal_body(body: Any, to: Ed25519PublicKey | Ed25519PrivateKey) -> dict[str, str]:
    """``body`` (any JSON value) as canonical bytes, sealed to the holder of ``to``."""
    box = SealedBox(x25519_public(to))
    return {SEALED: base64.b64encode(box.encrypt(canonical(body))).decode()}


def is_sealed(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {SEALED} and isinstance(body[SEALED], str)


def open_body(body: Any, key: Ed25519PrivateKey) -> Any:
    """The plaintext of a sealed body; raises :class:`SealError` otherwise."""
    if not is_sealed(body):
        raise SealError("the body is not sealed to its recipient")
    try:
        data = base64.b64decode(body[SEALED], validate=True)
        plain = _opener(key).decrypt(data)
    except (binascii.Error, ValueError, CryptoError):
        raise SealError("the sealed body does not open with the recipient's key") from None
    try:
        return json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SealError("the sealed body is not JSON") from None
