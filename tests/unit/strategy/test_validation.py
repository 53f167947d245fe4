"""Every validation problem names its YAML path; all problems are reported in one pass."""

from __future__ import annotations

from typing import Any

import pytest

from parley.core.strategy import (
    DEFAULT_ENFORCEMENT_OFF_TAGS,
    HourWindow,
    MaxPerPeriod,
    parse_strategy,
)
from parley.errors import InvalidInput, InvalidInputs

from .factories import minimal_doc


def errors_of(doc: Any) -> dict[str, str]:
    with pytest.raises(InvalidInputs) as caught:
        parse_strategy(doc, "s.yaml")
    assert all(e.record == "s.yaml" for e in caught.value.errors)
    return {e.field: e.message for e in caught.value.errors}


def with_action(**action: Any) -> dict[str, Any]:
    doc = minimal_doc()
    doc["states"][0]["actions"] = [action]
    return doc


def test_a_minimal_strategy_parses_with_defaults() -> None:
    s = parse_strategy(minimal_doc(), "s.yaml")
    assert (s.id, s.name, s.version, s.currency) == ("test", "Test", 3, "CNY")
    assert s.enforcement_off_tags == DEFAULT_ENFORCEMENT_OFF_TAGS
    assert s.clear_state == "clear"
    assert [st.name for st in s.states] == ["late", "early"]
    assert isinstance(s.states, tuple) and isinstance(s.states[0].actions, tuple)


def test_timing_and_action_fields_are_parsed_into_values() -> None:
    doc = with_action(
        kind="call",
        queue="late",
        required_skills=["lang:yue"],
        priority=5,
        timing={
            "days_of_week": ["fri", "mon"],
            "preferred_hours": ["09:00-12:00", "14:00-24:00"],
            "reevaluate_every_days": 3,
            "max_per_period": {"count": 2, "days": 7},
        },
    )
    action = parse_strategy(doc, "s.yaml").states[0].actions[0]
    assert action.required_skills == ("lang:yue",)
    assert action.priority == 5
    assert action.timing.days_of_week == ("mon", "fri")
    assert action.timing.preferred_hours == (HourWindow(540, 720), HourWindow(840, 1440))
    assert str(action.timing.preferred_hours[0]) == "09:00-12:00"
    assert action.timing.reevaluate_every_days == 3
    assert action.timing.max_per_period == MaxPerPeriod(2, 7)


def test_a_field_visit_needs_two_collectors_unless_told_otherwise() -> None:
    action = parse_strategy(with_action(kind="field_visit"), "s.yaml").states[0].actions[0]
    assert action.collectors_required == 2


def test_balances_are_decimal_strings_turned_into_integer_minor_units() -> None:
    doc = minimal_doc()
    doc["states"][0]["condition"].update(balance_at_least="5000.5", balance_at_most=90000)
    c = parse_strategy(doc, "s.yaml").states[0].condition
    assert (c.balance_at_least_minor, c.balance_at_most_minor) == (500_050, 9_000_000)


def test_a_float_balance_is_refused_because_money_is_never_float() -> None:
    doc = minimal_doc()
    doc["states"][0]["condition"]["balance_at_least"] = 5000.5
    assert "decimal string" in errors_of(doc)["states[0].condition.balance_at_least"]


def test_a_balance_with_more_decimals_than_the_currency_is_refused() -> None:
    doc = minimal_doc()
    doc["states"][0]["condition"]["balance_at_least"] = "10.001"
    assert "decimal places" in errors_of(doc)["states[0].condition.balance_at_least"]


def test_an_unknown_top_level_key_is_named_with_a_suggestion() -> None:
    doc = minimal_doc()
    doc["enforcment_off_tags"] = ["hold"]
    assert "did you mean 'enforcement_off_tags'" in errors_of(doc)["enforcment_off_tags"]


def test_an_unknown_condition_key_names_its_path() -> None:
    doc = minimal_doc()
    doc["states"][1]["condition"]["days_past_due_over"] = 3
    assert "unknown key" in errors_of(doc)["states[1].condition.days_past_due_over"]


def test_a_key_that_belongs_to_another_action_kind_is_refused() -> None:
    errs = errors_of(with_action(kind="call", queue="q", template="t"))
    assert "does not apply to call actions" in errs["states[0].actions[0].template"]


def test_an_unknown_action_kind_is_named() -> None:
    errs = errors_of(with_action(kind="fax"))
    assert "is not one of" in errs["states[0].actions[0].kind"]


def test_an_sms_without_a_template_is_refused() -> None:
    assert "required" in errors_of(with_action(kind="sms"))["states[0].actions[0].template"]


def test_an_interview_mode_must_be_phone_video_or_in_person() -> None:
    errs = errors_of(with_action(kind="interview", mode="teleport"))
    assert "phone, video, in_person" in errs["states[0].actions[0].mode"]


