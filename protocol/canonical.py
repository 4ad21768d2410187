"""Canonical JSON (RFC 8785, JCS): the bytes we sign and hash.

The C ``json`` encoder with sorted keys where its output provably equals RFC 8785
(:func:`protocol.jcs.dumps_checked`; property-tested against the library), the ``rfc8785``
library everywhere else (floats, integers beyond 2^53, keys outside the BMP).
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from protocol import jcs


def canonical(value: Any) -> bytes:
    return jcs.dumps_checked(value, exact=rfc8785.dumps)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
