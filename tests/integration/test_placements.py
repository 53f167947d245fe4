"""Agency placements (委外) and legal referrals: the worker carries out the daily run's
``agency`` and ``legal`` items — one transaction each, checked against agreements and holds at
processing time, audited, idempotent, and the same after a crash as after one clean pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from sqlalchemy import text

from parley.adapters.channels.console import ConsoleProvider
from parley.errors import Conflict, NotFound
from parley.services.audit import verify_audit
from parley.services.auth import Actor
from parley.services.casework import case_at_glance, placements_and_referrals
from parley.services.context import Context
from parley.services.daily_run import run_daily
from parley.services.placements import (
    carry_out_task,
    close_referral,
    place_loan,
    recall_placement,
    refer_to_legal,
)
from parley.services.templates import seed_default_templates
from parley.services.webhooks import subscribe
from parley.services.worker import (
    LEASE,
    SimulatedCrash,
    lease,
    run_worker,
    work_once,
    work_tasks,
)
from tests.integration.test_daily_run import add_agreement
from tests.integration.test_worker import MONDAY, seed_contactable

EAST = "agency-east-02"  # the default strategy's agency for M4-M6 small balances
WEST = "agency-west-09"
EAST_AGENT = Actor("staff", "ea1", "agency_collector", "East agent", EAST, "E-001")
WEST_AGENT = Actor("staff", "wa1", "agency_collector", "West agent", WEST, "W-001")


def history(ctx: Context, actor: Actor, lid: str) -> list[dict[str, object]]:
    """The loan's placements as the actor may see them (casework's case read)."""
    return placements_and_referrals(ctx, actor, lid)["placements"]  # type: ignore[no-any-return]
IN_HOUSE = Actor("staff", "c1", "collector", "In-house", None, "G-001")
NOW_PLUS = timedelta(hours=2)  # past the tasks' proposed time on MONDAY


def seed(ctx: Context, bid: str = "B0", *, dpd: int, large: bool = False) -> str:
    """A contactable CN borrower whose one loan is ``dpd`` days overdue on MONDAY; ``large``
    raises the balance to ¥6,000 (the default strategy refers M7 loans of ¥3,000+ to legal)."""
    lid = seed_contactable(ctx, bid, dpd=dpd)
    if large:
        with ctx.db.transaction() as c:
            c.execute(text("UPDATE installment SET principal_due = 300000 WHERE loan_id = :l"), {"l": lid})
            c.execute(text("UPDATE loan SET principal = 600000 WHERE id = :l"), {"l": lid})
    return lid


def plan(ctx: Context, *loans: tuple[str, int, bool]) -> None:
    """Seed (borrower, dpd, large) accounts, run MONDAY and move the clock past the tasks' time."""
    seed_default_templates(ctx)
    for bid, dpd, large in loans:
        seed(ctx, bid, dpd=dpd, large=large)
    run_daily(ctx, MONDAY)
    ctx.clock.advance(NOW_PLUS)


def task_items(ctx: Context) -> list[tuple]:
    with ctx.db.read() as c:
        return [tuple(r) for r in c.execute(text(
            "SELECT id, loan_id, channel, template_id, status, last_reason FROM contact_queue "
            "WHERE channel IN ('agency', 'legal') ORDER BY id"))]


def add_task(ctx: Context, loan_id: str, channel: str, target: str, key: str) -> int:
    """A queue item as a later run would write it (the next re-evaluation)."""
    now = ctx.clock.now()
    with ctx.db.transaction() as c:
        bid = c.execute(text("SELECT borrower_id FROM loan WHERE id = :l"), {"l": loan_id}).scalar_one()
        c.execute(text(
            "INSERT INTO contact_queue (business_date, borrower_id, loan_id, strategy_id, arm, state, "
            "action_kind, channel, purpose, template_id, priority, not_before, status, attempts, "
            "idempotency_key, last_reason, created_at, updated_at) VALUES (:d, :b, :l, 'default', '', "
            "'manual', :k, :c, 'collection', :t, 10, :nb, 'pending', 0, :key, '', :nb, :nb)"),
            {"d": MONDAY, "b": bid, "l": loan_id, "c": channel, "t": target, "key": key,
             "k": "agency_placement" if channel == "agency" else "legal_referral", "nb": now})
        return int(c.execute(text("SELECT id FROM contact_queue WHERE idempotency_key = :k"),
                             {"k": key}).scalar_one())


