"""Reads: catalog, the current organisation, bills and revenue (from ledger entries)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from ledger.models import LedgerEntry
from marketplace.models import Dataset, Offer, Order, Organization, PricePlan
from marketplace.money import Money


def current_org(user: AbstractBaseUser | AnonymousUser) -> Organization | None:
    if not user.is_authenticated:
        return None
    membership = user.memberships.select_related("organization").order_by("id").first()  # type: ignore[union-attr]
    return membership.organization if membership else None


def catalog() -> QuerySet[Dataset]:
    published = Offer.objects.filter(status=Offer.Status.PUBLISHED).prefetch_related(
        Prefetch("plans", queryset=PricePlan.objects.order_by("id"))
    )
    return (
        Dataset.objects.filter(organization__is_provider=True)
        .select_related("organization", "node")
        .prefetch_related(Prefetch("offers", queryset=published, to_attr="published_offers"))
        .order_by("name")
    )


@dataclass
class ChargeLine:
    seq: int
    at: object
    dataset: str
    job: str
    right: int
    rows: int
    amount: Money
    counterparty: str


@dataclass
class Statement:
    lines: list[ChargeLine] = field(default_factory=list)
    totals: dict[str, Money] = field(default_factory=dict)
    fees: dict[str, Money] = field(default_factory=dict)
    nets: dict[str, Money] = field(default_factory=dict)
    by_dataset: dict[str, dict[str, Money]] = field(default_factory=dict)
    ledger_seqs: list[int] = field(default_factory=list)


def _statement(entries: QuerySet[LedgerEntry], *, counterparty_of: str) -> Statement:
    """Charges are usage entries × the unit price copied into the order, never today's."""
    entries = entries.filter(kind=LedgerEntry.Kind.USAGE).order_by("seq")
    rows = list(entries)
    order_ids = {e.payload["order"] for e in rows}
    orders = {o.id: o for o in Order.objects.filter(id__in=order_ids).select_related("offer__dataset", "consumer")}
    orgs = {o.id: o.name for o in Organization.objects.all()}
    statement = Statement()
    by_dataset: dict[str, dict[str, Money]] = defaultdict(dict)
    for e in rows:
        order = orders[e.payload["order"]]
        amount = Money(order.unit_price_minor, order.currency) * int(e.payload.get("units", 1))
        other = orgs.get(e.payload[counterparty_of], "?")
        name = order.offer.dataset.name
        statement.lines.append(
            ChargeLine(
                e.seq, e.integrated_at, name, e.payload["job"], e.right_id or 0, e.payload.get("rows", 0), amount, other
            )
        )
        cur = amount.currency
        statement.totals[cur] = statement.totals.get(cur, Money.zero(cur)) + amount
        by_dataset[name][cur] = by_dataset[name].get(cur, Money.zero(cur)) + amount
        statement.ledger_seqs.append(e.seq)
    for cur, gross in statement.totals.items():
        statement.fees[cur] = gross.apply_bps(settings.USUFRUCT_PLATFORM_FEE_BPS)
        statement.nets[cur] = gross - statement.fees[cur]
    statement.by_dataset = dict(by_dataset)
    return statement


def consumer_bill(org: Organization) -> Statement:
    return _statement(LedgerEntry.objects.filter(consumer_id=org.id), counterparty_of="provider")


def provider_revenue(org: Organization) -> Statement:
    return _statement(LedgerEntry.objects.filter(provider_id=org.id), counterparty_of="consumer")
