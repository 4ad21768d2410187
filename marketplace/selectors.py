"""Reads: catalog, the current organisation, bills and revenue (from ledger entries)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from ledger.models import Checkpoint, LedgerEntry
from marketplace import billing
from marketplace.filters import with_min_price
from marketplace.models import Dataset, Offer, Order, Organization, PricePlan
from marketplace.money import Money


def current_org(user: AbstractBaseUser | AnonymousUser) -> Organization | None:
    if not user.is_authenticated:
        return None
    membership = user.memberships.select_related("organization").order_by("id").first()  # type: ignore[union-attr]
    return membership.organization if membership else None


def catalog() -> QuerySet[Dataset]:
    """Listed datasets with their published offers and plans, in a fixed number of queries."""
    published = Offer.objects.filter(status=Offer.Status.PUBLISHED).prefetch_related(
        Prefetch("plans", queryset=PricePlan.objects.order_by("id"))
    )
    return with_min_price(
        Dataset.objects.filter(organization__is_provider=True)
        .select_related("organization", "node")
        .prefetch_related(Prefetch("offers", queryset=published, to_attr="published_offers"))
        .order_by("name")
    )


@dataclass
class ChargeLine:
    seq: int
    at: object
    kind: str  # purchase | usage | refund
    dataset: str
    job: str
    right: int
    rows: int
    amount: Money
    counterparty: str
    plan: str


@dataclass
class Statement:
    lines: list[ChargeLine] = field(default_factory=list)
    totals: dict[str, Money] = field(default_factory=dict)
    fees: dict[str, Money] = field(default_factory=dict)
    nets: dict[str, Money] = field(default_factory=dict)
    by_dataset: dict[str, dict[str, Money]] = field(default_factory=dict)
    by_counterparty: dict[str, dict[str, Money]] = field(default_factory=dict)
    by_plan: dict[str, dict[str, Money]] = field(default_factory=dict)
    by_month: dict[str, dict[str, Money]] = field(default_factory=dict)
    ledger_seqs: list[int] = field(default_factory=list)
    checkpoint_size: int | None = None  # the smallest signed checkpoint covering every line

    @property
    def month_bars(self) -> list[tuple[str, str, int]]:
        """(month, amount text, width %) for a bar chart of the first currency."""
        if not self.totals:
            return []
        cur = next(iter(self.totals))
        values = [(m, amounts.get(cur, Money.zero(cur))) for m, amounts in sorted(self.by_month.items())]
        peak = max((abs(v.minor) for _, v in values), default=0) or 1
        return [(m, v.format(), round(100 * abs(v.minor) / peak)) for m, v in values]


CHARGED_KINDS = ("right_granted", "usage", "refund")


def _add(bucket: dict[str, dict[str, Money]], key: str, amount: Money) -> None:
    cur = amount.currency
    bucket[key][cur] = bucket[key].get(cur, Money.zero(cur)) + amount


def _statement(entries: QuerySet[LedgerEntry], *, counterparty_of: str) -> Statement:
    """Charges from ledger entries at the plan copied into each order, never today's price.

    Purchases (prepaid bundles, period fees), uses (metered per plan) and refunds each
    come from their own ledger entry, so every line can be proved against a checkpoint.
    """
    rows = list(entries.filter(kind__in=CHARGED_KINDS).order_by("seq"))
    right_ids = {e.right_id for e in rows}
    orders = {
        o.right.id: o for o in Order.objects.filter(right__id__in=right_ids).select_related("offer__dataset", "right")
    }
    orgs = dict(Organization.objects.values_list("id", "name"))
    statement = Statement()
    by_dataset: dict[str, dict[str, Money]] = defaultdict(dict)
    by_party: dict[str, dict[str, Money]] = defaultdict(dict)
    by_plan: dict[str, dict[str, Money]] = defaultdict(dict)
    by_month: dict[str, dict[str, Money]] = defaultdict(dict)
    # A use's rank within its right (subscription overage) counts every earlier use of
    # that right, including those before the period being reported.
    uses: dict[int, int] = defaultdict(int)
    first_use: dict[int, int] = {}
    for e in rows:
        if e.kind == "usage" and e.right_id is not None:
            first_use.setdefault(e.right_id, e.seq)
    for right_id, seq in first_use.items():
        uses[right_id] = LedgerEntry.objects.filter(kind="usage", right_id=right_id, seq__lt=seq).count()
    for e in rows:
        order = orders.get(e.right_id)
        if order is None:
            continue
        plan = billing.Plan(**order.plan_snapshot)  # type: ignore[arg-type]
        if e.kind == "right_granted":
            minor, kind = int(e.payload.get("charge_minor", 0)), "purchase"
        elif e.kind == "usage":
            uses[e.right_id] += 1
            minor = billing.usage_charge(
                plan,
                nth_use=uses[e.right_id],
                rows=int(e.payload.get("rows", 0)),
                records=int(e.payload.get("records", 0)),
            )
            kind = "usage"
        else:
            minor, kind = -int(e.payload["amount_minor"]), "refund"
        if minor == 0 and kind != "usage":
            continue
        amount = Money(minor, plan.currency)
        name = order.offer.dataset.name
        other = orgs.get(e.payload.get(counterparty_of) or getattr(e, f"{counterparty_of}_id"), "?")
        statement.lines.append(
            ChargeLine(
                e.seq,
                e.integrated_at,
                kind,
                name,
                e.payload.get("job", ""),
                e.right_id or 0,
                int(e.payload.get("rows", 0)),
                amount,
                other,
                plan.kind,
            )
        )
        cur = amount.currency
        statement.totals[cur] = statement.totals.get(cur, Money.zero(cur)) + amount
        _add(by_dataset, name, amount)
        _add(by_party, other, amount)
        _add(by_plan, plan.kind, amount)
        _add(by_month, e.integrated_at.strftime("%Y-%m"), amount)
        statement.ledger_seqs.append(e.seq)
    for cur, gross in statement.totals.items():
        statement.fees[cur] = gross.apply_bps(settings.USUFRUCT_PLATFORM_FEE_BPS)
        statement.nets[cur] = gross - statement.fees[cur]
    statement.by_dataset = dict(by_dataset)
    statement.by_counterparty = dict(by_party)
    statement.by_plan = dict(by_plan)
    statement.by_month = dict(by_month)
    if statement.ledger_seqs:
        covering = Checkpoint.objects.filter(size__gt=max(statement.ledger_seqs)).order_by("size").first()
        statement.checkpoint_size = covering.size if covering else None
    return statement


def _period(qs: QuerySet[LedgerEntry], since: date | None, until: date | None) -> QuerySet[LedgerEntry]:
    """Entries integrated in [since, until] (whole UTC days)."""
    if since:
        qs = qs.filter(integrated_at__date__gte=since)
    if until:
        qs = qs.filter(integrated_at__date__lte=until)
    return qs


def consumer_bill(org: Organization, since: date | None = None, until: date | None = None) -> Statement:
    return _statement(_period(LedgerEntry.objects.filter(consumer_id=org.id), since, until), counterparty_of="provider")


def provider_revenue(org: Organization, since: date | None = None, until: date | None = None) -> Statement:
    return _statement(_period(LedgerEntry.objects.filter(provider_id=org.id), since, until), counterparty_of="consumer")
