"""The ledger in the Django admin: readable, never editable (the database would refuse anyway)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ledger.models import Checkpoint, Cosignature, LedgerEntry, PendingEntry, RefusedReceipt, Witness


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly):
    list_display = ["seq", "kind", "event_id", "integrated_at", "dataset_id", "consumer_id"]
    list_filter = ["kind"]
    search_fields = ["event_id", "entry_hash"]


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnly):
    list_display = ["size", "created_at", "hub_kid"]


@admin.register(Cosignature)
class CosignatureAdmin(ReadOnly):
    list_display = ["checkpoint", "witness", "timestamp"]


@admin.register(PendingEntry)
class PendingEntryAdmin(ReadOnly):
    """What the ledger writer has yet to integrate (normally empty within a second)."""

    list_display = ["id", "kind", "event_id", "created_at"]
    list_filter = ["kind"]


@admin.register(RefusedReceipt)
class RefusedReceiptAdmin(ReadOnly):
    list_display = ["seq", "node", "reason", "created_at"]
    list_filter = ["node"]


@admin.register(Witness)
class WitnessAdmin(admin.ModelAdmin):
    list_display = ["name", "organization_id", "active", "created_at"]
    readonly_fields = ["name", "vkey", "organization_id", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # witnesses register their key themselves (API or `manage.py witness_register`)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
