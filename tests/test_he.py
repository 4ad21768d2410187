"""The vector Paillier engine against ``phe``, its reference, and what it must refuse."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phe import paillier

from protocol import he

KAT = json.loads((Path(__file__).parent / "protocol_vectors" / "paillier_djn_kat.json").read_text())


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
        he.PublicKey.from_json(str(key.public.n))  # the bare modulus of the phe era: no h_s
    forged = {"n": str(key.public.n), "hs": "1"}  # a key holder's h_s of its own choosing
    with pytest.raises(he.HEError, match="h_s"):
        he.PublicKey.from_json(forged)
    # A party that only adds may take the key unchecked; encrypting under it still refuses.
    unchecked = he.PublicKey.from_json(forged, verify=False)
    c = key.public.encrypt([3, 4])
    assert key.decrypt(unchecked.add(c, c)) == [6, 8]
    for encrypt in (unchecked.encrypt, unchecked.rerandomize):
        with pytest.raises(he.HEError, match="h_s"):
            encrypt([1])
    with pytest.raises(he.HEError):
        he.PublicKey.from_json({**key.public.to_json(), "h": "4"})
    with pytest.raises(he.HEError):
        he.PrivateKey(key.public, int(key.p), int(key.p))
    assert he.PrivateKey.from_json(key.to_json()).decrypt(key.public.encrypt([42])) == [42]
    with pytest.raises(he.HEError):
        key.public.encrypt([int(key.public.n)])  # out of range


# --- DJN: known answers, key generation, the fixed-base table ---------------------------------


def _kat_key() -> he.PrivateKey:
    public = he.PublicKey(int(KAT["n"]), int(KAT["hs"]), min_bits=200)
    return he.PrivateKey(public, int(KAT["p"]), int(KAT["q"]))


def test_h_is_derived_from_the_modulus_as_documented() -> None:
    """h = −x² mod n, x = SHA-512("usufruct/djn-h/v1" ‖ 0 ‖ i ‖ n) expanded and reduced, recomputed with hashlib."""
    n = int(KAT["n"])
    width = (n.bit_length() + 128 + 7) // 8
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    stream = b"".join(
        hashlib.sha512(b"usufruct/djn-h/v1\x00" + i.to_bytes(4, "big") + nb).digest() for i in range(-(-width // 64))
    )
    x = int.from_bytes(stream[:width], "big") % n
    assert pow((-x * x) % n, n, n * n) == int(KAT["hs"])


def test_known_answers_with_a_fixed_small_key_and_injected_randomness() -> None:
    key = _kat_key()
    ms = [int(c["m"]) for c in KAT["cases"]]
    rs = [int(c["r"]) for c in KAT["cases"]]
    expected = [int(c["c"]) for c in KAT["cases"]]
    assert key.public.encrypt_with(ms, rs) == expected  # through the fixed-base table
    assert key.decrypt(expected) == ms
    with pytest.raises(he.HEError):
        key.public.encrypt_with([1], [1 << key.public.rbits])  # r longer than ⌈k/2⌉ bits


def test_generated_keys_are_admissible() -> None:
    import gmpy2

    for bits in (1024, 1026):
        key = he.PrivateKey.generate(bits)
        p, q = int(key.p), int(key.q)
        assert p % 4 == 3 and q % 4 == 3 and gmpy2.gcd(p - 1, q - 1) == 2
        assert int(key.public.n).bit_length() == bits and p.bit_length() == q.bit_length() == bits // 2
        assert gmpy2.jacobi(int(key.public.n) - 1, int(key.public.n)) == 1  # −1 has Jacobi +1: h does too
    with pytest.raises(he.HEError):
        he.PrivateKey.generate(512)


def test_the_table_path_and_the_plain_exponentiation_agree(key: he.PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(he, "CRT_FROM_BITS", 1024)  # the key holder's CRT tables, on this 1024-bit key
    pub = key.public
    r = random.Random(5).getrandbits(pub.rbits)
    (c,) = pub.encrypt_with([77], [r])
    assert c == (1 + 77 * int(pub.n)) * pow(int(pub.hs), r, int(pub.nsquare)) % int(pub.nsquare)
    long = pub.encrypt(list(range(-40, 40)))  # long enough to use the table
    assert key.decrypt(long) == list(range(-40, 40)) and len(set(long)) == 80
    crt = key.encrypt(list(range(-40, 40)))  # the key holder's CRT tables
    assert key.decrypt(crt) == list(range(-40, 40)) and not set(crt) & set(long)


POOL_SCRIPT = """
import os, signal, sys, time
from protocol import he
key = he.PrivateKey.generate(1024)
he.set_workers(2)
values = list(range(-300, 300))
cts = key.public.encrypt(values)  # 600 >= PARALLEL_AFTER: split across two forked workers
assert he._POOL is not None, "no pool"
assert len(set(cts)) == 600 and key.decrypt(cts) == values
again = key.rerandomize(cts)
assert not set(again) & set(cts) and key.decrypt(again) == values
victim = next(iter(he._POOL[1]._processes))  # e.g. the kernel's out-of-memory killer
os.kill(victim, signal.SIGKILL)
time.sleep(0.3)
assert key.decrypt(key.public.encrypt(values)) == values  # done in this process instead
assert key.decrypt(key.public.encrypt(values)) == values  # and a fresh pool after
assert he._POOL is not None and victim not in he._POOL[1]._processes
print("pool ok")
"""


def test_worker_processes_give_the_same_answers_and_a_dead_one_costs_only_speed() -> None:
    """In a fresh interpreter (one thread: what a node is), as forking needs: the pool encrypts,
    decrypts and re-randomises the same, and a killed worker costs one call its speed."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", POOL_SCRIPT], cwd=root, capture_output=True, text=True, timeout=180,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "USUFRUCT_HE_WORKERS": "2"},
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "pool ok", out.stdout + out.stderr


