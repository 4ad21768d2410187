"""``protocol.keys.verify`` (libsodium) against RFC 8032 §7.1's test vectors, and what it refuses."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import keys

# RFC 8032 §7.1, TEST 1, 2 and 3: (secret key, public key, message, signature), hex.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors_verify_and_match_what_cryptography_signs(secret, public, message, signature) -> None:  # type: ignore[no-untyped-def]
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert keys.raw_public(sk).hex() == public
    assert sk.sign(bytes.fromhex(message)).hex() == signature  # our signer gives the RFC's bytes
    assert keys.verify(bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message))
    assert keys.verify(sk.public_key(), bytes.fromhex(signature), bytes.fromhex(message))  # a key object too


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_any_changed_bit_is_refused(secret, public, message, signature) -> None:  # type: ignore[no-untyped-def]
    pub, sig, msg = bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message)
    for i in (0, 31, 32, 63):  # R and S, each end
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not keys.verify(pub, bytes(bad), msg)
    assert not keys.verify(pub, sig, msg + b"\x00")
    other = bytearray(pub)
    other[0] ^= 0x01
    assert not keys.verify(bytes(other), sig, msg)


def test_a_non_canonical_s_is_refused() -> None:
    """S + L verifies under a lax check (the same point); RFC 8032 §5.1.7 requires S < L."""
    _, public, message, signature = RFC8032[0]
    sig = bytes.fromhex(signature)
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert not keys.verify(bytes.fromhex(public), malleated, bytes.fromhex(message))


def test_wrong_lengths_and_a_small_order_key_are_refused() -> None:
    _, public, message, signature = RFC8032[1]
    pub, sig, msg = bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message)
    assert not keys.verify(pub, sig[:63], msg)
    assert not keys.verify(pub, sig + b"\x00", msg)
    assert not keys.verify(pub[:31], sig, msg)
    identity = bytes([1] + [0] * 31)  # the neutral point: a key every signature with R = S·B would satisfy
    assert not keys.verify(identity, identity + bytes(32), msg)