def test_an_agency_placement_needs_an_agency() -> None:
    errs = errors_of(with_action(kind="agency_placement"))
    assert "states[0].actions[0].agency" in errs


def test_a_bad_preferred_hours_window_names_its_index() -> None:
    errs = errors_of(
        with_action(
            kind="sms",
            template="t",
            timing={"preferred_hours": ["09:00-12:00", "9-12", "25:00-26:00", "18:00-08:00"]},
        )
    )
    base = "states[0].actions[0].timing.preferred_hours"
    assert "like '09:00-12:00'" in errs[f"{base}[1]"]
    assert "not a valid time" in errs[f"{base}[2]"]
    assert "ends before it starts" in errs[f"{base}[3]"]
    assert f"{base}[0]" not in errs


def test_overlapping_preferred_hours_are_refused() -> None:
    errs = errors_of(
        with_action(
            kind="sms", template="t", timing={"preferred_hours": ["09:00-12:00", "11:00-13:00"]}
        )
    )
    assert "overlap" in errs["states[0].actions[0].timing.preferred_hours"]


def test_an_unknown_day_of_week_is_named() -> None:
    errs = errors_of(
        with_action(kind="sms", template="t", timing={"days_of_week": ["mon", "funday"]})
    )
    assert "not one of mon" in errs["states[0].actions[0].timing.days_of_week[1]"]


def test_negative_and_zero_counts_are_refused() -> None:
    errs = errors_of(
        with_action(
            kind="field_visit",
            collectors_required=0,
            priority=-1,
            timing={"reevaluate_every_days": 0, "max_per_period": {"count": -2, "days": 7}},
        )
    )
    a = "states[0].actions[0]"
    assert "at least 1" in errs[f"{a}.collectors_required"]
    assert "negative" in errs[f"{a}.priority"]
    assert "at least 1" in errs[f"{a}.timing.reevaluate_every_days"]
    assert "at least 1" in errs[f"{a}.timing.max_per_period.count"]


def test_a_negative_days_past_due_bound_is_refused() -> None:
    doc = minimal_doc()
    doc["states"][0]["condition"]["days_past_due_at_least"] = -1
    assert "negative" in errors_of(doc)["states[0].condition.days_past_due_at_least"]


def test_a_boolean_is_not_an_integer() -> None:
    doc = minimal_doc()
    doc["version"] = True
    assert "expected an integer" in errors_of(doc)["version"]


def test_min_greater_than_max_is_refused_on_every_axis() -> None:
    doc = minimal_doc()
    doc["states"][1]["condition"] = {
        "days_past_due_at_least": 30,
        "days_past_due_at_most": 1,
        "balance_at_least": "10",
        "balance_at_most": "9.99",
        "risk_score_at_least": 700,
        "risk_score_at_most": 600,
    }
    errs = errors_of(doc)
    for axis in ("days_past_due", "balance", "risk_score"):
        assert "greater than" in errs[f"states[1].condition.{axis}_at_least"]


def test_duplicate_state_names_are_refused() -> None:
    doc = minimal_doc()
    doc["states"][1]["name"] = "late"
    assert "duplicate state name" in errors_of(doc)["states[1].name"]


def test_a_state_may_not_take_the_clear_states_name() -> None:
    doc = minimal_doc()
    doc["clear_state"] = "early"
    assert "clear_state" in errors_of(doc)["states[1].name"]


def test_an_unknown_currency_is_refused() -> None:
    doc = minimal_doc()
    doc["currency"] = "XXX"
    assert "is not one of" in errors_of(doc)["currency"]


def test_tags_must_be_canonical_lowercase() -> None:
    doc = minimal_doc()
    doc["enforcement_off_tags"] = ["Agreement_Active"]
    doc["states"][0]["condition"]["tags_include"] = ["vip,gold"]
    errs = errors_of(doc)
    assert "lowercase" in errs["enforcement_off_tags[0]"]
    assert "lowercase" in errs["states[0].condition.tags_include[0]"]


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = minimal_doc()
    doc["version"] = 0
    doc["states"][0]["actions"][0]["queue"] = 7
    doc["states"][1]["condition"]["bucket_in"] = "M1"
    errs = errors_of(doc)
    assert {"version", "states[0].actions[0].queue", "states[1].condition.bucket_in"} <= set(errs)


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_strategy(["not", "a", "mapping"], "s.yaml")
    assert "expected a mapping" in str(caught.value)


def test_missing_required_keys_are_each_named() -> None:
    errs = errors_of({"states": []})
    assert {"id", "name", "version", "currency", "states"} <= set(errs)


def test_the_parsed_strategy_is_immutable() -> None:
    s = parse_strategy(minimal_doc(), "s.yaml")
    with pytest.raises(AttributeError):
        s.states[0].name = "x"  # type: ignore[misc]
