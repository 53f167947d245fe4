"""The order of states must make sense: no unreachable state, no unmarked dpd gap."""

from __future__ import annotations

from typing import Any

import pytest

from parley.core.strategy import Condition, check_strategy, covers, parse_strategy
from parley.errors import InvalidInputs

from .factories import minimal_doc


def state(name: str, **condition: Any) -> dict[str, Any]:
    return {"name": name, "condition": condition, "actions": []}


def doc_with(*states: dict[str, Any], **top: Any) -> dict[str, Any]:
    doc = minimal_doc()
    doc["states"] = list(states)
    doc.update(top)
    return doc


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInputs) as caught:
        parse_strategy(doc, "s.yaml")
    return {e.field: e.message for e in caught.value.errors}


def test_a_later_state_inside_an_earlier_dpd_range_is_unreachable() -> None:
    errs = errors_of(
        doc_with(
            state("m1_to_m3", days_past_due_at_least=1, days_past_due_at_most=90),
            state("m2", days_past_due_at_least=31, days_past_due_at_most=60),
            state("late", days_past_due_at_least=91),
        )
    )
    assert "'m2' can never match" in errs["states[1]"]
    assert "'m1_to_m3'" in errs["states[1]"]


def test_a_later_state_is_reachable_when_the_earlier_one_is_narrower_on_another_axis() -> None:
    s = parse_strategy(
        doc_with(
            state("big", days_past_due_at_least=1, balance_at_least="5000"),
            state("any", days_past_due_at_least=1),
        ),
        "s.yaml",
    )
    assert [st.name for st in s.states] == ["big", "any"]


def test_a_catch_all_state_before_others_makes_them_unreachable() -> None:
    errs = errors_of(doc_with(state("all"), state("late", days_past_due_at_least=91)))
    assert "can never match" in errs["states[1]"]


def test_a_state_needing_an_enforcement_off_tag_can_never_match() -> None:
    errs = errors_of(
        doc_with(
            state("agreed", days_past_due_at_least=1, tags_include=["agreement_active"]),
            state("rest", days_past_due_at_least=1),
        )
    )
    assert "switch enforcement off" in errs["states[0].condition.tags_include"]


def test_a_tag_both_included_and_excluded_is_unsatisfiable() -> None:
    errs = errors_of(
        doc_with(
            state("odd", days_past_due_at_least=1, tags_include=["vip"], tags_exclude=["vip"]),
            state("rest", days_past_due_at_least=1),
        )
    )
    assert "both included and excluded" in errs["states[0].condition"]


def test_a_dpd_gap_between_states_is_an_error() -> None:
    errs = errors_of(
        doc_with(
            state("late", days_past_due_at_least=61),
            state("early", days_past_due_at_least=1, days_past_due_at_most=30),
        )
    )
    assert "no state covers days past due 31-60" in errs["states"]


def test_an_open_top_is_a_gap_too() -> None:
    errs = errors_of(doc_with(state("early", days_past_due_at_least=1, days_past_due_at_most=30)))
    assert "31+" in errs["states"]


def test_a_gap_marked_as_intended_is_accepted() -> None:
    gaps = [{"days_past_due_at_least": 1, "days_past_due_at_most": 2, "reason": "grace"}]
    s = parse_strategy(
        doc_with(state("rest", days_past_due_at_least=3), intended_dpd_gaps=gaps), "s.yaml"
    )
    assert s.intended_dpd_gaps[0].reason == "grace"
    assert check_strategy(s) == ()


def test_a_gap_only_partly_marked_reports_the_rest() -> None:
    gaps = [{"days_past_due_at_least": 1, "days_past_due_at_most": 2, "reason": "grace"}]
    errs = errors_of(doc_with(state("rest", days_past_due_at_least=5), intended_dpd_gaps=gaps))
    assert "days past due 3-4" in errs["states"]


def test_a_marked_gap_that_a_state_covers_is_a_warning() -> None:
    gaps = [{"days_past_due_at_least": 1, "days_past_due_at_most": 5, "reason": "grace"}]
    s = parse_strategy(
        doc_with(state("rest", days_past_due_at_least=3), intended_dpd_gaps=gaps), "s.yaml"
    )
    [finding] = check_strategy(s)
    assert (finding.severity, finding.key, finding.field) == (
        "warning",
        "intended_gap_covered",
        "intended_dpd_gaps[0]",
    )
    assert "3-5" in finding.message


def test_a_state_bounded_only_on_other_axes_does_not_hide_dpd_gaps() -> None:
    errs = errors_of(
        doc_with(state("written_off", bucket_in=["WO"]), state("late", days_past_due_at_least=31))
    )
    assert "1-30" in errs["states"]


def test_states_out_of_severity_order_give_a_warning() -> None:
    s = parse_strategy(
        doc_with(
            state("early", days_past_due_at_least=1, days_past_due_at_most=30),
            state("late", days_past_due_at_least=31),
        ),
        "s.yaml",
    )
    [finding] = check_strategy(s)
    assert (finding.severity, finding.key, finding.field) == (
        "warning",
        "severity_order",
        "states[1]",
    )


def test_covers_compares_axis_by_axis_with_inclusive_bounds() -> None:
    wide = Condition(days_past_due_at_least=31, days_past_due_at_most=60)
    assert covers(wide, Condition(days_past_due_at_least=31, days_past_due_at_most=60))
    assert covers(wide, Condition(days_past_due_at_least=40, days_past_due_at_most=50))
    assert not covers(wide, Condition(days_past_due_at_least=30, days_past_due_at_most=50))
    assert not covers(wide, Condition(days_past_due_at_least=40))
    assert covers(Condition(), wide)
    assert not covers(Condition(bucket_in=("M1",)), Condition(bucket_in=("M1", "M2")))
    assert covers(Condition(bucket_in=("M1", "M2")), Condition(bucket_in=("M1",)))
    assert covers(Condition(tags_exclude=("a",)), Condition(tags_exclude=("a", "b")))
    assert not covers(Condition(tags_include=("a", "b")), Condition(tags_include=("a",)))
    assert covers(Condition(broken_promises_at_least=1), Condition(broken_promises_at_least=2))
