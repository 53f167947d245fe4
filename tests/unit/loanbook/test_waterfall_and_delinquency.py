from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.delinquency import (
    BucketScheme,
    Pause,
    check_pauses,
    days_past_due,
    default_buckets,
    paused_days,
)
from parley.core.waterfall import Component, Outstanding, Waterfall, WaterfallOrder, allocate

OWED = [
    Outstanding(1, date(2026, 1, 1), principal=1000, interest=100, fee=10, penalty=5),
    Outstanding(2, date(2026, 2, 1), principal=1000, interest=90),
    Outstanding(3, date(2026, 3, 1), principal=1000, interest=80),
]


def test_default_waterfall_pays_penalty_fee_interest_principal_oldest_first():
    a = allocate(1200, OWED, date(2026, 2, 15))
    assert [(x.number, x.component, x.amount) for x in a.lines] == [
        (1, Component.PENALTY, 5), (1, Component.FEE, 10), (1, Component.INTEREST, 100), (1, Component.PRINCIPAL, 1000),
        (2, Component.INTEREST, 85)]
    assert a.credit == 0


def test_component_major_pays_all_interest_before_any_principal():
    wf = Waterfall(order=WaterfallOrder.COMPONENT_MAJOR)
    a = allocate(300, OWED, date(2026, 2, 15), wf)
    assert [(x.number, x.component) for x in a.lines] == [(1, Component.PENALTY), (1, Component.FEE), (1, Component.INTEREST),
                                                          (2, Component.INTEREST), (1, Component.PRINCIPAL)]


def test_due_instalments_come_before_prepaying_later_ones_and_excess_is_credit():
    a = allocate(5000, OWED, date(2026, 1, 10))
    assert a.lines[0].number == 1 and a.lines[-1].number == 3
    assert a.credit == 5000 - 3285
    assert a.allocated + a.credit == 5000


@given(st.integers(min_value=1, max_value=10_000))
def test_allocation_never_exceeds_what_is_owed(amount):
    a = allocate(amount, OWED, date(2026, 2, 15))
    assert a.allocated + a.credit == amount
    for o in OWED:
        for c in Component:
            assert sum(x.amount for x in a.lines if x.number == o.number and x.component == c) <= o.of(c)


def test_waterfall_must_name_each_component_once():
    with pytest.raises(ValueError):
        Waterfall((Component.PRINCIPAL, Component.PRINCIPAL, Component.FEE, Component.INTEREST))
    assert Waterfall.parse("interest,principal,fee,penalty;component-major").order is WaterfallOrder.COMPONENT_MAJOR


def test_days_past_due_counts_from_the_due_date():
    assert days_past_due(date(2026, 3, 1), date(2026, 3, 1)) == 0
    assert days_past_due(date(2026, 3, 1), date(2026, 3, 2)) == 1
    assert days_past_due(None, date(2026, 3, 2)) == 0
    # leap year: 2024-02-28 → 2024-03-01 is 2 days
    assert days_past_due(date(2024, 2, 28), date(2024, 3, 1)) == 2
    assert days_past_due(date(2023, 2, 28), date(2023, 3, 1)) == 1


def test_grace_days_keep_a_loan_current_then_count_from_the_due_date():
    due = date(2026, 1, 31)
    assert days_past_due(due, date(2026, 2, 3), grace_days=3) == 0
    assert days_past_due(due, date(2026, 2, 4), grace_days=3) == 4


def test_pauses_subtract_their_days_even_when_backdated():
    due = date(2026, 1, 1)
    pause = Pause(date(2026, 1, 10), date(2026, 1, 20))  # 10 days
    assert days_past_due(due, date(2026, 1, 31), [pause]) == 30 - 10
    assert days_past_due(due, date(2026, 1, 15), [pause]) == 14 - 6  # Jan 10..15 paused so far
    assert paused_days(due, date(2026, 1, 9), [pause]) == 0
    before_due = Pause(date(2025, 12, 1), date(2026, 1, 3))  # only 2 January counts (end exclusive)
    assert days_past_due(due, date(2026, 1, 31), [before_due]) == 29


def test_pauses_last_a_day_and_do_not_overlap():
    with pytest.raises(ValueError):
        Pause(date(2026, 1, 1), date(2026, 1, 1))
    with pytest.raises(ValueError):
        check_pauses([Pause(date(2026, 1, 1), date(2026, 1, 5)), Pause(date(2026, 1, 4), date(2026, 1, 9))])
    check_pauses([Pause(date(2026, 1, 1), date(2026, 1, 5)), Pause(date(2026, 1, 5), date(2026, 1, 9))])


def test_default_buckets_and_boundaries():
    b = default_buckets()
    assert [b.bucket_for(d) for d in (0, 1, 30, 31, 60, 61, 150, 151, 9999)] == ["M0", "M1", "M1", "M2", "M2", "M3", "M5", "M6+", "M6+"]
    custom = BucketScheme.parse("C:0-0,E:1-9,L:10-")
    assert custom.bucket_for(9) == "E" and custom.bucket_for(10) == "L"
    with pytest.raises(ValueError):
        BucketScheme.parse("A:0-5,B:7-")
