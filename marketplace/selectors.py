"""Reads: catalog, the current organisation, bills and revenue (from ledger entries)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

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
    amount: Money | None  # None: a ledger line this bill cannot price (``problem`` says why)
    counterparty: str
    plan: str
    records: int = 0
    usage_seqs: list[int] = field(default_factory=list)  # the usage entries a settlement charges
    problem: str = ""


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
    by_right: dict[str, dict[str, Money]] = field(default_factory=dict)
    group: str = "month"  # the buckets of ``series``: day, week (ISO) or month
    series: dict[str, dict[str, Money]] = field(default_factory=dict)
    ledger_seqs: list[int] = field(default_factory=list)
    checkpoint_size: int | None = None  # the smallest signed checkpoint covering every line

    @property
    def unpriced(self) -> list[ChargeLine]:
        return [li for li in self.lines if li.amount is None]

    @property
    def currency(self) -> str | None:
        """The first currency: what charts and rankings are drawn in."""
        return next(iter(self.totals), None)

    @property
    def month_bars(self) -> list[tuple[str, str, int]]:
        """(month, amount text, width %) for a bar chart of the first currency."""
        return self._bars(sorted(self.by_month.items()))

    @property
    def series_bars(self) -> list[tuple[str, str, int]]:
        """(day, ISO week or month, amount text, width %) in time order, first currency."""
        return self._bars(sorted(self.series.items()))

    def top(self, bucket: str, n: int = 5) -> list[tuple[str, str, int]]:
        """The ``n`` largest of ``by_dataset``, ``by_counterparty`` or ``by_right`` in the first currency."""
        cur = self.currency
        if cur is None:
            return []
        amounts = getattr(self, bucket)
        ranked = sorted(amounts.items(), key=lambda kv: (-kv[1].get(cur, Money.zero(cur)).minor, kv[0]))
        return self._bars(ranked[:n])

    def _bars(self, items: list[tuple[str, dict[str, Money]]]) -> list[tuple[str, str, int]]:
        cur = self.currency
        if cur is None:
            return []
        values = [(key, amounts.get(cur, Money.zero(cur))) for key, amounts in items]
        peak = max((abs(v.minor) for _, v in values), default=0) or 1
        return [(key, v.format(), round(100 * abs(v.minor) / peak)) for key, v in values]

    @property
    def top_datasets(self) -> list[tuple[str, str, int]]:
        return self.top("by_dataset")

    @property
    def top_counterparties(self) -> list[tuple[str, str, int]]:
        return self.top("by_counterparty")


# A use is charged by its job's ``settlement`` entry, never by the ``usage`` entry itself:
# only a job that delivered its output to the consumer is paid for (decision 0009).
CHARGED_KINDS = ("right_granted", "settlement", "refund")


def _add(bucket: dict[str, dict[str, Money]], key: str, amount: Money) -> None:
    cur = amount.currency
    bucket[key][cur] = bucket[key].get(cur, Money.zero(cur)) + amount


def _job_id(value: object) -> str:
    """A job id a page can link to; anything else in a historical line is left out."""
    try:
        return str(uuid.UUID(str(value))) if value else ""
    except ValueError:
        return ""


class _Unpriceable(ValueError):
    pass


def _count(payload: dict[str, object], name: str) -> int:
    value = payload.get(name, 0)
    if type(value) is not int or value < 0:
        raise _Unpriceable(f"{name} {value!r} is not a whole number")
    return value


def _price(e: LedgerEntry, plan: billing.Plan) -> tuple[str, int] | None:
    """(line kind, minor units) of one charged entry, None if it charges nothing."""
    p = e.payload
    if e.kind == "right_granted":
        minor = _count(p, "charge_minor")
        return ("purchase", minor) if minor else None
    if e.kind == "settlement":
        if p.get("outcome") != "delivered":
            return None  # a failed or cancelled job: its uses are on the ledger, not on the bill
        use = p.get("use")
        if type(use) is not int or use < 1:
            raise _Unpriceable(f"use {use!r} is not a positive whole number")
        minor = billing.usage_charge(plan, nth_use=use, rows=_count(p, "rows"), records=_count(p, "records"))
        return "usage", minor
    return "refund", -_count(p, "amount_minor")


GROUPS = ("day", "week", "month")


def bucket(at: datetime, group: str) -> str:
    """The day (2026-12-03), ISO week (2026-W49) or month (2026-12) a UTC time falls in."""
    if group == "day":
        return at.strftime("%Y-%m-%d")
    if group == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return at.strftime("%Y-%m")


def _statement(
    entries: QuerySet[LedgerEntry], *, counterparty_of: str, plan_kind: str | None = None, group: str = "month"
) -> Statement:
    """Charges from ledger entries at the plan copied into each order, never today's price.

    Purchases (prepaid bundles, period fees), delivered uses (a job's settlement, metered
    per plan) and refunds each come from their own ledger entry, so every line can be
    proved against a checkpoint. A historical entry that cannot be priced is listed with
    its ledger number and the reason, and left out of the totals: a bill never fails.
    """
    rows = list(entries.filter(kind__in=CHARGED_KINDS).order_by("seq"))
    right_ids = {e.right_id for e in rows}
    orders = {
        o.right.id: o for o in Order.objects.filter(right__id__in=right_ids).select_related("offer__dataset", "right")
    }
    orgs = dict(Organization.objects.values_list("id", "name"))
    statement = Statement(group=group)
    by_right: dict[str, dict[str, Money]] = defaultdict(dict)
    series: dict[str, dict[str, Money]] = defaultdict(dict)
    by_dataset: dict[str, dict[str, Money]] = defaultdict(dict)
    by_party: dict[str, dict[str, Money]] = defaultdict(dict)
    by_plan: dict[str, dict[str, Money]] = defaultdict(dict)
    by_month: dict[str, dict[str, Money]] = defaultdict(dict)
    for e in rows:
        order = orders.get(e.right_id)
        if order is None:
            continue
        plan = billing.Plan(**order.plan_snapshot)  # type: ignore[arg-type]
        if plan_kind and plan.kind != plan_kind:
            continue
        name = order.offer.dataset.name
        other = orgs.get(getattr(e, f"{counterparty_of}_id"), "?")
        usage_seqs = e.payload.get("usage") if e.kind == "settlement" else []
        line = ChargeLine(
            e.seq,
            e.integrated_at,
            "usage" if e.kind == "settlement" else e.kind,
            name,
            _job_id(e.payload.get("job")),
            e.right_id or 0,
            0,
            None,
            other,
            plan.kind,
            usage_seqs=list(usage_seqs) if isinstance(usage_seqs, list) else [],
        )
        try:
            priced = _price(e, plan)
            if priced is None:
                continue
            line.kind, minor = priced
            if e.kind == "settlement":
                line.rows, line.records = _count(e.payload, "rows"), _count(e.payload, "records")
            amount = line.amount = Money(minor, plan.currency)
        except (_Unpriceable, ValueError, TypeError, KeyError) as exc:
            line.problem = f"cannot be priced: {exc}"
            statement.lines.append(line)
            continue
        statement.lines.append(line)
        cur = amount.currency
        statement.totals[cur] = statement.totals.get(cur, Money.zero(cur)) + amount
        _add(by_dataset, name, amount)
        _add(by_party, other, amount)
        _add(by_plan, plan.kind, amount)
        _add(by_month, e.integrated_at.strftime("%Y-%m"), amount)
        _add(series, bucket(e.integrated_at, group), amount)
        _add(by_right, f"#{e.right_id} {name}", amount)
        statement.ledger_seqs.append(e.seq)
    for cur, gross in statement.totals.items():
        statement.fees[cur] = gross.apply_bps(settings.USUFRUCT_PLATFORM_FEE_BPS)
        statement.nets[cur] = gross - statement.fees[cur]
    statement.by_dataset = dict(by_dataset)
    statement.by_counterparty = dict(by_party)
    statement.by_plan = dict(by_plan)
    statement.by_month = dict(by_month)
    statement.by_right = dict(by_right)
    statement.series = dict(series)
    if statement.ledger_seqs:
        covering = Checkpoint.objects.filter(size__gt=max(statement.ledger_seqs)).order_by("size").first()
        statement.checkpoint_size = covering.size if covering else None
    return statement


def charges(entries: QuerySet[LedgerEntry]) -> Statement:
    """Price charged entries (purchases, settlements, refunds) for an auditor: each line's amount."""
    return _statement(entries, counterparty_of="consumer")


