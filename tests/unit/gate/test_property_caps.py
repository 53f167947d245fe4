"""Property: any sequence of contacts, each permitted by the gate and then recorded with any
outcome, never breaks a cap or the hours of the pack (checked by an independent count)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.core.gate import CallResult, Channel, ContactRecord, Facts, PersonFacts, Role, decide
from parley.services.gate_check import load_pack
from tests.unit.gate.support import PHONE, request

ZONE = {"US": "America/New_York", "US-MA": "America/New_York", "CN": "Asia/Shanghai",
        "GB": "Europe/London", "IN": "Asia/Kolkata"}
HOURS = {"US": (8, 21), "US-MA": (8, 21), "CN": (8, 22), "GB": (8, 21), "IN": (8, 19)}
NUMBERS = {p: (PHONE[p], PHONE[p][:-1] + "9") for p in PHONE}

steps = st.lists(st.tuples(
    st.integers(min_value=1, max_value=60 * 14),      # minutes since the previous attempt
    st.sampled_from([Channel.CALL, Channel.CALL, Channel.SMS]),
    st.sampled_from(["D1", "D2"]),
    st.integers(min_value=0, max_value=1),             # which number
    st.sampled_from(list(CallResult) + [None]),        # the outcome recorded afterwards
), min_size=1, max_size=60)


def local_day(r: ContactRecord, z: ZoneInfo):
    return r.at.astimezone(z).date()


def check_invariants(pack_id: str, done: list[ContactRecord]) -> None:
    z = ZoneInfo(ZONE[pack_id])
    lo, hi = HOURS[pack_id]
    for r in done:
        assert lo <= r.at.astimezone(z).hour < hi, r
    calls = [r for r in done if r.channel is Channel.CALL]
    if pack_id == "CN":
        unanswered = Counter((local_day(r, z), r.to) for r in calls
                             if r.result in (CallResult.NOT_CONNECTED, CallResult.NO_ANSWER,
                                             CallResult.VOICEMAIL, None))
        assert max(unanswered.values(), default=0) <= 6
        conv = Counter(local_day(r, z) for r in calls
                       if r.result in (CallResult.CONVERSATION, CallResult.REFUSED))
        assert max(conv.values(), default=0) <= 3
    if pack_id in ("US", "US-MA"):
        for i, r in enumerate(calls):
            d = local_day(r, z)
            window = [c for c in calls[: i + 1] if c.debt_id == r.debt_id
                      and 0 <= (d - local_day(c, z)).days < 7
                      and c.result is not CallResult.NOT_CONNECTED]
            assert len(window) <= 7
            for c in calls[:i]:
                if (c.debt_id == r.debt_id and c.result in (CallResult.CONVERSATION,
                                                            CallResult.REFUSED)):
                    assert (d - local_day(c, z)).days >= 7, (c, r)
    if pack_id == "US-MA":
        both = [r for r in done if r.channel in (Channel.CALL, Channel.SMS)
                and r.result is not CallResult.NOT_CONNECTED]
        for r in both:
            d = local_day(r, z)
            n = sum(1 for c in both if c.debt_id == r.debt_id and c.at <= r.at
                    and 0 <= (d - local_day(c, z)).days < 7)
            assert n <= 2
    if pack_id in ("GB", "IN"):
        per_day = Counter((local_day(r, z), r.debt_id) for r in calls
                          if r.result is not CallResult.NOT_CONNECTED)
        assert max(per_day.values(), default=0) <= 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pack_id=st.sampled_from(["US", "US-MA", "CN", "GB", "IN"]), seq=steps,
       start_hour=st.integers(min_value=0, max_value=23))
def test_permitted_contacts_never_break_a_cap(pack_id, seq, start_hour):
    pack = load_pack(pack_id)
    z = ZoneInfo(ZONE[pack_id])
    person = PersonFacts("B1", Role.BORROWER, (ZONE[pack_id],))
    t = datetime(2026, 3, 2, start_hour, tzinfo=z)
    done: list[ContactRecord] = []
    for minutes, channel, debt, which, result in seq:
        t = t + timedelta(minutes=minutes)
        to = NUMBERS[pack_id][which]
        req = request(t, pack_id, channel=channel, debt=debt, to=to)
        d = decide(req, Facts(person, history=tuple(done)), pack)
        if d.allowed:
            done.append(ContactRecord(t, channel, "B1", Role.BORROWER, to, debt,
                                      result if channel is Channel.CALL else None))
        else:
            # the gate's promise about the future: at next_allowed_at it allows, never earlier
            n = d.next_allowed_at
            if n is not None:
                again = request(n, pack_id, channel=channel, debt=debt, to=to)
                assert decide(again, Facts(person, history=tuple(done)), pack).allowed
                before = request(n - timedelta(minutes=1), pack_id, channel=channel,
                                 debt=debt, to=to)
                assert not decide(before, Facts(person, history=tuple(done)), pack).allowed
    check_invariants(pack_id, done)