def placements(ctx: Context) -> list[tuple]:
    with ctx.db.read() as c:
        return [tuple(r) for r in c.execute(text(
            "SELECT loan_id, agency_id, ended_at IS NULL, end_reason, queue_item_id "
            "FROM agency_placement ORDER BY id"))]


def agency_of(ctx: Context, loan_id: str) -> str | None:
    with ctx.db.read() as c:
        return c.execute(text("SELECT agency_id FROM loan WHERE id = :l"), {"l": loan_id}).scalar_one()


def audit_kinds(ctx: Context, bid: str = "B0") -> list[str]:
    with ctx.db.read() as c:
        return list(c.execute(text(
            "SELECT kind FROM audit_log WHERE chain_key = :b AND kind NOT LIKE 'gate.%' ORDER BY seq"),
            {"b": bid}).scalars())


def assert_audit_ok(ctx: Context) -> None:
    report = verify_audit(ctx)
    assert report.ok, report.problems


def sms_only() -> dict[str, ConsoleProvider]:
    return {"sms": ConsoleProvider(StringIO())}


# --------------------------------------------------------------------------------------------
# Agency placement
# --------------------------------------------------------------------------------------------


def test_the_worker_places_the_loan_and_only_that_agencys_collector_then_sees_the_case(
        ctx: Context) -> None:
    sid, _secret = subscribe(ctx, "https://lender.example/hooks")
    plan(ctx, ("B0", 100, False))  # M4, small balance: agency placement + a notice SMS
    ((item_id, lid, _ch, target, status, _r),) = task_items(ctx)
    assert (target, status) == (EAST, "pending")
    with pytest.raises(NotFound):  # not placed yet: the agency sees nothing
        case_at_glance(ctx, EAST_AGENT, lid)

    report = work_once(ctx, "w1", 10, channels=sms_only())
    assert report.done == 1 and report.sent == 1
    (item,) = task_items(ctx)
    assert item[4] == "done" and item[5].startswith(f"placed with agency {EAST}")
    with ctx.db.read() as c:
        updated = c.execute(text("SELECT updated_at FROM contact_queue WHERE id = :i"),
                            {"i": item_id}).scalar_one()
    assert updated is not None
    assert agency_of(ctx, lid) == EAST
    assert placements(ctx) == [(lid, EAST, True, None, item_id)]

    assert case_at_glance(ctx, EAST_AGENT, lid)["loan"]["agency_id"] == EAST
    with pytest.raises(NotFound) as other:
        case_at_glance(ctx, WEST_AGENT, lid)
    assert str(other.value) == f"unknown loan {lid!r}"  # exactly like a missing loan
    (shown,) = history(ctx, EAST_AGENT, lid)
    assert shown["agency_id"] == EAST and shown["placed_by"] == "system"
    assert shown["ended_at"] is None
    assert f"queue item {item_id}" in shown["reason"] and "state m4_m6_agency" in shown["reason"]
    with pytest.raises(NotFound):
        placements_and_referrals(ctx, WEST_AGENT, lid)

    assert audit_kinds(ctx) == ["placement.started"]
    assert_audit_ok(ctx)
    with ctx.db.read() as c:
        events = list(c.execute(text("SELECT kind, subscription_id FROM webhook_delivery")))
    assert [tuple(e) for e in events] == [("placement.started", sid)]


