"""collect_only_while_overdue: a payment recorded at t governs every decision after t (brief §3,
invariant 2). A debt with nothing overdue gets no collection contact and no attempt to locate
the debtor; agreement-service messages still go out."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.gate import (
    BorrowerFacts,
    Channel,
    DebtStanding,
    PersonFacts,
    Purpose,
    Role,
    decide,
)
from parley.core.gate.decide import evaluate
from parley.services.facts import facts_from_json, facts_json
from parley.services.gate_check import load_pack
from tests.unit.gate.support import (
    PHONE,
    TZ,
    assert_allowed,
    assert_denied_by,
    at,
    check,
    facts,
    request,
)

PACKS = ("CN", "US", "US-MA", "GB", "IN")
RULE = {"CN": "cn.nothing-overdue", "US": "us.nothing-overdue", "US-MA": "us.nothing-overdue",
        "GB": "gb.nothing-overdue", "IN": "in.nothing-overdue"}


def _when(pack: str) -> datetime:
    return at(TZ[pack], 2026, 5, 6, 11)  # a Wednesday, 11:00 local: lawful everywhere


def _debts(*items: tuple[str, date | None]) -> tuple[DebtStanding, ...]:
    return tuple(DebtStanding(d, due) for d, due in items)


@pytest.mark.parametrize("pack", PACKS)
def test_every_pack_allows_collection_while_overdue_and_denies_it_once_paid(pack: str) -> None:
    when = _when(pack)
    overdue = replace(facts(pack), debts=_debts(("D1", date(2026, 5, 1))))
    assert_allowed(check(pack, request(when, pack), overdue))
    paid = replace(facts(pack), debts=_debts(("D1", None)))
    d = check(pack, request(when, pack), paid)
    assert_denied_by(d, RULE[pack])
    assert d.next_allowed_at is None  # no time will do: a new plan must be made
    assert not load_pack(pack).rule(RULE[pack]).provisional


@pytest.mark.parametrize("pack", PACKS)
def test_an_instalment_due_today_or_later_is_not_overdue(pack: str) -> None:
    when = _when(pack)
    for due in (date(2026, 5, 6), date(2026, 6, 6)):
        d = check(pack, request(when, pack), replace(facts(pack), debts=_debts(("D1", due))))
        assert_denied_by(d, RULE[pack])
    d = check(pack, request(when, pack), replace(facts(pack), debts=_debts(("D1", date(2026, 5, 5)))))
    assert_allowed(d)


@pytest.mark.parametrize("pack", PACKS)
def test_agreement_service_messages_still_go_out(pack: str) -> None:
    when = _when(pack)
    paid = replace(facts(pack), debts=_debts(("D1", None)))
    req = request(when, pack, purpose=Purpose.AGREEMENT_SERVICE)
    assert RULE[pack] not in decide(req, paid, load_pack(pack)).rule_ids()


def test_the_debt_named_decides_and_a_general_contact_needs_any_debt_overdue() -> None:
    when = _when("CN")
    f = replace(facts("CN"), debts=_debts(("D1", None), ("D2", date(2026, 4, 1))))
    assert_denied_by(check("CN", request(when, "CN", debt="D1"), f), "cn.nothing-overdue")
    assert_allowed(check("CN", request(when, "CN", debt="D2"), f))
    assert_allowed(check("CN", request(when, "CN", debt=None), f))
    none_due = replace(f, debts=_debts(("D1", None), ("D2", date(2026, 9, 1))))
    assert_denied_by(check("CN", request(when, "CN", debt=None), none_due), "cn.nothing-overdue")
    # a debt the facts do not know is not overdue
    assert_denied_by(check("CN", request(when, "CN", debt="D9"), f), "cn.nothing-overdue")


def test_a_third_partys_contact_is_judged_on_the_debtors_dates_too() -> None:
    """The debtor is in Los Angeles, the emergency contact in Shanghai; the instalment fell due
    on the debtor's today. Shanghai's date is a day ahead, but the debt is not overdue for the
    debtor yet, so no location contact about it."""
    when = datetime(2026, 5, 7, 1, tzinfo=ZoneInfo("Asia/Shanghai"))  # 10:00 on 6 May in LA
    tp = PersonFacts(id="tp:1", role=Role.THIRD_PARTY, candidate_zones=("Asia/Shanghai",))
    debtor = BorrowerFacts("B1", (), ("America/Los_Angeles",))
    f = replace(facts("CN", person=tp, borrower=debtor), debts=_debts(("D1", date(2026, 5, 6))))
    req = request(when, "CN", purpose=Purpose.LOCATION, person="tp:1", role=Role.THIRD_PARTY,
                  to="+8613800138001")
    assert _effects(req, f) == ["deny"]
    assert _effects(replace(req, at=datetime(2026, 5, 7, 1, tzinfo=ZoneInfo("America/Los_Angeles"))),
                    f) == ["allow"]


def test_locating_the_debtor_through_a_third_party_is_denied_too() -> None:
    when = _when("US")
    tp = PersonFacts(id="tp:1", role=Role.THIRD_PARTY, candidate_zones=("America/New_York",))
    base = facts("US", person=tp)
    req = request(when, "US", purpose=Purpose.LOCATION, person="tp:1", role=Role.THIRD_PARTY,
                  to="+12125550199")
    paid = replace(base, debts=_debts(("D1", None)))
    assert "us.nothing-overdue" in decide(req, paid, load_pack("US")).rule_ids("deny")
    overdue = replace(base, debts=_debts(("D1", date(2026, 1, 5))))
    assert "us.nothing-overdue" not in decide(req, overdue, load_pack("US")).rule_ids("deny")


def test_unknown_standing_does_not_bear() -> None:
    """Facts built without debts (by hand, or logged before debts were recorded)."""
    when = _when("CN")
    d = check("CN", request(when, "CN"), facts("CN"))
    assert "cn.nothing-overdue" not in d.rule_ids()
    assert_allowed(d)


def test_the_standing_is_logged_and_replays() -> None:
    f = replace(facts("CN"), debts=_debts(("D1", None), ("D2", date(2026, 4, 1))))
    back = facts_from_json(facts_json(f))
    assert back.debts == f.debts
    req = request(_when("CN"), "CN", debt="D1")
    assert decide(req, back, load_pack("CN")) == decide(req, f, load_pack("CN"))
    old_log = facts_json(facts("CN"))
    old_log.pop("debts")
    assert facts_from_json(old_log).debts is None


def test_zones_a_day_apart_deny_while_either_date_is_in_doubt() -> None:
    """00:30 on 7 May in Shanghai is still 6 May in New York: an instalment due on 6 May is
    overdue in Shanghai only, so a person who may be in either is not contacted yet."""
    when = datetime(2026, 5, 7, 0, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    both = ("Asia/Shanghai", "America/New_York")
    f = replace(facts("CN", zones=both), debts=_debts(("D1", date(2026, 5, 6))))
    assert _effects(request(when, "CN"), f) == ["deny"]
    (denial,) = [x for x in evaluate(request(when, "CN"), f, load_pack("CN"))
                 if x.rule_id == "cn.nothing-overdue"]
    # lawful once 6 May has passed in New York too: 7 May 00:00 there
    assert denial.retry_at == datetime(2026, 5, 7, tzinfo=ZoneInfo("America/New_York"))
    shanghai_only = replace(facts("CN", zones=("Asia/Shanghai",)), debts=f.debts)
    assert _effects(request(when, "CN"), shanghai_only) == ["allow"]


def _effects(req, f) -> list[str]:  # type: ignore[no-untyped-def]
    return [x.effect for x in evaluate(req, f, load_pack("CN")) if x.rule_id == "cn.nothing-overdue"]


ZONE_NAMES = ("Asia/Shanghai", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago",
              "Europe/London")


@settings(max_examples=300, deadline=None)
@given(
    dues=st.lists(st.one_of(st.none(), st.dates(date(2026, 4, 20), date(2026, 5, 20))),
                  min_size=1, max_size=3),
    named=st.one_of(st.none(), st.integers(0, 3)),
    minutes=st.integers(0, 3 * 24 * 60),
    zones=st.lists(st.sampled_from(ZONE_NAMES), min_size=0, max_size=3, unique=True),
    purpose=st.sampled_from(list(Purpose)),
)
def test_the_rule_follows_its_definition(dues: list[date | None], named: int | None,
                                         minutes: int, zones: list[str],
                                         purpose: Purpose) -> None:
    """Allowed exactly when some debt concerned has its oldest unpaid instalment due before the
    local date in every candidate zone (the pack's zone when none); only collection and
    location contacts are concerned."""
    pack = load_pack("CN")
    when = datetime(2026, 5, 5, tzinfo=ZoneInfo("UTC")) + timedelta(minutes=minutes)
    debts = tuple(DebtStanding(f"D{i}", due) for i, due in enumerate(dues))
    debt_id = None if named is None else f"D{named}"
    f = replace(facts("CN", zones=tuple(zones)), debts=debts)
    req = replace(request(when, "CN", debt=debt_id), channel=Channel.SMS, to=PHONE["CN"],
                  purpose=purpose)
    found = [x for x in evaluate(req, f, pack) if x.rule_id == "cn.nothing-overdue"]
    if purpose not in (Purpose.COLLECTION, Purpose.LOCATION):
        assert found == []
        return
    days = [when.astimezone(ZoneInfo(z)).date() for z in zones] or [
        when.astimezone(ZoneInfo(pack.default_timezone)).date()]
    concerned = [d for d in debts if debt_id is None or d.debt_id == debt_id]
    expect = any(d.oldest_unpaid_due_on is not None
                 and all(d.oldest_unpaid_due_on < day for day in days) for d in concerned)
    assert [x.effect for x in found] == ["allow" if expect else "deny"]
    if not expect:
        names = zones or [pack.default_timezone]
        partly = [d.oldest_unpaid_due_on for d in concerned if d.oldest_unpaid_due_on is not None
                  and any(d.oldest_unpaid_due_on < day for day in days)]
        retry = None if not partly else max(
            datetime.combine(min(partly) + timedelta(days=1), datetime.min.time(),
                             ZoneInfo(z)) for z in names)
        assert found[0].retry_at == retry
        if retry is not None:  # and at that instant the rule passes
            later = replace(req, at=retry)
            assert [x.effect for x in evaluate(later, f, pack)
                    if x.rule_id == "cn.nothing-overdue"] == ["allow"]
