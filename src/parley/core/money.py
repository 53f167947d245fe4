"""Money: exact amounts in integer minor units, one constructor, no floats.

Every amount that enters Parley goes through `parse_minor` (hot paths, e.g. imports) or
`Money.parse`; both refuse floats and refuse more decimal places than the currency has.
Rounding happens only where a rule says so, with `round_half_up` on exact integer fractions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

# ISO 4217 minor units for the currencies a lender is likely to book. Unknown codes are refused
# rather than guessed: a wrong exponent silently multiplies every amount by 100.
MINOR_UNITS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "MOP": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "INR": 2,
    "SGD": 2,
    "MYR": 2,
    "THB": 2,
    "PHP": 2,
    "IDR": 2,
    "AUD": 2,
    "CAD": 2,
    "NZD": 2,
    "CHF": 2,
    "MXN": 2,
    "BRL": 2,
    "ZAR": 2,
    "NGN": 2,
    "KES": 2,
    "PKR": 2,
    "BDT": 2,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
}

# ASCII digits only: `\d` also matches "٥٠٠" (Arabic-Indic) and "５００" (full-width), which
# int() reads as 500, so a form or a file could carry an amount the API would refuse.
_AMOUNT = re.compile(r"^([+-]?)([0-9]{1,15})(?:\.([0-9]{1,6}))?$")


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency`; unknown currencies are an error."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


def parse_minor(text: str, currency: str) -> int:
    """Parse a decimal string in major units ("1234.56") into integer minor units.

    Refuses floats, exponents, thousands separators and more decimals than the currency has:
    "12.345" CNY is an error, not 12.35, because silently rounding imported money hides bugs.
    """
    if not isinstance(text, str):
        raise MoneyError(f"amount must be a decimal string, got {type(text).__name__}")
    m = _AMOUNT.match(text.strip())
    if m is None:
        raise MoneyError(f"{text!r} is not a decimal amount like 1234.56")
    sign, whole, frac = m.groups()
    exp = minor_units(currency)
    frac = frac or ""
    if len(frac) > exp:
        if frac[exp:].strip("0"):
            raise MoneyError(f"{text!r} has more than {exp} decimal places for {currency}")
        frac = frac[:exp]
    value: int = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if exp else 0)
    return -value if sign == "-" else value


def format_minor(amount: int, currency: str) -> str:
    """Integer minor units back to a decimal string in major units ("1234.56")."""
    exp = minor_units(currency)
    if exp == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def round_half_up(numerator: int, denominator: int) -> int:
    """The integer nearest to numerator/denominator, halves away from zero. Exact."""
    if denominator <= 0:
        raise MoneyError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def parse_rate(text: str) -> Fraction:
    """An annual rate in percent ("9.4822") as an exact fraction of one (0.094822)."""
    if not isinstance(text, str):
        raise MoneyError(f"rate must be a decimal string, got {type(text).__name__}")
    m = _AMOUNT.match(text.strip())
    if m is None or m.group(1) == "-":
        raise MoneyError(f"{text!r} is not a non-negative percentage like 9.4822")
    return Fraction(Decimal(text.strip())) / 100


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact amount: integer minor units and an ISO 4217 code.

    Arithmetic refuses to mix currencies. Construct with `Money.parse` or `Money.of_minor`;
    floats are refused everywhere.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise MoneyError(f"minor units must be int, got {type(self.minor).__name__}")
        minor_units(self.currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        return cls(parse_minor(text, currency), currency)

    @classmethod
    def of_minor(cls, minor: int, currency: str) -> Money:
        return cls(minor, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise MoneyError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def to_decimal(self) -> Decimal:
        return Decimal(format_minor(self.minor, self.currency))

    def __str__(self) -> str:
        return format_minor(self.minor, self.currency)
