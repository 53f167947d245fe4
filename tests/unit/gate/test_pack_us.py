"""US pack (FDCPA / Regulation F): boundaries of every rule and the §2.1 test vectors."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.gate import (
    AgreementFact,
    BorrowerFacts,
    CallResult,
    Channel,
    ContactRecord,
    Hold,
    HoldKind,
    OptOut,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
)
from tests.unit.gate.support import (
    LA,
    NY,
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

P = "US"


# --- hours: 08:00 to before 21:00 at the consumer's location -------------------------------

def test_first_lawful_minute_is_eight_and_the_minute_before_is_denied():
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 8, 0)), facts()))
    d = check(P, request(at(NY, 2026, 3, 3, 7, 59)), facts())
    assert_denied_by(d, "us.hours")
    assert d.next_allowed_at == at(NY, 2026, 3, 3, 8, 0)


def test_last_lawful_minute_is_twenty_fifty_nine_and_nine_pm_is_denied():
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 20, 59)), facts()))
    d = check(P, request(at(NY, 2026, 3, 3, 21, 0)), facts())
    assert_denied_by(d, "us.hours")
    assert d.next_allowed_at == at(NY, 2026, 3, 4, 8, 0)


def test_email_and_sms_are_bound_by_the_hours_too():
    d = check(P, request(at(NY, 2026, 3, 3, 22), channel=Channel.EMAIL, to="a@example.com"),
              facts())
    assert_denied_by(d, "us.hours")


def test_several_candidate_zones_must_all_be_in_hours():
    z = ("America/New_York", "America/Los_Angeles")
    # 10:30 New York = 07:30 Los Angeles: denied; first lawful is 11:00 New York.
    d = check(P, request(at(NY, 2026, 3, 3, 10, 30)), facts(zones=z))
    assert_denied_by(d, "us.hours")
    assert d.next_allowed_at == at(LA, 2026, 3, 3, 8, 0)
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 11, 0)), facts(zones=z)))
    # 18:00 LA = 21:00 NY: denied; the window is 11:00-21:00 NY = 08:00-18:00 LA.
    assert_allowed(check(P, request(at(LA, 2026, 3, 3, 17, 59)), facts(zones=z)))
    assert_denied_by(check(P, request(at(LA, 2026, 3, 3, 18, 0)), facts(zones=z)), "us.hours")
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 20, 59)), facts(zones=z)))
    assert_denied_by(check(P, request(at(NY, 2026, 3, 3, 21, 0)), facts(zones=z)), "us.hours")


def test_unknown_time_zone_fails_closed_with_no_next_time():
    d = check(P, request(at(NY, 2026, 3, 3, 12)), facts(zones=()))
    assert_denied_by(d, "us.hours")
    assert d.next_allowed_at is None
    assert "time zone" in d.denials[0].message("en")


def test_dst_spring_forward_day_uses_local_wall_time():
    # 2026-03-08: clocks go 02:00 -> 03:00 in New York. 08:00 EDT is 12:00 UTC.
    from datetime import UTC, datetime
    assert_allowed(check(P, request(datetime(2026, 3, 8, 12, 0, tzinfo=UTC)), facts()))
    d = check(P, request(datetime(2026, 3, 8, 11, 59, tzinfo=UTC)), facts())
    assert_denied_by(d, "us.hours")
    assert d.next_allowed_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


def test_dst_fall_back_day_uses_local_wall_time():
    from datetime import UTC, datetime
    # 2026-11-01: back to EST. 21:00 EST = 02:00 UTC next day.
    assert_allowed(check(P, request(datetime(2026, 11, 2, 1, 59, tzinfo=UTC)), facts()))
    assert_denied_by(check(P, request(datetime(2026, 11, 2, 2, 0, tzinfo=UTC)), facts()),
                     "us.hours")


def test_stated_inconvenient_time_is_honoured_until_its_end():
    from datetime import time

    from parley.core.gate import LocalWindow
    f = facts(inconvenient_times=(LocalWindow(time(12), time(14)),))
    d = check(P, request(at(NY, 2026, 3, 3, 12, 30)), f)
    assert_denied_by(d, "us.stated-inconvenient-times")
    assert d.next_allowed_at == at(NY, 2026, 3, 3, 14, 0)
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 14, 0)), f))


# --- 7-in-7 and the conversation prong (§2.1 vectors) --------------------------------------

def days(n: int):
    return [at(NY, 2026, 3, 2 + i, 10) for i in range(n)]  # D1 = Mon 2026-03-02


def test_vector_1_seven_calls_on_d1_to_d7_then_eighth_in_window_denied_d8_allowed():
    hist = tuple(call(t) for t in days(7))
    d = check(P, request(at(NY, 2026, 3, 8, 15)), facts(history=hist))  # D7 again
    assert_denied_by(d, "us.calls-7-in-7")
    assert d.next_allowed_at == at(NY, 2026, 3, 9, 8, 0)  # D8 at the first lawful minute
    assert_allowed(check(P, request(at(NY, 2026, 3, 9, 8, 0)), facts(history=hist)))


def test_seventh_call_is_allowed_and_eighth_is_not():
    hist6 = tuple(call(t) for t in days(6))
    assert_allowed(check(P, request(at(NY, 2026, 3, 8, 10)), facts(history=hist6)))


def test_vector_2_seven_calls_on_one_day_passes_the_count_but_is_flagged():
    hist = tuple(call(at(NY, 2026, 3, 2, 9 + i)) for i in range(6))
    d = check(P, request(at(NY, 2026, 3, 2, 16)), facts(history=hist))
    assert_allowed(d)
    assert "us.flag.concentrated-day" in [f.rule_id for f in d.flags]
    d8 = check(P, request(at(NY, 2026, 3, 3, 16)),
               facts(history=hist + (call(at(NY, 2026, 3, 2, 16)),)))
    assert_denied_by(d8, "us.calls-7-in-7")
    assert d8.next_allowed_at == at(NY, 2026, 3, 9, 8, 0)


def test_rapid_succession_flag_two_unanswered_calls_within_five_minutes():
    hist = (call(at(NY, 2026, 3, 2, 10, 0)),)
    d = check(P, request(at(NY, 2026, 3, 2, 10, 5)), facts(history=hist))
    assert "us.flag.rapid-succession" in [f.rule_id for f in d.flags]
    d2 = check(P, request(at(NY, 2026, 3, 2, 10, 6)), facts(history=hist))
    assert "us.flag.rapid-succession" not in [f.rule_id for f in d2.flags]


@pytest.mark.parametrize("initiated_by", ["collector", "consumer"])
def test_vector_3_conversation_on_day_1_blocks_calls_to_day_7_and_day_8_is_lawful(initiated_by):
    conv = call(at(NY, 2026, 9, 8, 9), CallResult.CONVERSATION, initiated_by=initiated_by)
    f = facts(history=(conv,))
    for day in (8, 9, 10, 11, 12, 14):  # same day after, and Sep 9..14
        d = check(P, request(at(NY, 2026, 9, day, 12)), f)
        assert_denied_by(d, "us.after-conversation")
        assert d.next_allowed_at == at(NY, 2026, 9, 15, 8, 0)
    assert_allowed(check(P, request(at(NY, 2026, 9, 15, 8, 0)), f))
    assert_denied_by(check(P, request(at(NY, 2026, 9, 14, 20, 59)), f), "us.after-conversation")


def test_vector_4_prior_consent_excludes_calls_from_both_prongs_within_its_window():
    conv = call(at(NY, 2026, 3, 2, 9), CallResult.CONVERSATION,
                consent_until=at(NY, 2026, 3, 5, 18))
    f = facts(history=(conv,))
    assert_allowed(check(P, request(at(NY, 2026, 3, 5, 10)), f))  # "call me Thursday"
    assert_denied_by(check(P, request(at(NY, 2026, 3, 5, 18, 1)), f), "us.after-conversation")
    # consent never extends beyond day 7 (day of consent = day 1)
    long = call(at(NY, 2026, 3, 2, 9), CallResult.CONVERSATION,
                consent_until=at(NY, 2026, 3, 20, 18))
    under = tuple(call(at(NY, 2026, 3, d, 11)) for d in range(3, 9))  # days 2..7: excluded
    assert_allowed(check(P, request(at(NY, 2026, 3, 8, 15)), facts(history=(long, *under))))
    after = tuple(call(at(NY, 2026, 3, d, 11)) for d in range(9, 16))  # day 8 on: counted
    assert_denied_by(check(P, request(at(NY, 2026, 3, 15, 15)),
                           facts(history=(long, *under, *after))), "us.calls-7-in-7")
    # consent ends once the conversation it allowed has happened
    second = call(at(NY, 2026, 3, 4, 10), CallResult.CONVERSATION)
    assert_denied_by(check(P, request(at(NY, 2026, 3, 5, 10)),
                           facts(history=(conv, second))), "us.after-conversation")


def test_vector_5_not_connected_calls_do_not_count_but_voicemail_and_no_answer_do():
    busy = tuple(call(t, CallResult.NOT_CONNECTED) for t in days(7))
    assert_allowed(check(P, request(at(NY, 2026, 3, 8, 15)), facts(history=busy)))
    for result in (CallResult.VOICEMAIL, CallResult.NO_ANSWER):
        hist = tuple(call(t, result) for t in days(7))
        assert_denied_by(check(P, request(at(NY, 2026, 3, 8, 15)), facts(history=hist)),
                         "us.calls-7-in-7")


def test_vector_6_one_conversation_about_two_debts_blocks_calls_about_either():
    conv = call(at(NY, 2026, 3, 2, 9), CallResult.CONVERSATION, debt="D1", other_debts=("D2",))
    f = facts(history=(conv,))
    for debt in ("D1", "D2"):
        assert_denied_by(check(P, request(at(NY, 2026, 3, 4, 10), debt=debt), f),
                         "us.after-conversation")
    assert_allowed(check(P, request(at(NY, 2026, 3, 4, 10), debt="D3"), f))


def test_each_debt_is_counted_separately():
    hist = tuple(call(t, debt="D1") for t in days(7))
    assert_allowed(check(P, request(at(NY, 2026, 3, 8, 15), debt="D2"), facts(history=hist)))


def test_vector_7_calls_to_three_numbers_of_one_person_aggregate():
    nums = ["+12125550100"] * 3 + ["+12125550101"] * 3 + ["+12125550102"]
    hist = tuple(call(at(NY, 2026, 3, 2 + (i % 7), 10), to=n) for i, n in enumerate(nums))
    assert_denied_by(check(P, request(at(NY, 2026, 3, 8, 15), to="+12125550102"),
                           facts(history=hist)), "us.calls-7-in-7")


def third_party(refused: bool = False, requested: bool = False) -> PersonFacts:
    return PersonFacts(id="M1", role=Role.THIRD_PARTY, candidate_zones=("America/New_York",),
                       refused=refused, requested_contact=requested)


def tp_request(when, **kw):
    return request(when, person="M1", role=Role.THIRD_PARTY, to="+12125550199",
                   purpose=kw.pop("purpose", Purpose.LOCATION), **kw)


BORROWER = BorrowerFacts("B1", (PhoneFact("+12125550100"),), ("America/New_York",))


def test_vector_8_mother_called_for_location_once_then_not_again_unless_requested():
    f = facts(person=third_party(), borrower=BORROWER,
              history=tuple(call(t) for t in days(7)))  # borrower's own count is separate
    assert_allowed(check(P, tp_request(at(NY, 2026, 3, 8, 12)), f))
    once = (call(at(NY, 2026, 3, 2, 12), CallResult.CONVERSATION, person="M1",
                 role=Role.THIRD_PARTY, to="+12125550199", purpose=None) if False else
            call(at(NY, 2026, 3, 2, 12), CallResult.CONVERSATION, person="M1",
                 role=Role.THIRD_PARTY, to="+12125550199"),)
    d = check(P, tp_request(at(NY, 2026, 3, 20, 12)), facts(person=third_party(),
                                                            borrower=BORROWER, history=once))
    assert_denied_by(d, "us.third-party.once")
    assert d.next_allowed_at is None
    assert_allowed(check(P, tp_request(at(NY, 2026, 3, 20, 12)),
                         facts(person=third_party(requested=True), borrower=BORROWER,
                               history=once)))


def test_third_party_contact_for_collection_is_denied():
    d = check(P, tp_request(at(NY, 2026, 3, 8, 12), purpose=Purpose.COLLECTION),
              facts(person=third_party(), borrower=BORROWER))
    assert_denied_by(d, "us.third-party.location-only")


def test_third_party_text_that_discloses_the_debt_is_denied():
    req = tp_request(at(NY, 2026, 3, 8, 12), channel=Channel.SMS, text="tell him he owes us")
    d = check(P, req, facts(person=third_party(), borrower=BORROWER,
                            content=dirty("debt_disclosure", "owes")))
    assert_denied_by(d, "us.third-party.location-only")
    assert_allowed(check(P, req, facts(person=third_party(), borrower=BORROWER,
                                       content=clean())))


def test_third_party_who_refused_is_never_contacted_again():
    d = check(P, tp_request(at(NY, 2026, 3, 8, 12)),
              facts(person=third_party(refused=True), borrower=BORROWER))
    assert_denied_by(d, "us.third-party.refusal")
    assert d.next_allowed_at is None


# --- holds, agreements, opt-out, content -----------------------------------------------------

@pytest.mark.parametrize("kind,purpose,blocked", [
    (HoldKind.CEASE, Purpose.COLLECTION, True),
    (HoldKind.CEASE, Purpose.AGREEMENT_SERVICE, True),
    (HoldKind.DISPUTE, Purpose.COLLECTION, True),
    (HoldKind.DISPUTE, Purpose.AGREEMENT_SERVICE, False),
    (HoldKind.LEGAL_REPRESENTATION, Purpose.COLLECTION, True),
    (HoldKind.BANKRUPTCY, Purpose.COLLECTION, True),
    (HoldKind.DECEASED, Purpose.COLLECTION, True),
    (HoldKind.VULNERABLE, Purpose.COLLECTION, True),
    (HoldKind.VULNERABLE, Purpose.AGREEMENT_SERVICE, False),
    (HoldKind.COMPLAINT_INVESTIGATION, Purpose.COLLECTION, True),
])
def test_each_hold_blocks_the_purposes_the_pack_says(kind, purpose, blocked):
    d = check(P, request(at(NY, 2026, 3, 3, 12), purpose=purpose),
              facts(holds=(Hold(kind),)))
    rid = f"us.hold.{kind.value}"
    if blocked:
        assert_denied_by(d, rid)
        assert d.next_allowed_at is None
    else:
        assert_allowed(d)
        assert rid in d.rule_ids("allow")


def test_a_hold_on_another_debt_or_from_the_future_does_not_block():
    f = facts(holds=(Hold(HoldKind.DISPUTE, "D2"), Hold(HoldKind.CEASE, None,
                                                        at(NY, 2026, 3, 4, 0))))
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 12)), f))
    assert_denied_by(check(P, request(at(NY, 2026, 3, 4, 12)), f), "us.hold.cease")


def agreement(status: str) -> AgreementFact:
    return AgreementFact("D1", status, date(2026, 3, 1), date(2026, 6, 30))


def test_active_agreement_denies_collection_but_allows_agreement_service():
    f = facts(agreements=(agreement("active"),))
    d = check(P, request(at(NY, 2026, 3, 3, 12)), f)
    assert_denied_by(d, "us.agreement")
    assert d.next_allowed_at is None
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 12), purpose=Purpose.AGREEMENT_SERVICE),
                         f))


def test_broken_or_ended_agreement_allows_collection():
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 12)),
                         facts(agreements=(agreement("broken"),))))
    assert_allowed(check(P, request(at(NY, 2026, 7, 1, 12)),
                         facts(agreements=(agreement("active"),))))


def test_agreement_start_day_is_read_in_the_borrowers_zone():
    # 2026-03-01 00:30 in New York is still Feb 28 in Los Angeles -> not yet active there,
    # but most restrictive wins: active in any zone blocks.
    a = AgreementFact("D1", "active", date(2026, 3, 1), None)
    f = facts(agreements=(a,), zones=("America/Los_Angeles",))
    assert_allowed(check(P, request(at(LA, 2026, 2, 28, 20)), f))
    assert_denied_by(check(P, request(at(LA, 2026, 3, 1, 8)), f), "us.agreement")


def test_opt_out_of_email_blocks_email_not_calls():
    f = facts(opt_outs=(OptOut(Channel.EMAIL),))
    d = check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.EMAIL, to="a@example.com"), f)
    assert_denied_by(d, "us.opt-out")
    assert d.next_allowed_at is None
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 12)), f))


def test_opt_out_of_one_number_only():
    f = facts(opt_outs=(OptOut(Channel.SMS, "+12125550100"),))
    assert_denied_by(check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS), f),
                     "us.opt-out")
    assert_allowed(check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS,
                                    to="+12125550101"), f))


# Reg F § 1006.14(h)(2)(ii): a person who opted out of a medium and then uses it may be
# answered once through it.
OPTED = at(NY, 2026, 3, 2, 9)


def sms(when, *, by: str = "collector", to: str = "+12125550100") -> ContactRecord:
    return call(when, None, channel=Channel.SMS, initiated_by=by, to=to)


def _opt_out_effect(decision) -> str | None:
    return next((f.effect for f in decision.reasons if f.rule_id == "us.opt-out"), None)


def test_after_an_opt_out_a_message_from_the_person_may_be_answered_once():
    optout = OptOut(Channel.SMS, None, OPTED)
    inbound = sms(at(NY, 2026, 3, 3, 11), by="consumer")
    req = request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS)
    d = check(P, req, facts(opt_outs=(optout,), history=(inbound,)))
    assert_allowed(d)
    finding = next(f for f in d.reasons if f.rule_id == "us.opt-out")
    assert finding.effect == "allow" and finding.params["responding_to"] == inbound.at.isoformat()
    answered = (inbound, sms(at(NY, 2026, 3, 3, 12)))
    later = request(at(NY, 2026, 3, 3, 15), channel=Channel.SMS)
    assert_denied_by(check(P, later, facts(opt_outs=(optout,), history=answered)), "us.opt-out")
    again = (*answered, sms(at(NY, 2026, 3, 4, 10), by="consumer"))  # they write again
    assert_allowed(check(P, request(at(NY, 2026, 3, 4, 11), channel=Channel.SMS),
                         facts(opt_outs=(optout,), history=again)))


@pytest.mark.parametrize("case", ["before the opt-out", "date unknown", "other medium",
                                  "other number", "no inbound"])
def test_no_reply_through_an_opted_out_medium_without_a_message_through_it_since(case: str):
    optout = OptOut(Channel.SMS, "+12125550100" if case == "other number" else None,
                    None if case == "date unknown" else OPTED)
    inbound = {
        "before the opt-out": sms(at(NY, 2026, 3, 1, 11), by="consumer"),
        "date unknown": sms(at(NY, 2026, 3, 3, 11), by="consumer"),
        "other medium": call(at(NY, 2026, 3, 3, 11), CallResult.CONVERSATION,
                             initiated_by="consumer"),
        "other number": sms(at(NY, 2026, 3, 3, 11), by="consumer", to="+12125550199"),
        "no inbound": sms(at(NY, 2026, 3, 3, 11)),  # our own message does not open it
    }[case]
    d = check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS),
              facts(opt_outs=(optout,), history=(inbound,)))
    assert_denied_by(d, "us.opt-out")


@pytest.mark.parametrize(("number_since", "opens"), [
    (at(NY, 2026, 3, 1, 9), True),   # both opt-outs before their message
    (at(NY, 2026, 3, 3, 9), False),  # the number's opt-out came after it: not answered
    (None, False),                   # the number's opt-out date unknown
])
def test_a_message_must_come_after_every_opt_out_covering_the_reply(number_since, opens):
    covering = (OptOut(Channel.SMS, None, OPTED),
                OptOut(Channel.SMS, "+12125550100", number_since))
    inbound = sms(at(NY, 2026, 3, 2, 11), by="consumer")
    d = check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS),
              facts(opt_outs=covering, history=(inbound,)))
    assert d.allowed is opens
    if not opens:
        assert_denied_by(d, "us.opt-out")


def test_a_message_from_an_unknown_number_does_not_open_a_numbers_opt_out():
    optout = OptOut(Channel.SMS, "+12125550100", OPTED)
    unknown = ContactRecord(at=at(NY, 2026, 3, 3, 11), channel=Channel.SMS, person_id="B1",  # no sender
                            role=Role.BORROWER, to="", initiated_by="consumer")
    assert_denied_by(check(P, request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS),
                           facts(opt_outs=(optout,), history=(unknown,))), "us.opt-out")


def test_packs_without_the_exception_still_deny_the_reply():
    inbound = call(at(SH, 2026, 3, 3, 11), None, channel=Channel.SMS, initiated_by="consumer",
                   to="+8613800138000")
    f = facts("CN", opt_outs=(OptOut(Channel.SMS, None, at(SH, 2026, 3, 2, 9)),),
              history=(inbound,))
    assert_denied_by(check("CN", request(at(SH, 2026, 3, 3, 12), "CN", channel=Channel.SMS), f),
                     "cn.opt-out")


@settings(max_examples=150, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 60 * 24 * 6), st.booleans()), max_size=25),
       opted_at=st.integers(0, 60 * 24 * 3))
def test_never_two_replies_to_one_message_and_none_without_one(events, opted_at):
    """Walk a week: the person writes in (True) or we ask to write (False); every write we are
    allowed is added to the history. Between two of their messages after the opt-out, at most
    one of ours goes out; before their first one, none."""
    start = at(NY, 2026, 3, 2, 0)
    optout = OptOut(Channel.SMS, None, start + timedelta(minutes=opted_at))
    history: list[ContactRecord] = []
    since_theirs: int | None = None  # our replies since their latest message after the opt-out
    for minutes, theirs in sorted(events):
        when = start + timedelta(minutes=minutes, seconds=len(history))
        if theirs:
            history.append(sms(when, by="consumer"))
            if when >= optout.since:
                since_theirs = 0
            continue
        d = check(P, request(when, channel=Channel.SMS), facts(opt_outs=(optout,),
                                                             history=tuple(history)))
        if d.allowed:  # only through the exception: the medium is opted out of throughout
            assert _opt_out_effect(d) == "allow"
            assert since_theirs == 0, "a second reply, or one with nothing to answer"
            since_theirs = 1
            history.append(sms(when))


def test_written_text_must_be_screened_and_clean():
    req = request(at(NY, 2026, 3, 3, 12), channel=Channel.SMS, text="Please call us")
    assert_denied_by(check(P, req, facts()), "us.content")
    assert_allowed(check(P, req, facts(content=clean())))
    d = check(P, req, facts(content=dirty("threat", "or else")))
    assert_denied_by(d, "us.content")
    assert d.denials[0].params["categories"] == ["threat"]
    assert d.next_allowed_at is None
    # debt mention to the borrower is fine
    assert_allowed(check(P, req, facts(content=dirty("debt_disclosure", "debt"))))


def test_the_decision_json_has_the_documented_keys():
    d = check(P, request(at(NY, 2026, 3, 3, 7)), facts())
    j = d.to_json("zh-Hans")
    assert j["decision"] == "deny"
    assert j["next_allowed_at"] == "2026-03-03T08:00:00-05:00"
    r = next(x for x in j["reasons"] if x["rule"] == "us.hours")
    assert set(r) >= {"rule", "citation", "message", "messages", "effect"}
    assert r["message"].startswith("禁止")
    assert "1006.6(b)(1)(i)" in r["citation"]
    assert set(r["messages"]) == {"en", "zh-Hans", "zh-Hant"}


def test_next_allowed_at_is_exact_one_minute_before_is_denied():
    hist = (call(at(NY, 2026, 3, 2, 9), CallResult.CONVERSATION),)
    d = check(P, request(at(NY, 2026, 3, 4, 22)), facts(history=hist))
    n = d.next_allowed_at
    assert n is not None
    assert_allowed(check(P, request(n), facts(history=hist)))
    assert not check(P, request(n - timedelta(minutes=1)), facts(history=hist)).allowed
