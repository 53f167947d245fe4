"""due_actions: day of week, what is on file, re-evaluation interval and maximum per period, at
their boundaries."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from parley.core.strategy import (
    EMAIL,
    PHONE,
    REACH_ALL,
    ActionHistory,
    action_decisions,
    due_actions,
    evaluate,
)

from .factories import AS_OF, account, strategy_with_states

MONDAY = AS_OF
assert MONDAY.weekday() == 0


def evaluation_with(timing: dict[str, Any], kind: str = "sms") -> Any:
    extra = {"template": "t"} if kind in ("sms", "email") else {"queue": "q"}
    s = strategy_with_states(
        {"name": "any", "condition": {}, "actions": [{"kind": kind, "timing": timing, **extra}]}
    )
    return evaluate(s, account(), MONDAY)


def history(*days_ago: int, kind: str = "sms", as_of: date = MONDAY) -> ActionHistory:
    return ActionHistory(tuple((kind, as_of - timedelta(days=n)) for n in days_ago))


def test_an_action_without_timing_is_due_every_day() -> None:
    ev = evaluation_with({})
    for offset in range(7):
        assert due_actions(ev, history(0, 1, 2), MONDAY + timedelta(days=offset)) == ev.actions


def test_an_action_is_due_only_on_its_days_of_week() -> None:
    ev = evaluation_with({"days_of_week": ["mon", "wed"]})
    due_on = [d for d in range(7) if due_actions(ev, ActionHistory(), MONDAY + timedelta(days=d))]
    assert due_on == [0, 2]
    [decision] = action_decisions(ev, ActionHistory(), MONDAY + timedelta(days=1))
    assert decision.reason == "not_on_this_weekday"
    assert "tue" in decision.message


@pytest.mark.parametrize(("kind", "needs"), [("sms", PHONE), ("call", PHONE), ("email", EMAIL)])
def test_an_action_needs_its_channel_on_file(kind: str, needs: str) -> None:
    ev = evaluation_with({}, kind)
    assert due_actions(ev, ActionHistory(), MONDAY, frozenset({needs})) == ev.actions
    for on_file in (frozenset(), REACH_ALL - {needs}):
        assert due_actions(ev, ActionHistory(), MONDAY, on_file) == ()
        [decision] = action_decisions(ev, ActionHistory(), MONDAY, on_file)
        assert decision.reason == "unreachable"
        assert ("phone" if needs == PHONE else "e-mail") in decision.message


def test_an_interview_needs_nothing_on_file() -> None:
    s = strategy_with_states({"name": "any", "condition": {}, "actions": [
        {"kind": "interview", "mode": "video"}]})
    ev = evaluate(s, account(), MONDAY)
    assert due_actions(ev, ActionHistory(), MONDAY, frozenset()) == ev.actions


def test_reevaluation_waits_exactly_the_interval_after_the_last_action() -> None:
    ev = evaluation_with({"reevaluate_every_days": 3})
    assert due_actions(ev, history(2), MONDAY) == ()
    assert due_actions(ev, history(3), MONDAY) == ev.actions
    assert due_actions(ev, history(4), MONDAY) == ev.actions
    [decision] = action_decisions(ev, history(2), MONDAY)
    assert decision.reason == "reevaluation_interval"
    assert str(MONDAY + timedelta(days=1)) in decision.message


def test_reevaluation_with_no_history_is_due_at_once() -> None:
    assert due_actions(evaluation_with({"reevaluate_every_days": 30}), ActionHistory(), MONDAY)


def test_reevaluation_counts_only_the_same_kind_of_action() -> None:
    ev = evaluation_with({"reevaluate_every_days": 3})
    assert due_actions(ev, history(1, kind="call"), MONDAY) == ev.actions


def test_reevaluation_ignores_history_dated_after_as_of() -> None:
    ev = evaluation_with({"reevaluate_every_days": 3})
    assert due_actions(ev, history(-1), MONDAY) == ev.actions


def test_max_per_period_counts_a_window_of_days_ending_today() -> None:
    ev = evaluation_with({"max_per_period": {"count": 2, "days": 7}})
    # The window is MONDAY-6 .. MONDAY: an action 7 days ago is outside it.
    assert due_actions(ev, history(6), MONDAY) == ev.actions
    assert due_actions(ev, history(6, 0), MONDAY) == ()
    assert due_actions(ev, history(7, 0), MONDAY) == ev.actions
    assert due_actions(ev, history(7, 8, 9, 1), MONDAY) == ev.actions
    [decision] = action_decisions(ev, history(6, 3), MONDAY)
    assert decision.reason == "max_per_period"
    assert "2 sms in the last 7 days" in decision.message


def test_a_one_per_day_cap_allows_again_the_next_day() -> None:
    ev = evaluation_with({"max_per_period": {"count": 1, "days": 1}})
    assert due_actions(ev, history(0), MONDAY) == ()
    assert due_actions(ev, history(1), MONDAY) == ev.actions


def test_the_first_failing_check_is_the_reason() -> None:
    ev = evaluation_with(
        {
            "days_of_week": ["tue"],
            "reevaluate_every_days": 5,
            "max_per_period": {"count": 1, "days": 9},
        }
    )
    [decision] = action_decisions(ev, history(1), MONDAY)
    assert decision.reason == "not_on_this_weekday"
    [decision] = action_decisions(ev, history(1), MONDAY + timedelta(days=1))
    assert decision.reason == "reevaluation_interval"
    [decision] = action_decisions(
        ev, history(6, as_of=MONDAY + timedelta(days=1)), MONDAY + timedelta(days=1)
    )
    assert decision.reason == "max_per_period"


def test_each_action_is_judged_on_its_own_kinds_history() -> None:
    s = strategy_with_states(
        {
            "name": "any",
            "condition": {},
            "actions": [
                {
                    "kind": "call",
                    "queue": "q",
                    "timing": {"reevaluate_every_days": 2},
                    "priority": 1,
                },
                {"kind": "sms", "template": "t", "timing": {"reevaluate_every_days": 2}},
            ],
        }
    )
    ev = evaluate(s, account(), MONDAY)
    assert [a.kind for a in due_actions(ev, history(1, kind="call"), MONDAY)] == ["sms"]


def test_history_can_be_taken_from_the_snapshots_last_action_dates() -> None:
    acc = account(last_action_on=(("sms", MONDAY - timedelta(days=1)),))
    ev = evaluation_with({"reevaluate_every_days": 2})
    assert due_actions(ev, ActionHistory.from_account(acc), MONDAY) == ()


def test_an_enforcement_off_account_has_no_due_actions() -> None:
    s = strategy_with_states(
        {"name": "any", "condition": {}, "actions": [{"kind": "sms", "template": "t"}]}
    )
    ev = evaluate(s, account(tags=frozenset({"agreement_active"})), MONDAY)
    assert due_actions(ev, ActionHistory(), MONDAY) == ()
