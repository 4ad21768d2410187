from django.contrib import admin

from marketplace.models import (
    BudgetAlert,
    Dataset,
    Document,
    DocumentLine,
    Membership,
    Node,
    Offer,
    Order,
    Organization,
    PricePlan,
    UsageRight,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_provider", "is_consumer", "is_regulator"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["slug", "organization", "status", "kid", "last_seen_at"]
    readonly_fields = ["public_key", "kid", "enrolment_token_hash", "enrolled_at", "last_seen_at"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "node", "row_count", "attested_at"]
    search_fields = ["name", "description"]
    # What the node attested is evidence: shown, never edited here.
    readonly_fields = ["columns", "row_count", "content_sha256", "manifest", "attested_at", "node", "local_name"]


class PricePlanInline(admin.TabularInline):
    model = PricePlan
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["title", "version", "dataset", "status", "quota_jobs", "published_at"]
    list_filter = ["status"]
    inlines = [PricePlanInline]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Orders and rights change only through services (which also write the ledger)."""

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "consumer", "offer", "unit_price_minor", "currency", "status", "created_at"]


@admin.register(UsageRight)
class UsageRightAdmin(ReadOnlyAdmin):
    list_display = ["id", "consumer", "dataset", "quota_used", "quota_total", "status", "expires_at"]
    list_filter = ["status"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role"]
    list_filter = ["role"]


@admin.register(PricePlan)
class PricePlanAdmin(ReadOnlyAdmin):
    """Plans belong to published (immutable) offers: visible, never edited."""

    list_display = ["offer", "kind", "amount_minor", "currency", "billing"]


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    """Issued documents: read only here, and immutable in the database (a trigger)."""

    list_display = ("number", "type", "organization", "period_start", "period_end", "currency", "total_minor")
    list_filter = ("type",)
    search_fields = ("number",)


@admin.register(DocumentLine)
class DocumentLineAdmin(ReadOnlyAdmin):
    list_display = ("document", "family", "seq")


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    """Consumers' monthly spending alerts (set on the Spending page or the API)."""

    list_display = ("organization", "currency", "limit_minor", "email", "notified_period")
    list_filter = ("currency",)
    readonly_fields = ("notified_period", "notified_at", "notified_spent_minor", "created_by", "created_at")
