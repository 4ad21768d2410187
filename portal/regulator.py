"""What a data-protection authority reads: the processing trail and the alerts (issue 14).

Both are read from the ledger (and, for refused node replies, from the hub's message
log, where a refused reply is kept as evidence), in a fixed number of queries whatever
the number of rows.

The trail is one row per job and dataset: who used which data, when, under which right,
for which declared purpose and purpose category, with which operation, how many rows
it touched, the ε it spent and what it was charged — each row names its ledger entries.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max, Min, Q
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from compute.models import Message
from ledger.models import Checkpoint, LedgerEntry, RefusedReceipt, Witness
from marketplace import selectors as market
from marketplace.models import Dataset, Organization
from marketplace.money import Money
from protocol.purposes import PURPOSE_CATEGORIES, covers


@dataclass
class TrailRow:
    job: str
    dataset: str
    dataset_id: int
    consumer: str
    provider: str
    right: int | None
    purpose: str
    category: str
    operations: list[str]
    steps: int
    rows: int
    records: int
    first_at: datetime
    last_at: datetime
    usage_seqs: list[int] = field(default_factory=list)
    epsilon: Decimal = Decimal(0)
    dp_seqs: list[int] = field(default_factory=list)
    outcome: str = ""  # the settlement's: delivered, failed, cancelled; "" while running or for a preview
    charged: Money | None = None
    settlement_seq: int | None = None
    in_purpose: bool | None = None  # None: a category the purpose list does not know, or a free preview

    @property
    def charged_text(self) -> str:
        if self.right is None:
            return "free preview"
        if not self.outcome:
            return "not settled yet"
        if self.charged is None:
            return f"not charged ({self.outcome})"
        return self.charged.format()

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "dataset": self.dataset,
            "dataset_id": self.dataset_id,
            "consumer": self.consumer,
            "provider": self.provider,
            "right": self.right,
            "purpose": self.purpose,
            "purpose_category": self.category,
            "operations": self.operations,
            "steps": self.steps,
            "rows": self.rows,
            "records": self.records,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "epsilon": str(self.epsilon),
            "outcome": self.outcome,
            "charged": None
            if self.charged is None
            else {"amount_minor": self.charged.minor, "currency": self.charged.currency},
            "charged_text": self.charged_text,
            "within_declared_purpose": self.in_purpose,
            "ledger_seqs": {"usage": self.usage_seqs, "dp_charge": self.dp_seqs, "settlement": self.settlement_seq},
        }


def _whole(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def trail(
    *,
    dataset_id: int | None = None,
    consumer_id: int | None = None,
    provider_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[TrailRow]:
    """The trail for one dataset, one consumer or one provider (or all), time ``[since, until)``."""
    scope = Q()
    for name, value in (("dataset_id", dataset_id), ("consumer_id", consumer_id), ("provider_id", provider_id)):
        if value is not None:
            scope &= Q(**{name: value})
    if since is not None:
        scope &= Q(integrated_at__gte=since)
    if until is not None:
        scope &= Q(integrated_at__lt=until)
    usage = LedgerEntry.objects.filter(scope, kind=LedgerEntry.Kind.USAGE).order_by("seq")
    rows: dict[tuple[str, int], TrailRow] = {}
    names = dict(Organization.objects.values_list("id", "name"))
    datasets = dict(Dataset.objects.values_list("id", "name"))
    for e in usage.only("seq", "payload", "integrated_at", "dataset_id", "consumer_id", "provider_id", "right_id"):
        p = e.payload
        key = (str(p.get("job") or ""), e.dataset_id or 0)
        row = rows.get(key)
        if row is None:
            row = rows[key] = TrailRow(
                job=key[0],
                dataset=datasets.get(e.dataset_id or 0, "?"),
                dataset_id=e.dataset_id or 0,
                consumer=names.get(e.consumer_id or 0, "?"),
                provider=names.get(e.provider_id or 0, "?"),
                right=e.right_id,
                purpose="",
                category="",
                operations=[],
                steps=0,
                rows=0,
                records=0,
                first_at=e.integrated_at,
                last_at=e.integrated_at,
            )
        op = str(p.get("operation") or "")
        if op and op not in row.operations:
            row.operations.append(op)
        row.steps += 1
        row.rows += _whole(p.get("rows"))
        row.records += _whole(p.get("records"))
        row.last_at = e.integrated_at
        row.usage_seqs.append(e.seq)
    if not rows:
        return []
    jobs = {job for job, _ in rows}
    rights = {r.right for r in rows.values() if r.right}
    grants = {
        e.right_id: e.payload
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED, right_id__in=rights).only(
            "right_id", "payload"
        )
    }
    for dp in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DP_CHARGE, payload__job__in=jobs).only(
        "seq", "payload", "dataset_id"
    ):
        row = rows.get((str(dp.payload.get("job")), dp.dataset_id or 0))
        if row is not None:
            with contextlib.suppress(InvalidOperation):
                row.epsilon += Decimal(str(dp.payload.get("epsilon")))
            row.dp_seqs.append(dp.seq)
    settlements = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLEMENT, payload__job__in=jobs)
    priced = {li.seq: li.amount for li in market.charges(settlements).lines}
    for s in settlements.only("seq", "payload", "dataset_id"):
        row = rows.get((str(s.payload.get("job")), s.dataset_id or 0))
        if row is not None:
            row.outcome, row.settlement_seq = str(s.payload.get("outcome") or ""), s.seq
            row.charged = priced.get(s.seq)
    for row in rows.values():
        grant = grants.get(row.right or 0, {})
        row.purpose, row.category = str(grant.get("purpose", "")), str(grant.get("purpose_category", ""))
        if row.right is not None and row.category:
            verdicts = [covers(row.category, op) for op in row.operations]
            row.in_purpose = None if None in verdicts else all(verdicts)
    return sorted(rows.values(), key=lambda r: r.usage_seqs[0])


@dataclass
class Alert:
    kind: str  # purpose | budget | refused_reply | refused_receipt | witness
    severity: str  # warning | critical
    subject: str
    detail: str
    at: datetime | None
    ledger_seqs: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "detail": self.detail,
            "at": self.at,
            "ledger_seqs": self.ledger_seqs,
        }


ALERT_KINDS = ("purpose", "budget", "refused_reply", "refused_receipt", "witness")


def alerts() -> list[Alert]:
    """Every open alert, most severe first, then newest first."""
    found = [*_purpose_alerts(), *_budget_alerts(), *_refused_replies(), *_refused_receipts(), *_witness_alerts()]
    epoch = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    return sorted(found, key=lambda a: (a.severity != "critical", -(a.at or epoch).timestamp()))


def _purpose_alerts() -> list[Alert]:
    """Uses whose operation the right's declared purpose category does not cover."""
    grants = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED).exclude(payload__purpose_category="")
    by_category: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for g in grants.only("right_id", "payload"):
        category = str(g.payload.get("purpose_category", "")).strip().lower()
        if category in PURPOSE_CATEGORIES and g.right_id:
            by_category[category][g.right_id] = g.payload
    names = dict(Organization.objects.values_list("id", "name"))
    datasets = dict(Dataset.objects.values_list("id", "name"))
    out = []
    for category, rights in by_category.items():
        beyond = (
            LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE, right_id__in=list(rights))
            .exclude(payload__operation__in=sorted(PURPOSE_CATEGORIES[category]))
            .values("right_id", "consumer_id", "dataset_id", op=KeyTextTransform("operation", "payload"))
            .annotate(n=Count("seq"), first=Min("seq"), last=Max("seq"), at=Max("integrated_at"))
        )
        for b in beyond:
            purpose = rights[b["right_id"]].get("purpose", "")
            out.append(
                Alert(
                    "purpose",
                    "critical",
                    f"{names.get(b['consumer_id'], '?')}: {b['op']} on {datasets.get(b['dataset_id'], '?')}",
                    f"Right #{b['right_id']} was bought for '{purpose}' (category {category}), which does not"
                    f" cover {b['op']}: {b['n']} use(s), ledger #{b['first']}–#{b['last']}.",
                    b["at"],
                    [b["first"], b["last"]],
                )
            )
    return out


