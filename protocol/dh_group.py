"""A prime-order group for commutative blinding: RFC 3526 group 14 and a hash into it.

The 2048-bit MODP prime p of RFC 3526 §3 is a safe prime (p = 2q + 1, q prime). Its
quadratic residues form the subgroup G of prime order q, where DDH is believed hard, and
blinding x ↦ x^a commutes: (x^a)^b = (x^b)^a. An identifier is hashed into G by expanding
it with expand_message_xmd (RFC 9380 §5.3.1, SHA-256) to 2048 + 128 bits, reducing mod p
(bias below 2^-128, the rule of RFC 9380 §5) and squaring: every square mod p lies in G.

Secret exponents are 256 bits. NIST SP 800-56A Rev. 3 (§5.6.1.1, safe-prime groups)
allows private exponents of N ≥ 2s bits, s = 112 for this group; the full 2047 bits
would make each exponentiation eight times slower for no gain in strength.
Exponentiation uses ``gmpy2.powmod_sec`` so its timing does not depend on the exponent.

Elements travel as fixed-width lowercase hex (I2OSP, 256 bytes); a received element is
refused unless it lies in G, so a peer cannot probe an exponent with elements of small
order (p - 1 has order 2). Values that are only compared, never raised again, travel as
short tags (truncated SHA-256) to keep messages small.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Iterable

import gmpy2

P = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD"
    " EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED"
    " EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F"
    " 83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B"
    " E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510"
    " 15728E5A 8AACAA68 FFFFFFFF FFFFFFFF".replace(" ", ""),
    16,
)
Q = (P - 1) // 2
ELEMENT_BYTES = 256
ELEMENT_HEX = 2 * ELEMENT_BYTES
EXPONENT_BITS = 256
TAG_HEX = 32  # 128-bit tags: a chance collision among 2 × 10^6 values is below 2^-86

DST = b"USUFRUCT-PSI-V1-MODP2048_XMD:SHA-256"  # RFC 9380 §3.1: a tag unique to this use
TAG_PREFIX = b"USUFRUCT-PSI-V1-TAG"
_EXPAND_BYTES = (P.bit_length() + 128 + 7) // 8
_HEX = frozenset(string.hexdigits.lower())
_P = gmpy2.mpz(P)


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-256 (b_in_bytes = 32, s_in_bytes = 64)."""
    ell = -(-length // 32)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd: requested length or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    blocks = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        chained = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha256(chained + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_group(identifier: str) -> int:
    """H(id) ∈ G: expand the UTF-8 bytes, reduce mod p, square."""
    u = int.from_bytes(expand_message_xmd(identifier.encode(), DST, _EXPAND_BYTES), "big") % P
    h = int(gmpy2.powmod(u, 2, _P))
    if h in (0, 1):  # u ≡ 0 or ±1 (mod p): probability 2^-2046, but never emit the identity
        raise ValueError("identifier hashed to a degenerate element")
    return h


def random_exponent(rng: random.Random) -> int:
    """A secret exponent in [1, 2^256 - 1] (2^256 < q); ``rng`` must be a CSPRNG outside tests."""
    return rng.randrange(1, 1 << EXPONENT_BITS)


def power_all(elements: Iterable[int], exponent: int) -> list[int]:
    """Each element raised to the secret exponent, mod p, in constant time in the exponent."""
    if not 0 < exponent < Q:
        raise ValueError("exponent out of range")
    e = gmpy2.mpz(exponent)
    return [int(gmpy2.powmod_sec(x, e, _P)) for x in elements]


def encode(element: int) -> str:
    return element.to_bytes(ELEMENT_BYTES, "big").hex()


def decode(value: object) -> int:
    """Parse one received element; refuse anything that is not a non-identity member of G."""
    if not isinstance(value, str) or len(value) != ELEMENT_HEX or not _HEX.issuperset(value):
        raise ValueError(f"a group element is {ELEMENT_HEX} lowercase hex digits")
    x = int(value, 16)
    if not 1 < x < P or gmpy2.jacobi(x, _P) != 1:
        raise ValueError("value is not an element of the prime-order subgroup")
    return x


def decode_all(values: object, limit: int) -> list[int]:
    if not isinstance(values, list):
        raise ValueError("expected a list of group elements")
    if len(values) > limit:
        raise ValueError(f"more than {limit} group elements")
    return [decode(v) for v in values]


def tag(element: int) -> str:
    """What the comparing party sees of a doubly blinded element (it is never raised again)."""
    return hashlib.sha256(TAG_PREFIX + element.to_bytes(ELEMENT_BYTES, "big")).hexdigest()[:TAG_HEX]


def is_tag(value: object) -> bool:
    return isinstance(value, str) and len(value) == TAG_HEX and _HEX.issuperset(value)


def is_encoded_element(value: object) -> bool:
    """A cheap format check for a party that only relays elements (the receiver decodes fully)."""
    return isinstance(value, str) and len(value) == ELEMENT_HEX and _HEX.issuperset(value)