def test_placing_again_with_the_same_agency_changes_nothing(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False))
    work_tasks(ctx, "w1")
    ((first, lid, *_),) = task_items(ctx)
    again = add_task(ctx, lid, "agency", EAST, "next-run|agency")
    report = work_tasks(ctx, "w1")
    assert (report.leased, report.done) == (1, 1)
    assert task_items(ctx)[1][4:] == ("done", f"already placed with agency {EAST} (placement 1)")
    assert placements(ctx) == [(lid, EAST, True, None, first)]
    assert audit_kinds(ctx) == ["placement.started"]
    assert again != first


def test_placing_with_another_agency_ends_the_previous_placement(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False))
    work_tasks(ctx, "w1")
    ((first, lid, *_),) = task_items(ctx)
    ctx.clock.advance(timedelta(days=1))
    second = add_task(ctx, lid, "agency", WEST, "next-run|agency")
    assert work_tasks(ctx, "w1").done == 1
    assert placements(ctx) == [(lid, EAST, False, f"moved to agency {WEST}", first),
                               (lid, WEST, True, None, second)]
    assert agency_of(ctx, lid) == WEST
    assert case_at_glance(ctx, WEST_AGENT, lid)["loan"]["agency_id"] == WEST
    with pytest.raises(NotFound):  # the old agency has lost the case
        case_at_glance(ctx, EAST_AGENT, lid)
    assert [p["agency_id"] for p in history(ctx, IN_HOUSE, lid)] == [WEST, EAST]
    assert [p["agency_id"] for p in history(ctx, WEST_AGENT, lid)] == [WEST]
    assert audit_kinds(ctx) == ["placement.started", "placement.ended", "placement.started"]
    assert_audit_ok(ctx)


@pytest.mark.parametrize("blocker", ["agreement", "borrower_hold", "loan_hold"])
def test_an_agreement_or_hold_at_processing_time_cancels_the_item_and_places_nothing(
        ctx: Context, blocker: str) -> None:
    plan(ctx, ("B0", 100, False))
    ((item_id, lid, *_),) = task_items(ctx)
    # came in after the run planned the placement
    if blocker == "agreement":
        add_agreement(ctx, lid, "B0", "accepted")
    else:
        with ctx.db.transaction() as c:
            c.execute(text("INSERT INTO hold (borrower_id, loan_id, kind, started_at, source, note, "
                           "created_by) VALUES ('B0', :l, 'dispute', :at, 'staff', '', 'c1')"),
                      {"l": lid if blocker == "loan_hold" else None, "at": ctx.clock.now()})
    report = work_tasks(ctx, "w1")
    assert (report.leased, report.cancelled, report.done) == (1, 1, 0)
    ((_, _, _, _, status, reason),) = task_items(ctx)
    assert status == "cancelled"
    assert reason.startswith("agreement_active:" if blocker == "agreement" else "hold: an active dispute")
    assert agency_of(ctx, lid) is None and placements(ctx) == []
    assert audit_kinds(ctx) == []
    with pytest.raises(Conflict):  # by hand too
        place_loan(ctx, lid, EAST, by="manager1")
    assert agency_of(ctx, lid) is None
    assert item_id


def test_a_loan_paid_up_since_the_run_is_not_placed(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False))
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE installment SET paid_principal = principal_due, "
                       "paid_interest = interest_due, paid_off_on = :d"), {"d": MONDAY})
    assert work_tasks(ctx, "w1").cancelled == 1
    assert task_items(ctx)[0][5] == "loan B0-L1 has nothing overdue any more"
    assert placements(ctx) == []


def test_a_loan_whose_delinquency_is_paused_since_the_run_is_not_placed(ctx: Context) -> None:
    """Overdue means days past due > 0 by the one definition, pauses included: a paused loan
    has nothing overdue though its instalment is still unpaid."""
    from parley.services.delinquency import add_pause

    plan(ctx, ("B0", 100, False))
    add_pause(ctx, "B0-L1", MONDAY - timedelta(days=100), MONDAY + timedelta(days=30),
              reason="hardship review")
    assert work_tasks(ctx, "w1").cancelled == 1
    assert task_items(ctx)[0][5] == "loan B0-L1 has nothing overdue any more"
    assert placements(ctx) == []


