from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.money import (
    Money,
    MoneyError,
    format_minor,
    parse_minor,
    parse_rate,
    round_half_up,
)


def test_parse_minor_reads_major_units_exactly():
    assert parse_minor("1234.56", "CNY") == 123456
    assert parse_minor("1234.5", "CNY") == 123450
    assert parse_minor("7", "JPY") == 7
    assert parse_minor("1.250", "CNY") == 125  # trailing zero is not extra precision


@pytest.mark.parametrize("text", ["12.345", "1e3", "1,000.00", "", "abc", "12.", ".5"])
def test_parse_minor_refuses_what_is_not_an_exact_amount(text):
    with pytest.raises(MoneyError):
        parse_minor(text, "CNY")


def test_floats_are_refused_everywhere():
    with pytest.raises(MoneyError):
        parse_minor(12.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(12.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        parse_rate(9.5)  # type: ignore[arg-type]


def test_unknown_currency_is_refused():
    with pytest.raises(MoneyError, match="unknown currency"):
        parse_minor("1.00", "XYZ")


def test_money_does_not_mix_currencies():
    with pytest.raises(MoneyError):
        Money.parse("1.00", "CNY") + Money.parse("1.00", "USD")
    assert str(Money.parse("1.10", "CNY") + Money.parse("2.25", "CNY")) == "3.35"


@given(st.integers(min_value=-10**14, max_value=10**14), st.sampled_from(["CNY", "JPY", "KWD"]))
def test_format_and_parse_round_trip(minor, currency):
    assert parse_minor(format_minor(minor, currency), currency) == minor


@given(st.integers(min_value=-10**12, max_value=10**12), st.integers(min_value=1, max_value=10**9))
def test_round_half_up_matches_decimal(numerator, denominator):
    from decimal import ROUND_HALF_UP, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        expected = int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert round_half_up(numerator, denominator) == expected


def test_parse_rate_is_exact_fraction_of_one():
    assert parse_rate("9.4822") * 1_000_000 == 94822
    with pytest.raises(MoneyError):
        parse_rate("-1")


@pytest.mark.parametrize("text", [
    "٥٠٠",  # Arabic-Indic 500
    "۵۰۰",  # extended Arabic-Indic (Persian) 500
    "５００",  # full-width 500
    "５００.００",
    "500.٥٠",  # ASCII whole part, Arabic-Indic decimals
    "१००",  # Devanagari 100
])
def test_only_ascii_digits_make_an_amount(text):
    """int() reads every Unicode decimal digit, so `\\d` let "٥٠٠" through as 500 on a form
    or in a file while the API (pattern [0-9]) refused it: one rule for every way in."""
    with pytest.raises(MoneyError, match="is not a decimal amount like 1234.56"):
        parse_minor(text, "CNY")
    with pytest.raises(MoneyError):
        Money.parse(text, "CNY")
    with pytest.raises(MoneyError, match="is not a non-negative percentage"):
        parse_rate(text)
