"""CN pack (CBA 2026 guidance, GB/T 45251-2025): boundaries of every rule."""

from __future__ import annotations

from datetime import date

import pytest

from parley.core.gate import (
    AgreementFact,
    BorrowerFacts,
    CallResult,
    Channel,
    Collector,
    Hold,
    HoldKind,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
)
from tests.unit.gate.support import (
    SH,
    assert_allowed,
    assert_denied_by,
    at,
    call,
    check,
    clean,
    dirty,
    facts,
    request,
)

P = "CN"
N = "+8613800138000"


def test_pack_marks_secondary_sources_provisional():
    from parley.services.gate_check import load_pack
    pack = load_pack(P)
    assert pack.rule("cn.hours").provisional
    assert not pack.rule("cn.agreement").provisional


def test_hours_08_to_22_first_and_last_lawful_minute():
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 8, 0), P), facts(P)))
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 21, 59), P), facts(P)))
    d = check(P, request(at(SH, 2026, 5, 6, 22, 0), P), facts(P))
    assert_denied_by(d, "cn.hours")
    assert d.next_allowed_at == at(SH, 2026, 5, 7, 8, 0)
    assert_denied_by(check(P, request(at(SH, 2026, 5, 6, 7, 59), P), facts(P)), "cn.hours")


def test_visits_are_bound_by_the_hours_too():
    two = (Collector("c1", "王伟", "A001"), Collector("c2", "李娜", "A002"))
    d = check(P, request(at(SH, 2026, 5, 6, 22, 30), P, channel=Channel.VISIT, to="addr:1",
                         collectors=two), facts(P))
    assert_denied_by(d, "cn.hours")


def unanswered(n: int, day: int = 6, to: str = N):
    return tuple(call(at(SH, 2026, 5, day, 9, i * 5), CallResult.NO_ANSWER, to=to)
                 for i in range(n))


def test_six_unanswered_attempts_per_number_per_day_then_next_day():
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 12), P), facts(P, history=unanswered(5))))
    d = check(P, request(at(SH, 2026, 5, 6, 12), P), facts(P, history=unanswered(6)))
    assert_denied_by(d, "cn.unanswered-attempts-per-number-per-day")
    assert d.next_allowed_at == at(SH, 2026, 5, 7, 8, 0)
    # another number of the same debtor is a separate count
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 12), P, to="+8613900139000"),
                         facts(P, history=unanswered(6))))


def test_the_day_boundary_is_local_midnight_in_shanghai():
    # six attempts late on May 6 local (= May 6 UTC afternoon) do not count on May 7 local
    late = tuple(call(at(SH, 2026, 5, 6, 21, i), CallResult.NO_ANSWER, to=N) for i in range(6))
    assert_allowed(check(P, request(at(SH, 2026, 5, 7, 8, 0), P), facts(P, history=late)))


def test_an_attempt_with_unknown_result_counts_as_unanswered():
    hist = unanswered(5) + (call(at(SH, 2026, 5, 6, 11), None, to=N),)
    assert_denied_by(check(P, request(at(SH, 2026, 5, 6, 12), P), facts(P, history=hist)),
                     "cn.unanswered-attempts-per-number-per-day")


def test_three_connected_conversations_per_day_then_none():
    conv = tuple(call(at(SH, 2026, 5, 6, 9 + i), CallResult.CONVERSATION, to=N)
                 for i in range(3))
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 14), P), facts(P, history=conv[:2])))
    d = check(P, request(at(SH, 2026, 5, 6, 14), P), facts(P, history=conv))
    assert_denied_by(d, "cn.conversations-per-day")
    assert d.next_allowed_at == at(SH, 2026, 5, 7, 8, 0)
    # consumer-initiated conversations are not the collector's
    inbound = tuple(call(at(SH, 2026, 5, 6, 9 + i), CallResult.CONVERSATION, to=N,
                         initiated_by="consumer") for i in range(3))
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 14), P), facts(P, history=inbound)))


def test_field_visit_needs_two_identified_collectors():
    base = dict(channel=Channel.VISIT, to="addr:1")
    one = (Collector("c1", "王伟", "A001"),)
    unnamed = one + (Collector("c2", "", "A002"),)
    two = one + (Collector("c2", "李娜", "A002"),)
    for crew in ((), one, unnamed):
        d = check(P, request(at(SH, 2026, 5, 6, 10), P, collectors=crew, **base), facts(P))
        assert_denied_by(d, "cn.visit.collectors")
        assert d.next_allowed_at is None
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 10), P, collectors=two, **base),
                         facts(P)))


# --- third parties ---------------------------------------------------------------------------

def contact(refused: bool = False) -> PersonFacts:
    return PersonFacts(id="C1", role=Role.THIRD_PARTY, candidate_zones=("Asia/Shanghai",),
                       refused=refused)


def borrower(valid: bool = True) -> BorrowerFacts:
    return BorrowerFacts("B1", (PhoneFact(N, valid),), ("Asia/Shanghai",))


