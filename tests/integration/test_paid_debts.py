"""A payment recorded at t governs every decision after t (brief §3, invariant 2): the morning's
plan said "remind", but once the arrears are paid the worker sends nothing and the collector's
call is refused, each naming the rule; agreement-service messages still go out. Both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

from sqlalchemy import text

from parley.adapters.channels.console import ConsoleProvider
from parley.services.audit import verify_audit
from parley.services.context import Context
from parley.services.facts import replay_decision
from parley.services.payments import post_payment, reverse_payment
from parley.services.permits import PermitRequest, request_permit
from parley.services.worker import LEASE, collector_queue, lease, start_call, work_once
from tests.integration.test_worker import MONDAY, PHONE, prepare

RULE = "cn.nothing-overdue"
FIRST_INSTALMENT = 51_000  # principal 50,000 + interest 1,000 (test_worker.seed_contactable)


def _borrower_items(ctx: Context, bid: str) -> dict[str, tuple]:
    with ctx.db.read() as c:
        return {r.channel: r for r in c.execute(text(
            "SELECT id, channel, status, last_reason, decision_id FROM contact_queue "
            "WHERE borrower_id = :b"), {"b": bid})}


def _add_collector(ctx: Context) -> None:
    with ctx.db.transaction() as c:
        c.execute(text(
            "INSERT INTO staff_user (id, username, display_name, role, badge_number, password_hash, "
            "languages, skills, daily_capacity, active, created_at) VALUES ('C1', 'c1', '李娜', "
            "'collector', 'G0001', '', 'zh-Hans', '', 60, :t, :at)"),
            {"t": True, "at": ctx.clock.now()})


def test_a_payment_that_clears_the_arrears_cancels_the_loans_pending_items(ctx: Context) -> None:
    _add_collector(ctx)
    prepare(ctx, n=2, dpd=10)  # B0 and B1: a call task, an SMS and an e-mail each
    post_payment(ctx, "PAY-0", "B0-L1", ctx.clock.now(), FIRST_INSTALMENT - 1)  # one fen short
    assert {r.status for r in _borrower_items(ctx, "B0").values()} == {"pending"}
    post_payment(ctx, "PAY-1", "B0-L1", ctx.clock.now(), 1)
    for item in _borrower_items(ctx, "B0").values():
        assert item.status == "cancelled" and item.last_reason == "nothing overdue on B0-L1 after a payment"
    assert {r.status for r in _borrower_items(ctx, "B1").values()} == {"pending"}
    assert {t.borrower_id for t in collector_queue(ctx, "C1")} == {"B1"}
    console = ConsoleProvider(StringIO())
    report = work_once(ctx, "w1", 10, channels={"sms": console, "email": console})
    assert (report.leased, report.sent) == (2, 2)
    assert verify_audit(ctx).ok


def test_an_item_already_in_flight_when_the_payment_lands_is_refused_by_the_gate(
        ctx: Context) -> None:
    """The payment cancels only pending items; one a worker had leased (and then crashed) is
    taken over after its lease expires, and the gate — deciding at send time — refuses it."""
    prepare(ctx, n=2, dpd=10)
    assert len(lease(ctx, "w0", 10)) == 4  # B0's and B1's SMS and e-mail, then w0 stops
    post_payment(ctx, "PAY-1", "B0-L1", ctx.clock.now(), FIRST_INSTALMENT)
    ctx.clock.advance(LEASE + timedelta(minutes=1))  # type: ignore[attr-defined]
    console = ConsoleProvider(StringIO())
    report = work_once(ctx, "w1", 10, channels={"sms": console, "email": console})
    assert (report.leased, report.sent, report.dropped) == (4, 2, 2)
    assert {m.idempotency_key for m in console.messages} == {
        f"queue:{r.id}" for ch, r in _borrower_items(ctx, "B1").items() if ch != "call"}
    for ch in ("sms", "email"):
        item = _borrower_items(ctx, "B0")[ch]
        assert item.status == "dropped" and item.last_reason.startswith(RULE), item.last_reason
    assert verify_audit(ctx).ok


def test_a_collector_cannot_call_about_a_debt_with_nothing_overdue(ctx: Context) -> None:
    _add_collector(ctx)
    prepare(ctx, n=1, dpd=10)
    (task,) = collector_queue(ctx, "C1")
    with ctx.db.transaction() as c:  # the arrears paid at the bank; the queue not yet tidied
        c.execute(text("UPDATE loan SET oldest_unpaid_due_on = NULL WHERE id = 'B0-L1'"))
    refused = start_call(ctx, task.item_id, "C1")
    assert not refused.allowed and refused.url == "" and RULE in refused.reasons
    assert refused.rules == (RULE,)  # the denying rule's id, as the decision log has it
    assert refused.next_allowed_at is None  # no time will do: only a new missed instalment


def test_agreement_service_still_reaches_a_paid_up_borrower_and_the_decision_replays(
        ctx: Context) -> None:
    prepare(ctx, n=1, dpd=10)
    post_payment(ctx, "PAY-1", "B0-L1", ctx.clock.now(), FIRST_INSTALMENT)
    req = PermitRequest(borrower_id="B0", channel="sms", purpose="collection", loan_id="B0-L1",
                        to=PHONE, text="您的账单已逾期，请尽快还款。")
    denied = request_permit(ctx, req)
    assert not denied.allowed and RULE in denied.decision.rule_ids("deny")
    service = request_permit(ctx, PermitRequest(
        borrower_id="B0", channel="sms", purpose="agreement_service", loan_id="B0-L1", to=PHONE,
        text="您的还款计划第一期已收到，谢谢。"))
    assert service.allowed, service.decision.rule_ids("deny")

    with ctx.db.read() as c:
        payload = c.execute(text(
            "SELECT payload FROM audit_log WHERE kind = 'gate.decision' ORDER BY id")).scalars().first()
    gate = json.loads(payload) if isinstance(payload, str) else payload
    second_due = MONDAY - timedelta(days=10) + timedelta(days=30)  # instalment 2 is next
    assert gate["facts"]["debts"] == [["B0-L1", second_due.isoformat()]]
    decision, compact = replay_decision(gate)
    assert not decision.allowed and compact == gate["decision"]


def test_a_reversed_payment_makes_the_debt_collectable_again(ctx: Context) -> None:
    prepare(ctx, n=1, dpd=10)
    post_payment(ctx, "PAY-1", "B0-L1", ctx.clock.now(), FIRST_INSTALMENT)
    req = PermitRequest(borrower_id="B0", channel="sms", purpose="collection", loan_id="B0-L1",
                        to=PHONE, text="您的账单已逾期，请尽快还款。")
    assert not request_permit(ctx, req).allowed
    reverse_payment(ctx, "PAY-1", "the bank returned it")
    again = request_permit(ctx, req)
    assert again.allowed, again.decision.rule_ids("deny")


def test_a_permit_decided_under_an_older_pack_version_can_still_be_repeated(
        ctx: Context) -> None:
    """A worker that crashed after its permit is retried after an upgrade bumped the pack's
    version: the key still returns the stored decision (rebuilt, not decided anew), and the
    worker then asks the gate afresh before sending."""
    prepare(ctx, n=1, dpd=10)
    req = PermitRequest(borrower_id="B0", channel="sms", purpose="collection", loan_id="B0-L1",
                        to=PHONE, text="您的账单已逾期，请尽快还款。", idempotency_key="k-1")
    first = request_permit(ctx, req)
    assert first.allowed
    with ctx.db.transaction() as c:  # as logged before the upgrade
        raw = c.execute(text("SELECT payload FROM audit_log WHERE id = :i"),
                        {"i": first.decision_id}).scalar_one()
        payload = json.loads(raw) if isinstance(raw, str) else raw
        payload["pack"]["version"] = "2026.1"
        c.execute(text("UPDATE audit_log SET payload = :p WHERE id = :i"),
                  {"p": json.dumps(payload), "i": first.decision_id})
    again = request_permit(ctx, req)
    assert again.repeated and again.allowed and again.attempt_id == first.attempt_id
    assert again.decision.pack_version == "2026.1"
    assert again.decision.rule_ids() == first.decision.rule_ids()


def test_an_instalment_due_today_is_not_overdue_so_paying_the_arrears_cancels(ctx: Context) -> None:
    """The boundary: after the payment the oldest unpaid instalment falls due today (the
    business date), which is not overdue yet."""
    prepare(ctx, n=1, dpd=10)
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE installment SET due_on = :d WHERE loan_id = 'B0-L1' AND number = 2"),
                  {"d": MONDAY})
    post_payment(ctx, "PAY-1", "B0-L1", ctx.clock.now(), FIRST_INSTALMENT)
    assert {r.status for r in _borrower_items(ctx, "B0").values()} == {"cancelled"}
