"""Money as integer minor units plus an ISO 4217 currency. Pure: no Django.

A ``Money`` refuses to mix currencies; rounding happens in one place (``apply_bps``).
"""

from __future__ import annotations

from dataclasses import dataclass

# ISO 4217 codes we accept, with their minor-unit exponent.
CURRENCIES: dict[str, int] = {
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "CNY": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "CAD": 2,
    "AUD": 2,
    "SGD": 2,
    "HKD": 2,
    "INR": 2,
    "BRL": 2,
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "KWD": 3,
    "BHD": 3,
}


class CurrencyMismatch(ValueError):
    pass


def validate_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unknown or unsupported ISO 4217 currency {code!r}")
    return code


@dataclass(frozen=True, order=False)
class Money:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError("money is an integer number of minor units")
        validate_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor - other.minor, self.currency)

    def __mul__(self, units: int) -> Money:
        if isinstance(units, bool) or not isinstance(units, int):
            raise TypeError("multiply money by a whole number of units")
        return Money(self.minor * units, self.currency)

    def apply_bps(self, bps: int) -> Money:
        """``bps`` basis points of this amount, rounded half up to the minor unit."""
        return Money((self.minor * bps + 5000) // 10000, self.currency)

    def format(self) -> str:
        exp = CURRENCIES[self.currency]
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exp)
        amount = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
        return f"{sign}{amount} {self.currency}"

    def __str__(self) -> str:
        return self.format()


def total(amounts: list[Money], currency: str) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
