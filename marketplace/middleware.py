"""Pages: a service refusal (403/404/409) becomes a readable error page, not a 500.
The API: every error is JSON in the one shape, whatever answered it and whatever ``DEBUG`` says."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from marketplace.exceptions import ServiceError

_CODES = {
    400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
    414: "uri_too_long",
}  # fmt: skip
MAX_QUERY = 4096  # bytes of query string an API request may carry (gunicorn reads request lines up to 8190)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") and not request.path.startswith(("/api/docs/", "/api/redoc/"))


class ApiErrorsAreJson:
    """An API response with an error status that is not JSON (Django's 404 for an unknown
    URL, its 400 for a suspicious request, its 500 page or the debug page) is replaced by the
    one JSON error shape. Errors are logged before this runs, so nothing is hidden from the log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _is_api(request) and len(request.META.get("QUERY_STRING", "")) > MAX_QUERY:
            message = f"The query string is longer than the API accepts ({MAX_QUERY:,} bytes)."
            return JsonResponse({"error": {"code": "uri_too_long", "message": message, "fields": {}}}, status=414)
        response = self.get_response(request)
        if response.status_code < 400 or not _is_api(request):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        code = _CODES.get(status, "internal_error" if status >= 500 else "error")
        message = "The server could not answer this request; it has been logged." if status >= 500 else phrase
        replaced = JsonResponse({"error": {"code": code, "message": message, "fields": {}}}, status=status)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replaced[header] = response[header]
        return replaced


class ServiceErrorPages:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ServiceError) and not request.path.startswith("/api/"):
            return render(request, "error.html", {"error": exception}, status=exception.status)
        return None
