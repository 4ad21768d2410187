"""Billing arithmetic for every plan kind (pure) — hand-computed known answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace import billing
from marketplace.billing import Plan, PlanError

EUR = "EUR"


def test_per_job_postpaid_charges_each_use_and_nothing_upfront() -> None:
    plan = Plan(billing.PER_JOB, 150, EUR)
    assert billing.upfront_charge(plan, quota=20) == 0
    assert [billing.usage_charge(plan, nth_use=n, rows=2000) for n in (1, 2)] == [150, 150]
    assert billing.refund_for_unused(plan, quota=20, used=3) == 0


def test_prepaid_bundle_is_paid_upfront_and_unused_units_are_refunded() -> None:
    plan = Plan(billing.PER_JOB, 150, EUR, billing=billing.PREPAID)
    assert billing.upfront_charge(plan, quota=20) == 3000
    assert billing.usage_charge(plan, nth_use=1, rows=10) == 0
    assert billing.refund_for_unused(plan, quota=20, used=3) == 17 * 150


def test_per_thousand_rows_rounds_half_up_once_per_use() -> None:
    plan = Plan(billing.PER_1000_ROWS, 40, EUR)  # 0.40 EUR per 1,000 rows
    assert billing.usage_charge(plan, nth_use=1, rows=2000) == 80
    assert billing.usage_charge(plan, nth_use=1, rows=1801) == 72  # 72.04 → 72
    assert billing.usage_charge(plan, nth_use=1, rows=1813) == 73  # 72.52 → 73


def test_per_record_and_free() -> None:
    assert billing.usage_charge(Plan(billing.PER_RECORD, 2, EUR), nth_use=1, rows=0, records=500) == 1000
    assert billing.usage_charge(Plan(billing.FREE, 0, EUR), nth_use=9, rows=10**6) == 0


def test_subscription_fee_upfront_included_jobs_then_overage() -> None:
    plan = Plan(billing.SUBSCRIPTION, 5000, EUR, billing=billing.PREPAID, included_units=3, overage_minor=250)
    assert billing.upfront_charge(plan, quota=10) == 5000
    assert [billing.usage_charge(plan, nth_use=n, rows=1) for n in range(1, 6)] == [0, 0, 0, 250, 250]
    assert billing.refund_for_unused(plan, quota=10, used=4) == 3000  # 6/10 of the fee


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        (Plan(billing.PER_JOB, -1, EUR), "amount_minor"),
        (Plan(billing.PER_JOB, 0, EUR), "amount_minor"),
        (Plan(billing.FREE, 10, EUR), "amount_minor"),
        (Plan(billing.PER_1000_ROWS, 10, EUR, billing=billing.PREPAID), "billing"),
        (Plan(billing.SUBSCRIPTION, 10, EUR, billing=billing.POSTPAID), "billing"),
        (Plan(billing.SUBSCRIPTION, 10, EUR, billing=billing.PREPAID, included_units=99), "included_units"),
        (Plan("barter", 10, EUR), "kind"),
        (Plan(billing.PER_JOB, 1.5, EUR), "amount_minor"),  # type: ignore[arg-type]
    ],
)
def test_invalid_plans_are_refused_by_field(plan: Plan, field: str) -> None:
    with pytest.raises(PlanError) as err:
        billing.validate_plan(plan, quota=10)
    assert field in err.value.errors


@given(st.integers(0, 10**7), st.integers(0, 10**6))
def test_row_metering_is_within_half_a_minor_unit_of_exact(price: int, rows: int) -> None:
    charged = billing.usage_charge(Plan(billing.PER_1000_ROWS, max(price, 1), EUR), nth_use=1, rows=rows)
    assert abs(charged * 1000 - rows * max(price, 1)) <= 500
