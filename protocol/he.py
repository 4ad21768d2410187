"""Paillier on whole vectors: the one interface vertical learning uses (``hetero_lr``).

Everything an algorithm does with ciphertexts goes through :class:`PublicKey` and
:class:`PrivateKey` here, on lists of Python ints, so that a faster engine can replace this
one later without touching an algorithm. This engine is textbook Paillier with g = n + 1
(Paillier, EUROCRYPT 1999) on gmpy2; ``phe`` is the reference it is tested against (keys
come from ``phe``'s generator, and each side decrypts the other's ciphertexts).

- **Every encryption carries fresh randomness**: c = (1 + m·n) · rⁿ mod n², with r drawn
  uniformly from [1, n) by the operating system for every value. :meth:`PublicKey.rerandomize`
  multiplies by a fresh rⁿ, so a ciphertext that was computed from others (a sum, a value
  plus a plaintext) cannot be related to them by whoever saw them.
- **Signed integers**: m is taken mod n, and a decrypted m > n/2 stands for m − n.
  Callers encode reals in fixed point (:data:`FRAC_BITS`).
- **Decryption with CRT** (mod p² and q² separately), as ``phe`` does.
- ``matvec_t`` computes Xᵀ·E(d) = (Π_i E(d_i)^{X_ij})_j, one modular exponentiation with a
  short (fixed-point) exponent per element.

Ciphertexts travel packed: fixed-width big-endian bytes of n², base64 (:func:`pack`).
Pure module: no Django.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence

import gmpy2
from phe import paillier as phe

FRAC_BITS = 24  # fixed point: x ↦ round(x · 2^24)
ONE = 1 << FRAC_BITS


class HEError(ValueError):
    """A ciphertext or key that is not what the protocol allows."""


def to_fixed(values: Sequence[float], frac_bits: int = FRAC_BITS) -> list[int]:
    scale = 1 << frac_bits
    return [round(v * scale) for v in values]


def from_fixed(values: Sequence[int], frac_bits: int = FRAC_BITS) -> list[float]:
    scale = float(1 << frac_bits)
    return [v / scale for v in values]


class PublicKey:
    def __init__(self, n: int) -> None:
        if n < 2**1000 or n % 2 == 0:
            raise HEError("a Paillier modulus is an odd integer of at least 1000 bits")
        self.n = gmpy2.mpz(n)
        self.nsquare = self.n * self.n
        self.half = self.n // 2
        self.bits = int(n).bit_length()
        self.width = (int(self.nsquare).bit_length() + 7) // 8

    def to_json(self) -> str:
        return str(self.n)

    @classmethod
    def from_json(cls, value: object) -> PublicKey:
        if not isinstance(value, str) or not value.isdigit() or len(value) > 1300:
            raise HEError("a public key is the decimal modulus")
        return cls(int(value))

    def _noise(self) -> gmpy2.mpz:
        r = gmpy2.mpz(secrets.randbelow(int(self.n) - 1) + 1)
        return gmpy2.powmod(r, self.n, self.nsquare)

    def encrypt(self, values: Sequence[int]) -> list[int]:
        """E(m) with a fresh rⁿ for every value."""
        n, nsq = self.n, self.nsquare
        out = []
        for m in values:
            if not -self.half <= m <= self.half:
                raise HEError("plaintext out of range for this key")
            out.append(int((1 + (m % n) * n) * self._noise() % nsq))
        return out

    def rerandomize(self, cts: Sequence[int]) -> list[int]:
        nsq = self.nsquare
        return [int(gmpy2.mpz(c) * self._noise() % nsq) for c in cts]

    def add(self, a: Sequence[int], b: Sequence[int]) -> list[int]:
        if len(a) != len(b):
            raise HEError("vectors of different lengths")
        nsq = self.nsquare
        return [int(gmpy2.mpz(x) * y % nsq) for x, y in zip(a, b, strict=True)]

    def add_plain(self, a: Sequence[int], values: Sequence[int]) -> list[int]:
        """E(x) ⊕ m = E(x) · (1 + m·n); not randomised: follow with :meth:`rerandomize` before it leaves."""
        if len(a) != len(values):
            raise HEError("vectors of different lengths")
        n, nsq = self.n, self.nsquare
        return [int(gmpy2.mpz(c) * (1 + (m % n) * n) % nsq) for c, m in zip(a, values, strict=True)]

    def sum_vectors(self, vectors: Sequence[Sequence[int]]) -> list[int]:
        if not vectors:
            raise HEError("nothing to add")
        total = list(vectors[0])
        for v in vectors[1:]:
            total = self.add(total, v)
        return total

    def matvec_t(self, rows: Sequence[Sequence[int]], cts: Sequence[int]) -> list[int]:
        """Xᵀ·E(d) for X given as rows (len(rows) == len(cts)), X's entries small signed ints."""
        if len(rows) != len(cts):
            raise HEError("the matrix and the vector do not match")
        if not rows:
            return []
        nsq = self.nsquare
        width = len(rows[0])
        acc = [gmpy2.mpz(1)] * width
        inverse: dict[int, gmpy2.mpz] = {}
        for row, c in zip(rows, cts, strict=True):
            cm = gmpy2.mpz(c)
            for j, x in enumerate(row):
                if x == 0:
                    continue
                if x > 0:
                    acc[j] = acc[j] * gmpy2.powmod(cm, x, nsq) % nsq
                else:
                    inv = inverse.get(c)
                    if inv is None:
                        inv = inverse[c] = gmpy2.invert(cm, nsq)
                    acc[j] = acc[j] * gmpy2.powmod(inv, -x, nsq) % nsq
        return [int(a) for a in acc]

    def check(self, cts: Sequence[int]) -> list[int]:
        nsq = int(self.nsquare)
        for c in cts:
            if not 0 < c < nsq or gmpy2.gcd(c, self.n) != 1:
                raise HEError("a ciphertext out of range for this key")
        return list(cts)

    def pack(self, cts: Sequence[int]) -> str:
        w = self.width
        return base64.b64encode(b"".join(int(c).to_bytes(w, "big") for c in cts)).decode()

    def unpack(self, text: object, limit: int) -> list[int]:
        if not isinstance(text, str) or len(text) > 4 * (-(-self.width * limit // 3)):
            raise HEError(f"expected at most {limit:,} packed ciphertexts")
        try:
            raw = base64.b64decode(text.encode(), validate=True)
        except (binascii.Error, ValueError):
            raise HEError("not base64") from None
        w = self.width
        if len(raw) % w:
            raise HEError("not a whole number of ciphertexts")
        return self.check([int.from_bytes(raw[i : i + w], "big") for i in range(0, len(raw), w)])


class PrivateKey:
    def __init__(self, public: PublicKey, p: int, q: int) -> None:
        if p * q != public.n or p == q:
            raise HEError("p·q is not the public modulus")
        self.public = public
        self.p, self.q = gmpy2.mpz(p), gmpy2.mpz(q)
        self.psq, self.qsq = self.p * self.p, self.q * self.q
        # Paillier with g = n + 1, per prime: h_p = L_p(g^(p-1) mod p²)^(-1) mod p
        self.hp = gmpy2.invert((gmpy2.powmod(public.n + 1, self.p - 1, self.psq) - 1) // self.p, self.p)
        self.hq = gmpy2.invert((gmpy2.powmod(public.n + 1, self.q - 1, self.qsq) - 1) // self.q, self.q)
        self.q_inv = gmpy2.invert(self.q, self.p)

    @classmethod
    def generate(cls, bits: int) -> PrivateKey:
        """A fresh key pair from ``phe``'s generator (primes p, q of bits/2 each)."""
        pub, priv = phe.generate_paillier_keypair(n_length=bits)
        return cls(PublicKey(pub.n), priv.p, priv.q)

    def to_json(self) -> dict[str, str]:
        return {"n": str(self.public.n), "p": str(self.p), "q": str(self.q)}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> PrivateKey:
        return cls(PublicKey(int(data["n"])), int(data["p"]), int(data["q"]))

    def decrypt(self, cts: Sequence[int]) -> list[int]:
        p, q, psq, qsq = self.p, self.q, self.psq, self.qsq
        n, half = self.public.n, self.public.half
        out = []
        for c in cts:
            c = gmpy2.mpz(c)
            mp = (gmpy2.powmod(c, p - 1, psq) - 1) // p * self.hp % p
            mq = (gmpy2.powmod(c, q - 1, qsq) - 1) // q * self.hq % q
            m = mq + ((mp - mq) * self.q_inv % p) * q  # CRT
            out.append(int(m - n) if m > half else int(m))
        return out