def _budget_alerts() -> list[Alert]:
    """Datasets whose lifetime ε is spent to the warning fraction or beyond."""
    fraction = Decimal(str(settings.USUFRUCT_EPSILON_ALERT_FRACTION))
    near = Dataset.objects.filter(epsilon_budget__gt=0, epsilon_spent__gte=F("epsilon_budget") * fraction)
    last_set = {
        e["dataset_id"]: e["seq"]
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DATASET_BUDGET_SET, dataset_id__in=near.values("id"))
        .values("dataset_id")
        .annotate(seq=Max("seq"))
    }
    last_charge = {
        e["dataset_id"]: (e["seq"], e["at"])
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DP_CHARGE, dataset_id__in=near.values("id"))
        .values("dataset_id")
        .annotate(seq=Max("seq"), at=Max("integrated_at"))
    }
    out = []
    for d in near.select_related("organization"):
        assert d.epsilon_budget is not None
        spent, cap = d.epsilon_spent, d.epsilon_budget
        seq, at = last_charge.get(d.id, (None, None))
        out.append(
            Alert(
                "budget",
                "critical" if spent >= cap else "warning",
                f"{d.name} ({d.organization.name})",
                f"ε = {spent} of its lifetime budget ε = {cap} is spent ({round(100 * spent / cap)} %)"
                + ("; no further differentially private release is possible." if spent >= cap else "."),
                at,
                [s for s in (last_set.get(d.id), seq) if s],
            )
        )
    return out