def tp(when, **kw):
    return request(when, P, person="C1", role=Role.THIRD_PARTY, to="+8613700137000",
                   purpose=kw.pop("purpose", Purpose.LOCATION), **kw)


def failed(n: int):
    return tuple(call(at(SH, 2026, 5, 5, 9 + i), CallResult.NOT_CONNECTED, to=N)
                 for i in range(n))


def test_third_party_before_debtor_unreachable_is_denied():
    d = check(P, tp(at(SH, 2026, 5, 6, 10)),
              facts(P, person=contact(), borrower=borrower(), history=failed(2)))
    assert_denied_by(d, "cn.third-party.debtor-unreachable")
    assert d.next_allowed_at is None


def test_third_party_after_three_consecutive_failed_attempts_is_allowed():
    assert_allowed(check(P, tp(at(SH, 2026, 5, 6, 10)),
                         facts(P, person=contact(), borrower=borrower(), history=failed(3))))


def test_a_later_conversation_with_the_debtor_makes_them_reachable_again():
    hist = failed(3) + (call(at(SH, 2026, 5, 5, 15), CallResult.CONVERSATION, to=N),)
    assert_denied_by(check(P, tp(at(SH, 2026, 5, 6, 10)),
                           facts(P, person=contact(), borrower=borrower(), history=hist)),
                     "cn.third-party.debtor-unreachable")


def test_third_party_allowed_when_the_debtors_number_is_invalid():
    assert_allowed(check(P, tp(at(SH, 2026, 5, 6, 10)),
                         facts(P, person=contact(), borrower=borrower(valid=False))))


def test_third_party_unknown_debtor_fails_closed():
    d = check(P, tp(at(SH, 2026, 5, 6, 10)), facts(P, person=contact(), borrower=None))
    assert_denied_by(d, "cn.third-party.debtor-unreachable")


def test_third_party_only_for_location_and_never_disclosing_the_debt():
    f = facts(P, person=contact(), borrower=borrower(valid=False),
              content=dirty("debt_disclosure", "欠款"))
    assert_denied_by(check(P, tp(at(SH, 2026, 5, 6, 10), purpose=Purpose.COLLECTION), f),
                     "cn.third-party.location-only")
    sms = tp(at(SH, 2026, 5, 6, 10), channel=Channel.SMS, text="请转告他还欠款")
    assert_denied_by(check(P, sms, f), "cn.third-party.location-only")
    ok = facts(P, person=contact(), borrower=borrower(valid=False), content=clean())
    assert_allowed(check(P, tp(at(SH, 2026, 5, 6, 10), channel=Channel.SMS,
                               text="请转告王先生回电"), ok))


def test_third_party_never_again_after_refusal():
    refused = (call(at(SH, 2026, 5, 4, 10), CallResult.REFUSED, person="C1",
                    role=Role.THIRD_PARTY, to="+8613700137000"),)
    for f in (facts(P, person=contact(refused=True), borrower=borrower(valid=False)),
              facts(P, person=contact(), borrower=borrower(valid=False), history=refused)):
        d = check(P, tp(at(SH, 2026, 5, 6, 10)), f)
        assert_denied_by(d, "cn.third-party.refusal")
        assert d.next_allowed_at is None


# --- holds, agreements, content ----------------------------------------------------------------

@pytest.mark.parametrize("kind", list(HoldKind))
def test_every_hold_blocks_collection(kind):
    d = check(P, request(at(SH, 2026, 5, 6, 10), P), facts(P, holds=(Hold(kind),)))
    assert_denied_by(d, f"cn.hold.{kind.value}")
    assert d.next_allowed_at is None


def test_dispute_hold_still_allows_agreement_service():
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 10), P,
                                    purpose=Purpose.AGREEMENT_SERVICE),
                         facts(P, holds=(Hold(HoldKind.DISPUTE),))))


def test_agreement_active_versus_broken():
    active = AgreementFact("D1", "active", date(2026, 5, 1), None)
    broken = AgreementFact("D1", "broken", date(2026, 5, 1), None)
    d = check(P, request(at(SH, 2026, 5, 6, 10), P), facts(P, agreements=(active,)))
    assert_denied_by(d, "cn.agreement")
    assert d.next_allowed_at is None
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 10), P), facts(P, agreements=(broken,))))
    assert_allowed(check(P, request(at(SH, 2026, 5, 6, 10), P, purpose=Purpose.AGREEMENT_SERVICE),
                         facts(P, agreements=(active,))))


def test_sms_with_threat_is_denied_naming_category_and_words():
    d = check(P, request(at(SH, 2026, 5, 6, 10), P, channel=Channel.SMS, text="再不还就上门"),
              facts(P, content=dirty("threat", "上门")))
    assert_denied_by(d, "cn.content")
    assert d.denials[0].params["matched"] == ["上门"]
    assert d.to_json("zh-Hant")["reasons"][-1]["message"].startswith("禁止")


def test_unknown_zone_fails_closed():
    d = check(P, request(at(SH, 2026, 5, 6, 10), P), facts(P, zones=()))
    assert_denied_by(d, "cn.hours")
    assert d.next_allowed_at is None
