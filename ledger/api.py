from __future__ import annotations

from django.db.models import Q, QuerySet
from rest_framework import generics, permissions, serializers

from ledger.models import LedgerEntry
from marketplace import selectors


class LedgerEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = [
            "seq",
            "kind",
            "version",
            "event_id",
            "payload",
            "body",
            "prev_hash",
            "entry_hash",
            "leaf_hash",
            "hub_kid",
            "hub_sig",
            "producer_time",
            "integrated_at",
        ]


def visible_entries(user) -> QuerySet[LedgerEntry]:  # type: ignore[no-untyped-def]
    """Regulators and staff read the whole ledger; others the entries that concern them."""
    if user.is_staff:
        return LedgerEntry.objects.all()
    org = selectors.current_org(user)
    if org is None:
        return LedgerEntry.objects.none()
    if org.is_regulator:
        return LedgerEntry.objects.all()
    return LedgerEntry.objects.filter(Q(consumer_id=org.id) | Q(provider_id=org.id))


class EntryList(generics.ListAPIView):
    serializer_class = LedgerEntrySerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["kind", "dataset_id", "consumer_id", "provider_id", "right_id"]

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        return visible_entries(self.request.user).order_by("seq")


class EntryDetail(generics.RetrieveAPIView):
    serializer_class = LedgerEntrySerializer
    permission_classes = [permissions.IsAuthenticated]
    lookup_field = "seq"

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        return visible_entries(self.request.user)
