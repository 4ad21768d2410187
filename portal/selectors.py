"""Who may read which ledger entries, and the per-dataset audit trail with names."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from ledger.models import LedgerEntry
from marketplace import selectors as market
from marketplace.models import Dataset, Organization
from marketplace.money import Money

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


def search(
    qs: QuerySet[LedgerEntry], *, organization_id: int | None = None, purpose: str | None = None
) -> QuerySet[LedgerEntry]:
    """Entries naming an organisation (as consumer or provider), or under a right whose declared
    purpose contains ``purpose`` or whose purpose category is it. One query: the rights are a subquery."""
    if organization_id is not None:
        qs = qs.filter(Q(consumer_id=organization_id) | Q(provider_id=organization_id))
    if purpose:
        rights = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED).filter(
            Q(payload__purpose__icontains=purpose) | Q(payload__purpose_category__iexact=purpose)
        )
        qs = qs.filter(right_id__in=rights.values("right_id"))
    return qs


def describe(entries: list[LedgerEntry]) -> dict[int, str]:
    """Each entry in words, for an auditor: who did what with which data, under which right and
    for which declared purpose, e.g. "Acme Retail's node acme reported a stats step on Acme
    shopper behaviour 2026 for Northwind Bank under right #1, purpose 'credit risk'"."""
    orgs = dict(Organization.objects.values_list("id", "name"))
    datasets = dict(Dataset.objects.values_list("id", "name"))
    rights = {e.right_id for e in entries if e.right_id}
    purposes = {
        e.right_id: e.payload.get("purpose", "")
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED, right_id__in=rights).only(
            "right_id", "payload"
        )
    }
    return {e.seq: _sentence(e, orgs, datasets, purposes) for e in entries}


def _sentence(e: LedgerEntry, orgs: dict[int, str], datasets: dict[int, str], purposes: dict[int, str]) -> str:
    p = e.payload
    consumer = orgs.get(e.consumer_id or p.get("consumer") or 0, "a consumer")
    provider = orgs.get(e.provider_id or p.get("provider") or 0, "a provider")
    dataset = datasets.get(e.dataset_id or p.get("dataset") or 0, "a dataset")
    right = f"right #{e.right_id}" if e.right_id else "no right"
    purpose = purposes.get(e.right_id or 0, "")
    for_purpose = f", purpose '{purpose}'" if purpose else ""
    job = str(p.get("job") or p.get("model") or "")[:8]
    kind = e.kind
    if kind == LedgerEntry.Kind.USAGE:
        node = ((p.get("receipt") or {}).get("payload") or {}).get("node") or "its node"
        counted = f"{p.get('rows', 0)} rows" + (f", {p['records']} records" if p.get("records") else "")
        if p.get("preview"):
            what = "value preview" if p.get("operation") == "value_preview" else "overlap preview"
            return f"{provider}'s node {node} answered a free {what} on {dataset} for {consumer} ({counted})"
        return (
            f"{provider}'s node {node} reported a {p.get('operation')} step on {dataset} for {consumer} "
            f"under {right}{for_purpose} ({counted}; job {job})"
        )
    if kind == LedgerEntry.Kind.RIGHT_GRANTED:
        return f"{consumer} bought {right} on {dataset} from {provider}{for_purpose}"
    if kind == LedgerEntry.Kind.SETTLEMENT:
        charged = "one job charged" if p.get("units") else "nothing charged"
        return f"Job {job} under {right} on {dataset} {p.get('outcome', 'settled')}: {charged} to {consumer}"
    if kind == LedgerEntry.Kind.REFUND:
        amount = _money(p.get("amount_minor"), p.get("currency"))
        return f"{consumer} refunded {amount} for {right}: {p.get('reason')}"
    if kind == LedgerEntry.Kind.RIGHT_REVOKED:
        return f"{provider} revoked {consumer}'s {right} on {dataset}: {p.get('reason')}"
    if kind == LedgerEntry.Kind.RIGHT_EXPIRED:
        return f"{consumer}'s {right} on {dataset} expired ({p.get('quota_used')} jobs used)"
    if kind == LedgerEntry.Kind.DP_CHARGE:
        under = f"under {right}" if p.get("right") is not None else "in a free preview"
        return f"ε = {p.get('epsilon')} of {dataset}'s privacy budget spent by {consumer} {under} (job {job})"
    if kind == LedgerEntry.Kind.DOCUMENT_ISSUED:
        whom = orgs.get(p.get("organization") or 0, "an organisation")
        amount = _money(p.get("total_minor"), p.get("currency"))
        digest = str(p.get("digest"))[:12]
        return f"{p.get('number')} issued to {whom}: {p.get('lines')} lines, {amount} (digest {digest}…)"
    if kind == LedgerEntry.Kind.DATASET_BUDGET_SET:
        cap = f"ε = {p.get('epsilon_budget')}" if p.get("epsilon_budget") is not None else "no cap"
        return f"{provider} set {dataset}'s lifetime privacy budget to {cap} (ε = {p.get('epsilon_spent')} spent)"
    if kind == LedgerEntry.Kind.MODEL_RETIRED:
        node = p.get("node")
        return f"{provider}'s node {node} deleted its part of model {job} trained under {right}: {p.get('reason')}"
    if kind == LedgerEntry.Kind.MODEL_RETIRE_REFUSED:
        node = p.get("node")
        why = f"{p.get('code')}: {p.get('reason')}"
        return f"{provider}'s node {node} did not delete its part of model {job} trained under {right} ({why})"
    if kind == LedgerEntry.Kind.ALIGNMENT_FORGET_REFUSED:
        why = f"{p.get('code')}: {p.get('reason')}"
        return f"Node {p.get('node')} did not delete the IDs it aligned in job {p.get('job')} ({why})"
    if kind == LedgerEntry.Kind.OFFER_PUBLISHED:
        ops = ", ".join(p.get("operations", []))
        return f"{provider} published version {p.get('version')} of an offer on {dataset} ({ops})"
    if kind == LedgerEntry.Kind.DATASET_LISTED:
        return f"{provider}'s node {p.get('node')} listed {dataset} ({p.get('row_count')} rows, content attested)"
    if kind == LedgerEntry.Kind.NODE_ENROLLED:
        org = orgs.get(p.get("organization") or 0, "An organisation")
        return f"{org} enrolled node {p.get('node')} (key {p.get('kid')})"
    if kind == LedgerEntry.Kind.RECEIPT_BATCH:
        span = f"#{p.get('first_seq')}–#{p.get('last_seq')}"
        return f"Node {p.get('node')} attested its {p.get('count')} receipts in entries {span}"
    if kind == LedgerEntry.Kind.KEY_ROTATED:
        return f"The {p.get('key', 'hub')} key was rotated from {p.get('old_kid')} to {p.get('new_kid')}"
    if kind == LedgerEntry.Kind.CORRECTION:
        return f"Staff corrected entry #{p.get('corrects')} ({p.get('corrects_kind')}): {p.get('reason')}"
    return e.get_kind_display()


def _money(minor: Any, currency: Any) -> str:
    try:
        return Money(int(minor), str(currency)).format()
    except (TypeError, ValueError):
        return f"{minor} {currency}"
