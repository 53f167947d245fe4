"""The pure core: purity, value checks, pack building and composition, fixpoint, calendar."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from parley.core.gate import (
    BusinessCalendar,
    CallResult,
    Channel,
    ContactRecord,
    ContactRequest,
    Facts,
    PackError,
    PersonFacts,
    Purpose,
    Role,
    build_pack,
    decide,
)
from parley.services.gate_check import _read_pack_doc, available_packs, load_pack
from tests.unit.gate.support import NY, at, call, facts, request

CORE = Path(__file__).resolve().parents[3] / "src" / "parley" / "core"


def test_the_gate_core_imports_only_the_standard_library_and_parley_core():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in [*(CORE / "gate").rglob("*.py"), CORE / "content.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or name.startswith("parley.core"), f"{path}: {name}"


def test_the_core_never_reads_the_clock():
    for path in (CORE / "gate").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for bad in (".now(", ".today(", "time.time(", "utcnow"):
            assert bad not in text, f"{path} reads the clock ({bad})"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ContactRequest(datetime(2026, 1, 1, 10), Channel.CALL, "B1", Role.BORROWER, "+1",
                       Purpose.COLLECTION)
    with pytest.raises(ValueError, match="timezone-aware"):
        ContactRecord(datetime(2026, 1, 1, 10), Channel.CALL, "B1", Role.BORROWER, "+1")


def test_history_must_be_sorted():
    a, b = call(at(NY, 2026, 3, 2)), call(at(NY, 2026, 3, 1))
    with pytest.raises(ValueError, match="sorted"):
        Facts(PersonFacts("B1", Role.BORROWER), history=(a, b))


def test_request_must_match_the_person():
    with pytest.raises(ValueError):
        decide(request(at(NY, 2026, 3, 2), person="X"), facts(), load_pack("US"))


def test_records_are_immutable():
    r = call(at(NY, 2026, 3, 2))
    with pytest.raises(AttributeError):
        r.result = None  # type: ignore[misc]


@pytest.mark.parametrize("pack_id", ["CN", "US", "US-MA", "GB", "IN"])
def test_every_pack_loads_and_every_rule_has_citation_and_three_languages(pack_id):
    pack = load_pack(pack_id)
    assert pack.rules
    for r in pack.rules:
        assert r.citation.source
        assert set(r.messages) == {"en", "zh-Hans", "zh-Hant"}
        assert all("{" not in m for m in r.messages.values())


def test_available_packs_lists_the_shipped_ones():
    assert {"CN", "US", "US-MA", "GB", "IN"} <= set(available_packs())


def minimal(**over):
    doc = {"id": "T", "version": "1", "name": "Test", "default_timezone": "UTC",
           "rules": [{"id": "t.hours", "kind": "local_hours",
                      "params": {"local_time_at_least": "08:00", "local_time_before": "20:00"},
                      "citation": {"source": "Test Act", "section": "s1"},
                      "messages": {"en": "from {local_time_at_least}", "zh-Hans": "自",
                                   "zh-Hant": "自"}}]}
    doc.update(over)
    return doc


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["rules"][0].update(kind="nope"), "rules[0].kind"),
    (lambda d: d["rules"][0]["params"].update(local_time_before="25:99"),
     "rules[0].params.local_time_before"),
    (lambda d: d["rules"][0]["params"].pop("local_time_at_least"),
     "rules[0].params.local_time_at_least"),
    (lambda d: d["rules"][0]["params"].update(bogus=1), "rules[0].params"),
    (lambda d: d["rules"][0]["messages"].pop("zh-Hant"), "rules[0].messages.zh-Hant"),
    (lambda d: d["rules"][0]["messages"].update(en="{missing}"), "rules[0].messages.en"),
    (lambda d: d["rules"][0].pop("citation"), "rules[0].citation"),
    (lambda d: d.update(default_timezone="Mars/Base"), "default_timezone"),
    (lambda d: d["rules"][0]["params"].update(local_time_before="07:00"), "rules[0].params"),
])
def test_bad_packs_are_refused_naming_the_field(mutate, field):
    doc = minimal()
    mutate(doc)
    with pytest.raises(PackError) as err:
        build_pack(doc)
    assert err.value.field == field


def test_composition_overrides_params_disables_and_adds():
    parent = build_pack(minimal(rules=minimal()["rules"] + [
        {"id": "t.opt", "kind": "channel_opt_out", "citation": {"source": "x"},
         "messages": {"en": "a", "zh-Hans": "b", "zh-Hant": "c"}}]))
    child = build_pack({"id": "T2", "version": "1", "name": "Child", "extends": "T",
                        "rules": [{"id": "t.hours", "params": {"local_time_before": "18:00"}},
                                  {"id": "t.opt", "disabled": True},
                                  {"id": "t.new", "kind": "third_party_never_after_refusal",
                                   "citation": {"source": "y"},
                                   "messages": {"en": "n", "zh-Hans": "n", "zh-Hant": "n"}}]},
                       parent)
    assert [r.id for r in child.rules] == ["t.hours", "t.new"]
    assert child.rule("t.hours").params["local_time_before"].hour == 18
    assert child.rule("t.hours").params["local_time_at_least"].hour == 8
    assert child.default_timezone == "UTC"
    with pytest.raises(PackError):
        build_pack({**_read_pack_doc("US-MA")})  # extends US but no parent given


def test_calendar_rule_fails_closed_outside_covered_years():
    pack = build_pack(minimal(rules=[{
        "id": "t.workdays", "kind": "no_contact_on_non_working_days",
        "citation": {"source": "x"}, "messages": {"en": "w", "zh-Hans": "w", "zh-Hant": "w"}}]))
    cal = BusinessCalendar(frozenset({2026}), frozenset({date(2026, 10, 1)}),
                           frozenset({date(2026, 10, 10)}))
    p = PersonFacts("B1", Role.BORROWER, ("Asia/Shanghai",))

    def dec(when, calendar):
        req = ContactRequest(when, Channel.CALL, "B1", Role.BORROWER, "+86", Purpose.COLLECTION)
        return decide(req, Facts(p, calendar=calendar), pack)

    sh = lambda *a: datetime(*a, tzinfo=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))  # noqa: E731
    assert dec(sh(2026, 9, 30, 10), cal).allowed
    holiday = dec(sh(2026, 10, 1, 10), cal)
    assert not holiday.allowed and holiday.next_allowed_at == sh(2026, 10, 2, 0, 0)
    assert dec(sh(2026, 10, 10, 10), cal).allowed  # make-up working Saturday
    assert not dec(sh(2027, 1, 4, 10), cal).allowed  # year not covered
    assert dec(sh(2027, 1, 4, 10), cal).next_allowed_at is None
    assert not dec(sh(2026, 9, 30, 10), None).allowed


def test_next_allowed_at_combines_rules_hours_and_caps():
    # conversation on Monday 20:00; asked again Sunday 21:30 (day 7, after hours):
    # day 8 at 08:00 is the answer.
    hist = (call(at(NY, 2026, 3, 2, 20), CallResult.CONVERSATION),)
    d = decide(request(at(NY, 2026, 3, 8, 21, 30)), facts(history=hist), load_pack("US"))
    assert d.next_allowed_at == at(NY, 2026, 3, 9, 8, 0)
    assert decide(request(d.next_allowed_at), facts(history=hist), load_pack("US")).allowed
    assert not decide(request(d.next_allowed_at - timedelta(minutes=1)), facts(history=hist),
                      load_pack("US")).allowed


def test_decision_is_a_value_replay_gives_the_same_answer():
    f = facts(history=(call(at(NY, 2026, 3, 2, 9)),))
    req = request(at(NY, 2026, 3, 3, 7))
    assert decide(req, f, load_pack("US")) == decide(req, f, load_pack("US"))
    assert decide(req, f, load_pack("US")).decided_at == req.at
    assert decide(req, f, load_pack("US")).to_json()["next_allowed_at"].endswith("-05:00")
    assert datetime.fromisoformat(
        decide(req, f, load_pack("US")).to_json()["next_allowed_at"]).astimezone(UTC).hour == 13
