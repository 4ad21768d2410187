"""Marketplace REST API: thin views, one per operation; writes go through services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger.hubkey import hub_kid, hub_public_b64
from marketplace import accounts, rights, selectors, services
from marketplace.exceptions import Forbidden, invalid
from marketplace.filters import DatasetFilter
from marketplace.models import Dataset, Node, Order, UsageRight
from marketplace.serializers import (
    DatasetSerializer,
    NodeSerializer,
    OfferCreateSerializer,
    OfferSerializer,
    OrderCreateSerializer,
    OrderSerializer,
    RevokeSerializer,
    UsageRightSerializer,
)

IDEMPOTENCY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)


def org_of(request: Request) -> Any:
    org = selectors.current_org(request.user)
    if org is None:
        raise Forbidden("your account belongs to no organisation")
    return org


class DatasetList(generics.ListAPIView):
    """The catalog: every listed dataset with its published offers."""

    serializer_class = DatasetSerializer
    permission_classes = [permissions.AllowAny]
    filterset_class = DatasetFilter

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.catalog()


class DatasetDetail(generics.RetrieveAPIView):
    serializer_class = DatasetSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.catalog()


class OfferCreate(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=OfferCreateSerializer, responses={201: OfferSerializer})
    def post(self, request: Request) -> Response:
        s = OfferCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        data = dict(s.validated_data)
        dataset = Dataset.objects.filter(id=data.pop("dataset")).first()
        if dataset is None:
            raise invalid("dataset", "No such dataset.")
        if "plans" in data:
            data["plans"] = [dict(p) for p in data["plans"]]
        offer = services.offer_publish(
            organization=accounts.require_provider_admin(request.user), dataset=dataset, **data
        )
        return Response(OfferSerializer(offer).data, status=status.HTTP_201_CREATED)


class OfferRetire(APIView):
    """The provider withdraws an offer from sale (rights already sold keep their terms)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={200: OfferSerializer})
    def post(self, request: Request, pk: int) -> Response:
        offer = services.offer_retire(organization=accounts.require_provider_admin(request.user), offer_id=pk)
        return Response(OfferSerializer(offer).data)


class OrderListCreate(APIView):
    """A consumer's orders; POST buys a usage right (``Idempotency-Key`` required)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=OrderSerializer(many=True))
    def get(self, request: Request) -> Response:
        orders = Order.objects.filter(consumer=org_of(request)).select_related("right__dataset")
        return Response(OrderSerializer(orders, many=True).data)

    @extend_schema(
        request=OrderCreateSerializer, responses={201: OrderSerializer, 200: OrderSerializer}, parameters=[IDEMPOTENCY]
    )
    def post(self, request: Request) -> Response:
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
        )
        return Response(OrderSerializer(order).data, status=201 if created else 200)


class RightList(generics.ListAPIView):
    serializer_class = UsageRightSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["status", "dataset"]

    def get_queryset(self) -> QuerySet[UsageRight]:
        if getattr(self, "swagger_fake_view", False):
            return UsageRight.objects.none()
        return UsageRight.objects.filter(consumer=org_of(self.request)).select_related("dataset")


class RightRevoke(APIView):
    """The provider revokes a right on its dataset: refunds unused prepaid units, cancels its jobs."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=RevokeSerializer, responses={200: UsageRightSerializer})
    def post(self, request: Request, pk: int) -> Response:
        s = RevokeSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        right = rights.right_revoke(
            provider=accounts.require_admin(request.user), right_id=pk, reason=s.validated_data["reason"]
        )
        return Response(UsageRightSerializer(right).data)


class OrdersReceived(generics.ListAPIView):
    """Orders placed on the provider's offers, with the rights they created."""

    serializer_class = OrderSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        return Order.objects.filter(offer__dataset__organization=org_of(self.request)).select_related("right__dataset")


class NodeListCreate(APIView):
    """Your organisation's nodes; POST creates one and returns its one-time enrolment token."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=NodeSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(NodeSerializer(Node.objects.filter(organization=org_of(request)), many=True).data)

    @extend_schema(request=NodeSerializer, responses={201: NodeSerializer})
    def post(self, request: Request) -> Response:
        s = NodeSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        node, token = services.node_create(
            organization=accounts.require_admin(request.user), slug=s.validated_data["slug"]
        )
        return Response({**NodeSerializer(node).data, "enrolment_token": token}, status=201)


class NodeRekey(APIView):
    """A new one-time enrolment token for an existing node: it enrols a fresh key with it."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={200: NodeSerializer})
    def post(self, request: Request, slug: str) -> Response:
        node, token = services.node_rekey(organization=accounts.require_admin(request.user), slug=slug)
        return Response({**NodeSerializer(node).data, "enrolment_token": token})


class HubKey(APIView):
    """The hub's Ed25519 public key: nodes pin it to verify the steps they receive."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"kid": hub_kid(), "public_key": hub_public_b64(), "algorithm": "Ed25519"})


class PeriodSerializer(serializers.Serializer):
    since = serializers.DateField(required=False, help_text="First UTC day included.")
    until = serializers.DateField(required=False, help_text="Last UTC day included.")

    def validate(self, attrs):  # type: ignore[no-untyped-def]
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["The end of the period is before its start."]})
        return attrs


def _period(request: Request) -> dict[str, Any]:
    s = PeriodSerializer(data=request.query_params)
    s.is_valid(raise_exception=True)
    return {"since": s.validated_data.get("since"), "until": s.validated_data.get("until")}


class Bill(APIView):
    """The consumer's running bill from ledger entries: purchases, settlements of delivered jobs, refunds."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(parameters=[PeriodSerializer], responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(_statement_json(selectors.consumer_bill(org_of(request), **_period(request))))


class Revenue(APIView):
    """The provider's revenue from ledger settlements, purchases and refunds: gross, platform fee, net."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(parameters=[PeriodSerializer], responses={200: dict})
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
        "checkpoint_size": st.checkpoint_size,
        "ledger_seqs": st.ledger_seqs,
    }
