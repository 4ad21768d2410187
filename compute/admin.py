from django.contrib import admin

from compute.models import Job, JobParty, Message


class PartyInline(admin.TabularInline):
    model = JobParty
    extra = 0
    can_delete = False
    readonly_fields = ["key", "role", "node", "dataset", "right", "status", "quota_settled"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "consumer", "algorithm", "status", "progress", "created_at"]
    list_filter = ["status", "algorithm"]
    readonly_fields = [
        "consumer",
        "submitted_by",
        "consumer_node",
        "algorithm",
        "params",
        "state",
        "outputs",
        "idempotency_key",
        "request_hash",
        "status",
        "progress",
        "error",
        "finished_at",
    ]
    inlines = [PartyInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "direction", "step", "sender", "recipient", "digest"]
    list_filter = ["direction", "step"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # the message log is the evidence of what each party sent


@admin.register(JobParty)
class JobPartyAdmin(admin.ModelAdmin):
    list_display = ["job", "key", "role", "node", "dataset", "right", "status"]
    readonly_fields = ["job", "key", "role", "node", "dataset", "right", "status", "quota_settled"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
