"""Input the API accepts, and nothing else: unknown fields are refused by name, integers are
bounded (and the schema says so), list pages are validated instead of silently defaulted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

# The largest integer every JSON reader keeps exactly (I-JSON, RFC 7493 §2.2), and so the
# largest an idempotent request may carry: its body is canonicalised with RFC 8785.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_ID = 2**31 - 1  # every primary key an API caller names fits (and nothing larger exists)
MAX_PAGE = 1000
MAX_OFFSET = 10**9


def _wrong_type(field: serializers.Field, value: Any) -> str | None:
    """What is wrong with a JSON value's type for ``field`` (DRF would coerce it), or None.

    DRF turns 0 into "0" for a text field, 1 into True for a boolean and "0.5" into a
    decimal for a number; a strict API refuses each, as its schema says."""
    if value is None:
        return None  # allow_null / required decide
    if isinstance(field, serializers.ListField):
        if isinstance(value, list):
            return next((w for w in (_wrong_type(field.child, v) for v in value) if w), None)
        return None
    if isinstance(field, serializers.ChoiceField | serializers.CharField):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be a whole number."
    if isinstance(field, serializers.DecimalField) and not field.coerce_to_string:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "Must be a number."
    return None


class StrictSerializer(serializers.Serializer):
    """A request body serializer that refuses the fields it does not know, naming each, and
    values of another JSON type than its schema states (instead of coercing them)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = {name: f for name, f in self.fields.items() if not f.read_only}
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                raise serializers.ValidationError({k: ["Unknown field."] for k in unknown[:20]})
            wrong = {k: [w] for k, f in known.items() if k in data and (w := _wrong_type(f, data[k]))}
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


class StrictInteger(serializers.IntegerField):
    """An integer that is a JSON integer (or, in a query string, digits): ``true``, ``1.5``,
    ``"1.0"`` and ``"  2"`` are refused, not coerced. Bounded by default to ``MAX_SAFE_INTEGER``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", MAX_SAFE_INTEGER)
        kwargs.setdefault("min_value", -MAX_SAFE_INTEGER)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool | float):
            self.fail("invalid")
        if isinstance(data, str):
            s = data[1:] if data.startswith("-") else data
            if not (s.isascii() and s.isdigit()) or len(s) > 16:
                self.fail("invalid")
        return super().to_internal_value(data)


def Id(**kwargs: Any) -> StrictInteger:  # noqa: N802 - a field factory, read like a field class
    """The id of an object the caller names (bounded like the ids that exist)."""
    kwargs.setdefault("min_value", 1)
    kwargs.setdefault("max_value", MAX_ID)
    return StrictInteger(**kwargs)


class StrictBoolean(serializers.BooleanField):
    """A JSON ``true`` or ``false``; 0, 1, "yes" and "true" are refused, not coerced."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field({"type": "boolean", "enum": [True]})
class MustBeTrue(serializers.BooleanField):
    """A box that must be ticked, e.g. accepting the offer's terms."""

    def to_internal_value(self, data: Any) -> bool:
        if data is not True:
            raise serializers.ValidationError("Must be true.")
        return True


class StrictDateField(serializers.DateField):
    """A date in ISO 8601 form only (``YYYY-MM-DD``); an empty value is refused."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


SCALARS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": 50,
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": 2000},
            {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            {"type": "boolean"},
        ]
    },
}


@extend_schema_field(SCALARS_SCHEMA)
class ScalarsField(serializers.DictField):
    """A flat object of up to 50 names to text, whole numbers (within ±2^53) or booleans:
    what a signed ledger entry can carry exactly (RFC 8785)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if len(value) > 50:
            raise serializers.ValidationError("At most 50 names.")
        for k, v in value.items():
            if isinstance(v, bool) or (isinstance(v, str) and len(v) <= 2000):
                continue
            if isinstance(v, int) and abs(v) <= MAX_SAFE_INTEGER:
                continue
            raise serializers.ValidationError(f"{k}: text (at most 2000 characters), a whole number or a boolean.")
        return value


def _storable(value: Any, depth: int = 0) -> bool:
    """Text PostgreSQL can store and UTF-8 can encode (no U+0000, no unpaired surrogate), at
    most 32 levels deep."""
    if depth > 32:
        return False
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return all(_storable(k, depth + 1) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v, depth + 1) for v in value)
    return True


class StrictJSONParser(JSONParser):
    """JSON bodies whose text can be stored and signed as it came: a string with U+0000 or an
    unpaired surrogate, or nesting deeper than 32 levels, is a 400 parse error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not _storable(data):
            raise ParseError("Text may not contain U+0000 or unpaired surrogates, nor nest deeper than 32 levels.")
        return data


class _PageQuery(serializers.Serializer):
    limit = StrictInteger(min_value=1, max_value=MAX_PAGE, required=False)
    offset = StrictInteger(min_value=0, max_value=MAX_OFFSET, required=False)


class StrictPagination(LimitOffsetPagination):
    """``limit`` 1–1000 (default 25) and ``offset`` 0–10⁹, each given at most once; anything
    else is a 400 naming the parameter (DRF's own silently falls back to the default)."""

    max_limit = MAX_PAGE

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        query(_PageQuery, request)  # a 400 naming the parameter; DRF then reads the same values
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for p in params:
            if p["name"] == self.limit_query_param:
                p["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": self.default_limit}
            elif p["name"] == self.offset_query_param:
                p["schema"] = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}
        return params


def query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Validate a view's query parameters with ``serializer_class``: each given at most once."""
    data: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for name in serializer_class().fields:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            errors[name] = ["Give this parameter once."]
        elif values:
            data[name] = values[0]
    s = serializer_class(data=data)
    if not s.is_valid():
        errors.update({k: [str(m) for m in v] for k, v in s.errors.items()})
    if errors:
        raise serializers.ValidationError(errors)
    return dict(s.validated_data)
