from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ledger.api import visible_entries
from ledger.hubkey import hub_kid, hub_public_b64


@login_required
def entries(request: HttpRequest) -> HttpResponse:
    qs = visible_entries(request.user).order_by("-seq")
    kind = request.GET.get("kind")
    if kind:
        qs = qs.filter(kind=kind)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(
        request, "ledger/entries.html", {"page": page, "kind": kind, "hub_kid": hub_kid(), "hub_key": hub_public_b64()}
    )
