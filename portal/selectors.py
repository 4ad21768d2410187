"""Who may read which ledger entries, and the per-dataset audit trail with names."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from ledger.models import LedgerEntry
from marketplace import selectors as market
from marketplace.models import Organization

User = AbstractBaseUser | AnonymousUser


def is_auditor(user: User) -> bool:
    """Staff and members of a regulator organisation read the whole ledger."""
    if not user.is_authenticated:
        return False
    if user.is_staff:  # type: ignore[union-attr]
        return True
    org = market.current_org(user)
    return bool(org and org.is_regulator)


def visible_entries(user: User) -> QuerySet[LedgerEntry]:
    """Regulators and staff read the whole ledger; others the entries that concern them."""
    if is_auditor(user):
        return LedgerEntry.objects.all()
    org = market.current_org(user)
    if org is None:
        return LedgerEntry.objects.none()
    return LedgerEntry.objects.filter(Q(consumer_id=org.id) | Q(provider_id=org.id))


def audit_trail(dataset_id: int) -> list[dict[str, Any]]:
    """Who used a dataset, when, under which right and for which declared purpose, from the ledger alone."""
    grants = {
        e.right_id: e.payload
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED, dataset_id=dataset_id).only(
            "right_id", "payload"
        )
    }
    names = dict(Organization.objects.values_list("id", "name"))
    rows = []
    for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, dataset_id=dataset_id).order_by("seq"):
        grant = grants.get(e.right_id, {})
        rows.append(
            {
                "seq": e.seq,
                "at": e.producer_time,
                "consumer": names.get(e.consumer_id, e.consumer_id),
                "right": e.right_id,
                "job": e.payload.get("job"),
                "operation": e.payload.get("operation"),
                "rows": e.payload.get("rows"),
                "purpose": grant.get("purpose", ""),
                "node": (e.payload.get("receipt") or {}).get("payload", {}).get("node"),
            }
        )
    return rows
