"""Sealed envelope bodies: the key conversion against RFC 7748's map, a round trip, and every refusal."""

from __future__ import annotations

import base64
import copy
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import envelope, keys, sealed

# RFC 8032 §7.1, TEST 1.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
P = 2**255 - 19


def test_the_x25519_form_of_an_ed25519_key_is_rfc_7748_birational_map() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    assert keys.raw_public(key) == PUBLIC
    y = int.from_bytes(PUBLIC, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P  # RFC 7748 §4.1: u = (1 + y) / (1 - y)
    assert sealed.x25519_public(key).encode() == u.to_bytes(32, "little")
    # The secret scalar is Ed25519's own (clamped SHA-512 of the seed), so it matches the public form.
    h = bytearray(hashlib.sha512(SEED).digest()[:32])
    h[0] &= 248
    h[31] = (h[31] & 127) | 64
    assert sealed.x25519_private(key).encode() == bytes(h)
    assert sealed.x25519_private(key).public_key.encode() == sealed.x25519_public(key).encode()


def _pair():  # type: ignore[no-untyped-def]
    sender, recipient = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    return sender, recipient


def _wire(sender, recipient, body=None):  # type: ignore[no-untyped-def]
    return envelope.seal(
        job="j",
        step="partial",
        round=0,
        sender="hub",
        recipient="acme",
        body=body or {"x": [1, 2, 3], "secret": "partial"},
        key=sender,
        kid=keys.key_id(sender),
        to=recipient.public_key(),
    )


def _open(wire, sender, recipient):  # type: ignore[no-untyped-def]
    return envelope.open_envelope(
        wire,
        resolve_key=lambda kid: sender.public_key() if kid == keys.key_id(sender) else None,
        recipient="acme",
        unseal=recipient,
    )


def test_a_sealed_body_opens_only_for_its_recipient_and_is_randomised() -> None:
    sender, recipient = _pair()
    wire = _wire(sender, recipient)
    assert set(wire["payload"]["body"]) == {"sealed"} and b"partial" not in base64.b64decode(
        wire["payload"]["body"]["sealed"]
    )
    opened = _open(wire, sender, recipient)
    assert opened.payload["body"] == {"x": [1, 2, 3], "secret": "partial"}
    assert _wire(sender, recipient)["payload"]["body"] != wire["payload"]["body"]  # a fresh ephemeral key each time
    eavesdropper = Ed25519PrivateKey.generate()  # e.g. another party reading the queue
    with pytest.raises(envelope.EnvelopeError) as err:
        _open(wire, sender, eavesdropper)
    assert err.value.code == "not_sealed"


def test_unsealed_altered_or_garbled_bodies_are_refused() -> None:
    sender, recipient = _pair()
    plain = envelope.seal(
        job="j", step="s", round=0, sender="hub", recipient="acme", body={"a": 1}, key=sender,
        kid=keys.key_id(sender),
    )  # fmt: skip
    with pytest.raises(envelope.EnvelopeError) as err:
        _open(plain, sender, recipient)
    assert err.value.code == "not_sealed"
    wire = _wire(sender, recipient)
    flipped = copy.deepcopy(wire)
    raw = bytearray(base64.b64decode(flipped["payload"]["body"]["sealed"]))
    raw[-1] ^= 1
    flipped["payload"]["body"]["sealed"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(envelope.EnvelopeError) as err:  # the signature covers the ciphertext
        _open(flipped, sender, recipient)
    assert err.value.code == "bad_signature"
    resigned = envelope.sign_payload(flipped["payload"], key=sender, kid=keys.key_id(sender))
    with pytest.raises(envelope.EnvelopeError) as err:  # and Poly1305 catches it even if re-signed
        _open(resigned, sender, recipient)
    assert err.value.code == "not_sealed"
    for junk in ({"sealed": "***"}, {"sealed": "AAAA"}, {"sealed": 5}, {"sealed": "x", "more": 1}):
        wire = envelope.sign_payload({**plain["payload"], "body": junk}, key=sender, kid=keys.key_id(sender))
        with pytest.raises(envelope.EnvelopeError) as err:
            _open(wire, sender, recipient)
        assert err.value.code == "not_sealed", junk
    not_json = {"sealed": base64.b64encode(sealed.SealedBox(sealed.x25519_public(recipient)).encrypt(b"\xff")).decode()}
    wire = envelope.sign_payload({**plain["payload"], "body": not_json}, key=sender, kid=keys.key_id(sender))
    with pytest.raises(envelope.EnvelopeError, match="not JSON"):
        _open(wire, sender, recipient)
