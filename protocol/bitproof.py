"""Proofs that Paillier ciphertexts encrypt 0 or 1 (and 0, and pairs that sum to 1).

A party that encrypts its own values under its own key and hands them to others to sum can
otherwise cheat by encrypting 2^k instead of a bit: after the others sum per group and it
decrypts, the bits of the sum tell it which group each marked row fell into. The value
preview (``compute.algorithms.value_preview``) relies on these proofs so that each row adds
at most one to one cell, which is what its differential-privacy noise is scaled to.

Ciphertexts are the engine's (``protocol.he``): E(m) = g^m · h_s^x mod n², g = n + 1,
h_s = hⁿ with h derived from n. "c encrypts 0" is then "c = h_s^x for some x", proved by a
Σ-protocol in the style of Girault–Poupard–Stern (commit a = h_s^ρ, challenge e, response
z = ρ + e·x over the integers, check h_s^z = a·c^e), made non-interactive by Fiat–Shamir
with SHA-256 over the context, the key, the index and every element. "c encrypts 0 or 1" is
the OR of "c encrypts 0" and "c·g⁻¹ encrypts 0" (Cramer, Damgård & Schoenmakers, CRYPTO 1994):
the prover simulates the branch it cannot prove, and the two challenges sum to the hash.

Soundness holds against the key's owner too (who knows the factors and so the group's
order): the g-component of the checked equation lives in Z_n, and challenges of 128 bits
are below both primes, so their differences are invertible mod n. Zero knowledge is
statistical: ρ has 80 bits more than e·x can reach.

The verifier checks all equations at once (small-exponent batch verification, Bellare, Garay
& Rabin, EUROCRYPT 1998): fresh random 64-bit weights w_i, one exponentiation of h_s by Σ w_i·z_i,
and multi-exponentiations of the commitments and ciphertexts. A false statement among them
passes with probability at most 2⁻⁶⁴ (the weights are drawn after the proof is fixed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gmpy2

from protocol import he

CHALLENGE_BITS = 128
WEIGHT_BITS = 64
SLACK_BITS = 80  # statistical zero knowledge: ρ exceeds e·x by this many bits
DOMAIN = b"usufruct/bitproof/v1\x00"
MAX_ITEMS = 1_000_000

RandBits = Callable[[int], int]


class ProofError(ValueError):
    """A proof that does not hold, or that does not parse."""


def response_bits(public: he.PublicKey) -> int:
    """Bits of ρ and of a response: ⌈k/2⌉ + 1 (a sum of two exponents) + challenge + slack."""
    return public.rbits + 1 + CHALLENGE_BITS + SLACK_BITS


@dataclass
class _Eq:
    """h_s^z = a · (base · g^(−delta))^e, one equation the batch checks."""

    base: gmpy2.mpz
    delta: int
    a: gmpy2.mpz
    e: int
    z: int


class _Powers:
    """h_s^y mod n² for exponents of up to :func:`response_bits` bits, through fixed-base tables:
    the key holder's two, mod p² and mod q², joined by the CRT (half-size products: faster)."""

    W = 8

    def __init__(self, key: he.PrivateKey) -> None:
        public = key.public
        self.bits = response_bits(public)
        self.psq, self.qsq, self.inv = key.psq, key.qsq, key.qsq_inv
        self.tp = he._table(public.hs % key.psq, key.psq, self.bits, self.W)
        self.tq = he._table(public.hs % key.qsq, key.qsq, self.bits, self.W)

    def __call__(self, y: int) -> gmpy2.mpz:
        if not 0 <= y < 1 << self.bits:
            raise ProofError("an exponent out of range")
        mask, w, psq, qsq = (1 << self.W) - 1, self.W, self.psq, self.qsq
        a, b = gmpy2.mpz(1), gmpy2.mpz(1)
        for i, (rp, rq) in enumerate(zip(self.tp, self.tq, strict=True)):
            d = (y >> (w * i)) & mask
            if d:
                a = a * rp[d] % psq
                b = b * rq[d] % qsq
        return b + (a - b) * self.inv % psq * qsq


def _width(public: he.PublicKey) -> int:
    return public.width


