"""The permit: decided at send time, recorded in the same transaction, on the audit record."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from parley.adapters.crypto import mask_phone
from parley.adapters.zones import zones_for_phones
from parley.errors import Conflict, InvalidInput, NotFound
from parley.services.context import Context
from parley.services.facts import replay_decision
from parley.services.permits import (
    PermitRequest,
    add_opt_out,
    check_contact,
    check_json,
    end_hold,
    place_hold,
    record_inbound,
    record_outcome,
    request_permit,
)
from parley.store.models.agreements import Agreement
from parley.store.models.contacts import AuditLog, ContactAttempt, DecisionReason
from parley.store.models.loanbook import Borrower, BorrowerPhone, Loan, ThirdParty

CN_PHONE = "+8613800138000"
US_PHONE = "+16175550123"


# --- seeding (shared with test_audit and test_permit_concurrency) ------------------------------


def seed_borrower(ctx: Context, bid: str, *, jurisdiction: str = "CN", phone: str = CN_PHONE,
                  timezone: str | None = "Asia/Shanghai", loans: tuple[str, ...] = ("L1",),
                  third_party_phone: str | None = None, email: str | None = None) -> int | None:
    """A borrower with one phone and loans; returns the third party's id if one is made."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    keys = ctx.keyring
    tp_id = None
    with ctx.db.transaction() as conn:
        conn.execute(Borrower.__table__.insert(), {
            "id": bid, "name": f"Borrower {bid}", "preferred_language": "zh-Hans",
            "declared_timezone": timezone, "jurisdiction": jurisdiction, "tags": "",
            "content_hash": "x", "created_at": now, "audit_seq": 0, "audit_head": ""})
        conn.execute(BorrowerPhone.__table__.insert(), {
            "borrower_id": bid, "position": 0, "phone_type": "mobile",
            "e164_enc": keys.encrypt(phone, "phone.e164"),
            "e164_index": keys.blind_index(phone, "phone"), "masked": mask_phone(phone),
            "timezones": ",".join(zones_for_phones([phone])), "is_valid": True})
        if email:
            conn.execute(text("INSERT INTO borrower_email (borrower_id, position, address) "
                              "VALUES (:b, 0, :a)"), {"b": bid, "a": email})
        for lid in loans:
            conn.execute(Loan.__table__.insert(), {
                "id": loan_id(bid, lid),
                "borrower_id": bid, "currency": "CNY", "principal": 1_000_000,
                "annual_rate": "12", "term": 12, "method": "equal_installment",
                "day_count": "30/360", "disbursed_on": date(2025, 6, 1),
                "first_due_on": date(2025, 7, 1), "product": "", "agency_id": None,
                "schedule_source": "generated", "status": "active", "content_hash": "x",
                # delinquent since the first due date (the cache the gate reads; no schedule
                # rows are needed for these tests)
                "created_at": now, "oldest_unpaid_due_on": date(2025, 7, 1)})
        if third_party_phone:
            tp_id = int(conn.execute(ThirdParty.__table__.insert().returning(
                ThirdParty.__table__.c.id), {
                "borrower_id": bid, "name": "Emergency Contact", "relation": "family",
                "e164_enc": keys.encrypt(third_party_phone, "phone.e164"),
                "e164_index": keys.blind_index(third_party_phone, "phone"),
                "masked": mask_phone(third_party_phone),
                "timezones": ",".join(zones_for_phones([third_party_phone]))}).scalar_one())
    return tp_id


def loan_id(bid: str, lid: str = "L1") -> str:
    return f"{bid}-{lid}"


def count(ctx: Context, table: object, **where: object) -> int:
    t = table.__table__  # type: ignore[attr-defined]
    stmt = select(func.count()).select_from(t)
    for k, v in where.items():
        stmt = stmt.where(t.c[k] == v)
    with ctx.db.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def call(bid: str = "B1", **kw: object) -> PermitRequest:
    base: dict[str, object] = {"borrower_id": bid, "channel": "call", "purpose": "collection",
                               "loan_id": loan_id(bid), "collector_id": "C7",
                               "agency_id": "A1", "badge": "B-007"}
    base.update(kw)
    return PermitRequest(**base)  # type: ignore[arg-type]


def at_local(ctx: Context, y: int, m: int, d: int, hh: int, mm: int = 0,
             zone: str = "Asia/Shanghai") -> None:
    from zoneinfo import ZoneInfo

    ctx.clock.set(datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(zone)))  # type: ignore[attr-defined]


