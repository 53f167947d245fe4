"""Hypothesis: for any debt, offer and policy, every quoted plan sums exactly to its agreed
total, no instalment is zero or negative, the last absorbs rounding, regular instalments stay
within the offer and above the minimum, plans end within the term, and waivers never exceed
the policy — with approval flagged exactly when a share is above the approval threshold."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.agreements import (
    COMPONENTS,
    Components,
    Debt,
    Frequency,
    Kind,
    Offer,
    Upcoming,
    parse_policy,
    quote,
    split_evenly,
)
from parley.core.dates import add_months

from .support import AS_OF, policy_doc

amounts = st.integers(min_value=0, max_value=5_000_000)
components = st.builds(Components, amounts, amounts, st.integers(0, 200_000), st.integers(0, 500_000))
shares = st.sampled_from(["0%", "5%", "12.5%", "20%", "33.333%", "50%", "99.99%", "100%"])


@st.composite
def policies(draw: st.DrawFn):
    waivers = {}
    for c in COMPONENTS:
        if draw(st.booleans()):
            a, b = sorted([draw(shares), draw(shares)], key=lambda s: Fraction(s[:-1]))
            waivers[c] = {"max_share": b, "approval_above": a}
    doc = policy_doc(
        min_installment={"CNY": f"{draw(st.integers(1, 2000))}.{draw(st.integers(0, 99)):02d}"},
        max_term_months=draw(st.integers(1, 36)),
        waivers=waivers,
    )
    return parse_policy(doc)


@st.composite
def debts(draw: st.DrawFn) -> Debt:
    n = draw(st.integers(0, 8))
    ups = tuple(Upcoming(k + 1, add_months(date(2026, 3, 15), k), draw(components)) for k in range(n))
    return Debt("L", "CNY", AS_OF, draw(components), ups)


offers = st.builds(
    Offer,
    st.integers(1, 3_000_000),
    st.sampled_from(list(Frequency)),
    st.integers(0, 30).map(lambda d: AS_OF + timedelta(days=d)),
)


@settings(max_examples=400, deadline=None)
@given(debts(), offers, policies())
def test_every_quoted_plan_is_exact_and_within_policy(debt: Debt, offer: Offer, policy) -> None:
    q = quote(debt, offer, policy)
    assert len({p.key for p in q.plans} | {i.key for i in q.infeasible}) == len(q.plans) + len(q.infeasible)
    minimum = policy.minimum("CNY")
    for plan in q.plans:
        amounts_ = [i.amount for i in plan.installments]
        assert sum(amounts_) == plan.total == plan.basis.total - plan.waived.total
        assert all(a > 0 for a in amounts_)
        assert [i.number for i in plan.installments] == list(range(1, len(amounts_) + 1))
        assert all(a.due_on < b.due_on for a, b in zip(plan.installments, plan.installments[1:], strict=False))
        if plan.kind in (Kind.INSTALLMENT_PLAN, Kind.REDUCTION):
            assert all(a <= offer.amount for a in amounts_)
            assert amounts_[-1] <= amounts_[0]
            if len(amounts_) > 1:
                assert all(a >= minimum for a in amounts_[:-1])
            assert plan.ends_on <= add_months(AS_OF, policy.max_term_months)
            assert plan.starts_on == offer.first_payment_on
        for c in COMPONENTS:
            w = plan.waived.get(c)
            rule = policy.waiver(c)
            if rule is None:
                assert w == 0
                continue
            base = plan.basis.get(c)
            assert 0 <= w <= base * rule.max_share
        over = any(plan.waived.get(c) and Fraction(plan.waived.get(c), plan.basis.get(c)) > policy.waiver(c).approval_above
                   for c in COMPONENTS)
        assert plan.needs_approval == over
    for i in q.infeasible:
        assert i.message and i.reason


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10_000_000), st.integers(1, 60), st.integers(0, 1_000_000))
def test_split_sums_exactly_and_the_last_absorbs(total: int, count: int, minimum: int) -> None:
    parts = split_evenly(total, count, minimum)
    assert sum(parts) == total and len(parts) == count
    assert all(p >= 0 for p in parts)
    assert len(set(parts[:-1])) <= 1