def _period(qs: QuerySet[LedgerEntry], since: date | None, until: date | None) -> QuerySet[LedgerEntry]:
    """Entries integrated in [since, until] (whole UTC days)."""
    if since:
        qs = qs.filter(integrated_at__date__gte=since)
    if until:
        qs = qs.filter(integrated_at__date__lte=until)
    return qs


def _report(
    qs: QuerySet[LedgerEntry],
    counterparty_of: str,
    since: date | None,
    until: date | None,
    *,
    dataset: int | None = None,
    counterparty: int | None = None,
    plan: str | None = None,
    group: str = "month",
) -> Statement:
    """A bill or revenue report, optionally for one dataset, one counterparty or one plan kind."""
    qs = _period(qs, since, until)
    if dataset is not None:
        qs = qs.filter(dataset_id=dataset)
    if counterparty is not None:
        qs = qs.filter(**{f"{counterparty_of}_id": counterparty})
    return _statement(qs, counterparty_of=counterparty_of, plan_kind=plan, group=group)


def consumer_bill(org: Organization, since: date | None = None, until: date | None = None, **filters: Any) -> Statement:
    """What a consumer spent (``counterparty``: a provider); filters as :func:`_report`."""
    return _report(LedgerEntry.objects.filter(consumer_id=org.id), "provider", since, until, **filters)


def provider_revenue(
    org: Organization, since: date | None = None, until: date | None = None, **filters: Any
) -> Statement:
    """What a provider earned (``counterparty``: a consumer); filters as :func:`_report`."""
    return _report(LedgerEntry.objects.filter(provider_id=org.id), "consumer", since, until, **filters)


def report_choices(org: Organization, *, side: str) -> dict[str, list[tuple[int, str]]]:
    """The datasets and counterparties a report can be filtered by: those the org has orders with."""
    orders = Order.objects.filter(
        **({"consumer": org} if side == "consumer" else {"offer__dataset__organization": org})
    )
    datasets = dict(orders.values_list("offer__dataset_id", "offer__dataset__name"))
    if side == "consumer":
        parties = dict(orders.values_list("offer__dataset__organization_id", "offer__dataset__organization__name"))
    else:
        parties = dict(orders.values_list("consumer_id", "consumer__name"))
    return {
        "datasets": sorted(datasets.items(), key=lambda kv: kv[1]),
        "counterparties": sorted(parties.items(), key=lambda kv: kv[1]),
    }
