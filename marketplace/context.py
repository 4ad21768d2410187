from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from marketplace import selectors


def current_org(request: HttpRequest) -> dict[str, Any]:
    """Template context: the signed-in user's organisation (``org``)."""
    return {"org": selectors.current_org(request.user)}
