"""Catalog search and filters, shared by the catalog page and the API (django-filter)."""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Min, Q, QuerySet
from drf_spectacular.utils import extend_schema_field

from marketplace.models import Dataset, PricePlan
from protocol.operations import OPERATIONS

MAX_MINOR = 10**15

SORTS = {
    "name": ("name", "Name"),
    "price": ("min_price", "Lowest price"),
    "-price": ("-min_price", "Highest price"),
    "-rows": ("-row_count", "Most rows"),
    "newest": ("-created_at", "Newest"),
}


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_MINOR})
class MinorUnitsFilter(django_filters.NumberFilter):
    """A price in whole minor units of the plan's currency (cents for EUR), 0 to 10^15."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_MINOR)
        super().__init__(*args, **kwargs)


class DatasetFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    provider = django_filters.CharFilter(field_name="organization__slug", label="Provider")
    tag = django_filters.CharFilter(method="has_tag", label="Tag / industry")
    operation = django_filters.ChoiceFilter(
        method="permits",
        choices=[(op, op) for op in sorted(OPERATIONS)],
        label="Operation",
        empty_label="Any operation",
    )
    plan = django_filters.ChoiceFilter(
        method="plan_kind", choices=PricePlan.Kind.choices, label="Price plan", empty_label="Any price plan"
    )
    price_min = MinorUnitsFilter(field_name="min_price", lookup_expr="gte", label="Min price (minor units)")
    price_max = MinorUnitsFilter(field_name="min_price", lookup_expr="lte", label="Max price (minor units)")
    sort = django_filters.ChoiceFilter(
        method="sort_by",
        choices=[(k, v[1]) for k, v in SORTS.items()],
        label="Sort",
        empty_label="Sort: relevance / name",
    )

    class Meta:
        model = Dataset
        fields: list[str] = []

    @property
    def qs(self) -> QuerySet[Dataset]:
        qs = super().qs
        if not (self.form.is_valid() and self.form.cleaned_data.get("sort")) and not (
            self.form.is_valid() and self.form.cleaned_data.get("q")
        ):
            qs = qs.order_by("name")
        return qs

    def search(self, qs: QuerySet[Dataset], name: str, value: str) -> QuerySet[Dataset]:
        if connection.vendor == "postgresql":
            vector = SearchVector("name", weight="A") + SearchVector("description", weight="B")
            query = SearchQuery(value, search_type="websearch")
            # Match with @@ (every term present), then order by rank: ts_rank alone is
            # positive for partial matches too.
            return (
                qs.annotate(document=vector, rank=SearchRank(vector, query))
                .filter(document=query)
                .order_by("-rank", "name")
            )
        words = value.split()
        for word in words:
            qs = qs.filter(Q(name__icontains=word) | Q(description__icontains=word) | Q(tags__icontains=word))
        return qs

    def has_tag(self, qs: QuerySet[Dataset], name: str, value: str) -> QuerySet[Dataset]:
        # JSON text match: works on PostgreSQL and on the embedded SQLite alike.
        return qs.filter(tags__icontains=f'"{value}"')

    def permits(self, qs: QuerySet[Dataset], name: str, value: str) -> QuerySet[Dataset]:
        return qs.filter(offers__status="published", offers__operations__icontains=f'"{value}"').distinct()

    def plan_kind(self, qs: QuerySet[Dataset], name: str, value: str) -> QuerySet[Dataset]:
        return qs.filter(offers__status="published", offers__plans__kind=value).distinct()

    def sort_by(self, qs: QuerySet[Dataset], name: str, value: str) -> QuerySet[Dataset]:
        return qs.order_by(SORTS[value][0], "name")


def with_min_price(qs: QuerySet[Dataset]) -> QuerySet[Dataset]:
    return qs.annotate(min_price=Min("offers__plans__amount_minor", filter=Q(offers__status="published")))
