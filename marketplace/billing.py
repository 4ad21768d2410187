"""Billing arithmetic for every price plan. Pure: no Django, integers only.

A charge is derived from what the ledger records (a grant, a use, a refund) and the
plan snapshot copied into the order — never from the live offer. Rounding happens here
and only here: half up, to the currency's minor unit.
"""

from __future__ import annotations

from marketplace.money import CURRENCIES
from protocol.pricing import (  # noqa: F401  (the arithmetic the offline verifiers share)
    FREE,
    KINDS,
    PER_1000_ROWS,
    PER_JOB,
    PER_RECORD,
    POSTPAID,
    PREPAID,
    SUBSCRIPTION,
    Plan,
    refund_for_unused,
    upfront_charge,
    usage_charge,
)


class PlanError(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


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
