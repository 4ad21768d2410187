"""Canonical JSON (RFC 8785, JCS) via the ``rfc8785`` library: the bytes we sign and hash."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical(value: Any) -> bytes:
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
