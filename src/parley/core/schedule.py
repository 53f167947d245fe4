"""Instalment schedules: 等额本息 (annuity), 等额本金 (equal principal), 先息后本 (interest-only).

All arithmetic is on integers (minor units) and exact fractions; amounts are rounded half-up to
the minor unit at two stated points only: the annuity payment, and each period's interest.
The last instalment absorbs every rounding difference, so principal sums to the loan exactly
and the balance ends at zero; no instalment is ever negative (see `_annuity_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext  # noqa: F401 (ROUND_FLOOR: annuity_payment callers)
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache

from parley.core.dates import DayCount, add_months, days_30e_360
from parley.core.money import round_half_up

MAX_TERM_MONTHS = 600


class RepaymentMethod(StrEnum):
    EQUAL_INSTALLMENT = "equal-installment"  # 等额本息
    EQUAL_PRINCIPAL = "equal-principal"  # 等额本金
    INTEREST_ONLY = "interest-only"  # 先息后本


@dataclass(frozen=True, slots=True)
class LoanTerms:
    """What a schedule is generated from.

    principal: minor units, > 0.
    annual_rate: exact fraction of one per year (9.4822% is Fraction(94822, 1000000)).
    term: number of monthly instalments, 1..600.
    disbursed_on: start of the first period; None means a regular first period (one month
        before `first_due_on`), which is what a quote assumes.
    """

    principal: int
    annual_rate: Fraction
    term: int
    method: RepaymentMethod
    day_count: DayCount
    first_due_on: date
    disbursed_on: date | None = None

    def __post_init__(self) -> None:
        if self.principal <= 0:
            raise ValueError("principal must be positive")
        if self.annual_rate < 0:
            raise ValueError("annual rate must not be negative")
        if not 1 <= self.term <= MAX_TERM_MONTHS:
            raise ValueError(f"term must be 1..{MAX_TERM_MONTHS} months")
        if self.disbursed_on is not None and self.disbursed_on >= self.first_due_on:
            raise ValueError("first due date must be after disbursement")


@dataclass(frozen=True, slots=True)
class ScheduledInstallment:
    """One row of a schedule: what is due on `due_on`, and principal left afterwards."""

    number: int
    due_on: date
    principal: int
    interest: int
    balance: int

    @property
    def payment(self) -> int:
        return self.principal + self.interest


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _due_dates(first_due_on: date, term: int) -> list[date]:
    """Monthly due dates anchored on the first due day (31 Jan → 29 Feb → 31 Mar)."""
    y, m, d = first_due_on.year, first_due_on.month - 1, first_due_on.day
    out = [first_due_on]
    for k in range(1, term):
        mi = m + k
        yy, mm = y + mi // 12, mi % 12
        last = 29 if mm == 1 and (yy % 4 == 0 and (yy % 100 != 0 or yy % 400 == 0)) else _MONTH_DAYS[mm]
        out.append(date(yy, mm + 1, d if d <= last else last))
    return out


def _period_rates(terms: LoanTerms, dues: list[date]) -> list[tuple[int, int]]:
    """Each period's exact interest rate as an integer (numerator, denominator).

    Plain integers, no Fraction in the loop: importing a million loans runs this ten million
    times. Under 30/360 a whole month is exactly 1/12; the first period is irregular when the
    loan was disbursed on another day than one month before the first due date.
    """
    rn, rd = terms.annual_rate.numerator, terms.annual_rate.denominator
    regular_start = add_months(terms.first_due_on, -1)
    start = terms.disbursed_on or regular_start
    out: list[tuple[int, int]] = []
    if terms.day_count is DayCount.THIRTY_360:
        month = (rn, rd * 12)
        if start == regular_start:
            return [month] * len(dues)
        out.append((rn * days_30e_360(start, dues[0]), rd * 360))
        return out + [month] * (len(dues) - 1)
    basis = rd * (365 if terms.day_count is DayCount.ACTUAL_365 else 360)
    for due in dues:
        out.append((rn * (due - start).days, basis))
        start = due
    return out


@lru_cache(maxsize=4096)
def annuity_payment(
    principal: int, annual_rate: Fraction, term: int, rounding: str = ROUND_HALF_UP
) -> int:
    """The level payment P·i / (1 − (1+i)^−n) at the nominal monthly rate i = annual/12."""
    if annual_rate == 0:
        q = Fraction(principal, term)
        return (
            round_half_up(q.numerator, q.denominator)
            if rounding == ROUND_HALF_UP
            else principal // term
        )
    with localcontext() as ctx:
        ctx.prec = 60
        i = Decimal(annual_rate.numerator) / Decimal(annual_rate.denominator) / 12
        exact = Decimal(principal) * i / (1 - (1 + i) ** -term)
        return int(exact.quantize(Decimal(1), rounding=rounding))


def _annuity_rows(principal: int, payment: int, rates: list[tuple[int, int]], *, strict: bool) -> list[tuple[int, int]] | None:
    """(principal, interest) per period for a level payment; None if it pays off too early.

    A payment rounded up can retire the loan before the last period (e.g. 100.00 at 10.61%
    over 175 months); `strict` reports that so the caller can fall back to a rounded-down
    payment, under which the balance stays above the exact curve and the last row is positive.
    """
    rows: list[tuple[int, int]] = []
    balance = principal
    last = len(rates) - 1
    for k, (num, den) in enumerate(rates):
        interest = (2 * balance * num + den) // (2 * den)  # half-up; balance ≥ 0
        if k == last:
            part = balance
        else:
            part = payment - interest
            if part < 0:
                part = 0
            elif part >= balance:
                if strict:
                    return None
                part = balance
        rows.append((part, interest))
        balance -= part
    return rows


def _annuity(terms: LoanTerms, rates: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The half-up level payment, lowered a minor unit at a time while it would retire the
    loan before the last period (tiny principals over long terms). Every instalment but the
    last then pays the same amount, and the last is positive."""
    pay = annuity_payment(terms.principal, terms.annual_rate, terms.term, ROUND_HALF_UP)
    while pay > 0:
        rows = _annuity_rows(terms.principal, pay, rates, strict=True)
        if rows is not None:
            return rows
        pay -= 1
    rows = _annuity_rows(terms.principal, 0, rates, strict=True)
    if rows is None:  # a zero payment never retires the loan early
        raise RuntimeError("unreachable")
    return rows


