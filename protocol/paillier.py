"""Paillier keys and ciphertexts as JSON-safe strings (via ``phe``, accelerated by gmpy2).

Integers travel as decimal strings, never pickles. Values are encoded in fixed point
(``SCALE``) so that sums of real numbers stay exact integers under homomorphic addition.
"""

from __future__ import annotations

from typing import Any

from phe import paillier

SCALE = 10**6


def generate(bits: int) -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    return paillier.generate_paillier_keypair(n_length=bits)


def public_to_json(public: paillier.PaillierPublicKey) -> str:
    return str(public.n)


def public_from_json(value: str) -> paillier.PaillierPublicKey:
    n = int(value)
    if n < 3 or n % 2 == 0:
        raise ValueError("Paillier modulus must be an odd integer > 2")
    return paillier.PaillierPublicKey(n)


def private_to_json(private: paillier.PaillierPrivateKey) -> dict[str, str]:
    return {"n": str(private.public_key.n), "p": str(private.p), "q": str(private.q)}


def private_from_json(data: dict[str, Any]) -> paillier.PaillierPrivateKey:
    public = paillier.PaillierPublicKey(int(data["n"]))
    return paillier.PaillierPrivateKey(public, int(data["p"]), int(data["q"]))


def encrypt_int(public: paillier.PaillierPublicKey, value: int) -> str:
    """Encrypt with fresh randomness (r^n), as a decimal string."""
    return str(public.encrypt(int(value)).ciphertext(be_secure=True))


def ciphertext(public: paillier.PaillierPublicKey, value: str) -> paillier.EncryptedNumber:
    c = int(value)
    if not 0 < c < public.nsquare:
        raise ValueError("ciphertext out of range for this key")
    return paillier.EncryptedNumber(public, c, exponent=0)


def add_ciphertexts(public: paillier.PaillierPublicKey, values: list[str]) -> str:
    """Homomorphic sum of encrypted integers (a product of ciphertexts mod n²)."""
    if not values:
        raise ValueError("nothing to add")
    total = ciphertext(public, values[0])
    for value in values[1:]:
        total = total + ciphertext(public, value)
    return str(total.ciphertext(be_secure=False))


def decrypt_int(private: paillier.PaillierPrivateKey, value: str) -> int:
    return int(private.decrypt(ciphertext(private.public_key, value)))


def to_fixed(x: float) -> int:
    return round(x * SCALE)
