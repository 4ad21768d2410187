"""Billing arithmetic for every price plan. Pure: no Django, integers only.

A charge is derived from what the ledger records (a grant, a use, a refund) and the
plan snapshot copied into the order — never from the live offer. Rounding happens here
and only here: half up, to the currency's minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.money import CURRENCIES

PER_JOB = "per_job"
PER_1000_ROWS = "per_1000_rows"
PER_RECORD = "per_record"
SUBSCRIPTION = "subscription"
FREE = "free"
KINDS = (PER_JOB, PER_1000_ROWS, PER_RECORD, SUBSCRIPTION, FREE)
PREPAID = "prepaid"
POSTPAID = "postpaid"


class PlanError(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


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


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_plan(plan: Plan, *, quota: int) -> None:
    errors: dict[str, list[str]] = {}
    if plan.kind not in KINDS:
        errors["kind"] = [f"Unknown plan kind {plan.kind!r}; choose one of {', '.join(KINDS)}."]
    for name, what in (("amount_minor", "Price"), ("included_units", "Included units"), ("overage_minor", "Overage")):
        value = getattr(plan, name)
        if not _whole(value):
            errors[name] = [f"{what} must be a whole number (minor units, e.g. cents)."]
        elif value < 0:
            errors[name] = [f"{what} cannot be negative."]
    if plan.currency not in CURRENCIES:
        errors["currency"] = [f"Unknown or unsupported ISO 4217 currency {plan.currency!r}."]
    if plan.billing not in (PREPAID, POSTPAID):
        errors["billing"] = ["Choose prepaid or postpaid."]
    if not errors:
        if plan.kind == FREE and plan.amount_minor != 0:
            errors["amount_minor"] = ["A free plan has no price."]
        if plan.kind != FREE and plan.kind != SUBSCRIPTION and plan.amount_minor == 0:
            errors["amount_minor"] = ["Give a price, or choose the free plan."]
        if plan.kind in (PER_1000_ROWS, PER_RECORD) and plan.billing == PREPAID:
            errors["billing"] = ["Usage-metered plans are postpaid: rows and records are known only after use."]
        if plan.kind == SUBSCRIPTION:
            if plan.billing != PREPAID:
                errors["billing"] = ["A subscription's period fee is paid in advance."]
            if plan.included_units > quota:
                errors["included_units"] = ["Cannot include more jobs than the quota."]
    if errors:
        raise PlanError(errors)


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
