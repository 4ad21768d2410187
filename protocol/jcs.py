"""RFC 8785 JSON Canonicalization Scheme, stdlib only, for the offline verifier.

The hub signs with the ``rfc8785`` library; the verifier must not depend on it, so
this is a second, independent implementation (a test checks they agree).
:func:`dumps` is exact. :func:`dumps_fast` is the C ``json`` encoder with sorted keys,
equal to :func:`dumps` whenever no float, no integer beyond 2^53 and no key outside
the Basic Multilingual Plane occurs, which is every payload the hub writes today;
callers use it first and fall back to :func:`dumps` on a mismatch.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from decimal import Decimal
from typing import Any

__all__ = ["CanonicalizationError", "dumps", "dumps_checked", "dumps_fast", "string"]

_MAX_SAFE = 2**53 - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form (NaN, infinity, an unsafe integer, a lone surrogate, a non-JSON type)."""


def _number(value: float) -> str:
    # RFC 8785 §3.2.2.3 = ECMAScript Number.prototype.toString of the shortest round-trip digits.
    if math.isnan(value) or math.isinf(value):
        raise CanonicalizationError("NaN and infinities have no JSON form")
    if value == 0:
        return "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    k, n = len(ds), len(ds) + int(exp)  # value = 0.ds * 10^n
    if k <= n <= 21:
        out = ds + "0" * (n - k)
    elif 0 < n <= 21:
        out = ds[:n] + "." + ds[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + ds
    else:
        e = n - 1
        out = ds[0] + ("." + ds[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return ("-" if sign else "") + out


def string(value: str) -> str:
    """RFC 8785 §3.2.2.2 form of one string."""
    return _string(value)


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalizationError("string holds a lone surrogate") from None
    # json.dumps escapes exactly ", \, and the C0 controls (\b \f \n \r \t or \u00xx): RFC 8785 §3.2.2.2.
    return json.dumps(value, ensure_ascii=False)


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE:
            raise CanonicalizationError(f"integer {value} is beyond 2^53 - 1")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CanonicalizationError("object keys must be strings")
        out.append("{")
        # RFC 8785 §3.2.3: keys sorted by their UTF-16 code units.
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON type")


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False)`` builds on every call, built once: the same output, ~1.4 µs less per call.
# Without a shared ``markers`` dict (it would be shared between threads): a cyclic value
# raises RecursionError instead of ValueError.
_C_ENCODER = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]  # CPython's C accelerator, untyped
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


def dumps_fast(value: Any) -> bytes:
    """Sorted-key compact JSON from the C encoder; equals :func:`dumps` on the common domain (see module doc)."""
    if _C_ENCODER is None:  # pragma: no cover - CPython always has the accelerator
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return "".join(_C_ENCODER(value, 0)).encode()


# A number token with a fraction, an exponent, or 16+ digits (beyond 2^53 is possible).
# Without a backslash in the output, see ``_unsafe_number``. With one, searched in three
# steps from cheap to exact: ``_NUMBER_HINT`` also fires inside strings (a time such as
# "12:34:56.789Z"); ``_NUMBER_TOKEN`` asks for the whole token up to the character that
# must follow a value (",", "]" or "}"), which a time string lacks; if that fires too,
# the output is searched once more with every string emptied. Every real unsafe number
# matches all three, so the fast path is only taken when there is none.
_NUMBER_HINT = re.compile(rb"[:\[,]-?(?:[0-9]{16}|[0-9]+[.eE])")
_NUMBER_TOKEN = re.compile(rb"[:\[,]-?(?:[0-9]{16}|[0-9]+[.eE])[0-9eE.+-]*[,\]}]")
# A string token of the C encoder's output (it escapes " and \ and every control character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ASTRAL = re.compile(rb"[\xf0-\xff]")  # lead byte of a 4-byte UTF-8 sequence


# Outside the strings, a digit before ".", "e" or "E" can only be inside a number token.
_OUTSIDE_NUMBER = re.compile(rb"[0-9](?:[.eE]|[0-9]{15})")


def _unsafe_number(data: bytes) -> bool:
    if b"\\" not in data:
        # No escape anywhere: the quotes alternate exactly, every other piece is outside the strings.
        return _OUTSIDE_NUMBER.search(b"".join(data.split(b'"')[::2])) is not None
    if data[:1] in b"-0123456789":  # a bare number: the whole output is the token
        return bool(re.fullmatch(rb"-?(?:[0-9]{16,}|[0-9]+[.eE].*)", data, re.DOTALL))
    return bool(
        _NUMBER_HINT.search(data) and _NUMBER_TOKEN.search(data) and _NUMBER_HINT.search(_STRING.sub(b'""', data))
    )


def dumps_checked(value: Any, exact: Any = dumps) -> bytes:
    """:func:`dumps_fast` when it provably equals RFC 8785, else ``exact(value)``.

    The C encoder's output equals RFC 8785 unless it holds a float or an integer
    beyond 2^53 (number formats differ) or a character outside the BMP (UTF-16 and
    code-point key orders differ, and only 4-byte UTF-8 sequences encode those); both
    are looked for in the output, conservatively. Several times faster than a
    pure-Python canonicaliser; ``exact`` may be the ``rfc8785`` library. Object keys
    must be strings, as in any JSON document.
    """
    try:
        data = dumps_fast(value)
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return exact(value)
    if not data.isascii() and _ASTRAL.search(data):
        return exact(value)
    if _unsafe_number(data):
        return exact(value)
    return data