def test_a_crash_before_commit_writes_nothing_and_the_retry_places_once(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False))

    def crash(point: str, item_id: int) -> None:
        if point == "task_before_commit":
            raise SimulatedCrash(point)

    with pytest.raises(SimulatedCrash):
        work_tasks(ctx, "w1", fault=crash)
    assert placements(ctx) == [] and agency_of(ctx, "B0-L1") is None and audit_kinds(ctx) == []
    assert task_items(ctx)[0][4] == "leased"
    assert work_tasks(ctx, "w2").leased == 0  # the lease still holds
    ctx.clock.advance(LEASE + timedelta(seconds=1))
    assert work_tasks(ctx, "w2").done == 1
    assert len(placements(ctx)) == 1 and audit_kinds(ctx) == ["placement.started"]
    assert_audit_ok(ctx)


# --------------------------------------------------------------------------------------------
# Recall
# --------------------------------------------------------------------------------------------


def test_recalling_a_placement_ends_it_and_the_agency_loses_the_case(ctx: Context) -> None:
    sid, _ = subscribe(ctx, "https://lender.example/hooks")
    plan(ctx, ("B0", 100, False))
    work_tasks(ctx, "w1")
    lid = "B0-L1"
    ctx.clock.advance(timedelta(days=3))
    out = recall_placement(ctx, lid, by="manager1", reason="agency under review")
    assert out.agency_id == EAST and out.placement is not None
    assert out.placement.ended_by == "manager1" and out.placement.ended_at == ctx.clock.now()
    with ctx.db.read() as c:
        item = c.execute(text("SELECT id FROM contact_queue WHERE channel = 'agency'")).scalar_one()
    assert placements(ctx) == [(lid, EAST, False, "recalled: agency under review", item)]
    assert agency_of(ctx, lid) is None
    with pytest.raises(NotFound):
        case_at_glance(ctx, EAST_AGENT, lid)
    assert case_at_glance(ctx, IN_HOUSE, lid)["loan"]["agency_id"] is None
    with pytest.raises(Conflict):
        recall_placement(ctx, lid, by="manager1", reason="twice")
    assert audit_kinds(ctx) == ["placement.started", "placement.ended"]
    assert_audit_ok(ctx)
    with ctx.db.read() as c:
        kinds = list(c.execute(text("SELECT kind FROM webhook_delivery WHERE subscription_id = :s "
                                    "ORDER BY id"), {"s": sid}).scalars())
    assert kinds == ["placement.started", "placement.ended"]
    # placed again later: a new placement row, the history keeps both
    assert place_loan(ctx, lid, EAST, by="manager1", reason="review passed").changed
    assert [p["ended_at"] is None for p in history(ctx, IN_HOUSE, lid)] == [True, False]


def test_recalling_a_placement_that_came_with_the_loan_import(ctx: Context) -> None:
    lid = seed(ctx, dpd=100)
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE loan SET agency_id = :a WHERE id = :l"), {"a": WEST, "l": lid})
    assert not place_loan(ctx, lid, WEST, by="manager1").changed  # already there: no-op
    out = recall_placement(ctx, lid, by="manager1", reason="back in house")
    assert (out.agency_id, out.placement) == (WEST, None)
    assert agency_of(ctx, lid) is None and placements(ctx) == []
    assert audit_kinds(ctx) == ["placement.ended"]
    assert_audit_ok(ctx)


# --------------------------------------------------------------------------------------------
# Legal referral
# --------------------------------------------------------------------------------------------


