"""Ledger pages: entries with filters, an entry with its proof, checkpoints and cosignatures, audit trails."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.dateparse import parse_datetime

from ledger import selectors, services
from ledger.exceptions import LedgerError
from ledger.hubkey import hub_kid, hub_public_b64
from ledger.models import Checkpoint, LedgerEntry, Witness
from marketplace.models import Dataset, Organization
from portal import regulator_views
from portal import selectors as access


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@login_required
def entries(request: HttpRequest) -> HttpResponse:
    g = request.GET
    kind = g.get("kind") if g.get("kind") in LedgerEntry.Kind.values else None
    qs = selectors.entries_filter(
        access.search(
            access.visible_entries(request.user),
            organization_id=_int(g.get("organization")),
            purpose=(g.get("purpose") or "").strip()[:200] or None,
        ),
        kind=kind,
        dataset_id=_int(g.get("dataset")),
        consumer_id=_int(g.get("consumer")),
        provider_id=_int(g.get("provider")),
        since=parse_datetime(g.get("since") or "") if g.get("since") else None,
        until=parse_datetime(g.get("until") or "") if g.get("until") else None,
    ).order_by("-seq")
    page = Paginator(qs, 50).get_page(g.get("page"))
    words = access.describe(list(page.object_list))
    rows = [(e, words[e.seq]) for e in page.object_list]
    keep = g.copy()
    keep.pop("page", None)
    return render(
        request,
        "ledger/entries.html",
        {
            "page": page,
            "rows": rows,
            "kind": kind,
            "kinds": LedgerEntry.Kind.values,
            "organizations": Organization.objects.order_by("name").values_list("id", "name"),
            "datasets": Dataset.objects.order_by("name").values_list("id", "name"),
            "dataset": _int(g.get("dataset")),
            "organization": _int(g.get("organization")),
            "query": keep.urlencode(),
            "filters": g,
            "hub_kid": hub_kid(),
            "hub_key": hub_public_b64(),
            "auditor": access.is_auditor(request.user),
            "latest": selectors.checkpoint_latest(),
        },
    )


@login_required
def entry_detail(request: HttpRequest, seq: int) -> HttpResponse:
    entry = get_object_or_404(access.visible_entries(request.user), seq=seq)
    try:
        inclusion = selectors.inclusion(entry, _int(request.GET.get("tree_size")))
        error = ""
    except LedgerError as exc:
        inclusion, error = None, str(exc)
    context = {
        "e": entry,
        "words": access.describe([entry])[entry.seq],
        "inclusion": inclusion,
        "error": error,
        "batch": selectors.receipt_attestation(entry),
    }
    return render(request, "ledger/entry.html", context)


@login_required
def checkpoints(request: HttpRequest) -> HttpResponse:
    page = Paginator(Checkpoint.objects.order_by("-size").prefetch_related("cosignatures__witness"), 20).get_page(
        request.GET.get("page")
    )
    proof, error = None, ""
    size1, size2 = _int(request.GET.get("from")), _int(request.GET.get("to"))
    if size1 is not None and size2 is not None:
        try:
            proof = selectors.consistency(size1, size2)
        except LedgerError as exc:
            error = str(exc)
    notes = {cp.size: selectors.checkpoint_note(cp) for cp in page}
    return render(
        request,
        "ledger/checkpoints.html",
        {
            "page": page,
            "notes": notes,
            "vkey": services.log_vkey(),
            "witnesses": Witness.objects.order_by("name"),
            "proof": proof,
            "error": error,
        },
    )


@login_required
def audit(request: HttpRequest) -> HttpResponse:
    if not access.is_auditor(request.user):
        raise PermissionDenied
    return render(
        request,
        "ledger/audit.html",
        {
            "datasets": Dataset.objects.select_related("organization").order_by("name"),
            "consumers": Organization.objects.filter(is_consumer=True).order_by("name"),
            "providers": Organization.objects.filter(is_provider=True).order_by("name"),
            "query": request.GET.urlencode(),
            **regulator_views.trail_context(request),
        },
    )
