"""Marketplace REST API: thin views, one per operation; writes go through services.

Each method's docstring is its operation's summary (first sentence) and description in the
schema (``marketplace.api_schema``); ``error_statuses`` adds the conflicts and throttles a
view can answer besides the errors every operation of its kind has.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django_filters import CharFilter
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger.hubkey import hub_kid, hub_public_b64
from marketplace import accounts, api_input, reports, rights, selectors, services, spending
from marketplace.api_schema import IDEMPOTENCY
from marketplace.exceptions import Forbidden, missing
from marketplace.filters import DatasetFilter
from marketplace.models import BudgetAlert, Dataset, Node, Order, PricePlan, UsageRight
from marketplace.money import CURRENCIES
from marketplace.permissions import IsConsumer, IsProvider, RunsNodes
from marketplace.serializers import (
    DatasetSerializer,
    NodeCreatedSerializer,
    NodeCreateSerializer,
    NodeSerializer,
    OfferCreateSerializer,
    OfferSerializer,
    OrderCreateSerializer,
    OrderSerializer,
    RevokeSerializer,
    UsageRightSerializer,
)

__all__ = ["IDEMPOTENCY", "org_of"]


def org_of(request: Request) -> Any:
    org = selectors.current_org(request.user)
    if org is None:
        raise Forbidden("your account belongs to no organisation")
    return org


class DatasetList(generics.ListAPIView):
    """List the catalog: every listed dataset with its published offers and price plans.

    Public. Search with ``q`` (every word must match name or description), filter by
    provider, tag, operation, plan kind and price (in minor units of the plan's currency),
    and sort.
    """

    serializer_class = DatasetSerializer
    permission_classes = [permissions.AllowAny]
    filterset_class = DatasetFilter

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.catalog()

    def filter_queryset(self, queryset: QuerySet[Dataset]) -> QuerySet[Dataset]:
        # The catalog page's form sends "" for a filter left open; the API takes a value or
        # nothing, each at most once, as its schema says.
        errors: dict[str, list[str]] = {}
        for name, f in DatasetFilter.base_filters.items():
            values = self.request.query_params.getlist(name)
            if len(values) > 1:
                errors[name] = ["Give this parameter once."]
            elif values == [""] and not isinstance(f, CharFilter):
                errors[name] = ["Give a value, or leave the parameter out."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().filter_queryset(queryset)


class DatasetDetail(generics.RetrieveAPIView):
    """Show one listed dataset: its manifest columns, attestation and published offers. Public."""

    serializer_class = DatasetSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.catalog()


class OfferCreate(APIView):
    permission_classes = [permissions.IsAuthenticated, IsProvider]
    refers_to_objects = True

    @extend_schema(request=OfferCreateSerializer, responses={201: OfferSerializer})
    def post(self, request: Request) -> Response:
        """Publish an offer on one of your datasets: operations, quota, duration and price plans.

        A new offer on a dataset that already has one is its next version; rights already
        sold keep the terms they were sold with. Provider admins only.
        """
        s = OfferCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        data = dict(s.validated_data)
        dataset = Dataset.objects.filter(id=data.pop("dataset")).first()
        if dataset is None:
            raise missing("dataset", "No such dataset.")
        if "plans" in data:
            data["plans"] = [dict(p) for p in data["plans"]]
        offer = services.offer_publish(
            organization=accounts.require_provider_admin(request.user), dataset=dataset, **data
        )
        return Response(OfferSerializer(offer).data, status=status.HTTP_201_CREATED)


class OfferRetire(APIView):
    """Retire one of your offers: it leaves the catalog; rights already sold keep their terms."""

    permission_classes = [permissions.IsAuthenticated, IsProvider]
    error_statuses = (409,)

    @extend_schema(request=None, responses={200: OfferSerializer})
    def post(self, request: Request, pk: int) -> Response:
        offer = services.offer_retire(organization=accounts.require_provider_admin(request.user), offer_id=pk)
        return Response(OfferSerializer(offer).data)


class OrderListCreate(APIView):
    permission_classes = [permissions.IsAuthenticated, IsConsumer]
    error_statuses = (409,)
    refers_to_objects = True

    @extend_schema(responses=OrderSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List your organisation's orders, newest first, each with the usage right it created."""
        orders = Order.objects.filter(consumer=org_of(request)).select_related("right__dataset")
        return Response(OrderSerializer(orders, many=True).data)

    @extend_schema(
        request=OrderCreateSerializer, responses={201: OrderSerializer, 200: OrderSerializer}, parameters=[IDEMPOTENCY]
    )
    def post(self, request: Request) -> Response:
        """Buy a usage right on a published offer: compute-only use, for a declared purpose.

        The order copies the offer's plan and terms. Prepaid plans are charged now, postpaid
        ones as jobs deliver. If you already hold an active right on the dataset, the order
        is refused with 409 ``already_held`` unless ``again`` is true.
        """
        s = OrderCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        order, created = services.order_place(
            consumer=org_of(request),
            buyer=request.user,
            offer_id=s.validated_data["offer"],
            plan_id=s.validated_data.get("plan"),
            purpose=s.validated_data["purpose"],
            purpose_category=s.validated_data["purpose_category"],
            accept_terms=s.validated_data["accept_terms"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            again=s.validated_data["again"],
        )
        return Response(OrderSerializer(order).data, status=201 if created else 200)


class RightFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=UsageRight.Status.choices, required=False)
    dataset = api_input.Id(required=False, help_text="Only rights on this dataset.")


class RightList(generics.ListAPIView):
    """List the usage rights your organisation holds, with quota, privacy budget and expiry."""

    serializer_class = UsageRightSerializer
    permission_classes = [permissions.IsAuthenticated, IsConsumer]
    filter_backends: list[Any] = []

    @extend_schema(parameters=[RightFilter])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[UsageRight]:
        if getattr(self, "swagger_fake_view", False):
            return UsageRight.objects.none()
        rights = UsageRight.objects.filter(consumer=org_of(self.request)).select_related("dataset")
        return rights.filter(**api_input.query(RightFilter, self.request)).order_by("id")


class RightRevoke(APIView):
    """Revoke a right on your dataset: unused prepaid units are refunded, its running jobs cancelled.

    The revocation and the reason are on the ledger; the right's model parts are deleted by
    the nodes that hold them. Provider admins only.
    """

    permission_classes = [permissions.IsAuthenticated, IsProvider]
    error_statuses = (409,)

    @extend_schema(request=RevokeSerializer, responses={200: UsageRightSerializer})
    def post(self, request: Request, pk: int) -> Response:
        s = RevokeSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        right = rights.right_revoke(
            provider=accounts.require_admin(request.user), right_id=pk, reason=s.validated_data["reason"]
        )
        return Response(UsageRightSerializer(right).data)


class OrdersReceived(generics.ListAPIView):
    """List the orders placed on your offers, newest first, with the rights they created."""

    serializer_class = OrderSerializer
    permission_classes = [permissions.IsAuthenticated, IsProvider]

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        orders = Order.objects.filter(offer__dataset__organization=org_of(self.request))
        return orders.select_related("right__dataset").order_by("-created_at", "-id")


class NodeListCreate(APIView):
    permission_classes = [permissions.IsAuthenticated, RunsNodes]
    error_statuses = (409,)

    @extend_schema(responses=NodeSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List your organisation's nodes: status, key id, public key and queue."""
        nodes = Node.objects.filter(organization=org_of(request)).order_by("slug")
        return Response(NodeSerializer(nodes, many=True).data)

    @extend_schema(request=NodeCreateSerializer, responses={201: NodeCreatedSerializer})
    def post(self, request: Request) -> Response:
        """Create a node awaiting enrolment and return its one-time enrolment token.

        The token is shown once; the node enrols its own Ed25519 key with it
        (``python -m compute.node enrol``). At most five nodes may await enrolment at a
        time (409 ``too_many_pending_nodes``). Organisation admins only.
        """
        s = NodeCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        node, token = services.node_create(
            organization=accounts.require_admin(request.user), slug=s.validated_data["slug"]
        )
        return Response({**NodeSerializer(node).data, "enrolment_token": token}, status=201)


class NodeRekey(APIView):
    """Issue a new one-time enrolment token for one of your nodes, to enrol a fresh key with it."""

    permission_classes = [permissions.IsAuthenticated, RunsNodes]

    @extend_schema(request=None, responses={200: NodeCreatedSerializer})
    def post(self, request: Request, slug: str) -> Response:
        node, token = services.node_rekey(organization=accounts.require_admin(request.user), slug=slug)
        return Response({**NodeSerializer(node).data, "enrolment_token": token})


class HubKeySerializer(serializers.Serializer):
    kid = serializers.CharField()
    public_key = serializers.CharField(help_text="Base64 of the raw 32-byte Ed25519 public key.")
    algorithm = serializers.ChoiceField(choices=["Ed25519"])


class HubKey(APIView):
    """Show the hub's Ed25519 public key: nodes pin it to verify the steps they receive. Public."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: HubKeySerializer})
    def get(self, request: Request) -> Response:
        return Response({"kid": hub_kid(), "public_key": hub_public_b64(), "algorithm": "Ed25519"})


class PeriodSerializer(serializers.Serializer):
    since = api_input.StrictDateField(required=False, help_text="First UTC day included.")
    until = api_input.StrictDateField(required=False, help_text="Last UTC day included (not before since).")

    def validate(self, attrs):  # type: ignore[no-untyped-def]
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["The end of the period is before its start."]})
        return attrs


class MoneySerializer(serializers.Serializer):
    amount_minor = serializers.IntegerField(help_text="Integer minor units (e.g. cents).")
    currency = serializers.CharField(help_text="ISO 4217 code.")
    display = serializers.CharField(help_text="For people, e.g. €12.50.")


class StatementLineSerializer(serializers.Serializer):
    ledger_seq = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["purchase", "usage", "refund"])
    plan = serializers.CharField()
    at = serializers.DateTimeField()
    dataset = serializers.CharField()
    job = serializers.CharField()
    right = serializers.IntegerField()
    rows = serializers.IntegerField()
    records = serializers.IntegerField()
    usage_seqs = serializers.ListField(child=serializers.IntegerField())
    counterparty = serializers.CharField()
    amount = MoneySerializer(allow_null=True, help_text="Null for a line this statement cannot price.")
    problem = serializers.CharField(help_text="Why a line is unpriced (empty otherwise).")


class BillSerializer(serializers.Serializer):
    lines = StatementLineSerializer(many=True)
    totals = MoneySerializer(many=True)
    by_dataset = serializers.DictField(child=MoneySerializer(many=True))
    by_counterparty = serializers.DictField(child=MoneySerializer(many=True))
    by_plan = serializers.DictField(child=MoneySerializer(many=True))
    by_month = serializers.DictField(child=MoneySerializer(many=True))
    by_right = serializers.DictField(child=MoneySerializer(many=True), help_text="Keyed '#<right> <dataset>'.")
    group = serializers.ChoiceField(choices=list(selectors.GROUPS))
    series = serializers.DictField(
        child=MoneySerializer(many=True), help_text="By day (2026-12-03), ISO week (2026-W49) or month (2026-12)."
    )
    checkpoint_size = serializers.IntegerField(allow_null=True)
    ledger_seqs = serializers.ListField(child=serializers.IntegerField())


class RevenueSerializer(BillSerializer):
    platform_fees = MoneySerializer(many=True)
    nets = MoneySerializer(many=True)


class ReportQuerySerializer(PeriodSerializer):
    dataset = api_input.Id(required=False, help_text="Only this dataset's lines.")
    counterparty = api_input.Id(
        required=False, help_text="Only this organisation's lines (a provider on a bill, a consumer on revenue)."
    )
    plan = serializers.ChoiceField(required=False, choices=PricePlan.Kind.values, help_text="Only this plan kind.")
    group = serializers.ChoiceField(
        required=False, choices=list(selectors.GROUPS), default="month", help_text="The series' buckets."
    )


def _period(request: Request) -> dict[str, Any]:
    q = api_input.query(ReportQuerySerializer, request)
    return {
        "since": q.get("since"),
        "until": q.get("until"),
        "dataset": q.get("dataset"),
        "counterparty": q.get("counterparty"),
        "plan": q.get("plan"),
        "group": q.get("group") or "month",
    }


class Bill(APIView):
    """Show your running bill, read from the ledger: purchases, delivered jobs' settlements, refunds.

    Totals per currency, and by dataset, provider, plan and month; every line names the
    ledger entry it comes from, and the smallest signed checkpoint covering them all.
    Consumers only.
    """

    permission_classes = [permissions.IsAuthenticated, IsConsumer]

    @extend_schema(parameters=[ReportQuerySerializer], responses={200: BillSerializer})
    def get(self, request: Request) -> Response:
        statement = _statement_json(selectors.consumer_bill(org_of(request), **_period(request)))
        for provider_side in ("platform_fees", "nets"):  # what the providers keep is theirs to see
            statement.pop(provider_side)
        return Response(statement)


class Revenue(APIView):
    """Show your revenue, read from the ledger: gross, the platform's fee and your net, per currency.

    By dataset, consumer, plan and month; every line names its ledger entry. Providers only.
    """

    permission_classes = [permissions.IsAuthenticated, IsProvider]

    @extend_schema(parameters=[ReportQuerySerializer], responses={200: RevenueSerializer})
    def get(self, request: Request) -> Response:
        return Response(_statement_json(selectors.provider_revenue(org_of(request), **_period(request))))


def _money(m: Any) -> dict[str, Any]:
    return {"amount_minor": m.minor, "currency": m.currency, "display": m.format()}


def _statement_json(st: selectors.Statement) -> dict[str, Any]:
    return {
        "lines": [
            {
                "ledger_seq": li.seq,
                "kind": li.kind,
                "plan": li.plan,
                "at": li.at,
                "dataset": li.dataset,
                "job": li.job,
                "right": li.right,
                "rows": li.rows,
                "records": li.records,
                "usage_seqs": li.usage_seqs,
                "counterparty": li.counterparty,
                "amount": _money(li.amount) if li.amount is not None else None,
                "problem": li.problem,
            }
            for li in st.lines
        ],
        "totals": [_money(m) for m in st.totals.values()],
        "platform_fees": [_money(m) for m in st.fees.values()],
        "nets": [_money(m) for m in st.nets.values()],
        "by_dataset": {k: [_money(m) for m in v.values()] for k, v in st.by_dataset.items()},
        "by_counterparty": {k: [_money(m) for m in v.values()] for k, v in st.by_counterparty.items()},
        "by_plan": {k: [_money(m) for m in v.values()] for k, v in st.by_plan.items()},
        "by_month": {k: [_money(m) for m in v.values()] for k, v in st.by_month.items()},
        "by_right": {k: [_money(m) for m in v.values()] for k, v in st.by_right.items()},
        "group": st.group,
        "series": {k: [_money(m) for m in v.values()] for k, v in sorted(st.series.items())},
        "checkpoint_size": st.checkpoint_size,
        "ledger_seqs": st.ledger_seqs,
    }


class ReportExport(APIView):
    """Download your bill (consumers) or revenue report (providers) as CSV or XLSX.

    The same filters as the JSON report. CSV has one row per line; the XLSX workbook adds a
    summary, the time series and the rankings by dataset, counterparty, plan and right.
    Amounts are integer minor units beside their currency.
    """

    side = "consumer"
    permission_classes = [permissions.IsAuthenticated, IsConsumer]

    @extend_schema(parameters=[ReportQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, form: str) -> HttpResponse:
        if form not in ("csv", "xlsx"):
            raise missing("form", "Exports are .csv or .xlsx.")
        return reports.export(org_of(request), side=self.side, form=form, filters=_period(request))


class RevenueExport(ReportExport):
    side = "provider"
    permission_classes = [permissions.IsAuthenticated, IsProvider]


class BudgetAlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = BudgetAlert
        fields = ["id", "currency", "limit_minor", "email", "created_at", "notified_period", "notified_at"]
        read_only_fields = ["id", "created_at", "notified_period", "notified_at"]


class BudgetAlertInput(api_input.StrictSerializer):
    currency = serializers.ChoiceField(choices=list(CURRENCIES))
    limit_minor = api_input.StrictInteger(min_value=1, max_value=10**15, help_text="Monthly limit, minor units.")
    email = serializers.EmailField()


class BudgetAlertList(APIView):
    """List your budget alerts, or set one (one per currency; setting it again changes it).

    An alert emails its address the first time a UTC month's charges reach the limit; it is
    checked when set and then by the hub's beat every few minutes. Consumers only.
    """

    permission_classes = [permissions.IsAuthenticated, IsConsumer]

    @extend_schema(responses={200: BudgetAlertSerializer(many=True)})
    def get(self, request: Request) -> Response:
        alerts = BudgetAlert.objects.filter(organization=org_of(request)).order_by("currency")
        return Response(BudgetAlertSerializer(alerts, many=True).data)

    @extend_schema(request=BudgetAlertInput, responses={200: BudgetAlertSerializer})
    def post(self, request: Request) -> Response:
        s = BudgetAlertInput(data=request.data)
        s.is_valid(raise_exception=True)
        alert = spending.alert_set(organization=org_of(request), user=request.user, **s.validated_data)
        return Response(BudgetAlertSerializer(alert).data)


class BudgetAlertDetail(APIView):
    """Remove one of your budget alerts. Consumers only."""

    permission_classes = [permissions.IsAuthenticated, IsConsumer]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        spending.alert_delete(organization=org_of(request), alert_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
