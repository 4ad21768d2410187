"""``Idempotency-Key`` handling shared by every POST that creates money-bearing state.

A key is kept forever with the SHA-256 of the canonical request: the same key and body
return the first result, the same key with another body is a 409.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from marketplace.exceptions import Conflict, invalid
from protocol.canonical import canonical, sha256_hex

M = TypeVar("M", bound=Model)


def lookup(queryset: QuerySet[M], *, key: str, request: dict[str, Any]) -> tuple[str, M | None]:
    """(request hash, the earlier result for this key or None); a different body raises."""
    if not key or len(key) > 100:
        raise invalid("idempotency_key", "An Idempotency-Key of 1 to 100 characters is required.")
    request_hash = sha256_hex(canonical(request))
    return request_hash, _same(queryset, key, request_hash)


def race_winner(queryset: QuerySet[M], *, key: str, request_hash: str) -> M | None:
    """After an IntegrityError on the key: the concurrent request's result, if it won."""
    return _same(queryset, key, request_hash)


def _same(queryset: QuerySet[M], key: str, request_hash: str) -> M | None:
    existing = queryset.filter(idempotency_key=key).first()
    if existing is not None and existing.request_hash != request_hash:  # type: ignore[attr-defined]
        raise Conflict("this Idempotency-Key was used for a different request")
    return existing
