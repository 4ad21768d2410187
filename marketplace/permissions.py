"""Roles decide what exists: each API operation names the organisation kind it is for."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework import permissions
from rest_framework.request import Request

from marketplace import selectors
from marketplace.exceptions import Forbidden


class _OrgKind(permissions.BasePermission):
    kind = ""
    message = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        org = selectors.current_org(request.user)
        return bool(org is not None and getattr(org, f"is_{self.kind}"))


class IsConsumer(_OrgKind):
    kind = "consumer"
    message = "This is for consumer organisations (those that buy usage rights)."


class IsProvider(_OrgKind):
    kind = "provider"
    message = "This is for provider organisations (those that list datasets)."


class RunsNodes(permissions.BasePermission):
    message = "Only provider and consumer organisations run nodes."

    def has_permission(self, request: Request, view: Any) -> bool:
        org = selectors.current_org(request.user)
        return bool(org is not None and (org.is_provider or org.is_consumer))


_PAGE_MESSAGES = {
    "consumer": "this page is for consumer organisations, which buy usage rights and run jobs",
    "provider": "this page is for provider organisations, which list datasets and sell usage rights",
}


def page_for(*kinds: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A page for organisations of one of ``kinds``; anyone else gets a clear 403 page
    (``error.html``, through ``ServiceErrorPages``) instead of an empty one."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            org = selectors.current_org(request.user)
            if org is None or not any(getattr(org, f"is_{k}") for k in kinds):
                raise Forbidden(" or ".join(_PAGE_MESSAGES[k] for k in kinds))
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