def _equal_principal_rows(principal: int, rates: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n = len(rates)
    base = principal // n
    rows = []
    balance = principal
    for k, (num, den) in enumerate(rates):
        interest = (2 * balance * num + den) // (2 * den)
        part = balance if k == n - 1 else base
        rows.append((part, interest))
        balance -= part
    return rows


def _interest_only_rows(principal: int, rates: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n = len(rates)
    return [(principal if k == n - 1 else 0, (2 * principal * num + den) // (2 * den)) for k, (num, den) in enumerate(rates)]


def schedule_rows(terms: LoanTerms) -> tuple[list[date], list[tuple[int, int]]]:
    """Due dates and (principal, interest) per instalment: the fast path imports use."""
    dues = _due_dates(terms.first_due_on, terms.term)
    rates = _period_rates(terms, dues)
    if terms.method is RepaymentMethod.EQUAL_INSTALLMENT:
        return dues, _annuity(terms, rates)
    if terms.method is RepaymentMethod.EQUAL_PRINCIPAL:
        return dues, _equal_principal_rows(terms.principal, rates)
    return dues, _interest_only_rows(terms.principal, rates)


def generate_schedule(terms: LoanTerms) -> tuple[ScheduledInstallment, ...]:
    """The instalment schedule for `terms`; principal sums to the loan, balance ends at zero."""
    dues, rows = schedule_rows(terms)
    out = []
    balance = terms.principal
    for n, (due, (part, interest)) in enumerate(zip(dues, rows, strict=True), start=1):
        balance -= part
        out.append(ScheduledInstallment(n, due, part, interest, balance))
    return tuple(out)