def test_no_worker_is_forked_while_another_thread_runs(key: he.PrivateKey) -> None:
    """A fork copies only the calling thread: a lock another thread holds would stay held in the
    child for ever (seen: a test's live server thread, and a worker that never answered)."""
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    he.set_workers(2)
    try:
        values = list(range(-300, 300))
        assert key.decrypt(key.public.encrypt(values)) == values  # computed here, correctly
        assert he._POOL is None
    finally:
        stop.set()
        other.join()
        he.set_workers(1)


# --- properties ------------------------------------------------------------------------------

SIGNED = st.one_of(st.integers(-(2**200), 2**200), st.sampled_from([0, 1, -1]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(SIGNED, min_size=1, max_size=6))
def test_decrypt_inverts_encrypt(key: he.PrivateKey, values: list[int]) -> None:
    half = int(key.public.half)
    values = [*values, half, -half]  # the boundaries of the signed range
    assert key.decrypt(key.public.encrypt(values)) == values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.lists(st.integers(-(2**60), 2**60), min_size=1, max_size=5),
    k=st.integers(-(2**20), 2**20),
)
def test_sums_and_scalar_products_match_integer_arithmetic(key: he.PrivateKey, a: list[int], k: int) -> None:
    pub = key.public
    b = [x * 3 - 1 for x in a]
    assert key.decrypt(pub.add(pub.encrypt(a), pub.encrypt(b))) == [x + y for x, y in zip(a, b, strict=True)]
    assert key.decrypt(pub.add_plain(pub.encrypt(a), b)) == [x + y for x, y in zip(a, b, strict=True)]
    assert key.decrypt(pub.mul_plain(pub.encrypt(a), [k] * len(a))) == [x * k for x in a]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 4),
    seed=st.integers(0, 2**32),
)
def test_bucket_matvec_matches_integer_arithmetic(key: he.PrivateKey, rows: int, cols: int, seed: int) -> None:
    rng = random.Random(seed)
    x = [[rng.choice([0, 1, -1, rng.randint(-(2**16), 2**16)]) for _ in range(cols)] for _ in range(rows)]
    d = [rng.randint(-(2**34), 2**34) for _ in range(rows)]
    want = [sum(x[i][j] * d[i] for i in range(rows)) for j in range(cols)]
    assert key.decrypt(key.public.matvec_t(x, key.public.encrypt(d))) == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(-(2**45) + 1, 2**45 - 1), min_size=1, max_size=90), hosts=st.integers(1, 3))
def test_packed_sums_round_trip_slot_by_slot(key: he.PrivateKey, values: list[int], hosts: int) -> None:
    """48-bit slots hold |Σ| < 2^47: up to 3 values below 2^45; packing then summing = summing then packing."""
    pub = key.public
    packed = [pub.encrypt_packed(values, 48) for _ in range(hosts)]
    assert len(packed[0]) == pub.packed_count(len(values), 48) == -(-len(values) // pub.slots(48))
    assert key.decrypt_packed(pub.sum_vectors(packed), 48, len(values)) == [v * hosts for v in values]


def test_packed_reals_are_exact_to_one_quantisation_step(key: he.PrivateKey) -> None:
    rng = random.Random(11)
    reals = [rng.uniform(-1000, 1000) for _ in range(500)]
    pub = key.public
    cts = pub.encrypt_packed(he.quantise(reals, 24, 2**15), 48)
    assert len(cts) == pub.packed_count(500, 48) and len(cts) * pub.slots(48) >= 500
    back = he.from_fixed(key.decrypt_packed(cts, 48, 500))
    assert max(abs(a - b) for a, b in zip(reals, back, strict=True)) <= 1 / he.ONE
    summed = he.from_fixed(key.decrypt_packed(pub.add(cts, cts), 48, 500))  # two addends: ≤ 2 half-steps
    assert max(abs(2 * a - b) for a, b in zip(reals, summed, strict=True)) <= 1 / he.ONE


def test_packing_ciphertexts_already_computed(key: he.PrivateKey) -> None:
    pub = key.public
    values = [5, -7, 0, 2**140, -(2**140), 9] * 4
    packed = pub.rerandomize(pub.pack_ciphertexts(pub.encrypt(values), 150))
    assert len(packed) == pub.packed_count(len(values), 150) < len(values)
    assert key.decrypt_packed(packed, 150, len(values)) == values


def test_packing_refuses_what_does_not_fit(key: he.PrivateKey) -> None:
    with pytest.raises(he.HEError):
        he.encode_slots([1 << 47], 48, 4)
    with pytest.raises(he.HEError):
        he.decode_slots([1 << 200], 48, 4, 4)  # more than four slots' worth
    with pytest.raises(he.HEError):
        he.decode_slots([1, 2], 48, 4, 4)  # two plaintexts for four values
    with pytest.raises(he.HEError):
        key.public.slots(4096)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=st.integers(0, 2**64), k=st.integers(1, 2**64))
def test_out_of_range_and_non_unit_ciphertexts_are_refused(key: he.PrivateKey, c: int, k: int) -> None:
    pub = key.public
    nsq = int(pub.nsquare)
    for value in (-c, nsq + c, int(key.p) * k, int(key.q) * k):  # ≤ 0, ≥ n², sharing a factor with n
        with pytest.raises(he.HEError):
            pub.check([value])
    with pytest.raises(he.HEError):
        pub.unpack(pub.pack([int(key.p) * k]), 1)  # and on the wire
