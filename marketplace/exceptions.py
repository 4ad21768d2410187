"""Errors raised by services; ``api_errors`` maps them once to the JSON error shape."""

from __future__ import annotations

from ledger.exceptions import UsufructError


class ServiceError(UsufructError):
    """Base of the marketplace's and compute's service errors."""

    status = 400
    code = "invalid"


class Invalid(ServiceError):
    status = 400
    code = "invalid"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


def invalid(field: str, message: str) -> Invalid:
    return Invalid(message, fields={field: [message]})


def missing(field: str, message: str) -> NotFound:
    """The body names an object that does not exist (for the caller): a 404 naming the field."""
    return NotFound(message, fields={field: [message]})