def _challenge(public: he.PublicKey, context: bytes, kind: bytes, index: int, items: Sequence[int]) -> int:
    w = _width(public)
    h = hashlib.sha256(DOMAIN)
    h.update(len(context).to_bytes(4, "big") + context + kind + index.to_bytes(8, "big"))
    h.update(int(public.n).to_bytes(w, "big"))
    for x in items:
        h.update(int(x).to_bytes(w, "big"))
    return int.from_bytes(h.digest()[: CHALLENGE_BITS // 8], "big")


def _g_inverse(public: he.PublicKey, c: gmpy2.mpz) -> gmpy2.mpz:
    """c · g⁻¹ mod n², with g⁻¹ = 1 − n."""
    return c * (1 - public.n) % public.nsquare


# --- proving (the key holder, who made the ciphertexts) ---------------------------------------


def _encrypt(public: he.PublicKey, powers: _Powers, m: int, rand: RandBits) -> tuple[gmpy2.mpz, int]:
    x = rand(public.rbits)
    return (1 + m * public.n) * powers(x) % public.nsquare, x


def _prove_zero(
    public: he.PublicKey, powers: _Powers, u: gmpy2.mpz, x: int, context: bytes, kind: bytes, i: int, rand: RandBits
) -> tuple[int, int]:
    rho = rand(powers.bits - 1)
    a = powers(rho)
    e = _challenge(public, context, kind, i, (u, a))
    return int(a), rho + e * x


def _prove_bit(
    public: he.PublicKey, powers: _Powers, c: gmpy2.mpz, m: int, x: int, context: bytes, i: int, rand: RandBits
) -> tuple[int, int, int, int, int]:
    """(a0, a1, e0, z0, z1) for c = E(m), m ∈ {0, 1}: branch m proved, the other simulated."""
    nsq, mask = public.nsquare, (1 << CHALLENGE_BITS) - 1
    u = (c, _g_inverse(public, c))
    other = 1 - m
    e_sim, z_sim = rand(CHALLENGE_BITS), rand(powers.bits - 1)
    a_sim = powers(z_sim) * gmpy2.powmod(u[other], -e_sim, nsq) % nsq
    rho = rand(powers.bits - 1)
    a_real = powers(rho)
    a = (a_real, a_sim) if m == 0 else (a_sim, a_real)
    e = _challenge(public, context, b"bit", i, (c, a[0], a[1]))
    e_real = (e - e_sim) & mask
    z_real = rho + e_real * x
    if m == 0:
        return int(a[0]), int(a[1]), e_real, z_real, z_sim
    return int(a[0]), int(a[1]), e_sim, z_sim, z_real


def prove_labels(
    key: he.PrivateKey, labels: Sequence[int], context: bytes, rand: RandBits = secrets.randbits
) -> tuple[list[int], list[int], str]:
    """P_i = E(y_i), Q_i = E(1 − y_i) for bits y_i, with a proof that each P_i encrypts 0 or 1
    and each P_i·Q_i encrypts 1 (so each Q_i is the complement bit). ``rand`` only for vectors."""
    public = key.public
    if any(y not in (0, 1) for y in labels):
        raise ProofError("labels are 0 or 1")
    powers = _Powers(key)
    ps, qs, out = [], [], []
    for i, y in enumerate(labels):
        p, xp = _encrypt(public, powers, y, rand)
        q, xq = _encrypt(public, powers, 1 - y, rand)
        bit = _prove_bit(public, powers, p, y, xp, context, i, rand)
        pair = _prove_zero(
            public, powers, _g_inverse(public, p * q % public.nsquare), xp + xq, context, b"one", i, rand
        )
        ps.append(int(p))
        qs.append(int(q))
        out.append((*bit, *pair))
    return ps, qs, _pack(public, out, LABEL_FIELDS)


def prove_zeros(
    key: he.PrivateKey, count: int, context: bytes, rand: RandBits = secrets.randbits
) -> tuple[list[int], str]:
    """``count`` fresh encryptions of 0, with a proof that each is one."""
    public = key.public
    powers = _Powers(key)
    cts, out = [], []
    for i in range(count):
        c, x = _encrypt(public, powers, 0, rand)
        cts.append(int(c))
        out.append(_prove_zero(public, powers, c, x, context, b"zero", i, rand))
    return cts, _pack(public, out, ZERO_FIELDS)


# --- the wire: fixed-width fields, base64 -----------------------------------------------------
# Field kinds: 0 a challenge (16 bytes), 1 a response (⌊response_bits/8⌋ + 2 bytes), 2 an
# element of Z_{n²} (the ciphertext width). A label's proof: a0, a1, e0, z0, z1 (the bit), then
# a, z (the pair summing to one); a zero's: a, z.
LABEL_FIELDS = (2, 2, 0, 1, 1, 2, 1)
ZERO_FIELDS = (2, 1)


def _sizes(public: he.PublicKey, kinds: Sequence[int]) -> list[int]:
    widths = {0: CHALLENGE_BITS // 8, 1: response_bits(public) // 8 + 2, 2: _width(public)}
    return [widths[k] for k in kinds]


def _pack(public: he.PublicKey, rows: Sequence[Sequence[int]], kinds: Sequence[int]) -> str:
    sizes = _sizes(public, kinds)
    raw = b"".join(int(v).to_bytes(s, "big") for row in rows for v, s in zip(row, sizes, strict=True))
    return base64.b64encode(raw).decode()


def _unpack(public: he.PublicKey, text: object, count: int, kinds: Sequence[int]) -> list[list[int]]:
    sizes = _sizes(public, kinds)
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


def _unit(public: he.PublicKey, v: int) -> gmpy2.mpz:
    if not 0 < v < public.nsquare or gmpy2.gcd(v, public.n) != 1:
        raise ProofError("an element out of range for this key")
    return gmpy2.mpz(v)


def _response(public: he.PublicKey, z: int) -> int:
    if z >= 1 << (response_bits(public) + 1):
        raise ProofError("a response out of range")
    return z


def label_equations(
    public: he.PublicKey, ps: Sequence[int], qs: Sequence[int], text: object, context: bytes
) -> list[_Eq]:
    """The equations a label proof must satisfy; raises :class:`ProofError` if it does not parse."""
    if len(ps) != len(qs):
        raise ProofError("one complement per label")
    rows = _unpack(public, text, len(ps), LABEL_FIELDS)
    nsq, mask = public.nsquare, (1 << CHALLENGE_BITS) - 1
    eqs = []
    for i, (p_raw, q_raw, (a0, a1, e0, z0, z1, a_pair, z_pair)) in enumerate(zip(ps, qs, rows, strict=True)):
        p, q = _unit(public, p_raw), _unit(public, q_raw)
        a0, a1, a_pair = _unit(public, a0), _unit(public, a1), _unit(public, a_pair)
        e = _challenge(public, context, b"bit", i, (p, a0, a1))
        eqs.append(_Eq(p, 0, a0, e0, _response(public, z0)))
        eqs.append(_Eq(p, 1, a1, (e - e0) & mask, _response(public, z1)))
        pq = p * q % nsq
        e_pair = _challenge(public, context, b"one", i, (_g_inverse(public, pq), a_pair))
        eqs.append(_Eq(pq, 1, a_pair, e_pair, _response(public, z_pair)))
    return eqs


def zero_equations(public: he.PublicKey, cts: Sequence[int], text: object, context: bytes) -> list[_Eq]:
    rows = _unpack(public, text, len(cts), ZERO_FIELDS)
    eqs = []
    for i, (c_raw, (a, z)) in enumerate(zip(cts, rows, strict=True)):
        c, am = _unit(public, c_raw), _unit(public, a)
        eqs.append(_Eq(c, 0, am, _challenge(public, context, b"zero", i, (c, am)), _response(public, z)))
    return eqs


def check(public: he.PublicKey, eqs: Sequence[_Eq], rand: RandBits = secrets.randbits) -> None:
    """All equations at once, with fresh random weights; raises :class:`ProofError` if any fails."""
    if not eqs:
        return
    nsq, n = public.nsquare, public.n
    weights = [rand(WEIGHT_BITS) | 1 for _ in eqs]
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


def verify_labels(public: he.PublicKey, ps: Sequence[int], qs: Sequence[int], text: object, context: bytes) -> None:
    check(public, label_equations(public, ps, qs, text, context))


def verify_zeros(public: he.PublicKey, cts: Sequence[int], text: object, context: bytes) -> None:
    check(public, zero_equations(public, cts, text, context))
