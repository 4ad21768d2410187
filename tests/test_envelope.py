"""Signed envelopes: round trip, and every way a message must be refused."""

from __future__ import annotations

import base64
import copy
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import envelope, keys
from protocol.canonical import canonical

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = keys.key_id(KEY)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _resolve(kid: str):  # type: ignore[no-untyped-def]
    return KEY.public_key() if kid == KID else None


def _wire(**overrides):  # type: ignore[no-untyped-def]
    args = dict(
        job="j1",
        step="partial",
        round=0,
        sender="hub",
        recipient="acme",
        body={"x": "1"},
        key=KEY,
        kid=KID,
        now=NOW,
        nonce="n1",
    )
    args.update(overrides)
    return envelope.seal(**args)


def test_known_answer_signature_over_canonical_payload() -> None:
    wire = _wire()
    # RFC 8785: keys sorted, no whitespace. The Ed25519 signature is deterministic (RFC 8032).
    assert canonical(wire["payload"]).startswith(b'{"body":{"x":"1"},"expires_at":"2026-11-27T13:00:00.000000Z"')
    assert wire["sig"] == base64.b64encode(KEY.sign(canonical(wire["payload"]))).decode()
    public = keys.raw_public(KEY)
    assert public.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert KID == "56475aa75463474c" == hashlib.sha256(public).hexdigest()[:16]


def test_a_sealed_envelope_opens_for_its_recipient() -> None:
    opened = envelope.open_envelope(_wire(), resolve_key=_resolve, recipient="acme", now=NOW)
    assert opened.payload["body"] == {"x": "1"}
    assert len(opened.digest) == 64


@pytest.mark.parametrize("path", [("payload", "body", "x"), ("payload", "job"), ("payload", "expires_at")])
def test_any_changed_byte_of_the_payload_is_rejected(path) -> None:  # type: ignore[no-untyped-def]
    wire = _wire()
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = target[path[-1]] + "0"
    with pytest.raises(envelope.EnvelopeError) as err:
        envelope.open_envelope(wire, resolve_key=_resolve, recipient="acme", now=NOW)
    assert err.value.code == "bad_signature"


def test_a_flipped_signature_bit_is_rejected() -> None:
    wire = _wire()
    sig = bytearray(base64.b64decode(wire["sig"]))
    sig[5] ^= 0x01
    wire["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(envelope.EnvelopeError, match="does not verify"):
        envelope.open_envelope(wire, resolve_key=_resolve, recipient="acme", now=NOW)


def test_unknown_key_expired_misaddressed_and_malformed_are_rejected() -> None:
    other = Ed25519PrivateKey.generate()
    cases = {
        "unknown_key": (_wire(key=other, kid=keys.key_id(other)), NOW, "acme"),
        "expired": (_wire(), NOW + timedelta(hours=2), "acme"),
        "misaddressed": (_wire(), NOW, "taxco"),
        "malformed": ({"payload": "x", "kid": KID, "sig": ""}, NOW, "acme"),
    }
    for code, (wire, now, recipient) in cases.items():
        with pytest.raises(envelope.EnvelopeError) as err:
            envelope.open_envelope(wire, resolve_key=_resolve, recipient=recipient, now=now)
        assert err.value.code == code


def test_a_signature_by_another_key_under_a_known_kid_is_rejected() -> None:
    other = Ed25519PrivateKey.generate()
    wire = _wire(key=other, kid=KID)
    with pytest.raises(envelope.EnvelopeError, match="does not verify"):
        envelope.open_envelope(wire, resolve_key=_resolve, recipient="acme", now=NOW)


def test_each_seal_gets_a_fresh_nonce() -> None:
    a = envelope.seal(job="j", step="s", round=0, sender="hub", recipient="acme", body={}, key=KEY, kid=KID)
    b = copy.deepcopy(a)
    c = envelope.seal(job="j", step="s", round=0, sender="hub", recipient="acme", body={}, key=KEY, kid=KID)
    assert a == b and a["payload"]["nonce"] != c["payload"]["nonce"]
