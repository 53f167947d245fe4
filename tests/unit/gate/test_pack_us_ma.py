"""US-MA pack: extends US; two initiated calls or texts per seven days per debt."""

from __future__ import annotations

from parley.core.gate import CallResult, Channel, Collector
from parley.services.gate_check import load_pack
from tests.unit.gate.support import (
    NY,
    assert_allowed,
    assert_denied_by,
    at,
    call,
    check,
    facts,
    request,
)

P = "US-MA"
N = "+16175550100"


def test_pack_extends_us_and_keeps_its_rules():
    pack = load_pack(P)
    assert pack.extends == "US"
    ids = [r.id for r in pack.rules]
    assert "us.hours" in ids and "us.calls-7-in-7" in ids and "us-ma.calls-texts-7-days" in ids


def test_third_initiated_communication_in_seven_days_is_denied_until_day_eight():
    hist = (call(at(NY, 2026, 4, 6, 10), to=N), call(at(NY, 2026, 4, 8, 10), to=N))
    assert_allowed(check(P, request(at(NY, 2026, 4, 7, 10), P),
                         facts(P, history=hist[:1])))
    d = check(P, request(at(NY, 2026, 4, 9, 10), P), facts(P, history=hist))
    assert_denied_by(d, "us-ma.calls-texts-7-days")
    assert d.next_allowed_at == at(NY, 2026, 4, 13, 8, 0)  # Apr 6 leaves the window on Apr 13
    assert_denied_by(check(P, request(at(NY, 2026, 4, 12, 20, 59), P), facts(P, history=hist)),
                     "us-ma.calls-texts-7-days")
    assert_allowed(check(P, request(at(NY, 2026, 4, 13, 8, 0), P), facts(P, history=hist)))


def test_texts_count_with_calls_and_not_connected_calls_do_not():
    hist = (call(at(NY, 2026, 4, 6, 10), None, to=N, channel=Channel.SMS),
            call(at(NY, 2026, 4, 7, 10), CallResult.VOICEMAIL, to=N))
    assert_denied_by(check(P, request(at(NY, 2026, 4, 8, 10), P, channel=Channel.SMS),
                           facts(P, history=hist)), "us-ma.calls-texts-7-days")
    busy = (call(at(NY, 2026, 4, 6, 10), CallResult.NOT_CONNECTED, to=N),) * 1 + (
        call(at(NY, 2026, 4, 7, 10), CallResult.NOT_CONNECTED, to=N),)
    assert_allowed(check(P, request(at(NY, 2026, 4, 8, 10), P), facts(P, history=busy)))


def test_limit_is_per_debt():
    hist = (call(at(NY, 2026, 4, 6, 10), to=N, debt="D1"),
            call(at(NY, 2026, 4, 7, 10), to=N, debt="D1"))
    assert_allowed(check(P, request(at(NY, 2026, 4, 8, 10), P, debt="D2"), facts(P, history=hist)))


def test_one_visit_per_thirty_days_per_debt():
    crew = (Collector("c1", "Ann Lee", "B1"),)
    visit = call(at(NY, 2026, 4, 1, 10), None, to="addr:1", channel=Channel.VISIT)
    d = check(P, request(at(NY, 2026, 4, 20, 10), P, channel=Channel.VISIT, to="addr:1",
                         collectors=crew), facts(P, history=(visit,)))
    assert_denied_by(d, "us-ma.visits-30-days")
    assert d.next_allowed_at == at(NY, 2026, 5, 1, 8, 0)
