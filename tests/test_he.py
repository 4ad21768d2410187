"""The vector Paillier engine against ``phe``, its reference, and what it must refuse."""

from __future__ import annotations

import random

import pytest
from phe import paillier

from protocol import he


@pytest.fixture(scope="module")
def key() -> he.PrivateKey:
    return he.PrivateKey.generate(1024)


def test_phe_decrypts_ours_and_we_decrypt_phes(key: he.PrivateKey) -> None:
    ref_pub = paillier.PaillierPublicKey(int(key.public.n))
    ref = paillier.PaillierPrivateKey(ref_pub, int(key.p), int(key.q))
    values = [0, 1, -1, 2**40, -(2**40) + 7]
    ours = key.public.encrypt(values)
    assert [
        ref.raw_decrypt(c) if ref.raw_decrypt(c) <= ref_pub.n // 2 else ref.raw_decrypt(c) - ref_pub.n for c in ours
    ] == values  # noqa: E501
    theirs = [ref_pub.raw_encrypt(v % ref_pub.n) for v in values]
    assert key.decrypt(theirs) == values


def test_every_encryption_carries_fresh_randomness(key: he.PrivateKey) -> None:
    cts = key.public.encrypt([5] * 50)
    assert len(set(cts)) == 50  # two encryptions of one value differ
    assert 1 + 5 * int(key.public.n) not in cts  # never the unrandomised 1 + m·n
    again = key.public.rerandomize(cts)
    assert not set(again) & set(cts) and key.decrypt(again) == [5] * 50


def test_homomorphic_operations(key: he.PrivateKey) -> None:
    pub = key.public
    a, b = [3, -4, 10], [7, 4, -11]
    assert key.decrypt(pub.add(pub.encrypt(a), pub.encrypt(b))) == [10, 0, -1]
    assert key.decrypt(pub.add_plain(pub.encrypt(a), [1, 2, 3])) == [4, -2, 13]
    assert key.decrypt(pub.sum_vectors([pub.encrypt(a), pub.encrypt(b), pub.encrypt(a)])) == [13, -4, 9]
    rng = random.Random(3)
    rows = [[rng.randint(-5000, 5000) for _ in range(4)] for _ in range(9)]
    d = [rng.randint(-(2**30), 2**30) for _ in range(9)]
    expected = [sum(rows[i][j] * d[i] for i in range(9)) for j in range(4)]
    assert key.decrypt(pub.matvec_t(rows, pub.encrypt(d))) == expected


def test_fixed_point_round_trip_is_within_one_step() -> None:
    values = [0.1, -3.25, 1e-9, 12345.678]
    back = he.from_fixed(he.to_fixed(values))
    assert all(abs(x - y) <= 1 / he.ONE for x, y in zip(values, back, strict=True))


def test_packing_round_trips_and_refuses_foreign_values(key: he.PrivateKey) -> None:
    pub = key.public
    cts = pub.encrypt([1, 2, 3])
    assert pub.unpack(pub.pack(cts), 3) == cts
    with pytest.raises(he.HEError):
        pub.unpack(pub.pack(cts), 2)
    with pytest.raises(he.HEError):
        pub.unpack(pub.pack([int(pub.nsquare) - 1 + 1]), 3)  # n² itself: out of range
    with pytest.raises(he.HEError):
        pub.unpack(pub.pack([int(pub.n)]), 3)  # shares a factor with n
    with pytest.raises(he.HEError):
        pub.unpack("!!", 3)


def test_keys_refuse_what_is_not_a_key(key: he.PrivateKey) -> None:
    with pytest.raises(he.HEError):
        he.PublicKey(2**512 + 1)  # too short
    with pytest.raises(he.HEError):
        he.PublicKey.from_json("12a")
    with pytest.raises(he.HEError):
        he.PrivateKey(key.public, int(key.p), int(key.p))
    assert he.PrivateKey.from_json(key.to_json()).decrypt(key.public.encrypt([42])) == [42]
    with pytest.raises(he.HEError):
        key.public.encrypt([int(key.public.n)])  # out of range
