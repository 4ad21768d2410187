"""Issued documents through the pages and the API: list, issue on demand, read in every form.

Who sees what: a consumer its own invoices and credit notes, a provider its own statements
(an organisation that is both, both), a regulator every document and issues none.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import documents, invoicing, selectors
from marketplace.api_input import StrictSerializer
from marketplace.exceptions import Forbidden, ServiceError, invalid, missing
from marketplace.models import Document, Organization
from marketplace.money import Money

BUYER = (Document.Type.INVOICE, Document.Type.CREDIT_NOTE)


def visible(org: Organization | None) -> QuerySet[Document]:
    """The documents ``org`` may read."""
    qs = Document.objects.select_related("organization", "corrects").order_by("-issued_at", "-id")
    if org is None:
        return qs.none()
    if org.is_regulator:
        return qs
    mine = Q(pk__in=[])
    if org.is_consumer:
        mine |= Q(organization=org, type__in=BUYER)
    if org.is_provider:
        mine |= Q(organization=org, type=Document.Type.STATEMENT)
    return qs.filter(mine)


def _issue_for(org: Organization | None, period: str) -> list[Document]:
    if org is None or org.is_regulator or not (org.is_consumer or org.is_provider):
        raise Forbidden("only consumers and providers issue their documents; a regulator reads them")
    return invoicing.documents_issue(period=period, organization=org)


def _get(org: Organization | None, number: str) -> Document:
    doc = visible(org).filter(number=number).first()
    if doc is None:
        raise missing("number", "No such document of yours.")
    return doc


def download(doc: Document, form: str) -> HttpResponse:
    """The document as issued, in ``form`` (json, csv or pdf), as an attachment."""
    if form == "json":
        response: HttpResponse = JsonResponse(doc.body, json_dumps_params={"indent": 1})
    elif form == "csv":
        response = HttpResponse(documents.to_csv(doc.body), content_type="text/csv")
    elif form == "pdf":
        response = HttpResponse(documents.to_pdf(doc.body), content_type="application/pdf")
    else:
        raise missing("format", "A document comes as json, csv or pdf.")
    response["Content-Disposition"] = f'attachment; filename="{doc.number}.{form}"'
    return response


# --- pages -------------------------------------------------------------------------------------


@login_required
def documents_page(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    if org is None or not (org.is_consumer or org.is_provider or org.is_regulator):
        raise Forbidden("this page is for consumers (invoices), providers (statements) and regulators")
    docs = list(visible(org)[:200])
    for d in docs:
        d.total = Money(d.total_minor, d.currency)  # type: ignore[attr-defined]
    return render(
        request,
        "marketplace/documents.html",
        {"documents": docs, "period": timezone.now().strftime("%Y-%m"), "can_issue": not org.is_regulator},
    )


@login_required
@require_POST
def documents_issue_page(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    try:
        issued = _issue_for(org, request.POST.get("period", ""))
    except ServiceError as exc:
        detail = "; ".join(m for msgs in exc.fields.values() for m in msgs) or exc.message
        messages.error(request, f"Nothing issued: {detail}")
        return redirect("documents")
    if issued:
        messages.success(request, "Issued " + ", ".join(d.number for d in issued) + ".")
    else:
        messages.info(request, "Nothing new to issue for that period: every charge is on a document already.")
    return redirect("documents")


@login_required
def document_page(request: HttpRequest, number: str) -> HttpResponse:
    org = selectors.current_org(request.user)
    doc = _get(org, number)
    body = doc.body
    cur = body["currency"]
    lines = [{**li, "amount": Money(li["amount_minor"], cur)} for li in body["lines"]]
    totals = [(label, Money(minor, cur)) for label, minor in documents.totals(body)]
    return render(
        request,
        "marketplace/document.html",
        {"doc": doc, "body": body, "lines": lines, "totals": totals, "credit_notes": doc.credit_notes.all()},
    )


@login_required
def document_download(request: HttpRequest, number: str, form: str) -> HttpResponse:
    return download(_get(selectors.current_org(request.user), number), form)


# --- API ---------------------------------------------------------------------------------------


class DocumentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    organization = serializers.CharField(source="organization.name")
    corrects = serializers.CharField(source="corrects.number", allow_null=True, default=None)
    period = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["number", "type", "organization", "period", "currency", "total_minor", "issued_at",
                  "checkpoint_size", "digest", "ledger_seq", "corrects", "links"]  # fmt: skip

    def get_period(self, doc: Document) -> dict[str, str]:
        return {"from": doc.period_start.isoformat(), "to": doc.period_end.isoformat()}

    def get_links(self, doc: Document) -> dict[str, str]:
        base = f"/api/documents/{doc.number}/"
        return {"json": base, "csv": f"{base}csv/", "pdf": f"{base}pdf/"}


class IssuedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    issued = DocumentSerializer(many=True, help_text="What this request issued; empty when nothing was due.")


class IssueSerializer(StrictSerializer):
    period = serializers.RegexField(
        r"^(19|20)\d\d-(0[1-9]|1[0-2])$", help_text="The month to issue for, YYYY-MM (1900-01 to 2099-12)."
    )


class DocumentListIssue(generics.ListAPIView):  # type: ignore[type-arg]
    """List the documents you may read: your invoices and credit notes (consumers), your
    statements (providers), all of them (regulators). Newest first.

    ``POST`` issues what is due for a month, up to now, for your organisation: lines are the
    charged ledger entries not yet on a document, so a repeat issues only what is new (200 with
    an empty list when there is nothing). A regulator reads and issues nothing (403)."""

    serializer_class = DocumentSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self) -> QuerySet[Document]:
        qs = visible(selectors.current_org(self.request.user))
        kind = self.request.query_params.get("type")
        if kind is not None and kind not in Document.Type.values:
            raise invalid("type", f"A type is one of {', '.join(Document.Type.values)}.")
        return qs.filter(type=kind) if kind else qs

    @extend_schema(parameters=[OpenApiParameter("type", enum=[t.value for t in Document.Type], required=False)])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=IssueSerializer, responses={201: IssuedSerializer, 200: IssuedSerializer})
    def post(self, request: Request) -> Response:
        s = IssueSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        issued = _issue_for(selectors.current_org(request.user), s.validated_data["period"])
        return Response({"issued": DocumentSerializer(issued, many=True).data}, status=201 if issued else 200)


class DocumentJson(APIView):
    """One document in its machine form (``usufruct/invoice/v1``, see docs/invoices.md): what
    ``python -m ledger.verify`` checks offline."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request: Request, number: str) -> HttpResponse:
        return download(_get(selectors.current_org(request.user), number), "json")


class DocumentFile(APIView):
    """One document as CSV or PDF, rendered from its JSON form as issued."""

    permission_classes = [permissions.IsAuthenticated]
    form = "pdf"

    @extend_schema(responses={200: {"type": "string", "format": "binary"}})
    def get(self, request: Request, number: str) -> HttpResponse:
        return download(_get(selectors.current_org(request.user), number), self.form)
