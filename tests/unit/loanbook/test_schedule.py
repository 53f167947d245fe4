"""Schedule maths: exact, complete, never negative — and close to numpy-financial's floats."""

from datetime import date
from fractions import Fraction

import numpy_financial as npf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.dates import DayCount, add_months
from parley.core.money import parse_rate
from parley.core.schedule import LoanTerms, RepaymentMethod, generate_schedule

rates = st.decimals(min_value=0, max_value=60, places=4).map(lambda d: parse_rate(str(d)))
terms_st = st.builds(
    LoanTerms,
    principal=st.integers(min_value=1, max_value=10**10),
    annual_rate=rates,
    term=st.integers(min_value=1, max_value=360),
    method=st.sampled_from(list(RepaymentMethod)),
    day_count=st.sampled_from(list(DayCount)),
    first_due_on=st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31)),
)


@settings(max_examples=400, deadline=None)
@given(terms_st)
def test_principal_sums_to_the_loan_and_balance_ends_at_zero(terms):
    schedule = generate_schedule(terms)
    assert len(schedule) == terms.term
    assert sum(s.principal for s in schedule) == terms.principal
    assert schedule[-1].balance == 0
    assert all(s.principal >= 0 and s.interest >= 0 for s in schedule)
    assert [s.number for s in schedule] == list(range(1, terms.term + 1))
    assert schedule[-1].payment > 0  # never an empty final instalment


@settings(max_examples=200, deadline=None)
@given(terms_st.filter(lambda t: t.method is RepaymentMethod.EQUAL_INSTALLMENT))
def test_annuity_payments_are_level_except_the_last(terms):
    schedule = generate_schedule(terms)
    if len(schedule) > 2 and terms.day_count is DayCount.THIRTY_360:
        firsts = {s.payment for s in schedule[:-1] if s.principal > 0}
        assert len(firsts) <= 1


def test_the_hypothesis_counterexample_from_research_has_no_negative_instalment():
    # 100.00 at 10.61% over 175 months: a half-up payment pays off early; we must not go negative.
    terms = LoanTerms(10000, parse_rate("10.61"), 175, RepaymentMethod.EQUAL_INSTALLMENT, DayCount.THIRTY_360, date(2024, 2, 1))
    schedule = generate_schedule(terms)
    assert min(s.payment for s in schedule) > 0
    assert schedule[-1].balance == 0 and sum(s.principal for s in schedule) == 10000


def test_the_documented_quote_example():
    terms = LoanTerms(10000, parse_rate("9.4822"), 6, RepaymentMethod.EQUAL_INSTALLMENT, DayCount.THIRTY_360, date(2024, 2, 1))
    schedule = generate_schedule(terms)
    assert [s.payment for s in schedule] == [1713] * 6
    assert [s.interest for s in schedule] == [79, 66, 53, 40, 27, 13]
    assert [s.due_on for s in schedule] == [date(2024, m, 1) for m in range(2, 8)]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=100_00, max_value=1_000_000_00), st.decimals(min_value="0.5", max_value=36, places=2),
       st.integers(min_value=2, max_value=120))
def test_annuity_agrees_with_numpy_financial_to_the_cent(principal, rate, n):
    terms = LoanTerms(principal, parse_rate(str(rate)), n, RepaymentMethod.EQUAL_INSTALLMENT, DayCount.THIRTY_360, date(2025, 1, 15))
    schedule = generate_schedule(terms)
    monthly = float(rate) / 100 / 12
    expected_payment = -npf.pmt(monthly, n, principal / 100) * 100
    # half-up payment, or the rounded-down fallback when half-up would pay off early
    assert abs(schedule[0].payment - expected_payment) < 1
    # the first period matches ipmt exactly (same balance); later ones, interest on our own balance
    assert abs(schedule[0].interest - (-npf.ipmt(monthly, 1, n, principal / 100) * 100)) <= 0.5 + 1e-6
    balance = principal
    for row in schedule:
        assert abs(row.interest - balance * monthly) <= 0.5 + 1e-6
        balance -= row.principal


def test_equal_principal_declines_and_interest_only_is_bullet():
    ep = generate_schedule(LoanTerms(120000, parse_rate("12"), 12, RepaymentMethod.EQUAL_PRINCIPAL, DayCount.THIRTY_360, date(2025, 1, 1)))
    assert {s.principal for s in ep} == {10000}
    assert [s.interest for s in ep][:3] == [1200, 1100, 1000]
    io = generate_schedule(LoanTerms(120000, parse_rate("12"), 3, RepaymentMethod.INTEREST_ONLY, DayCount.THIRTY_360, date(2025, 1, 1)))
    assert [(s.principal, s.interest) for s in io] == [(0, 1200), (0, 1200), (120000, 1200)]


def test_actual_day_counts_use_calendar_days_including_leap_february():
    t = LoanTerms(3650000, Fraction(1, 10), 2, RepaymentMethod.INTEREST_ONLY, DayCount.ACTUAL_365, date(2024, 2, 29), date(2024, 1, 29))
    s = generate_schedule(t)
    assert s[0].interest == 3650000 * 31 // 3650  # 31 days in January 29 → February 29
    assert s[1].interest == 3650000 * 29 // 3650  # 29 Feb → 29 Mar
    t360 = LoanTerms(3600000, Fraction(1, 10), 1, RepaymentMethod.INTEREST_ONLY, DayCount.ACTUAL_360, date(2024, 3, 1), date(2024, 1, 31))
    assert generate_schedule(t360)[0].interest == 3600000 * 30 // 3600


def test_month_stepping_keeps_the_anchor_day():
    assert [add_months(date(2024, 1, 31), k) for k in range(4)] == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]
    dues = [s.due_on for s in generate_schedule(LoanTerms(1000, Fraction(0), 3, RepaymentMethod.EQUAL_PRINCIPAL, DayCount.THIRTY_360, date(2023, 1, 31)))]
    assert dues == [date(2023, 1, 31), date(2023, 2, 28), date(2023, 3, 31)]


def test_invalid_terms_are_refused():
    with pytest.raises(ValueError):
        LoanTerms(0, Fraction(0), 3, RepaymentMethod.EQUAL_PRINCIPAL, DayCount.THIRTY_360, date(2025, 1, 1))
    with pytest.raises(ValueError):
        LoanTerms(100, Fraction(0), 0, RepaymentMethod.EQUAL_PRINCIPAL, DayCount.THIRTY_360, date(2025, 1, 1))
    with pytest.raises(ValueError):
        LoanTerms(100, Fraction(0), 3, RepaymentMethod.EQUAL_PRINCIPAL, DayCount.THIRTY_360, date(2025, 1, 1), date(2025, 1, 1))