def test_a_legal_referral_is_created_once_even_when_its_item_is_processed_twice(ctx: Context) -> None:
    sid, _ = subscribe(ctx, "https://lender.example/hooks")
    plan(ctx, ("B0", 200, True))  # M7, ¥6,000: legal referral (+ notice SMS)
    ((item_id, lid, channel, target, *_),) = task_items(ctx)
    assert (channel, target) == ("legal", "legal-cn")
    (stale,) = lease(ctx, "w1", 10, ("legal",))  # w1 leases it, then dies
    ctx.clock.advance(LEASE + timedelta(seconds=1))
    assert work_tasks(ctx, "w2").done == 1  # w2 takes the expired lease over
    late = carry_out_task(ctx, "w1", stale.id, stale.lease_until)  # w1 wakes up
    assert late.status == "skipped"
    again = add_task(ctx, lid, "legal", "legal-cn", "next-run|legal")  # the next re-evaluation
    assert work_tasks(ctx, "w2").done == 1
    with ctx.db.read() as c:
        rows = [tuple(r) for r in c.execute(text(
            "SELECT loan_id, queue, status, queue_item_id FROM legal_referral"))]
    assert rows == [(lid, "legal-cn", "open", item_id)]
    assert task_items(ctx)[1][4:] == ("done", "already referred to legal: referral 1 open in legal-cn")
    assert again
    (ref,) = placements_and_referrals(ctx, IN_HOUSE, lid)["legal_referrals"]  # on the case
    assert (ref["status"], ref["queue"], ref["referred_by"]) == ("open", "legal-cn", "system")
    with pytest.raises(NotFound):
        placements_and_referrals(ctx, EAST_AGENT, lid)  # not placed with them
    assert audit_kinds(ctx) == ["legal_referral.opened"]
    assert_audit_ok(ctx)
    with ctx.db.read() as c:
        assert list(c.execute(text("SELECT kind FROM webhook_delivery WHERE subscription_id = :s"),
                              {"s": sid}).scalars()) == ["legal_referral.opened"]


def test_a_legal_referral_under_a_hold_is_cancelled_and_one_by_hand_can_be_closed(
        ctx: Context) -> None:
    plan(ctx, ("B0", 200, True))
    lid = "B0-L1"
    with ctx.db.transaction() as c:
        c.execute(text("INSERT INTO hold (borrower_id, loan_id, kind, started_at, source, note, "
                       "created_by) VALUES ('B0', NULL, 'bankruptcy', :at, 'staff', '', 'c1')"),
                  {"at": ctx.clock.now()})
    assert work_tasks(ctx, "w1").cancelled == 1
    assert task_items(ctx)[0][4:] == ("cancelled", "hold: an active bankruptcy hold covers the borrower")
    with pytest.raises(Conflict):
        refer_to_legal(ctx, lid, "legal-cn", by="manager1")
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE hold SET ended_at = :at"), {"at": ctx.clock.now()})
    created, ref = refer_to_legal(ctx, lid, "legal-cn", by="manager1", reason="assets found")
    assert created and ref.status == "open"
    assert refer_to_legal(ctx, lid, "legal-cn", by="manager1") == (False, ref)
    closed = close_referral(ctx, ref.id, by="lawyer1", reason="settled out of court")
    assert (closed.status, closed.closed_by) == ("closed", "lawyer1")
    with pytest.raises(Conflict):
        close_referral(ctx, ref.id, by="lawyer1", reason="again")
    assert audit_kinds(ctx) == ["legal_referral.opened", "legal_referral.closed"]
    assert_audit_ok(ctx)


def test_work_tasks_leaves_contacts_alone_and_work_once_can_leave_tasks_alone(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False), ("B1", 200, True))
    report = work_once(ctx, "w1", 10, channels=sms_only(), tasks=False)
    assert report.sent == 2 and report.done == 0
    assert [i[4] for i in task_items(ctx)] == ["pending", "pending"]
    report = work_tasks(ctx, "w1")
    assert (report.leased, report.done, report.sent) == (2, 2, 0)
    assert_audit_ok(ctx)


