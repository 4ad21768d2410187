"""The regulator's pages and API: alerts, the processing trail, records of processing.

Regulators and staff read every organisation's; an organisation reads its own records of
processing (a controller keeps them: Art. 30). Everything here is a read: no method of
this module writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import api_input
from marketplace import selectors as market
from marketplace.api import PeriodSerializer
from marketplace.exceptions import Forbidden, NotFound
from marketplace.models import Dataset, Organization
from portal import processing, regulator
from portal import selectors as access
from portal.ledger_api import IsAuditor


class TrailQuery(PeriodSerializer):
    dataset = api_input.Id(required=False, help_text="One dataset's trail.")
    consumer = api_input.Id(required=False, help_text="One consumer organisation's trail.")
    provider = api_input.Id(required=False, help_text="One provider organisation's trail.")


def _trail(q: dict[str, Any]) -> list[regulator.TrailRow]:
    since = datetime.combine(q["since"], time.min, tzinfo=UTC) if q.get("since") else None
    until = datetime.combine(q["until"], time.min, tzinfo=UTC) + timedelta(days=1) if q.get("until") else None
    return regulator.trail(
        dataset_id=q.get("dataset"),
        consumer_id=q.get("consumer"),
        provider_id=q.get("provider"),
        since=since,
        until=until,
    )


class TrailApi(APIView):
    """Read the processing trail: who used which data, when, under which right and purpose.

    One row per job and dataset: declared purpose and category, operations, rows touched, ε
    spent, the settlement and what it charged, and whether the category covers the
    operations; each row names its ledger entries. Regulators and staff only.
    """

    permission_classes = [permissions.IsAuthenticated, IsAuditor]

    @extend_schema(parameters=[TrailQuery], responses={200: dict})
    def get(self, request: Request) -> Response:
        rows = _trail(api_input.query(TrailQuery, request))
        return Response({"rows": [r.as_json() for r in rows]})


class AlertQuery(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(regulator.ALERT_KINDS), required=False)


class AlertsApi(APIView):
    """List the regulator's alerts: use beyond a declared purpose, a dataset near its ε budget,
    refused node replies and receipts, a witness that stopped co-signing. Regulators and staff only."""

    permission_classes = [permissions.IsAuthenticated, IsAuditor]

    @extend_schema(parameters=[AlertQuery], responses={200: dict})
    def get(self, request: Request) -> Response:
        kind = api_input.query(AlertQuery, request).get("kind")
        found = [a.as_json() for a in regulator.alerts() if kind is None or a.kind == kind]
        return Response({"alerts": found})


def _records_org(user: Any, slug: str) -> Organization:
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise NotFound("No such organisation.")
    if not access.is_auditor(user) and market.current_org(user) != org:
        raise Forbidden("Only the organisation itself and regulators read its records of processing.")
    return org


class RecordsApi(APIView):
    """Read an organisation's records of processing (GDPR Art. 30(1), PIPL Art. 55–56) as JSON.

    Each record points at the ledger entries it summarises and the document cites the newest
    signed checkpoint. The organisation itself, regulators and staff.
    """

    permission_classes = [permissions.IsAuthenticated]
    role_required = False

    @extend_schema(responses={200: dict})
    def get(self, request: Request, slug: str) -> Response:
        return Response(processing.records(_records_org(request.user, slug)))


class RecordsPdfApi(APIView):
    """Download an organisation's records of processing as PDF. The organisation itself, regulators and staff."""

    permission_classes = [permissions.IsAuthenticated]
    role_required = False

    @extend_schema(responses={(200, "application/pdf"): bytes})
    def get(self, request: Request, slug: str) -> HttpResponse:
        doc = processing.records(_records_org(request.user, slug))
        return _pdf(doc, slug)


def _pdf(doc: dict[str, Any], slug: str) -> HttpResponse:
    response = HttpResponse(processing.to_pdf(doc), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="records-of-processing-{slug}.pdf"'
    return response


def _auditor(request: HttpRequest) -> None:
    if not access.is_auditor(request.user):
        raise PermissionDenied


@login_required
def alerts_page(request: HttpRequest) -> HttpResponse:
    _auditor(request)
    found = regulator.alerts()
    counts = {k: sum(a.kind == k for a in found) for k in regulator.ALERT_KINDS}
    peak = max(counts.values(), default=0) or 1
    bars = [(k.replace("_", " "), str(n), round(100 * n / peak)) for k, n in counts.items()]
    return render(request, "ledger/alerts.html", {"alerts": found, "bars": bars})


@login_required
def records_page(request: HttpRequest) -> HttpResponse:
    """Every organisation's records (auditor) or one's own."""
    if access.is_auditor(request.user):
        orgs = list(Organization.objects.exclude(is_regulator=True).order_by("name"))
    else:
        own = market.current_org(request.user)
        orgs = [own] if own else []
    return render(request, "ledger/records.html", {"orgs": orgs})


@login_required
def records_download(request: HttpRequest, slug: str, form: str) -> HttpResponse:
    if form not in ("json", "pdf"):
        raise Http404("Records of processing are .json or .pdf.")
    org = get_object_or_404(Organization, slug=slug)
    if not access.is_auditor(request.user) and market.current_org(request.user) != org:
        raise PermissionDenied
    doc = processing.records(org)
    if form == "pdf":
        return _pdf(doc, slug)
    response = HttpResponse(json.dumps(doc, cls=DjangoJSONEncoder, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="records-of-processing-{slug}.json"'
    return response


def trail_context(request: HttpRequest) -> dict[str, Any]:
    """The audit page's trail: filters from the query string, errors by field."""
    s = TrailQuery(data={k: v for k, v in request.GET.items() if k in TrailQuery().fields and v})
    if not s.is_valid():
        return {"trail_errors": s.errors, "trail": [], "trail_on": False}
    q = dict(s.validated_data)
    on = bool(q.get("dataset") or q.get("consumer") or q.get("provider"))
    return {
        "trail": _trail(q) if on else [],
        "trail_on": on,
        "trail_dataset": Dataset.objects.filter(id=q.get("dataset")).first() if q.get("dataset") else None,
        "trail_consumer": Organization.objects.filter(id=q.get("consumer")).first() if q.get("consumer") else None,
        "trail_provider": Organization.objects.filter(id=q.get("provider")).first() if q.get("provider") else None,
    }
