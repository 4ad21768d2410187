from __future__ import annotations

from rest_framework import serializers

from marketplace.models import Dataset, Node, Offer, Order, PricePlan, UsageRight


class PricePlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = PricePlan
        fields = ["id", "kind", "amount_minor", "currency"]


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


class OfferCreateSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    title = serializers.CharField(max_length=200)
    operations = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    amount_minor = serializers.IntegerField(help_text="Price per job in minor units (e.g. cents).")
    currency = serializers.CharField(max_length=3, min_length=3)
    quota_jobs = serializers.IntegerField(min_value=1, max_value=1_000_000)
    duration_days = serializers.IntegerField(min_value=1, max_value=3650)
    min_group_size = serializers.IntegerField(min_value=1, default=10)
    terms = serializers.CharField(allow_blank=True, default="")

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        # "12.5" or 12.5 must not be silently truncated to 12 cents.
        raw = data.get("amount_minor") if hasattr(data, "get") else None
        if isinstance(raw, float) or (isinstance(raw, str) and not raw.lstrip("-").isdigit()):
            raise serializers.ValidationError(
                {"amount_minor": ["Price must be a whole number of minor units (e.g. cents)."]}
            )
        return super().to_internal_value(data)


class OrderCreateSerializer(serializers.Serializer):
    offer = serializers.IntegerField()
    plan = serializers.IntegerField(required=False, allow_null=True)
    purpose = serializers.CharField(allow_blank=True, max_length=2000)
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
            "expires_at",
            "status",
            "created_at",
        ]


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