def test_run_worker_carries_out_tasks_with_the_messages(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False), ("B1", 200, True))
    total = run_worker(ctx, "w1", channels=sms_only(), limit=1, once=True, poll_seconds=0)
    assert (total.leased, total.sent, total.done) == (4, 2, 2)
    assert [i[4] for i in task_items(ctx)] == ["done", "done"]


@pytest.mark.pg
def test_concurrent_workers_place_each_loan_once(pg_ctx: Context) -> None:
    import threading

    ctx = pg_ctx
    plan(ctx, *[(f"B{k}", 100 if k % 2 else 200, not k % 2) for k in range(12)])
    assert len(task_items(ctx)) == 12
    errors: list[BaseException] = []

    def drain(wid: str) -> None:
        try:
            while work_tasks(ctx, wid, 2).leased:
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {i[4] for i in task_items(ctx)} == {"done"}
    with ctx.db.read() as c:
        n_placed = c.execute(text("SELECT COUNT(*) FROM agency_placement")).scalar_one()
        n_referred = c.execute(text("SELECT COUNT(*) FROM legal_referral")).scalar_one()
    assert (n_placed, n_referred) == (6, 6)
    assert_audit_ok(ctx)


def test_placed_at_is_the_processing_instant_read_back_in_utc(ctx: Context) -> None:
    plan(ctx, ("B0", 100, False))
    work_tasks(ctx, "w1")
    (p,) = history(ctx, IN_HOUSE, "B0-L1")
    placed_at = p["placed_at"]
    assert isinstance(placed_at, datetime)
    assert placed_at == ctx.clock.now() and placed_at.tzinfo is not None
    assert placed_at.astimezone(UTC) == datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def test_a_placement_cancels_other_collectors_open_tasks_on_the_loan_and_a_recall_the_agencys(
        ctx: Context) -> None:
    """Once the loan is with an agency, an in-house collector's open call on it is cancelled
    with the placement (they could no longer see the case); recalling it cancels the
    agency collector's. Unassigned tasks are left for the next run to assign."""
    plan(ctx, ("B0", 100, False))
    ((_, lid, *_),) = task_items(ctx)
    with ctx.db.transaction() as c:
        for who in ("c1", "ea1", None):
            c.execute(text(
                "INSERT INTO contact_queue (business_date, borrower_id, loan_id, strategy_id, arm, "
                "state, action_kind, channel, purpose, priority, not_before, status, collector_id, "
                "attempts, idempotency_key, last_reason, created_at, updated_at) VALUES (:d, 'B0', "
                ":l, 'default', '', 'm4', 'call', 'call', 'collection', 10, :t, 'pending', :who, 0, "
                ":key, '', :t, :t)"),
                {"d": MONDAY, "l": lid, "who": who, "key": f"call-{who}", "t": ctx.clock.now()})
        for sid, agency in (("c1", None), ("ea1", EAST)):
            if c.execute(text("SELECT 1 FROM staff_user WHERE id = :i"), {"i": sid}).first() is None:
                c.execute(text(
                    "INSERT INTO staff_user (id, username, display_name, role, badge_number, "
                    "password_hash, languages, skills, daily_capacity, active, created_at, agency_id) "
                    "VALUES (:i, :i, :i, :r, :i, '', 'zh-Hans', '', 60, :t, :at, :a)"),
                    {"i": sid, "r": "agency_collector" if agency else "collector", "t": True,
                     "at": ctx.clock.now(), "a": agency})

    def call_status() -> dict[str | None, str]:
        with ctx.db.read() as c:
            return {r[0]: r[1] for r in c.execute(text(
                "SELECT collector_id, status FROM contact_queue WHERE channel = 'call' "
                "AND idempotency_key LIKE 'call-%'"))}

    work_tasks(ctx, "w1")
    assert agency_of(ctx, lid) == EAST
    assert call_status() == {"c1": "cancelled", "ea1": "pending", None: "pending"}
    recall_placement(ctx, lid, reason="the agency broke the rules", by="lead")
    assert call_status() == {"c1": "cancelled", "ea1": "cancelled", None: "pending"}
