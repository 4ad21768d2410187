"""What the ledger's charges mean: the price-plan arithmetic, integers only. Pure.

Shared by the hub (``marketplace.billing``, which adds the checks a plan must pass to be sold)
and the offline verifiers (``audit.invoice``), so that an invoice's amounts are recomputed from
its ledger entries by the same rule that made them. Rounding happens here and only here: half up,
to the currency's minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_JOB = "per_job"
PER_1000_ROWS = "per_1000_rows"
PER_RECORD = "per_record"
SUBSCRIPTION = "subscription"
FREE = "free"
KINDS = (PER_JOB, PER_1000_ROWS, PER_RECORD, SUBSCRIPTION, FREE)
PREPAID = "prepaid"
POSTPAID = "postpaid"


@dataclass(frozen=True)
class Plan:
    """A price plan as sold: the snapshot an order keeps."""

    kind: str
    amount_minor: int  # per job / per 1,000 rows / per record / per period; 0 when free
    currency: str
    billing: str = POSTPAID
    included_units: int = 0  # subscription: jobs included in the period fee
    overage_minor: int = 0  # subscription: each job beyond the included ones

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "billing": self.billing,
            "included_units": self.included_units,
            "overage_minor": self.overage_minor,
        }


def upfront_charge(plan: Plan, *, quota: int) -> int:
    """What the buyer pays when the right is granted."""
    if plan.kind == SUBSCRIPTION:
        return plan.amount_minor
    if plan.kind == PER_JOB and plan.billing == PREPAID:
        return plan.amount_minor * quota  # a prepaid bundle of ``quota`` jobs
    return 0


def usage_charge(plan: Plan, *, nth_use: int, rows: int, records: int = 0) -> int:
    """The charge for the ``nth_use`` (1-based) use of a right that touched ``rows`` rows."""
    if plan.kind == FREE:
        return 0
    if plan.kind == PER_JOB:
        return 0 if plan.billing == PREPAID else plan.amount_minor
    if plan.kind == PER_1000_ROWS:
        return (rows * plan.amount_minor + 500) // 1000  # half up, once per use
    if plan.kind == PER_RECORD:
        return records * plan.amount_minor
    if plan.kind == SUBSCRIPTION:
        return 0 if nth_use <= plan.included_units else plan.overage_minor
    raise ValueError(f"unknown plan kind {plan.kind!r}")


def refund_for_unused(plan: Plan, *, quota: int, used: int) -> int:
    """Revocation refunds prepaid units not used; subscriptions pro rata by jobs left."""
    left = max(quota - used, 0)
    if plan.kind == PER_JOB and plan.billing == PREPAID:
        return plan.amount_minor * left
    if plan.kind == SUBSCRIPTION and quota > 0:
        return (plan.amount_minor * left + quota // 2) // quota
    return 0


def share_bps(amount_minor: int, bps: int) -> int:
    """``bps`` basis points of an amount, half up to the minor unit (tax, the platform's fee)."""
    return (amount_minor * bps + 5000) // 10000


def line_amount(kind: str, payload: dict[str, object], price: dict[str, object] | None) -> int:
    """The amount one charged ledger entry stands for, from its payload (and, for a use, the price
    sold with its right, from that right's ``right_granted`` entry): what a document's line must say.

    ``right_granted``: the up-front charge; ``settlement``: the delivered use, priced by the plan;
    ``refund``: minus the amount refunded. Raises ``ValueError`` on anything else."""
    if kind == "right_granted":
        return _whole(payload.get("charge_minor"))
    if kind == "refund":
        return -_whole(payload.get("amount_minor"))
    if kind == "settlement":
        if payload.get("outcome") != "delivered":
            raise ValueError("an undelivered job is not charged")
        if not isinstance(price, dict):
            raise ValueError("a use is priced by the plan its right was sold with")
        plan = Plan(**price)  # type: ignore[arg-type]
        use = _whole(payload.get("use"))
        if use < 1:
            raise ValueError("a use is counted from 1")
        rows, records = _whole(payload.get("rows", 0)), _whole(payload.get("records", 0))
        return usage_charge(plan, nth_use=use, rows=rows, records=records)
    raise ValueError(f"a {kind!r} entry charges nothing")


def _whole(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r} is not a whole number ≥ 0")
    return value
