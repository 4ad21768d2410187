"""Proofs that Paillier ciphertexts encrypt 0 or 1, sound for any modulus without small factors.

A party that encrypts its own values under its own key and hands them to others to sum can
otherwise cheat by encrypting 2^k instead of a bit: after the others sum per group and it
decrypts, the bits of the sum tell it which group each marked row fell into. The value
preview (``compute.algorithms.value_preview``) relies on these proofs so that each row adds
at most one to one cell, which is what its differential-privacy noise is scaled to.

Ciphertexts are the engine's (``protocol.he``): E(m) = g^m · h_s^x mod n², g = n + 1,
h_s = hⁿ with h derived from n. "c encrypts 0" is "c = h_s^x for some x", proved by a
Σ-protocol in the style of Girault–Poupard–Stern (commit a = h_s^ρ, challenge e, response
z = ρ + e·x over the integers, check h_s^z = a·c^e); "c encrypts 0 or 1" is the OR of "c
encrypts 0" and "c·g⁻¹ encrypts 0" (Cramer, Damgård & Schoenmakers, CRYPTO 1994): the prover
simulates the branch it cannot prove, and the two challenges sum to the hash's.

**Soundness against the key's owner.** From two answers to challenges e ≠ e', the
g-component gives m·(e − e') ≡ 0 (mod n): m ≡ 0 needs e − e' invertible mod n, i.e. every
prime factor of n above |e − e'|. The owner chooses n, so nothing may be assumed of it:
:func:`check_modulus` refuses a modulus with a prime factor below 2^20 (one gcd with the
product of those primes), and each proof runs :data:`REPETITIONS` = 5 parallel repetitions
with 20-bit challenges — soundness 2^-100 for *any* modulus that passes, where one 128-bit
challenge would be sound only if both factors are large, which nobody checks.

Zero knowledge is statistical: ρ has 80 bits more than e·x can reach. Fiat–Shamir hashes the
context (job and list), the key, the index and every element with SHA-256.

The verifier checks all equations at once (small-exponent batch verification, Bellare, Garay
& Rabin, EUROCRYPT 1998): fresh random 64-bit weights, one exponentiation of h_s by Σ w·z, and
Pippenger multi-exponentiations of the commitments and ciphertexts. A false plaintext among them
passes with probability at most 2^-64 (the weights are drawn after the proof is fixed). Elements
whose Jacobi symbol is not +1 are refused outright (every honest ciphertext and commitment has
+1: an element of order 2 planted to cancel in the batch does not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import gmpy2

from protocol import he

CHALLENGE_BITS = 20
REPETITIONS = 5  # 5 × 20 bits: soundness 2^-100
SMALL_FACTOR_BOUND = 1 << CHALLENGE_BITS  # no prime factor of the modulus below this
WEIGHT_BITS = 64
SLACK_BITS = 80  # statistical zero knowledge: ρ exceeds e·x by this many bits
DOMAIN = b"usufruct/bitproof/v2\x00"
MAX_ITEMS = 1_000_000

RandBits = Callable[[int], int]


class ProofError(ValueError):
    """A proof that does not hold, a modulus that cannot carry one, or input that does not parse."""


@lru_cache(maxsize=1)
def _small_primes_product() -> gmpy2.mpz:
    """The product of every prime below :data:`SMALL_FACTOR_BOUND` (about 82,000 of them)."""
    primes, p = [], gmpy2.mpz(2)
    while p < SMALL_FACTOR_BOUND:
        primes.append(p)
        p = gmpy2.next_prime(p)
    while len(primes) > 1:  # a product tree: a few large multiplications instead of many
        primes = [primes[i] * primes[i + 1] if i + 1 < len(primes) else primes[i] for i in range(0, len(primes), 2)]
    return primes[0]


def check_modulus(public: he.PublicKey, bits: int) -> None:
    """The key a proof is made under: exactly ``bits`` bits, no prime factor below 2^20."""
    if public.bits != bits:
        raise ProofError(f"the key has {public.bits} bits, not the {bits} the job asked for")
    if gmpy2.gcd(public.n, _small_primes_product()) != 1:
        raise ProofError("the key's modulus has a small prime factor")


def response_bits(public: he.PublicKey) -> int:
    """Bits of ρ and of a response: ⌈k/2⌉ (an exponent) + challenge + slack."""
    return public.rbits + CHALLENGE_BITS + SLACK_BITS


@dataclass
class _Eq:
    """h_s^z = a · (base · g^(−delta))^e, one equation the batch checks."""

    base: gmpy2.mpz
    delta: int
    a: gmpy2.mpz
    e: int
    z: int


class Powers:
    """h_s^y mod n² for exponents of up to :func:`response_bits` bits, through fixed-base tables
    of 8-bit windows (about 20 MB at 2048 bits): with the private key, two half-size tables mod
    p² and q² joined by the CRT; with only the public key, one table mod n² (the hub's zeros)."""

    W = 8

    def __init__(self, public: he.PublicKey, key: he.PrivateKey | None = None) -> None:
        self.public = public
        self.bits = response_bits(public)
        self.key = key
        if key is not None:
            self.tp = he._table(public.hs % key.psq, key.psq, self.bits, self.W)
            self.tq = he._table(public.hs % key.qsq, key.qsq, self.bits, self.W)
        else:
            self.t = he._table(public.hs, public.nsquare, self.bits, self.W)

    def __call__(self, y: int) -> gmpy2.mpz:
        if not 0 <= y < 1 << self.bits:
            raise ProofError("an exponent out of range")
        mask, w = (1 << self.W) - 1, self.W
        if self.key is None:
            nsq, acc = self.public.nsquare, gmpy2.mpz(1)
            for i, row in enumerate(self.t):
                d = (y >> (w * i)) & mask
                if d:
                    acc = acc * row[d] % nsq
            return acc
        k = self.key
        a, b = gmpy2.mpz(1), gmpy2.mpz(1)
        for i, (rp, rq) in enumerate(zip(self.tp, self.tq, strict=True)):
            d = (y >> (w * i)) & mask
            if d:
                a = a * rp[d] % k.psq
                b = b * rq[d] % k.qsq
        return b + (a - b) * k.qsq_inv % k.psq * k.qsq

    def encrypt(self, m: int, rand: RandBits = secrets.randbits) -> tuple[gmpy2.mpz, int]:
        """E(m) = (1 + m·n)·h_s^x with a fresh x of ⌈k/2⌉ bits, and x."""
        x = rand(self.public.rbits)
        return (1 + m * self.public.n) * self(x) % self.public.nsquare, x


def _challenges(public: he.PublicKey, context: bytes, index: int, items: Sequence[int]) -> list[int]:
    """REPETITIONS challenges of CHALLENGE_BITS each, from one SHA-256 over everything."""
    w = public.width
    h = hashlib.sha256(DOMAIN)
    h.update(len(context).to_bytes(4, "big") + context + index.to_bytes(8, "big"))
    h.update(int(public.n).to_bytes(w, "big"))
    for x in items:
        h.update(int(x).to_bytes(w, "big"))
    value = int.from_bytes(h.digest(), "big")
    mask = (1 << CHALLENGE_BITS) - 1
    return [(value >> (CHALLENGE_BITS * k)) & mask for k in range(REPETITIONS)]


def _g_inverse(public: he.PublicKey, c: gmpy2.mpz) -> gmpy2.mpz:
    """c · g⁻¹ mod n², with g⁻¹ = 1 − n."""
    return c * (1 - public.n) % public.nsquare


# --- proving (the key holder, who made the ciphertexts) ---------------------------------------


def prove_labels(
    key: he.PrivateKey, labels: Sequence[int], context: bytes, rand: RandBits = secrets.randbits
) -> tuple[list[int], str]:
    """E(y_i) for bits y_i, with a proof that each encrypts 0 or 1. ``rand`` only for vectors."""
    public = key.public
    if any(y not in (0, 1) for y in labels):
        raise ProofError("labels are 0 or 1")
    powers = Powers(public, key)
    nsq, mask = public.nsquare, (1 << CHALLENGE_BITS) - 1
    cts, rows = [], []
    for i, y in enumerate(labels):
        c, x = powers.encrypt(y, rand)
        u = (c, _g_inverse(public, c))
        other = 1 - y
        sims, reals, a0s, a1s = [], [], [], []
        for _ in range(REPETITIONS):
            e_sim, z_sim, rho = rand(CHALLENGE_BITS), rand(powers.bits - 1), rand(powers.bits - 1)
            a_sim = powers(z_sim) * gmpy2.powmod(u[other], -e_sim, nsq) % nsq
            a_real = powers(rho)
            sims.append((e_sim, z_sim))
            reals.append(rho)
            a0s.append(a_real if y == 0 else a_sim)
            a1s.append(a_sim if y == 0 else a_real)
        es = _challenges(public, context, i, (c, *a0s, *a1s))
        row: list[int] = [*a0s, *a1s]
        for k in range(REPETITIONS):
            e_sim, z_sim = sims[k]
            e_real = (es[k] - e_sim) & mask
            z_real = reals[k] + e_real * x
            e0, z0, z1 = (e_real, z_real, z_sim) if y == 0 else (e_sim, z_sim, z_real)
            row += [e0, z0, z1]
        cts.append(int(c))
        rows.append(row)
    return cts, _pack(public, rows)


# --- the wire: fixed-width fields, base64 -----------------------------------------------------
# Per label: a0 × R, a1 × R (elements of Z_{n²}, the ciphertext width), then per repetition
# e0 (3 bytes), z0 and z1 (⌊response_bits/8⌋ + 2 bytes each).


def _sizes(public: he.PublicKey) -> list[int]:
    elem, chal, resp = public.width, -(-CHALLENGE_BITS // 8), response_bits(public) // 8 + 2
    return [elem] * (2 * REPETITIONS) + [chal, resp, resp] * REPETITIONS


def _pack(public: he.PublicKey, rows: Sequence[Sequence[int]]) -> str:
    sizes = _sizes(public)
    raw = b"".join(int(v).to_bytes(s, "big") for row in rows for v, s in zip(row, sizes, strict=True))
    return base64.b64encode(raw).decode()


def _unpack(public: he.PublicKey, text: object, count: int) -> list[list[int]]:
    sizes = _sizes(public)
    stride = sum(sizes)
    if not isinstance(text, str) or len(text) > 4 * (-(-stride * min(count, MAX_ITEMS) // 3)) + 4:
        raise ProofError("the proof is not the expected size")
    try:
        raw = base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ProofError("the proof is not base64") from None
    if len(raw) != stride * count:
        raise ProofError(f"expected a proof for each of {count:,} ciphertexts")
    rows, at = [], 0
    for _ in range(count):
        row = []
        for s in sizes:
            row.append(int.from_bytes(raw[at : at + s], "big"))
            at += s
        rows.append(row)
    return rows


# --- verifying (anyone with the public key) --------------------------------------------------


def element(public: he.PublicKey, v: int) -> gmpy2.mpz:
    """``v`` as an element the proofs accept: in Z*_{n²}, with Jacobi symbol +1 (as every honest
    ciphertext and commitment has: h has +1, g ≡ 1 mod n)."""
    if not 0 < v < public.nsquare or gmpy2.gcd(v, public.n) != 1 or gmpy2.jacobi(v % public.n, public.n) != 1:
        raise ProofError("an element out of range for this key")
    return gmpy2.mpz(v)


def label_equations(public: he.PublicKey, cts: Sequence[int], text: object, context: bytes) -> list[_Eq]:
    """The equations a label proof must satisfy; raises :class:`ProofError` if it does not parse."""
    rows = _unpack(public, text, len(cts))
    mask, bound, r = (1 << CHALLENGE_BITS) - 1, 1 << (response_bits(public) + 1), REPETITIONS
    eqs = []
    for i, (c_raw, row) in enumerate(zip(cts, rows, strict=True)):
        c = element(public, c_raw)
        a0s = [element(public, v) for v in row[:r]]
        a1s = [element(public, v) for v in row[r : 2 * r]]
        es = _challenges(public, context, i, (c, *a0s, *a1s))
        for k in range(r):
            e0, z0, z1 = row[2 * r + 3 * k : 2 * r + 3 * k + 3]
            if e0 > mask or z0 >= bound or z1 >= bound:
                raise ProofError("a challenge or response out of range")
            eqs.append(_Eq(c, 0, a0s[k], e0, z0))
            eqs.append(_Eq(c, 1, a1s[k], (es[k] - e0) & mask, z1))
    return eqs


def check(public: he.PublicKey, eqs: Sequence[_Eq], rand: RandBits = secrets.randbits) -> None:
    """All equations at once, with fresh random weights; raises :class:`ProofError` if any fails."""
    if not eqs:
        return
    nsq, n = public.nsquare, public.n
    weights = [rand(WEIGHT_BITS) for _ in eqs]
    total_z = sum(w * eq.z for w, eq in zip(weights, eqs, strict=True))
    lhs = gmpy2.powmod(public.hs, total_z, nsq)
    a_part = he._multi_exp([eq.a for eq in eqs], weights, WEIGHT_BITS, he._bucket_window(len(eqs), WEIGHT_BITS), nsq)
    ew = [eq.e * w for eq, w in zip(eqs, weights, strict=True)]
    ew_bits = CHALLENGE_BITS + WEIGHT_BITS
    c_part = he._multi_exp([eq.base for eq in eqs], ew, ew_bits, he._bucket_window(len(eqs), ew_bits), nsq)
    g_shift = sum(x for x, eq in zip(ew, eqs, strict=True) if eq.delta) % n
    rhs = a_part * c_part % nsq * (1 - g_shift * n) % nsq  # g^(−Σ δ·e·w) = 1 − (Σ δ·e·w)·n
    if lhs != rhs:
        raise ProofError("a proof does not hold")


def verify_labels(public: he.PublicKey, cts: Sequence[int], text: object, context: bytes) -> None:
    check(public, label_equations(public, cts, text, context))
