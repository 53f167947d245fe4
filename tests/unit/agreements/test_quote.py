"""Quote maths: the options a policy allows, and the reasons it gives when it allows none."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from parley.core.agreements import (
    Components,
    Frequency,
    Kind,
    Offer,
    Plan,
    PlannedInstallment,
    QuoteError,
    Scope,
    custom_plan,
    quote,
    split_evenly,
)

from .support import AS_OF, debt, default_policy

FIRST = date(2026, 3, 9)


def offer(amount: int, frequency: str = "monthly", first: date = FIRST) -> Offer:
    return Offer(amount, Frequency(frequency), first)


def test_an_offer_below_the_minimum_instalment_says_so_with_the_figures() -> None:
    q = quote(debt(), offer(20_000), default_policy())
    msgs = {i.key: i.message for i in q.infeasible}
    assert msgs["installment_plan/arrears"] == (
        "the minimum instalment under this policy is 300.00; 200.00 per month is below it")
    assert "per fortnight" in {i.key: i.message for i in quote(debt(), offer(20_000, "fortnightly"),
                                                                 default_policy()).infeasible}["installment_plan/arrears"]
    assert not [p for p in q.plans if p.kind is Kind.INSTALLMENT_PLAN]


def test_an_arrears_plan_spreads_the_overdue_total_over_the_fewest_affordable_instalments() -> None:
    q = quote(debt(), offer(150_000), default_policy())
    plan = q.plan("installment_plan/arrears")
    assert plan is not None
    assert plan.total == 460_000
    # 4600.00 at up to 1500.00 a month needs four payments, levelled at 1150.00
    assert [i.amount for i in plan.installments] == [115_000] * 4
    assert all(i.amount <= 150_000 for i in plan.installments)
    assert [i.due_on for i in plan.installments] == [date(2026, 3, 9), date(2026, 4, 9), date(2026, 5, 9), date(2026, 6, 9)]
    assert not plan.needs_approval and plan.waived == Components()


def test_the_last_instalment_absorbs_the_rounding() -> None:
    assert split_evenly(100_000, 3, 0) == (33_334, 33_334, 33_332)
    assert sum(split_evenly(100_001, 7, 300)) == 100_001
    # the minimum lifts the regular instalment; the last takes what remains
    assert split_evenly(35_000, 2, 30_000) == (30_000, 5_000)


def test_fortnightly_plans_fall_due_every_fourteen_days() -> None:
    plan = quote(debt(), offer(100_000, "fortnightly"), default_policy()).plan("installment_plan/arrears")
    assert plan is not None
    gaps = {(b.due_on - a.due_on).days for a, b in zip(plan.installments, plan.installments[1:], strict=False)}
    assert gaps == {14}


def test_a_plan_longer_than_the_policy_term_is_refused_naming_the_end_date() -> None:
    q = quote(debt(upcoming=12), offer(30_000), default_policy())
    msg = {i.key: i.message for i in q.infeasible}["installment_plan/whole_balance"]
    assert "takes 56 instalments" in msg and "up to 12 months (ending by 2027-03-02)" in msg


def test_a_promise_pays_the_arrears_once_within_the_policy_days() -> None:
    q = quote(debt(), offer(500_000), default_policy())
    plan = q.plan("promise/arrears")
    assert plan is not None and [(i.due_on, i.amount) for i in plan.installments] == [(FIRST, 460_000)]
    late = quote(debt(), offer(500_000, first=AS_OF + timedelta(days=20)), default_policy())
    assert {i.key: i.reason for i in late.infeasible}["promise/arrears"] == "promise_too_late"
    short = quote(debt(), offer(100_000), default_policy())
    assert {i.key: i.message for i in short.infeasible}["promise/arrears"] == (
        "a promise pays the arrears 4600.00 in one payment; 1000.00 is below it")


def test_an_extension_gathers_the_arrears_and_moves_later_instalments() -> None:
    q = quote(debt(), offer(500_000), default_policy())
    plan = q.plan("extension/2m")
    assert plan is not None and plan.moved_by_months == 2
    assert [(i.due_on, i.amount) for i in plan.installments] == [
        (FIRST, 460_000), (date(2026, 6, 1), 100_000), (date(2026, 7, 1), 100_000), (date(2026, 8, 1), 100_000)]
    assert plan.total == 760_000
    none = quote(debt(upcoming=0), offer(500_000), default_policy())
    assert {i.key: i.reason for i in none.infeasible}["extension/1m"] == "nothing_to_move"


def test_reductions_offer_a_standard_and_a_maximum_waiver_and_flag_approval() -> None:
    q = quote(debt(), offer(150_000), default_policy())
    std = q.plan("reduction/arrears/standard")
    mx = q.plan("reduction/arrears/maximum")
    assert std is not None and mx is not None
    # standard: penalty 50%, interest 20%, no principal (any principal waiver needs approval)
    assert std.waived == Components(0, 8_000, 0, 10_000) and not std.needs_approval
    # maximum: penalty 100%, interest 50%, principal 10%
    assert mx.waived == Components(40_000, 20_000, 0, 20_000)
    assert mx.needs_approval and any("principal" in r for r in mx.approval_reasons)
    assert mx.total == 460_000 - 80_000


def test_a_requested_waiver_above_the_policy_is_not_offered_and_names_the_component() -> None:
    q = quote(debt(), offer(150_000), default_policy(), Components(0, 0, 0, 30_000))
    bad = {i.key: i for i in q.infeasible}["reduction/arrears/requested"]
    assert bad.reason == "waiver_above_policy" and bad.message.startswith("waivers.penalty")
    assert "above the policy's maximum 100%" in bad.message


def test_wrong_requests_are_errors_naming_the_field() -> None:
    with pytest.raises(QuoteError) as e:
        quote(debt(), offer(100_000, first=AS_OF - timedelta(days=1)), default_policy())
    assert e.value.field == "first_payment_on"
    with pytest.raises(QuoteError) as e:
        quote(debt(), offer(100_000, first=AS_OF + timedelta(days=45)), default_policy())
    assert e.value.field == "first_payment_on"
    with pytest.raises(QuoteError) as e:
        quote(debt(), offer(0), default_policy())
    assert e.value.field == "amount"
    with pytest.raises(QuoteError) as e:
        quote(debt(), offer(100_000, "fortnightly"), default_policy(frequencies=["monthly"]))
    assert e.value.field == "frequency"


def test_nothing_overdue_means_no_arrears_plan_but_the_whole_balance_may_be_spread() -> None:
    q = quote(debt(overdue=Components()), offer(100_000), default_policy())
    reasons = {i.key: i.reason for i in q.infeasible}
    assert reasons["installment_plan/arrears"] == "nothing_owed"
    assert q.plan("installment_plan/whole_balance") is not None


def test_a_plan_whose_instalments_do_not_cover_the_amount_cannot_exist() -> None:
    with pytest.raises(ValueError, match="not the agreed"):
        Plan("x", Kind.INSTALLMENT_PLAN, Scope.ARREARS, Frequency.MONTHLY, Components(1000), Components(),
             1000, (PlannedInstallment(1, FIRST, 600), PlannedInstallment(2, FIRST, 300)))
    with pytest.raises(ValueError, match="positive"):
        Plan("x", Kind.INSTALLMENT_PLAN, Scope.ARREARS, Frequency.MONTHLY, Components(1000), Components(),
             1000, (PlannedInstallment(1, FIRST, 1100), PlannedInstallment(2, FIRST, -100)))


def test_typed_instalments_must_sum_to_the_agreed_total() -> None:
    base = quote(debt(), offer(150_000), default_policy()).plan("installment_plan/arrears")
    assert base is not None
    with pytest.raises(QuoteError) as e:
        custom_plan(base, [(FIRST, 200_000), (date(2026, 4, 9), 200_000)], default_policy(), "CNY", AS_OF)
    assert e.value.field == "installments" and "4000.00, not the agreed 4600.00" in e.value.message
    ok = custom_plan(base, [(FIRST, 260_000), (date(2026, 4, 9), 200_000)], default_policy(), "CNY", AS_OF)
    assert ok.total == 460_000 and ok.key == "installment_plan/arrears/custom"


@pytest.mark.parametrize("frequency", ["monthly", "fortnightly"])
def test_a_small_offer_against_a_large_debt_is_too_long_a_plan_not_a_crash(frequency: str) -> None:
    """At the minimum instalment (1.00 here) a debt of 100 million takes 100 million payments:
    the last would fall after the year 9999 (it raised ValueError, and listing them all took
    seconds). Found by hypothesis in test_properties."""
    big = debt(Components(10_000_000_000), upcoming=0)
    q = quote(big, offer(100, frequency), default_policy(min_installment={"CNY": "1.00"}))
    msg = {i.key: i.message for i in q.infeasible}["installment_plan/arrears"]
    assert msg.startswith("at 1.00 per ") and "takes 100000000 instalments;" in msg
    assert "the last on" not in msg and "up to 12 months" in msg
    near = quote(debt(Components(100_000), upcoming=0), offer(100, frequency),
                 default_policy(min_installment={"CNY": "1.00"}))
    assert "takes 1000 instalments, the last on" in {i.key: i.message for i in near.infeasible}[
        "installment_plan/arrears"]
