from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.api_input import Id, MustBeTrue, StrictBoolean, StrictInteger, StrictSerializer
from marketplace.models import Dataset, Node, Offer, Order, PricePlan, UsageRight
from protocol.operations import OPERATIONS


class PricePlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = PricePlan
        fields = ["id", "kind", "amount_minor", "currency", "billing", "included_units", "overage_minor"]


class OfferSerializer(serializers.ModelSerializer):
    plans = PricePlanSerializer(many=True, read_only=True)
    dataset = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Offer
        fields = [
            "id",
            "dataset",
            "title",
            "version",
            "status",
            "operations",
            "duration_days",
            "quota_jobs",
            "min_group_size",
            "terms",
            "epsilon",
            "dp_required",
            "allowed_purposes",
            "published_at",
            "plans",
        ]


class DatasetSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="organization.name", read_only=True)
    node = serializers.CharField(source="node.slug", read_only=True)
    offers = serializers.SerializerMethodField()
    epsilon_budget = serializers.DecimalField(
        max_digits=7, decimal_places=3, read_only=True, allow_null=True,
        help_text="The dataset's lifetime privacy budget, shared by every buyer (null: no cap beyond each right's).",
    )  # fmt: skip
    epsilon_left = serializers.DecimalField(max_digits=7, decimal_places=3, read_only=True, allow_null=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "description",
            "tags",
            "provider",
            "node",
            "columns",
            "row_count",
            "content_sha256",
            "attested_at",
            "epsilon_budget",
            "epsilon_left",
            "offers",
        ]

    @extend_schema_field(OfferSerializer(many=True))
    def get_offers(self, obj: Dataset) -> list[dict]:  # type: ignore[type-arg]
        offers = getattr(obj, "published_offers", None)
        if offers is None:
            offers = obj.offers.filter(status=Offer.Status.PUBLISHED)
        return OfferSerializer(offers, many=True).data


class StrictMinorUnits(StrictInteger):
    """A whole, non-negative amount of minor units: "12.5" or 12.5 is refused, not truncated to 12."""

    default_error_messages = {"invalid": "Must be a whole number of minor units (e.g. cents)."}

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", 10**15)  # a quadrillion cents: far above any price, within I-JSON
        super().__init__(**kwargs)


CURRENCY = {"regex": r"^[A-Z]{3}$", "max_length": 3, "help_text": "ISO 4217 code, e.g. EUR."}


class PlanInputSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=PricePlan.Kind.choices, default=PricePlan.Kind.PER_JOB)
    amount_minor = StrictMinorUnits(default=0)
    currency = serializers.RegexField(**CURRENCY)
    billing = serializers.ChoiceField(choices=PricePlan.Billing.choices, default=PricePlan.Billing.POSTPAID)
    included_units = StrictInteger(min_value=0, max_value=10**9, default=0)
    overage_minor = StrictMinorUnits(default=0)


class OfferCreateSerializer(StrictSerializer):
    dataset = Id(help_text="One of your organisation's listed datasets.")
    title = serializers.CharField(max_length=200, min_length=1)
    operations = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(OPERATIONS)), min_length=1, max_length=len(OPERATIONS)
    )
    plans = PlanInputSerializer(many=True, required=False, min_length=1, max_length=10)
    amount_minor = StrictMinorUnits(required=False, help_text="Shorthand for one postpaid per-job plan.")
    currency = serializers.RegexField(required=False, **CURRENCY)
    quota_jobs = StrictInteger(min_value=1, max_value=1_000_000)
    duration_days = StrictInteger(min_value=1, max_value=3650)
    min_group_size = StrictInteger(min_value=1, max_value=10**6, default=10)
    terms = serializers.CharField(allow_blank=True, default="", max_length=20_000)
    epsilon = serializers.DecimalField(
        max_digits=6, decimal_places=3, default=0, min_value=0, max_value=100, coerce_to_string=False
    )
    dp_required = StrictBoolean(
        default=False, help_text="Every release under the offer's rights must be differentially private (ε > 0)."
    )
    allowed_purposes = serializers.ListField(
        child=serializers.CharField(max_length=100, min_length=1), default=list, max_length=50
    )

    def validate(self, attrs):  # type: ignore[no-untyped-def]
        if "plans" not in attrs and ("amount_minor" not in attrs or "currency" not in attrs):
            raise serializers.ValidationError({"plans": ["Give plans, or amount_minor and currency."]})
        return attrs


class OrderCreateSerializer(StrictSerializer):
    offer = Id(help_text="A published offer.")
    plan = Id(required=False, allow_null=True, help_text="One of the offer's plans (default: its first).")
    purpose = serializers.CharField(min_length=1, max_length=2000, help_text="What you will use the data for.")
    purpose_category = serializers.CharField(allow_blank=True, max_length=100, default="")
    accept_terms = MustBeTrue(help_text="You accept the offer's terms.")
    again = StrictBoolean(
        default=False,
        help_text="Buy although you already hold an active right on this offer's dataset "
        "(without it such an order is refused with 409 `already_held`).",
    )


class UsageRightSerializer(serializers.ModelSerializer):
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    quota_left = serializers.IntegerField(read_only=True)

    class Meta:
        model = UsageRight
        fields = [
            "id",
            "order",
            "dataset",
            "dataset_name",
            "operations",
            "quota_total",
            "quota_used",
            "quota_reserved",
            "quota_left",
            "min_group_size",
            "epsilon_total",
            "epsilon_spent",
            "dp_required",
            "expires_at",
            "status",
            "status_reason",
            "status_changed_at",
            "created_at",
        ]


class RevokeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=1000, min_length=1, help_text="Why the right is revoked.")


class OrderSerializer(serializers.ModelSerializer):
    right = UsageRightSerializer(read_only=True)
    status = serializers.ChoiceField(
        choices=Order.Status.choices,
        read_only=True,
        help_text="prepaid: charged in full at purchase; postpaid_open: use is billed as delivered; "
        "settled: the right has ended and nothing is left to charge.",
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "offer",
            "plan",
            "purpose",
            "accepted_terms",
            "plan_kind",
            "plan_snapshot",
            "upfront_minor",
            "purpose_category",
            "unit_price_minor",
            "currency",
            "quota_jobs",
            "duration_days",
            "operations",
            "status",
            "created_at",
            "right",
        ]


class NodeCreateSerializer(StrictSerializer):
    slug = serializers.RegexField(
        r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
        max_length=40,
        help_text="1 to 40 lower-case letters, digits and inner hyphens; names the node's queue.",
    )


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "slug", "status", "kid", "public_key", "enrolled_at", "last_seen_at", "queue"]
        read_only_fields = ["status", "kid", "public_key", "enrolled_at", "last_seen_at", "queue"]


class NodeCreatedSerializer(NodeSerializer):
    enrolment_token = serializers.CharField(read_only=True, help_text="Shown once: the node enrols with it.")

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "enrolment_token"]
