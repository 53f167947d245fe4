"""IN pack (RBI 2022 recovery-agent circular: 08:00-19:00, provisional)."""

from __future__ import annotations

from datetime import date

from parley.core.gate import AgreementFact, Hold, HoldKind
from tests.unit.gate.support import KOL, assert_allowed, assert_denied_by, at, check, facts, request

P = "IN"


def test_hours_08_to_19_ist():
    assert_allowed(check(P, request(at(KOL, 2026, 7, 1, 8, 0), P), facts(P)))
    assert_allowed(check(P, request(at(KOL, 2026, 7, 1, 18, 59), P), facts(P)))
    d = check(P, request(at(KOL, 2026, 7, 1, 19, 0), P), facts(P))
    assert_denied_by(d, "in.hours")
    assert d.next_allowed_at == at(KOL, 2026, 7, 2, 8, 0)
    assert d.denials[0].provisional
    assert_denied_by(check(P, request(at(KOL, 2026, 7, 1, 7, 59), P), facts(P)), "in.hours")


def test_half_hour_offset_zone_day_boundary():
    # 18:30 UTC is 00:00 IST: a new local day starts, but still outside hours.
    d = check(P, request(at(KOL, 2026, 7, 2, 0, 0), P), facts(P))
    assert d.next_allowed_at == at(KOL, 2026, 7, 2, 8, 0)


def test_holds_and_agreements_apply():
    assert_denied_by(check(P, request(at(KOL, 2026, 7, 1, 10), P),
                           facts(P, holds=(Hold(HoldKind.BANKRUPTCY),))), "in.hold.bankruptcy")
    a = AgreementFact("D1", "active", date(2026, 6, 1), date(2026, 12, 31))
    assert_denied_by(check(P, request(at(KOL, 2026, 7, 1, 10), P), facts(P, agreements=(a,))),
                     "in.agreement")
