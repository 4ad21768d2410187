"""Signed message envelopes exchanged between the hub and data nodes.

An envelope is ``{"payload": {...}, "kid": "...", "sig": "<base64>"}``. The signature is
Ed25519 over the RFC 8785 canonical bytes of ``payload``. The payload always carries
``job``, ``step``, ``round``, ``sender``, ``recipient``, ``nonce`` and ``expires_at``
(RFC 3339, UTC) next to the step's ``body``. Replay protection (remembering nonces) is
the receiver's job; this module checks signature, addressing and expiry, and raises.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol import keys, sealed
from protocol.canonical import canonical, sha256_hex

REQUIRED_FIELDS = ("job", "step", "round", "sender", "recipient", "nonce", "expires_at", "body")


class EnvelopeError(ValueError):
    """A message that must not be acted on; ``code`` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Opened:
    payload: dict[str, Any]
    kid: str
    digest: str  # SHA-256 hex of the canonical payload: the message's identity


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise EnvelopeError("malformed", f"bad timestamp {value!r}") from exc
    if parsed.tzinfo is None:
        raise EnvelopeError("malformed", f"timestamp without zone {value!r}")
    return parsed


def seal(
    *,
    job: str,
    step: str,
    round: int,
    sender: str,
    recipient: str,
    body: Mapping[str, Any],
    key: Ed25519PrivateKey,
    kid: str,
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
    nonce: str | None = None,
    to: Ed25519PublicKey | None = None,
) -> dict[str, Any]:
    """A signed envelope; with ``to``, its body is sealed to that recipient's key first
    (:mod:`protocol.sealed`), so the signature covers the ciphertext."""
    moment = now or utcnow()
    payload = {
        "job": job,
        "step": step,
        "round": round,
        "sender": sender,
        "recipient": recipient,
        "nonce": nonce or secrets.token_hex(16),
        "issued_at": format_time(moment),
        "expires_at": format_time(moment + ttl),
        "body": dict(body) if to is None else sealed.seal_body(dict(body), to),
    }
    return sign_payload(payload, key=key, kid=kid)


def sign_payload(payload: Mapping[str, Any], *, key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    signature = key.sign(canonical(payload))
    return {"payload": dict(payload), "kid": kid, "sig": base64.b64encode(signature).decode()}


def verify_signed(wire: Mapping[str, Any], resolve_key: Callable[[str], Ed25519PublicKey | None]) -> Opened:
    """Check shape and signature of any signed object (envelope or receipt)."""
    if not isinstance(wire, Mapping) or not {"payload", "kid", "sig"} <= set(wire):
        raise EnvelopeError("malformed", "signed object needs payload, kid and sig")
    payload, kid, sig = wire["payload"], wire["kid"], wire["sig"]
    if not isinstance(payload, dict) or not isinstance(kid, str) or not isinstance(sig, str):
        raise EnvelopeError("malformed", "payload must be an object, kid and sig strings")
    public = resolve_key(kid)
    if public is None:
        raise EnvelopeError("unknown_key", f"unknown key id {kid!r}")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError("bad_signature", "signature is not base64") from exc
    data = canonical(payload)
    if not keys.verify(public, signature, data):
        raise EnvelopeError("bad_signature", "signature does not verify")
    return Opened(payload=payload, kid=kid, digest=sha256_hex(data))


def open_envelope(
    wire: Mapping[str, Any],
    *,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    recipient: str,
    now: datetime | None = None,
    unseal: Ed25519PrivateKey | None = None,
) -> Opened:
    """Verify an envelope addressed to ``recipient``; raise EnvelopeError otherwise.

    With ``unseal`` (the recipient's key) the body must be sealed to it; the returned
    payload carries the opened body, the digest stays that of the signed, sealed payload.
    """
    opened = verify_signed(wire, resolve_key)
    payload = opened.payload
    missing = [f for f in REQUIRED_FIELDS if f not in payload]
    if missing:
        raise EnvelopeError("malformed", f"envelope lacks {', '.join(missing)}")
    if payload["recipient"] != recipient:
        raise EnvelopeError("misaddressed", f"addressed to {payload['recipient']!r}")
    if parse_time(payload["expires_at"]) <= (now or utcnow()):
        raise EnvelopeError("expired", f"message expired at {payload['expires_at']}")
    if unseal is not None:
        try:
            body = sealed.open_body(payload["body"], unseal)
        except sealed.SealError as exc:
            raise EnvelopeError("not_sealed", str(exc)) from None
        if not isinstance(body, dict):
            raise EnvelopeError("malformed", "the opened body is not an object")
        return Opened(payload={**payload, "body": body}, kid=opened.kid, digest=opened.digest)
    return opened
