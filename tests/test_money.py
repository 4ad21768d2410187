from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.forms import to_minor
from marketplace.money import CurrencyMismatch, Money


def test_money_refuses_floats_bools_and_unknown_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "EUR")
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(1, "XXX")


def test_money_never_mixes_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(1, "EUR") + Money(1, "USD")


def test_formatting_follows_the_currency_exponent() -> None:
    assert Money(123456, "EUR").format() == "1,234.56 EUR"
    assert Money(1500, "JPY").format() == "1,500 JPY"
    assert Money(-5, "KWD").format() == "-0.005 KWD"


def test_fee_rounds_half_up_once() -> None:
    assert Money(135, "EUR").apply_bps(1000) == Money(14, "EUR")  # 13.5 → 14
    assert Money(134, "EUR").apply_bps(1000) == Money(13, "EUR")


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10_000))
def test_the_fee_is_the_exact_share_rounded_half_up_once(minor: int, bps: int) -> None:
    from decimal import ROUND_HALF_UP, Decimal

    exact = (Decimal(minor) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    fee = Money(minor, "EUR").apply_bps(bps)
    assert fee == Money(int(exact), "EUR")
    assert 0 <= fee.minor <= minor  # a fee never exceeds the gross, so the net is never negative


def test_price_entry_is_parsed_to_minor_units_exactly() -> None:
    assert to_minor("12.50", "EUR") == 1250
    assert to_minor("12", "EUR") == 1200
    assert to_minor("1,500", "JPY") == 1500
    for bad, message in [
        ("-1", "negative"),
        ("1.234", "decimal places"),
        ("abc", "such as"),
        ("1.5", "decimal places"),
    ]:
        with pytest.raises(ValueError, match=message):
            to_minor(bad, "JPY" if bad == "1.5" else "EUR")
