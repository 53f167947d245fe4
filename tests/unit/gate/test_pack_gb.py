"""GB pack (FCA CONC 7; hours from the MCOB analogue, provisional)."""

from __future__ import annotations

from datetime import UTC, datetime

from parley.core.gate import (
    BorrowerFacts,
    CallResult,
    Hold,
    HoldKind,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
)
from parley.services.gate_check import load_pack
from tests.unit.gate.support import (
    LON,
    assert_allowed,
    assert_denied_by,
    at,
    call,
    check,
    facts,
    request,
)

P = "GB"
N = "+447911123456"


def test_hours_rule_is_provisional_and_third_party_rule_is_not():
    pack = load_pack(P)
    assert pack.rule("gb.hours").provisional
    assert not pack.rule("gb.third-party.location-only").provisional


def test_hours_across_the_british_summer_time_change():
    # 2026-03-29 01:00 UTC clocks go forward: 08:00 BST = 07:00 UTC.
    assert_allowed(check(P, request(datetime(2026, 3, 29, 7, 0, tzinfo=UTC), P), facts(P)))
    d = check(P, request(datetime(2026, 3, 29, 6, 59, tzinfo=UTC), P), facts(P))
    assert_denied_by(d, "gb.hours")
    assert d.next_allowed_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert_denied_by(check(P, request(at(LON, 2026, 3, 29, 21, 0), P), facts(P)), "gb.hours")


def test_persistence_cap_three_calls_per_day_provisional():
    hist = tuple(call(at(LON, 2026, 6, 1, 9 + i), CallResult.NO_ANSWER, to=N) for i in range(3))
    assert_allowed(check(P, request(at(LON, 2026, 6, 1, 15), P), facts(P, history=hist[:2])))
    d = check(P, request(at(LON, 2026, 6, 1, 15), P), facts(P, history=hist))
    assert_denied_by(d, "gb.calls-per-day")
    assert d.next_allowed_at == at(LON, 2026, 6, 2, 8, 0)
    assert d.denials[0].provisional


def test_third_party_must_not_become_aware_collection_purpose_denied():
    tp = PersonFacts("E1", Role.THIRD_PARTY, ("Europe/London",))
    req = request(at(LON, 2026, 6, 1, 12), P, person="E1", role=Role.THIRD_PARTY,
                  to="+447911000000", purpose=Purpose.COLLECTION)
    b = BorrowerFacts("B1", (PhoneFact(N),), ("Europe/London",))
    assert_denied_by(check(P, req, facts(P, person=tp, borrower=b)), "gb.third-party.location-only")


def test_vulnerable_hold_blocks_collection():
    d = check(P, request(at(LON, 2026, 6, 1, 12), P), facts(P, holds=(Hold(HoldKind.VULNERABLE),)))
    assert_denied_by(d, "gb.hold.vulnerable")
