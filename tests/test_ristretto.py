"""ristretto255 through libsodium: RFC 9496 and RFC 9380 known answers, and what must be refused."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import rbcl

from protocol import ristretto

VECTORS = json.loads((Path(__file__).parent / "protocol_vectors" / "ristretto255.json").read_text())


def test_small_multiples_of_the_generator_match_rfc9496_a1() -> None:
    for k, expected in enumerate(VECTORS["small_multiples"]):
        if k == 0:
            continue  # libsodium refuses a zero scalar; the identity is tested as a refused element below
        scalar = k.to_bytes(32, "little")
        assert bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar)).hex() == expected
        assert ristretto.is_element(bytes.fromhex(expected))


def test_every_bad_encoding_of_rfc9496_a2_is_refused() -> None:
    generator = bytes.fromhex(VECTORS["small_multiples"][1])
    scalar = ristretto.random_scalar()
    for bad in VECTORS["bad_encodings"]:
        raw = bytes.fromhex(bad)
        assert not ristretto.is_element(raw)
        with pytest.raises(ristretto.GroupError):
            ristretto.blind(raw, scalar)
        with pytest.raises(ristretto.GroupError):
            ristretto.unpack_elements(ristretto.pack([generator, raw]), 10)


def test_the_identity_is_not_accepted_as_an_element() -> None:
    identity = bytes(32)
    assert not ristretto.is_element(identity)
    with pytest.raises(ristretto.GroupError):
        ristretto.blind(identity, ristretto.random_scalar())


@pytest.mark.parametrize(("label", "digest", "element"), VECTORS["hash_to_group"])
def test_the_one_way_map_matches_rfc9496_a3(label: str, digest: str, element: str) -> None:
    uniform = hashlib.sha512(label.encode()).digest()
    assert uniform.hex() == digest
    assert ristretto.from_uniform(uniform).hex() == element


@pytest.mark.parametrize(("msg", "length", "expected"), VECTORS["expand_message_xmd_sha512"]["vectors"])
def test_expand_message_xmd_sha512_matches_rfc9380_k3(msg: str, length: int, expected: str) -> None:
    dst = VECTORS["expand_message_xmd_sha512"]["dst"].encode()
    assert ristretto.expand_message_xmd(msg.encode(), dst, length).hex() == expected


def test_hash_to_group_is_rfc9380_hash_to_ristretto255_under_our_dst() -> None:
    for identifier in ["", "customer-0001", "Zoë", "\U0001f600" * 40]:
        uniform = ristretto.expand_message_xmd(identifier.encode(), ristretto.DST, 64)
        assert ristretto.hash_to_group(identifier) == ristretto.from_uniform(uniform)
        assert ristretto.is_element(ristretto.hash_to_group(identifier))
    assert ristretto.hash_to_group("a") != ristretto.hash_to_group("b")


def test_blinding_commutes_and_an_inverse_undoes_it() -> None:
    a, b = ristretto.random_scalar(), ristretto.random_scalar()
    x = ristretto.hash_to_group("customer-42")
    assert ristretto.blind(ristretto.blind(x, a), b) == ristretto.blind(ristretto.blind(x, b), a)
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(a))
    assert ristretto.blind(ristretto.blind(x, a), inverse) == x
    assert ristretto.hash_and_blind(["customer-42"], a) == [ristretto.blind(x, a)]


def test_injected_scalars_are_in_range_and_reproducible() -> None:
    first = [ristretto.random_scalar(random.Random(7)) for _ in range(3)]
    assert first == [ristretto.random_scalar(random.Random(7)) for _ in range(3)]
    for s in first:
        assert 0 < int.from_bytes(s, "little") < ristretto.ORDER
        assert ristretto.scalar_from_hex(ristretto.scalar_to_hex(s)) == s
    with pytest.raises(ristretto.GroupError):
        ristretto.scalar_from_hex(ristretto.ORDER.to_bytes(32, "little").hex())
    with pytest.raises(ristretto.GroupError):
        ristretto.scalar_from_hex("00" * 32)


def test_packing_round_trips_and_refuses_what_is_not_a_whole_list() -> None:
    elements = [ristretto.hash_to_group(str(i)) for i in range(5)]
    assert ristretto.unpack_elements(ristretto.pack(elements), 5) == elements
    with pytest.raises(ristretto.GroupError, match="more than"):
        ristretto.unpack_elements(ristretto.pack(elements), 4)
    with pytest.raises(ristretto.GroupError, match="whole number"):
        ristretto.unpack(ristretto.pack([b"abc"]), 32, 10)
    with pytest.raises(ristretto.GroupError, match="base64"):
        ristretto.unpack("not base64!", 32, 10)
    with pytest.raises(ristretto.GroupError, match="string"):
        ristretto.unpack(["a"], 32, 10)
    assert len(ristretto.tag(elements[0])) == ristretto.TAG_BYTES


def test_long_lists_are_blinded_across_threads_in_order_and_a_bad_element_is_still_refused() -> None:
    ids = [f"id-{i}" for i in range(ristretto._PARALLEL_MIN + 100)]
    a = ristretto.random_scalar()
    spread = ristretto.hash_and_blind(ids, a)
    assert spread == [ristretto.blind(ristretto.hash_to_group(i), a) for i in ids]
    again = ristretto.blind_all(spread, a)
    assert again[-1] == ristretto.blind(spread[-1], a)
    with pytest.raises(ristretto.GroupError):
        ristretto.blind_all([*spread[:-1], bytes.fromhex(VECTORS["bad_encodings"][0])], a)