# --- tests --------------------------------------------------------------------------------------


def test_an_allowed_permit_records_exactly_one_attempt_and_one_audit_entry(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    permit = request_permit(ctx, call())
    assert permit.allowed
    assert permit.attempt_id is not None
    assert permit.to_masked == mask_phone(CN_PHONE)
    assert count(ctx, ContactAttempt) == 1
    assert count(ctx, AuditLog) == 1
    with ctx.db.read() as conn:
        att = conn.execute(select(ContactAttempt.__table__)).one()
        audit = conn.execute(select(AuditLog.__table__)).one()
        head = conn.execute(select(Borrower.__table__.c.audit_seq,
                                   Borrower.__table__.c.audit_head)).one()
    assert (att.collector_id, att.agency_id, att.badge) == ("C7", "A1", "B-007")
    assert att.decision_id == permit.decision_id == audit.id
    assert att.to_index == ctx.keyring.blind_index(CN_PHONE, "phone")
    assert att.result is None and att.channel == "call" and att.purpose == "collection"
    assert (audit.kind, audit.outcome, audit.seq, audit.chain_key) == ("gate.decision", "allow",
                                                                        1, "B1")
    assert (head.audit_seq, head.audit_head) == (1, audit.hash)
    payload = json.loads(audit.payload)
    assert payload["decision"]["decision"] == "allow"
    assert payload["pack"] == {"id": "CN", "version": permit.decision.pack_version}
    assert CN_PHONE not in audit.payload  # the number is on record only as its blind index


def test_a_denied_permit_records_no_attempt_but_is_logged_with_its_rules(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    at_local(ctx, 2026, 3, 2, 22, 30)  # 22:30 in Shanghai: after the 22:00 limit
    permit = request_permit(ctx, call())
    assert not permit.allowed
    assert permit.attempt_id is None
    assert "cn.hours" in permit.decision.rule_ids("deny")
    assert permit.decision.next_allowed_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert count(ctx, ContactAttempt) == 0
    with ctx.db.read() as conn:
        audit = conn.execute(select(AuditLog.__table__)).one()
        reasons = conn.execute(select(DecisionReason.__table__.c.rule_id,
                                      DecisionReason.__table__.c.effect,
                                      DecisionReason.__table__.c.audit_id)).all()
    assert audit.outcome == "deny" and " cn.hours " in audit.rules
    assert ("cn.hours", "deny", audit.id) in [tuple(r) for r in reasons]


def test_cn_allows_three_conversations_a_day_once_outcomes_are_recorded(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    for i in range(3):
        ctx.clock.advance(timedelta(minutes=30))  # type: ignore[attr-defined]
        permit = request_permit(ctx, call())
        assert permit.allowed, permit.decision.rule_ids("deny")
        record_outcome(ctx, permit.attempt_id, "conversation", recording_ref=f"rec-{i}")
    ctx.clock.advance(timedelta(minutes=30))  # type: ignore[attr-defined]
    fourth = request_permit(ctx, call())
    assert not fourth.allowed
    assert fourth.decision.rule_ids("deny") == ("cn.conversations-per-day",)
    assert fourth.decision.next_allowed_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 08:00
    at_local(ctx, 2026, 3, 3, 9)  # the next local day
    assert request_permit(ctx, call()).allowed
    assert count(ctx, ContactAttempt) == 4


def test_cn_counts_pending_attempts_so_six_unanswered_calls_a_day_is_the_limit(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    allowed = [request_permit(ctx, call()).allowed for _ in range(8)]
    assert allowed == [True] * 6 + [False] * 2
    assert count(ctx, ContactAttempt) == 6


def test_us_allows_seven_calls_in_seven_days_and_denies_the_eighth(ctx: Context) -> None:
    seed_borrower(ctx, "B1", jurisdiction="US", phone=US_PHONE, timezone="America/New_York")
    for day in range(7):
        at_local(ctx, 2026, 3, 2 + day, 10, zone="America/New_York")
        permit = request_permit(ctx, call())
        assert permit.allowed, (day, permit.decision.rule_ids("deny"))
        record_outcome(ctx, permit.attempt_id, "no_answer")
    at_local(ctx, 2026, 3, 8, 15, zone="America/New_York")
    eighth = request_permit(ctx, call())
    assert not eighth.allowed
    assert "us.calls-7-in-7" in eighth.decision.rule_ids("deny")
    at_local(ctx, 2026, 3, 9, 10, zone="America/New_York")  # the first call has left the window
    assert request_permit(ctx, call()).allowed


def test_an_active_agreement_denies_collection_and_allows_agreement_service(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    with ctx.db.transaction() as conn:
        conn.execute(Agreement.__table__.insert(), {
            "id": "AG1", "borrower_id": "B1", "loan_id": loan_id("B1"), "kind": "installment_plan",
            "status": "accepted", "starts_on": date(2026, 3, 10), "ends_on": date(2026, 9, 10),
            "currency": "CNY", "total_amount": 100_000, "waived_amount": 0, "terms": "{}",
            "policy_id": "default", "proposed_by": "C7",
            "proposed_at": datetime(2026, 3, 1, tzinfo=UTC)})
    denied = request_permit(ctx, call())
    assert not denied.allowed and "cn.agreement" in denied.decision.rule_ids("deny")
    assert denied.decision.next_allowed_at is None
    service = request_permit(ctx, call(purpose="agreement_service"))
    assert service.allowed
    assert count(ctx, ContactAttempt) == 1


def test_a_hold_denies_contact_until_it_ends(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    hold = place_hold(ctx, "B1", "dispute", by="compliance-1")
    permit = request_permit(ctx, call())
    assert not permit.allowed and "cn.hold.dispute" in permit.decision.rule_ids("deny")
    end_hold(ctx, hold, by="compliance-1")
    with pytest.raises(Conflict):
        end_hold(ctx, hold)
    assert request_permit(ctx, call()).allowed


def test_an_opt_out_denies_that_channel_only(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    add_opt_out(ctx, "B1", "sms", to=CN_PHONE)
    sms = request_permit(ctx, call(channel="sms", purpose="agreement_service",
                                   text="您的还款计划第一期将于明天到期。"))
    assert not sms.allowed and "cn.opt-out" in sms.decision.rule_ids("deny")
    assert request_permit(ctx, call()).allowed


def test_a_message_the_borrower_sends_after_opting_out_may_be_answered_once(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1", jurisdiction="US", phone=US_PHONE, timezone="America/New_York")
    at_local(ctx, 2026, 3, 2, 9, zone="America/New_York")
    add_opt_out(ctx, "B1", "sms")
    reply = call(channel="sms", text="We received your message.")
    at_local(ctx, 2026, 3, 2, 10, zone="America/New_York")
    assert "us.opt-out" in request_permit(ctx, reply).decision.rule_ids("deny")
    at_local(ctx, 2026, 3, 2, 11, zone="America/New_York")
    got = record_inbound(ctx, "B1", "sms", sender=" +1 617-555-0123 ", notes="please call back")
    assert got.to_masked == mask_phone(US_PHONE)
    at_local(ctx, 2026, 3, 2, 12, zone="America/New_York")
    first = request_permit(ctx, reply)
    assert first.allowed, first.decision.rule_ids("deny")
    assert "us.opt-out" in first.decision.rule_ids("allow")
    at_local(ctx, 2026, 3, 2, 13, zone="America/New_York")
    assert "us.opt-out" in request_permit(ctx, reply).decision.rule_ids("deny")  # once
    with ctx.db.read() as conn:
        row = conn.execute(select(ContactAttempt.direction, ContactAttempt.initiated_by,
                                  ContactAttempt.decision_id).where(
            ContactAttempt.id == got.attempt_id)).one()
        kinds = conn.execute(select(AuditLog.kind).where(AuditLog.borrower_id == "B1")
                             .order_by(AuditLog.seq)).scalars().all()
    assert tuple(row) == ("inbound", "consumer", None)
    assert "contact.inbound" in kinds
    # the decision log replays with the opt-out's date
    with ctx.db.read() as conn:
        payload = conn.execute(select(AuditLog.payload).where(
            AuditLog.id == first.decision_id)).scalar_one()
    replayed, _ = replay_decision(json.loads(payload))
    assert replayed.allowed and replayed.rule_ids("allow") == first.decision.rule_ids("allow")


def test_their_calls_never_count_as_attempts_but_a_conversation_in_one_does(
        ctx: Context) -> None:
    """Reg F FAQ: incoming calls do not count toward 7-in-7, but a conversation in one starts
    the seven days after a conversation."""
    seed_borrower(ctx, "B1", jurisdiction="US", phone=US_PHONE, timezone="America/New_York")
    at_local(ctx, 2026, 3, 2, 9, zone="America/New_York")
    for _ in range(8):  # eight calls from them that reached nobody
        record_inbound(ctx, "B1", "call", sender=US_PHONE)
    at_local(ctx, 2026, 3, 2, 10, zone="America/New_York")
    assert request_permit(ctx, call()).allowed
    record_inbound(ctx, "B1", "call", sender=US_PHONE, spoke=True)
    at_local(ctx, 2026, 3, 3, 10, zone="America/New_York")
    assert "us.after-conversation" in request_permit(ctx, call()).decision.rule_ids("deny")


@pytest.mark.parametrize(("kw", "field"), [
    ({"channel": "visit"}, "channel"), ({"channel": "fax"}, "channel"),
    ({"sender": "call me maybe"}, "sender"), ({"channel": "email", "sender": "nobody"}, "sender"),
    ({"third_party_id": "7"}, "third_party_id"), ({"third_party_id": True}, "third_party_id"),
    ({"notes": "x" * 2001}, "notes"), ({"spoke": True}, "spoke"),
])
def test_bad_inbound_input_is_refused_by_name_and_records_nothing(
        ctx: Context, kw: dict[str, object], field: str) -> None:
    seed_borrower(ctx, "B1")
    args: dict[str, object] = {"channel": "sms", "sender": CN_PHONE, **kw}
    channel = args.pop("channel")
    with pytest.raises(InvalidInput) as err:
        record_inbound(ctx, "B1", channel, **args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert count(ctx, ContactAttempt) == 0 and count(ctx, AuditLog) == 0


def test_inbound_from_an_unknown_person_is_not_found(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    with pytest.raises(NotFound):
        record_inbound(ctx, "B9", "call")
    with pytest.raises(NotFound):
        record_inbound(ctx, "B1", "call", third_party_id=4242)
    assert count(ctx, ContactAttempt) == 0 and count(ctx, AuditLog) == 0


def test_a_third_party_who_refused_is_never_contacted_again(ctx: Context) -> None:
    tp = seed_borrower(ctx, "B1", third_party_phone="+8613900139000")
    first = request_permit(ctx, call(third_party_id=tp, purpose="location"))
    assert not first.allowed  # the debtor is still reachable
    assert "cn.third-party.debtor-unreachable" in first.decision.rule_ids("deny")
    mine = request_permit(ctx, call())  # the borrower's number turns out to be someone else's
    record_outcome(ctx, mine.attempt_id, "wrong_party")
    ctx.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    reached = request_permit(ctx, call(third_party_id=tp, purpose="location"))
    assert reached.allowed, reached.decision.rule_ids("deny")
    record_outcome(ctx, reached.attempt_id, "refused", by="C7")
    ctx.clock.advance(timedelta(days=60))  # long after any history window
    again = request_permit(ctx, call(third_party_id=tp, purpose="location"))
    assert not again.allowed
    assert "cn.third-party.refusal" in again.decision.rule_ids("deny")


def test_wrong_party_marks_the_borrowers_number_invalid(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    permit = request_permit(ctx, call())
    record_outcome(ctx, permit.attempt_id, "wrong_party")
    with ctx.db.read() as conn:
        assert conn.execute(select(BorrowerPhone.__table__.c.is_valid)).scalar_one() is False
    with pytest.raises(InvalidInput) as exc:
        request_permit(ctx, call())  # no valid number left to call
    assert exc.value.field == "to"


def test_an_outcome_is_recorded_only_once(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    permit = request_permit(ctx, call())
    record_outcome(ctx, permit.attempt_id, "no_answer")
    with pytest.raises(Conflict):
        record_outcome(ctx, permit.attempt_id, "conversation")
    with pytest.raises(NotFound):
        record_outcome(ctx, 999_999, "conversation")
    with pytest.raises(InvalidInput):
        record_outcome(ctx, permit.attempt_id, "shouted")


def test_an_idempotency_key_returns_the_same_permit_without_a_second_attempt(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    seed_borrower(ctx, "B2")
    first = request_permit(ctx, call(idempotency_key="q-17|2026-03-02"))
    ctx.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    again = request_permit(ctx, call(idempotency_key="q-17|2026-03-02"))
    assert again.repeated and again.allowed
    assert (again.attempt_id, again.decision_id) == (first.attempt_id, first.decision_id)
    assert again.decision == first.decision
    assert count(ctx, ContactAttempt) == 1 and count(ctx, AuditLog) == 1
    with pytest.raises(Conflict):
        request_permit(ctx, call("B2", idempotency_key="q-17|2026-03-02"))
    assert count(ctx, ContactAttempt) == 1


def test_an_unknown_borrower_is_not_found_and_bad_fields_are_named(ctx: Context) -> None:
    with pytest.raises(NotFound):
        request_permit(ctx, call("NOPE"))
    seed_borrower(ctx, "B1")
    with pytest.raises(InvalidInput) as exc:
        request_permit(ctx, call(channel="pigeon"))
    assert exc.value.field == "channel"
    with pytest.raises(InvalidInput) as exc:
        request_permit(ctx, call(to="+8613700137000"))
    assert exc.value.field == "to"
    assert count(ctx, AuditLog) == 0


def test_a_preview_is_logged_but_records_no_attempt(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    preview = check_contact(ctx, call())
    assert preview.allowed and preview.attempt_id is None
    with ctx.db.read() as conn:
        assert conn.execute(select(AuditLog.__table__.c.kind)).scalar_one() == "gate.preview"
    assert count(ctx, ContactAttempt) == 0


def test_abusive_text_is_denied_and_named(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    permit = request_permit(ctx, call(channel="sms", text="再不还钱就去你家门口曝光你"))
    assert not permit.allowed and "cn.content" in permit.decision.rule_ids("deny")


def test_replaying_stored_decisions_gives_the_same_answers(ctx: Context) -> None:
    tp = seed_borrower(ctx, "B1", third_party_phone="+8613900139000")
    seed_borrower(ctx, "B2", jurisdiction="US", phone=US_PHONE, timezone=None)
    for i in range(8):
        p = request_permit(ctx, call())
        if p.allowed and i % 2:
            record_outcome(ctx, p.attempt_id, "conversation" if i < 5 else "no_answer")
        ctx.clock.advance(timedelta(minutes=7))  # type: ignore[attr-defined]
    request_permit(ctx, call(third_party_id=tp, purpose="location"))
    request_permit(ctx, call(channel="sms", text="请尽快还款，否则曝光"))
    at_local(ctx, 2026, 3, 2, 15, zone="America/New_York")
    for _ in range(3):
        p = request_permit(ctx, call("B2"))
        if p.allowed:
            record_outcome(ctx, p.attempt_id, "conversation")
    at_local(ctx, 2026, 3, 2, 23)
    request_permit(ctx, call())
    with ctx.db.read() as conn:
        rows = conn.execute(select(AuditLog.__table__.c.payload).where(
            AuditLog.__table__.c.kind == "gate.decision")).all()
    assert len(rows) == 14
    outcomes = set()
    for (payload_text,) in rows:
        payload = json.loads(payload_text)
        _, again = replay_decision(payload)
        assert again == payload["decision"]
        outcomes.add(again["decision"])
    assert outcomes == {"allow", "deny"}


def test_check_json_decides_a_scenario_like_the_cli(ctx: Context) -> None:
    body = {"pack": "CN", "person": {"role": "borrower", "phones": [CN_PHONE]},
            "request": {"at": "2026-03-02T23:00:00+08:00", "channel": "call", "to": CN_PHONE,
                        "purpose": "collection"}}
    out = check_json(ctx, body)
    assert out["decision"] == "deny" and out["reasons"][0]["rule"] == "cn.hours"
    with pytest.raises(InvalidInput) as exc:
        check_json(ctx, {**body, "request": {**body["request"], "channel": "fax"}})
    assert exc.value.field == "request.channel"


# --- facts: zones and the business calendar ----------------------------------------------------


def test_facts_take_zones_from_the_declared_zone_then_the_address_then_the_phones(
        ctx: Context) -> None:
    from parley.core.gate import ContactRequest, Role
    from parley.services.facts import load_facts

    seed_borrower(ctx, "B1", jurisdiction="US", phone=US_PHONE, timezone=None)
    now = ctx.clock.now()
    req = ContactRequest(at=now, channel="call", person_id="B1", role=Role.BORROWER,  # type: ignore[arg-type]
                         to="x", purpose="collection")  # type: ignore[arg-type]
    with ctx.db.read() as conn:
        by_phone = load_facts(conn, ctx, "B1", req, now)
    assert by_phone.person.candidate_zones == ("America/New_York",)  # +1 617: Boston
    with ctx.db.transaction() as conn:
        conn.execute(text("INSERT INTO borrower_address (borrower_id, position, country, region, "
                          "city, postal_code) VALUES ('B1', 0, 'US', 'TX', 'Austin', '')"))
    with ctx.db.read() as conn:
        by_address = load_facts(conn, ctx, "B1", req, now)
    assert by_address.person.candidate_zones == ("America/Chicago", "America/Denver")
    with ctx.db.transaction() as conn:
        conn.execute(text("UPDATE borrower SET declared_timezone = 'America/Los_Angeles'"))
    with ctx.db.read() as conn:
        declared = load_facts(conn, ctx, "B1", req, now)
    assert declared.person.candidate_zones == ("America/Los_Angeles",)
    assert declared.borrower is not None and declared.borrower.phones[0].valid


def test_the_cn_calendar_knows_make_up_working_days_and_an_unloaded_year_is_not_covered(
        ctx: Context) -> None:
    from parley.services.calendar import load_calendar, seed_calendar

    assert seed_calendar(ctx, "CN", [2026])[2026] > 20
    with ctx.db.read() as conn:
        cal = load_calendar(conn, "CN", [2026, 2027])
    assert cal.years == frozenset({2026})
    assert cal.is_working_day(date(2026, 2, 14)) is True  # a Saturday made a working day (调休)
    assert cal.is_working_day(date(2026, 2, 17)) is False  # Spring Festival
    assert cal.is_working_day(date(2026, 3, 2)) is True  # an ordinary Monday
    assert cal.is_working_day(date(2027, 3, 1)) is None  # not loaded: unknown, fails closed
    with pytest.raises(InvalidInput):
        seed_calendar(ctx, "CN", [2027])  # no published 调休 schedule yet: would fail open


def test_a_us_permit_sees_the_us_calendar_it_was_decided_with(ctx: Context) -> None:
    from parley.services.calendar import seed_calendar

    seed_calendar(ctx, "US", [2026])
    seed_borrower(ctx, "B1", jurisdiction="US", phone=US_PHONE, timezone="America/New_York")
    at_local(ctx, 2026, 3, 2, 10, zone="America/New_York")
    permit = request_permit(ctx, call())
    with ctx.db.read() as conn:
        payload = json.loads(conn.execute(select(AuditLog.__table__.c.payload)).scalar_one())
    assert payload["facts"]["calendar"]["years"] == [2026]
    assert "2026-07-03" in payload["facts"]["calendar"]["holidays"]  # Independence Day observed
    assert permit.allowed


def test_a_cn_visit_needs_two_identified_collectors_and_is_recorded_with_them(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    with pytest.raises(InvalidInput) as exc:
        request_permit(ctx, call(channel="visit"))
    assert exc.value.field == "to"  # no address on file: nowhere to go
    with ctx.db.transaction() as conn:
        conn.execute(text("INSERT INTO borrower_address (borrower_id, position, country, region, "
                          "city, postal_code) VALUES ('B1', 0, 'CN', 'Zhejiang', 'Hangzhou', '')"))
    alone = request_permit(ctx, call(channel="visit", collectors=(("C7", "王伟", "B-007"),)))
    assert not alone.allowed and "cn.visit.collectors" in alone.decision.rule_ids("deny")
    pair = request_permit(ctx, call(channel="visit", collectors=(("C7", "王伟", "B-007"),
                                                                 ("C8", "李娜", "B-008"))))
    assert pair.allowed and pair.to_masked == "Hangzhou Zhejiang CN"
    with ctx.db.read() as conn:
        notes = conn.execute(select(ContactAttempt.__table__.c.notes)).scalar_one()
    assert "C7 王伟 (B-007)" in notes and "C8 李娜 (B-008)" in notes


def test_postgresql_reads_the_debts_with_the_other_facts(pg_ctx: Context,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the lock, PostgreSQL reads each debt's standing in the one facts statement; the
    separate read is SQLite's (and the unlocked preview's). Refusing it here fails the permit
    if the combined statement ever stops supplying the debts."""
    import parley.services.facts as facts_mod

    class Refuse:
        def rows(self, *a: object, **k: object) -> list[object]:
            raise AssertionError("debts read separately on PostgreSQL")

    seed_borrower(pg_ctx, "B1")
    monkeypatch.setattr(facts_mod, "SQL_DEBTS", Refuse())
    p = request_permit(pg_ctx, call())
    assert p.allowed and "cn.nothing-overdue" in p.decision.rule_ids("allow")