def _refused_replies() -> list[Alert]:
    """Node replies the hub read and refused (a usage receipt failing a check), newest first."""
    refused = Message.objects.exclude(refused_code="").order_by("-created_at")[:200]
    return [
        Alert(
            "refused_reply",
            "warning",
            f"Node {m.sender}: {m.refused_code}",
            f"Its reply to step {m.step} of job {m.job_id} was refused: {m.refused_reason}",
            m.created_at,
        )
        for m in refused
    ]


def _refused_receipts() -> list[Alert]:
    """Usage entries whose node refused to attest the receipt the hub holds for it."""
    return [
        Alert(
            "refused_receipt",
            "critical",
            f"Node {r.node} disowns ledger #{r.seq}",
            f"The node refused to attest the receipt of usage entry #{r.seq}: {r.reason}",
            r.created_at,
            [r.seq],
        )
        for r in RefusedReceipt.objects.order_by("-created_at")[:200]
    ]


def _witness_alerts(now: datetime | None = None) -> list[Alert]:
    """Active witnesses that have not co-signed the checkpoints older than the grace period."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.USUFRUCT_WITNESS_GRACE)
    due = Checkpoint.objects.filter(created_at__lte=now - grace).order_by("-size").first()
    if due is None:
        return []
    out = []
    latest = dict(
        Witness.objects.filter(active=True)
        .annotate(last=Max("cosignatures__checkpoint__size"))
        .values_list("id", "last")
    )
    last_times = dict(
        Checkpoint.objects.filter(size__in=[s for s in latest.values() if s]).values_list("size", "created_at")
    )
    for w in Witness.objects.filter(active=True, id__in=list(latest)).order_by("name"):
        last = latest[w.id]
        if last is not None and last >= due.size:
            continue
        since = f"since checkpoint {last} ({last_times[last]:%Y-%m-%d %H:%M} UTC)" if last else "ever"
        out.append(
            Alert(
                "witness",
                "critical",
                f"Witness {w.name} stopped co-signing",
                f"It has not co-signed a checkpoint {since}; checkpoint {due.size} of"
                f" {due.created_at:%Y-%m-%d %H:%M} UTC is older than the {settings.USUFRUCT_WITNESS_GRACE} s grace.",
                due.created_at,
            )
        )
    return out
