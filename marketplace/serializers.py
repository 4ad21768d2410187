from __future__ import annotations

from rest_framework import serializers

from marketplace.models import Dataset, Node, Offer, Order, PricePlan, UsageRight


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
            "allowed_purposes",
            "published_at",
            "plans",
        ]


class DatasetSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="organization.name", read_only=True)
    node = serializers.CharField(source="node.slug", read_only=True)
    offers = serializers.SerializerMethodField()

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
            "offers",
        ]

    def get_offers(self, obj: Dataset) -> list[dict]:  # type: ignore[type-arg]
        offers = getattr(obj, "published_offers", None)
        if offers is None:
            offers = obj.offers.filter(status=Offer.Status.PUBLISHED)
        return OfferSerializer(offers, many=True).data


class StrictMinorUnits(serializers.IntegerField):
    """An integer amount of minor units: "12.5" or 12.5 is refused, not truncated to 12."""

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, bool | float) or (isinstance(data, str) and not data.strip().lstrip("-").isdigit()):
            raise serializers.ValidationError("Must be a whole number of minor units (e.g. cents).")
        return super().to_internal_value(data)


class PlanInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PricePlan.Kind.choices, default=PricePlan.Kind.PER_JOB)
    amount_minor = StrictMinorUnits(default=0)
    currency = serializers.CharField(max_length=3)
    billing = serializers.ChoiceField(choices=PricePlan.Billing.choices, default=PricePlan.Billing.POSTPAID)
    included_units = serializers.IntegerField(min_value=0, default=0)
    overage_minor = StrictMinorUnits(default=0)


class OfferCreateSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    title = serializers.CharField(max_length=200, allow_blank=True)
    operations = serializers.ListField(child=serializers.CharField(), allow_empty=True)
    plans = PlanInputSerializer(many=True, required=False)
    amount_minor = StrictMinorUnits(required=False, help_text="Shorthand for one postpaid per-job plan.")
    currency = serializers.CharField(max_length=3, required=False)
    quota_jobs = serializers.IntegerField(max_value=1_000_000)
    duration_days = serializers.IntegerField(max_value=3650)
    min_group_size = serializers.IntegerField(default=10)
    terms = serializers.CharField(allow_blank=True, default="")
    epsilon = serializers.DecimalField(max_digits=6, decimal_places=3, default=0, min_value=0)
    allowed_purposes = serializers.ListField(child=serializers.CharField(max_length=100), default=list)

    def validate(self, attrs):  # type: ignore[no-untyped-def]
        if "plans" not in attrs and ("amount_minor" not in attrs or "currency" not in attrs):
            raise serializers.ValidationError({"plans": ["Give plans, or amount_minor and currency."]})
        return attrs


class OrderCreateSerializer(serializers.Serializer):
    offer = serializers.IntegerField()
    plan = serializers.IntegerField(required=False, allow_null=True)
    purpose = serializers.CharField(allow_blank=True, max_length=2000)
    purpose_category = serializers.CharField(allow_blank=True, max_length=100, default="")
    accept_terms = serializers.BooleanField()


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
            "expires_at",
            "status",
            "status_reason",
            "status_changed_at",
            "created_at",
        ]


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, allow_blank=True)


class OrderSerializer(serializers.ModelSerializer):
    right = UsageRightSerializer(read_only=True)

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


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "slug", "status", "kid", "public_key", "enrolled_at", "last_seen_at", "queue"]
        read_only_fields = ["status", "kid", "public_key", "enrolled_at", "last_seen_at", "queue"]
