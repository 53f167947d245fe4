"""The pure evaluator: enforcement off first, then the first matching state, with its reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest

from parley.core.strategy import evaluate

from .factories import AS_OF, account, strategy_with_states

STRATEGY = strategy_with_states(
    {
        "name": "legal",
        "condition": {"days_past_due_at_least": 181, "balance_at_least": "3000.00"},
        "actions": [{"kind": "legal_referral"}],
    },
    {
        "name": "broken",
        "condition": {"days_past_due_at_least": 31, "broken_promises_at_least": 2},
        "actions": [
            {"kind": "sms", "template": "t", "priority": 50},
            {"kind": "call", "queue": "senior", "priority": 10},
            {"kind": "email", "template": "e", "priority": 50},
        ],
    },
    {
        "name": "m2",
        "condition": {"days_past_due_at_least": 31, "days_past_due_at_most": 60},
        "actions": [{"kind": "call", "queue": "early"}],
    },
    {
        "name": "vip_m1",
        "condition": {"days_past_due_at_most": 30, "tags_include": ["vip"], "product_in": ["card"]},
        "actions": [{"kind": "email", "template": "vip"}],
    },
    {
        "name": "m1",
        "condition": {
            "days_past_due_at_least": 1,
            "days_past_due_at_most": 30,
            "risk_score_at_most": 900,
            "bucket_in": ["M1"],
        },
        "actions": [{"kind": "sms", "template": "early"}],
    },
    clear_state="current",
)


@pytest.mark.parametrize("tag", ["agreement_active", "hold"])
def test_an_enforcement_off_tag_stops_every_action_even_in_the_most_severe_state(tag: str) -> None:
    ev = evaluate(
        STRATEGY, account(days_past_due=400, balance_minor=10**9, tags=frozenset({tag})), AS_OF
    )
    assert ev.state_name is None
    assert ev.actions == ()
    assert ev.enforcement_off_by == (tag,)
    assert not ev.is_clear


def test_enforcement_off_tags_are_configurable() -> None:
    s = strategy_with_states(
        {"name": "any", "condition": {}, "actions": [{"kind": "sms", "template": "t"}]},
        enforcement_off_tags=["paused"],
    )
    assert evaluate(s, account(tags=frozenset({"paused"})), AS_OF).state_name is None
    assert evaluate(s, account(tags=frozenset({"hold"})), AS_OF).state_name == "any"


def test_the_first_matching_state_wins_and_records_every_predicate_it_matched() -> None:
    ev = evaluate(STRATEGY, account(days_past_due=45, broken_promises=3), AS_OF)
    assert ev.state_name == "broken"  # m2 also matches, but comes later
    assert [(p.name, p.expected, p.actual) for p in ev.matched_predicates] == [
        ("days_past_due_at_least", "31", "45"),
        ("broken_promises_at_least", "2", "3"),
    ]
    assert all(p.matched for p in ev.matched_predicates)
    assert [(m.state_name, m.failed.name) for m in ev.misses] == [
        ("legal", "days_past_due_at_least")
    ]


def test_actions_come_sorted_by_priority_with_file_order_breaking_ties() -> None:
    ev = evaluate(STRATEGY, account(days_past_due=45, broken_promises=3), AS_OF)
    assert [a.kind for a in ev.actions] == ["call", "sms", "email"]


@pytest.mark.parametrize(
    ("dpd", "state"),
    [
        (0, "current"),
        (1, "m1"),
        (30, "m1"),
        (31, "m2"),
        (60, "m2"),
        (61, "current"),
        (180, "current"),
        (181, "legal"),
    ],
)
def test_days_past_due_bounds_are_inclusive(dpd: int, state: str) -> None:
    assert evaluate(STRATEGY, account(days_past_due=dpd), AS_OF).state_name == state


@pytest.mark.parametrize(("balance", "state"), [(299_999, "current"), (300_000, "legal")])
def test_balance_bounds_compare_integer_minor_units(balance: int, state: str) -> None:
    assert (
        evaluate(STRATEGY, account(days_past_due=200, balance_minor=balance), AS_OF).state_name
        == state
    )


def test_a_balance_in_another_currency_never_matches_a_balance_predicate() -> None:
    ev = evaluate(STRATEGY, account(days_past_due=200, balance_minor=10**9, currency="USD"), AS_OF)
    assert ev.state_name == "current"
    assert ev.misses[0].failed.name == "balance_at_least"
    assert ev.misses[0].failed.actual.startswith("USD")


def test_an_account_matching_nothing_is_in_the_clear_state_with_no_actions() -> None:
    ev = evaluate(STRATEGY, account(days_past_due=0), AS_OF)
    assert (ev.state_name, ev.is_clear, ev.actions) == ("current", True, ())
    assert len(ev.misses) == len(STRATEGY.states)


def test_unknown_facts_fail_the_predicates_that_need_them() -> None:
    assert evaluate(STRATEGY, account(risk_score=None), AS_OF).state_name == "current"
    assert evaluate(STRATEGY, account(bucket=None), AS_OF).state_name == "current"


def test_tags_include_needs_every_tag_and_product_in_needs_a_listed_product() -> None:
    vip = account(days_past_due=5, tags=frozenset({"vip", "x"}), product="card")
    assert evaluate(STRATEGY, vip, AS_OF).state_name == "vip_m1"
    assert evaluate(STRATEGY, replace(vip, product="cash_loan"), AS_OF).state_name == "m1"
    assert evaluate(STRATEGY, replace(vip, tags=frozenset({"x"})), AS_OF).state_name == "m1"


def test_the_evaluation_names_the_strategy_version_and_date() -> None:
    ev = evaluate(STRATEGY, account(), AS_OF)
    assert (ev.strategy_id, ev.strategy_version, ev.account_id, ev.as_of) == (
        "test",
        3,
        "acc-1",
        AS_OF,
    )


def test_the_strategy_core_imports_only_the_standard_library_and_parley() -> None:
    import ast
    import sys
    from pathlib import Path

    import parley.core.strategy as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    roots = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [n])  # type: ignore[attr-defined]
    }
    assert all(r in sys.stdlib_module_names or r in ("parley", "__future__") for r in roots), roots
