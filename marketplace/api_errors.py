"""One JSON error shape for the whole API: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from ledger.exceptions import UsufructError


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": [str(m) for m in detail]}
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, UsufructError):  # every app's errors, ledger's included: one mapping
        body = {"code": exc.code, "message": exc.message or str(exc), "fields": exc.fields}
        return Response({"error": body}, status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        body = {"code": "too_large", "message": "The request body is larger than the API accepts.", "fields": {}}
        return Response({"error": body}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "Invalid input."
        code = "invalid"
    else:
        detail = getattr(exc, "detail", "")
        fields = {}
        message = str(detail)
        code = getattr(detail, "code", None) or "error"
        if response.status_code == status.HTTP_401_UNAUTHORIZED:
            code = "not_authenticated"
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response
