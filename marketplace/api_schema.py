"""The OpenAPI schema tells the truth: summaries, the error envelope on every operation with
each status it can answer, and the ``Idempotency-Key`` header with its rules.

:class:`UsufructSchema` is the project's drf-spectacular ``AutoSchema``. It adds to every
operation what a client author needs and what an operation's own ``extend_schema`` does
not repeat:

* a **summary** (the first sentence of the method's or view's docstring) and the rest as
  the description;
* the **error responses**, each in the one envelope ``{"error": {"code", "message",
  "fields"}}`` (component ``Error``): 400 where the operation takes input, 401 unless it is
  public, 403 where a role or ownership decides, 404 where the path names an object or the
  body refers to one, 413 and 415 where it takes a body, plus what a view declares in
  ``error_statuses`` (409 for conflicts, 429 for throttling).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework import permissions

IDEMPOTENCY_RULES = (
    "Required. 1 to 80 printable ASCII characters of your choice, unique per request you mean to make once. "
    "Repeating a request with the same key and the same body returns the first result "
    "(HTTP 200 instead of 201) and changes nothing; the same key with another body is "
    "refused with 409 `idempotency_conflict`. Keys are kept per organisation."
)
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description=IDEMPOTENCY_RULES,
    pattern=r"^[\x21-\x7e]{1,80}$",
)

_MESSAGES = {
    400: "The input is malformed or breaks a rule; `fields` names each field at fault.",
    401: "No valid credentials: send `Authorization: Token <key>` or a session cookie.",
    403: "Your organisation's role or ownership does not allow this operation.",
    404: "The object named in the path, or referred to by the body, does not exist for you.",
    409: "The request conflicts with the object's current state or with an earlier request.",
    413: "The request body is larger than the API accepts.",
    414: "The query string is longer than the API accepts (4,096 bytes).",
    415: "The request body is not JSON (`Content-Type: application/json`).",
    429: "Too many requests of this kind; the message says when to try again.",
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error has this shape, whatever the status.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "A stable machine-readable code, e.g. `invalid`."},
                "message": {"type": "string", "description": "One sentence for a person."},
                "fields": {
                    "type": "object",
                    "description": "Messages per input field (empty when no field is at fault).",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "fields"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}


_COMPONENTS: dict[str, dict[str, Any]] = {}


def component(name: str, schema: dict[str, Any]) -> dict[str, str]:
    """Register a hand-built schema as ``#/components/schemas/<name>``; returns its reference."""
    _COMPONENTS[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def add_components(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the hand-built components join the generated ones."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _COMPONENTS.items():
        schemas.setdefault(name, schema)
    for name, schema in schemas.items():  # every request body is a StrictSerializer: unknown fields are a 400
        if name.endswith("Request") and schema.get("type") == "object":
            schema["additionalProperties"] = False
    return result


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.match(r"(.+?[.:;])(\s|$)", text)
    return (m.group(1) if m else text).rstrip(".:;")


class UsufructSchema(AutoSchema):
    def get_summary(self) -> str | None:
        summary = super().get_summary()
        if summary:
            return summary
        return _first_sentence(self.get_description() or "") or None

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        component = ResolvedComponent(name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA)
        self.registry.register_on_missing(component)
        if "requestBody" in operation:  # every body this API takes has required fields
            operation["requestBody"]["required"] = True
        responses = operation.setdefault("responses", {})
        for status in sorted(self._error_statuses(operation)):
            responses.setdefault(
                str(status),
                {"description": _MESSAGES[status], "content": {"application/json": {"schema": component.ref}}},
            )
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> set[int]:
        view = self.view
        statuses: set[int] = set(getattr(view, "error_statuses", ()))
        has_body = "requestBody" in operation
        params = operation.get("parameters", [])
        if has_body or any(p.get("in") in ("query", "header") for p in params):
            statuses.add(400)
        if any(p.get("in") == "query" for p in params):
            statuses.add(414)
        if has_body:
            statuses |= {413, 415}
        if any(p.get("in") == "path" for p in params) or getattr(view, "refers_to_objects", False):
            statuses.add(404)
        perms = view.get_permissions() if hasattr(view, "get_permissions") else []
        if not all(isinstance(p, permissions.AllowAny) for p in perms):
            statuses.add(401)
            if getattr(view, "role_required", True):
                statuses.add(403)
        return statuses
