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


def dumps_fast(value: Any) -> bytes:
    """Sorted-key compact JSON from the C encoder; equals :func:`dumps` on the common domain (see module doc)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# A number token with a fraction, an exponent, or 16+ digits (beyond 2^53 is possible).
# Matches inside strings too: a false alarm only costs the exact path.
_UNSAFE_NUMBER = re.compile(rb"(?:\A|[:\[,])-?(?:[0-9]{16,}|[0-9]+[.eE])")


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
    except (ValueError, TypeError, UnicodeEncodeError):
        return exact(value)
    if (data and max(data) >= 0xF0) or _UNSAFE_NUMBER.search(data):
        return exact(value)
    return data
