"""The policy file parses, bad fields are named; payments fill instalments oldest first;
a plan is kept when all is paid and broken only after the grace days."""

from __future__ import annotations

import ast
import sys
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from parley.core.agreements import (
    BreakRule,
    InstallmentProgress,
    PolicyError,
    apply_payments,
    parse_policy,
    review,
)

from .support import default_policy, policy_doc


def test_the_shipped_default_policy_parses_with_the_documented_values() -> None:
    p = default_policy()
    assert p.id == "default" and p.grace_days == 3 and p.proposal_expiry_hours == 72
    assert p.minimum("CNY") == 30_000 and p.max_term_months == 12
    assert p.waiver("principal") is not None and p.waiver("principal").approval_above == 0
    assert p.waiver("interest").max_share == Fraction(1, 2)
    assert p.on_break is BreakRule.RESTORE_ORIGINAL_TERMS


@pytest.mark.parametrize(("override", "field"), [
    ({"min_installment": {"CNY": "3.001"}}, "min_installment.CNY"),
    ({"waivers": {"principal": {"max_share": "120%"}}}, "waivers.principal.max_share"),
    ({"waivers": {"tips": {"max_share": "10%"}}}, "waivers.tips"),
    ({"kinds": ["promise", "lottery"]}, "kinds[1]"),
    ({"max_term_months": 0}, "max_term_months"),
    ({"on_break": "forgive"}, "on_break"),
    ({"promise": {"max_days": 500}}, "promise.max_days"),
    ({"grace_days": "three"}, "grace_days"),
])
def test_a_bad_policy_field_is_named(override: dict, field: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(policy_doc(**override))
    assert e.value.field == field


def test_payments_fill_instalments_oldest_first_and_date_each_payoff() -> None:
    plan = [(1, date(2026, 4, 1), 1000), (2, date(2026, 5, 1), 1000), (3, date(2026, 6, 1), 500)]
    got = apply_payments(plan, [(date(2026, 4, 20), 700), (date(2026, 3, 30), 800)])
    assert [(p.paid, p.paid_off_on) for p in got] == [(1000, date(2026, 4, 20)), (500, None), (0, None)]


def test_a_plan_is_broken_only_after_the_grace_days_and_kept_when_all_is_paid() -> None:
    due = date(2026, 4, 1)
    running = [InstallmentProgress(1, due, 1000, 999, None)]
    assert review(running, date(2026, 4, 4), 3).outcome == ""  # day 3 after due: within grace
    broken = review(running, date(2026, 4, 5), 3)
    assert broken.outcome == "broken" and broken.on == date(2026, 4, 5) and broken.missed.number == 1
    kept = review([InstallmentProgress(1, due, 1000, 1000, date(2026, 4, 2))], date(2026, 4, 9), 3)
    assert kept.outcome == "kept" and kept.on == date(2026, 4, 2)


def test_the_agreement_core_imports_only_the_standard_library_and_parley_core() -> None:
    path = Path(__file__).resolve().parents[3] / "src" / "parley" / "core" / "agreements.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            assert name.startswith("parley.core") or name.split(".")[0] in sys.stdlib_module_names \
                or name == "__future__", name
