"""``Idempotency-Key`` handling shared by every POST that creates money-bearing state.

A key is kept forever with the SHA-256 of the canonical request: the same key and body
return the first result, the same key with another body is a 409.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from marketplace.exceptions import Conflict, Invalid, invalid
from protocol.canonical import canonical, sha256_hex

M = TypeVar("M", bound=Model)
KEY = re.compile(r"[\x21-\x7e]{1,80}")  # the rule the schema states (marketplace.api_schema)


def lookup(queryset: QuerySet[M], *, key: str, request: dict[str, Any]) -> tuple[str, M | None]:
    """(request hash, the earlier result for this key or None); a different body raises."""
    if not KEY.fullmatch(key or ""):
        raise invalid("idempotency_key", "An Idempotency-Key of 1 to 80 printable ASCII characters is required.")
    try:
        request_hash = sha256_hex(canonical(request))
    except (TypeError, ValueError):  # RFC 8785 keeps only what every JSON reader reads exactly
        raise Invalid(
            "a number in the request is too large to keep exactly (at most 2^53 - 1)",
            fields={"body": ["A number in the request is too large to keep exactly (at most 2^53 - 1)."]},
        ) from None
    return request_hash, _same(queryset, key, request_hash)


def race_winner(queryset: QuerySet[M], *, key: str, request_hash: str) -> M | None:
    """After an IntegrityError on the key: the concurrent request's result, if it won."""
    return _same(queryset, key, request_hash)


def _same(queryset: QuerySet[M], key: str, request_hash: str) -> M | None:
    existing = queryset.filter(idempotency_key=key).first()
    if existing is not None and existing.request_hash != request_hash:  # type: ignore[attr-defined]
        raise Conflict("this Idempotency-Key was used for a different request", code="idempotency_conflict")
    return existing
