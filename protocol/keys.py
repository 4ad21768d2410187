"""Ed25519 keys: generation, files, raw/base64 forms and key ids.

Pure module (no Django): imported by the hub and by data nodes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


def raw_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    return base64.b64encode(raw_public(key)).decode()


def public_from_b64(value: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError("public key is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(key: Ed25519PublicKey | bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s Ed25519 signature of ``message`` (RFC 8032).

    Checked by libsodium (``crypto_sign_open``), which takes half the time of OpenSSL's check
    on the machines measured (BENCHMARKS.md) and is as strict or stricter: it refuses a
    non-canonical S, a small-order key and a small-order R. ``key`` is a public key or its
    32 raw bytes. Signing stays with ``cryptography``; both follow RFC 8032.
    """
    raw = key if isinstance(key, bytes) else raw_public(key)
    if len(signature) != 64 or len(raw) != 32:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, raw)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short, stable name for a public key: the first 8 bytes of SHA-256(raw key), hex."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a PEM private key, creating it (mode 0600) if the file does not exist.

    ``O_EXCL`` makes concurrent first starts agree on one key: the loser re-reads.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return loaded
