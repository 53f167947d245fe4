"""The daily run: delinquent accounts → state → due actions → contact queue, set-based,
idempotent, and the same after a crash and a re-run as after one clean run."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bench.bench_daily_run import seed_accounts
from sqlalchemy import text

from parley.core.strategy import Arm, Experiment, assign_arm
from parley.errors import InvalidInput
from parley.services.context import Context
from parley.services.daily_run import lawful_hours, proposed_time, run_daily

MONDAY = date(2026, 3, 2)
SHANGHAI = ZoneInfo("Asia/Shanghai")
QUEUE_COLS = ("business_date, borrower_id, loan_id, strategy_id, arm, state, action_kind, channel, "
              "purpose, template_id, priority, not_before, status, collector_id, idempotency_key")


def queue(ctx: Context) -> list[tuple]:
    with ctx.db.read() as c:
        return [tuple(r) for r in c.execute(text(
            f"SELECT {QUEUE_COLS} FROM contact_queue ORDER BY idempotency_key"))]


def by_loan(ctx: Context) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    with ctx.db.read() as c:
        for loan, kind, state in c.execute(text(
                "SELECT loan_id, action_kind, state FROM contact_queue ORDER BY loan_id, action_kind")):
            out.setdefault(loan, []).append((state, kind))
    return out


def add_staff(ctx: Context, rows: list[tuple[str, str, str, int]]) -> None:
    """(id, languages, skills, capacity) collectors."""
    with ctx.db.transaction() as c:
        for sid, langs, skills, cap in rows:
            c.execute(text(
                "INSERT INTO staff_user (id, username, display_name, role, badge_number, password_hash, "
                "languages, skills, daily_capacity, active, created_at) VALUES (:id, :id, :id, 'collector', "
                ":badge, '', :l, :s, :cap, :t, :at)"),
                {"id": sid, "badge": f"G-{sid}", "l": langs, "s": skills, "cap": cap, "t": True,
                 "at": datetime(2026, 1, 1, tzinfo=UTC)})


def add_agreement(ctx: Context, loan: str, borrower: str, status: str) -> None:
    """An agreement row with the given status (other required columns filled generically, as
    the agreements service owns their meaning)."""
    from sqlalchemy import Integer, String

    from parley.store.models.agreements import Agreement

    at = datetime(2026, 3, 1, tzinfo=UTC)
    values: dict[str, object] = {"id": f"A-{loan}", "borrower_id": borrower, "loan_id": loan,
                                 "kind": "installment_plan", "status": status, "currency": "CNY",
                                 "terms": "{}", "proposed_by": "x", "proposed_at": at}
    for col in Agreement.__table__.columns:
        if col.name in values or col.nullable or col.default is not None:
            continue
        values[col.name] = (f"{col.name}-{loan}" if isinstance(col.type, String)
                            else 0 if isinstance(col.type, Integer) else at)
    with ctx.db.transaction() as c:
        c.execute(Agreement.__table__.insert(), values)


def test_each_account_gets_its_states_actions_at_a_lawful_preferred_time(ctx: Context) -> None:
    # dpd 3 → m1_early (sms), 10 → m1_late (call, sms, email), 45 → m2 (call, sms)
    dpds = [3, 10, 45, 0]
    seed_accounts(ctx, 4, MONDAY, dpd=lambda i: dpds[i] if dpds[i] else 1, collectors=1)
    with ctx.db.transaction() as c:  # account 3 is paid up
        c.execute(text("UPDATE installment SET paid_principal = principal_due, paid_interest = interest_due, "
                       "paid_off_on = due_on WHERE loan_id = 'LB0000003' AND number = 1"))
        try:
            from parley.services.payments import refresh_loan_cache
        except ImportError:  # a loan book without the cache
            pass
        else:
            refresh_loan_cache(c, ["LB0000003"])
    report = run_daily(ctx, MONDAY)
    assert report.accounts == 3
    assert report.by_state == {"m1_early": 1, "m1_late": 1, "m2": 1}
    assert report.by_channel == {"call": 2, "email": 1, "sms": 3}
    assert report.planned == report.inserted == 6
    assert by_loan(ctx) == {
        "LB0000000": [("m1_early", "sms")],
        "LB0000001": [("m1_late", "call"), ("m1_late", "email"), ("m1_late", "sms")],
        "LB0000002": [("m2", "call"), ("m2", "sms")],
    }
    with ctx.db.read() as c:
        rows = {(r.loan_id, r.action_kind): r for r in c.execute(text(
            "SELECT loan_id, action_kind, not_before, idempotency_key, template_id, status FROM contact_queue"))}
    sms = rows[("LB0000000", "sms")]
    assert sms.idempotency_key == "2026-03-02|LB0000000|sms"
    assert sms.template_id == "early_reminder" and sms.status == "pending"
    # preferred 10:00-12:00 Shanghai (borrower 0's zone) → 02:00 UTC
    nb = sms.not_before if isinstance(sms.not_before, datetime) else datetime.fromisoformat(sms.not_before)
    assert (nb if nb.tzinfo else nb.replace(tzinfo=UTC)) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    # the m2 call: borrower 2 is in Shanghai too; 09:00 local
    assert rows[("LB0000002", "call")].template_id == "early-stage"


def test_running_the_same_day_twice_adds_nothing(ctx: Context) -> None:
    seed_accounts(ctx, 60, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant", "", 8), ("C2", "zh-Hans,en", "lang:yue", 8)])
    first = run_daily(ctx, MONDAY)
    before = queue(ctx)
    second = run_daily(ctx, MONDAY)
    assert first.inserted == first.queued > 60
    assert first.tasks_unassigned > first.tasks_pooled > 0  # some tasks were beyond capacity
    assert second.planned == first.planned and second.inserted == 0
    assert queue(ctx) == before


def test_progress_names_known_steps_and_assigns_between_the_queue_chunks(ctx: Context) -> None:
    """The CLI's bar places each step by PROGRESS_STEPS (a name missing there broke it); the
    collector tasks are assigned after the contacts' chunks, and written in the last chunk."""
    from parley.services.daily_run import PROGRESS_STEPS

    seed_accounts(ctx, 60, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant", "", 8), ("C2", "zh-Hans,en", "lang:yue", 8)])
    seen: list[tuple[str, int, int]] = []
    report = run_daily(ctx, MONDAY, progress=lambda step, done, total: seen.append((step, done, total)),
                       chunk_size=20)
    names = [s for s, _, _ in seen]
    assert set(names) <= set(PROGRESS_STEPS)
    first_queue = names.index("queue")
    assert names[:first_queue] == [s for s in PROGRESS_STEPS[:PROGRESS_STEPS.index("queue")]
                                   if s != "arms"]  # arms: with an experiment only
    queue_steps = [(d, t) for s, d, t in seen if s == "queue"]
    assert [d for d, _ in queue_steps] == list(range(1, len(queue_steps) + 1))
    assert {t for _, t in queue_steps} == {len(queue_steps)} and len(queue_steps) > 2
    # the tasks' chunk is written after the assignment (PostgreSQL's writers may still be
    # finishing contact chunks when it runs)
    assert names.count("assign") == 1 and names[-1] == "queue"
    assert report.tasks_assigned == 16
    with ctx.db.read() as c:
        assert c.execute(text("SELECT COUNT(*) FROM contact_queue WHERE collector_id IS NOT NULL"
                              )).scalar_one() == 16


def test_a_rerun_with_new_accounts_writes_only_their_rows(ctx: Context) -> None:
    """A chunk is a plain insert first; one that meets keys already written (a second run of
    the day, with accounts that arrived since) is written again skipping them."""
    seed_accounts(ctx, 30, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant,en", "", 200)])
    first = run_daily(ctx, MONDAY)
    before = queue(ctx)
    seed_accounts(ctx, 5, MONDAY, start=100, prefix="N", dpd=lambda i: 3)  # m1: an SMS each
    second = run_daily(ctx, MONDAY)
    after = queue(ctx)
    assert second.inserted == len(after) - len(before) == 5
    assert set(before) <= set(after) and first.inserted == len(before)
    with ctx.db.read() as c:
        new = c.execute(text("SELECT loan_id FROM contact_queue WHERE loan_id LIKE 'LN%'")).scalars().all()
    assert sorted(new) == [f"LN{i:07d}" for i in range(100, 105)]


def test_a_chunk_failing_for_another_reason_than_a_written_key_fails_and_writes_nothing(
        ctx: Context) -> None:
    from sqlalchemy.exc import IntegrityError

    from parley.services.daily_run import _QUEUE_COLS, _insert_chunk

    seed_accounts(ctx, 2, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant,en", "", 10)])
    run_daily(ctx, MONDAY)
    rows = len(queue(ctx))
    cols = [c.strip() for c in _QUEUE_COLS.split(",")]
    # an existing row again, with no borrower: NOT NULL, not the key; the retry must not hide it
    select = "SELECT " + ", ".join("NULL" if c == "borrower_id" else c for c in cols) + (
        " FROM contact_queue")
    with ctx.db.engine.connect() as conn, pytest.raises(IntegrityError):
        _insert_chunk(conn, select)
    assert len(queue(ctx)) == rows


def test_every_queue_row_names_a_borrower(ctx: Context) -> None:
    """contact_queue has no foreign key to borrower (the per-row check was a quarter of the
    queue write): its writers — the run, agreement notices — must never leave an orphan."""
    seed_accounts(ctx, 40, MONDAY)
    add_agreement(ctx, "LB0000003", "B0000003", "active")
    run_daily(ctx, MONDAY)
    with ctx.db.read() as c:
        rows, orphans = c.execute(text(
            "SELECT COUNT(*), COUNT(*) - COUNT(b.id) FROM contact_queue q "
            "LEFT JOIN borrower b ON b.id = q.borrower_id")).one()
    assert rows > 40 and orphans == 0


def test_balances_are_summed_only_from_the_days_past_due_a_balance_condition_starts() -> None:
    from parley.core.strategy import Condition, State, Strategy
    from parley.services.daily_run import _balance_from_dpd, resolve_strategy

    assert _balance_from_dpd([resolve_strategy("default")]) == 91  # m4_m6_field is the first
    assert _balance_from_dpd([resolve_strategy("default"), resolve_strategy("challenger")]) == min(
        _balance_from_dpd([resolve_strategy("default")]),
        _balance_from_dpd([resolve_strategy("challenger")]))

    def strategy(*conditions: Condition) -> Strategy:
        return Strategy("s", "s", 1, "CNY", tuple(State(f"s{i}", c, ()) for i, c in enumerate(conditions)))

    assert _balance_from_dpd([strategy(Condition(days_past_due_at_least=31))]) is None
    # a balance condition without a lower bound on days past due needs every balance
    assert _balance_from_dpd([strategy(Condition(days_past_due_at_least=61, balance_at_least_minor=1),
                                       Condition(balance_at_most_minor=5))]) == 0


@pytest.mark.parametrize("crash_after", ["planned", "queue:1", "queue:3"])
def test_a_run_killed_halfway_and_run_again_equals_one_clean_run(ctx: Context, crash_after: str) -> None:
    seed_accounts(ctx, 40, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant", "", 5), ("C2", "zh-Hans,en", "lang:yue", 4)])

    def crash(step: str) -> None:
        if step == crash_after:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_daily(ctx, MONDAY, chunk_size=7, fault=crash)
    partial = queue(ctx)
    assert (len(partial) == 0) == (crash_after == "planned")
    rerun = run_daily(ctx, MONDAY, chunk_size=7)
    assert rerun.inserted == rerun.queued - len(partial)
    if ctx.db.is_sqlite:  # one writer: chunks after the crash point were never written
        assert 0 < rerun.inserted <= rerun.queued
    # (PostgreSQL writes chunks on several connections at once, so later chunks may have
    # committed before the crash; the re-run must still complete to the clean result.)
    recovered = queue(ctx)
    with ctx.db.transaction() as c:
        c.execute(text("DELETE FROM contact_queue"))
    clean = run_daily(ctx, MONDAY)
    assert clean.inserted == clean.queued == len(recovered)
    assert queue(ctx) == recovered
    assert any(r[13] is not None for r in recovered)  # some calls were assigned
    assert clean.tasks_pooled > 0 and any(r[13] is None and r[7] in ("call", "interview", "visit") for r in recovered)


def test_postgresql_writes_chunks_in_parallel_and_clears_stages_a_killed_run_left(
        pg_ctx: Context) -> None:
    seed_accounts(pg_ctx, 40, MONDAY, collectors=1)
    with pg_ctx.db.transaction() as c:  # what a run killed mid-pipeline leaves behind
        c.execute(text("CREATE UNLOGGED TABLE daily_run_stage_dead_1 AS SELECT * FROM contact_queue "
                       "WITH NO DATA"))
    report = run_daily(pg_ctx, MONDAY, chunk_size=5)
    assert report.inserted == report.queued > 0
    assert run_daily(pg_ctx, MONDAY, chunk_size=3).inserted == 0
    with pg_ctx.db.read() as c:
        left = c.execute(text("SELECT COUNT(*) FROM pg_tables WHERE tablename LIKE 'daily_run_stage_%'"))
        assert left.scalar_one() == 0
        keys = c.execute(text("SELECT COUNT(DISTINCT idempotency_key), COUNT(*) FROM contact_queue")).one()
    assert keys[0] == keys[1] == report.queued


def test_postgresql_stages_no_further_ahead_of_the_writers_than_its_bound(
        pg_ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging runs ahead of slow writers, but never holds more than MAX_STAGED chunks not
    yet written (the stage tables would otherwise hold a whole day's contacts)."""
    import threading
    import time

    from parley.services import daily_run as dr

    seed_accounts(pg_ctx, 40, MONDAY, collectors=1)
    monkeypatch.setattr(dr, "MAX_STAGED", 3)
    real, most, lock = dr._insert_chunk, [0], threading.Lock()

    def slow_insert(conn, select_sql, params=None):  # type: ignore[no-untyped-def]
        with pg_ctx.db.read() as c:
            staged = c.execute(text("SELECT COUNT(*) FROM pg_tables "
                                    "WHERE tablename LIKE 'daily_run_stage_%'")).scalar_one()
        with lock:
            most[0] = max(most[0], staged)
        time.sleep(0.05)
        return real(conn, select_sql, params)

    monkeypatch.setattr(dr, "_insert_chunk", slow_insert)
    report = run_daily(pg_ctx, MONDAY, chunk_size=2)  # twenty chunks of contacts
    assert report.inserted == report.queued > 0
    assert 2 <= most[0] <= 3  # it ran ahead, and no further than the bound


def test_accounts_under_an_agreement_or_hold_get_no_action(ctx: Context) -> None:
    seed_accounts(ctx, 3, MONDAY, dpd=lambda i: 10)
    add_agreement(ctx, "LB0000000", "B0000000", "active")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with ctx.db.transaction() as c:
        c.execute(text("INSERT INTO hold (borrower_id, loan_id, kind, started_at, source, note, created_by) "
                       "VALUES ('B0000001', NULL, 'dispute', :at, 'staff', '', 'x')"), {"at": at})
    report = run_daily(ctx, MONDAY)
    assert report.enforcement_off == 2
    assert report.by_state == {"enforcement_off": 2, "m1_late": 1}
    assert set(by_loan(ctx)) == {"LB0000002"}


def test_an_agreement_accepted_while_the_accounts_load_switches_its_account_off(
        pg_ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The accounts are loaded, then checked again against the live agreements and holds:
    one committed in between (by another connection, as the agreements service would) gets
    no state and no item. PostgreSQL only: each of its statements sees what has committed,
    while SQLite's planning transaction reads one snapshot (there the gate is the check)."""
    import parley.services.daily_run as dr

    seed_accounts(pg_ctx, 3, MONDAY, dpd=lambda i: 10)
    real = dr._load_accounts

    def load_then_accept(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        add_agreement(pg_ctx, "LB0000001", "B0000001", "active")

    monkeypatch.setattr(dr, "_load_accounts", load_then_accept)
    report = run_daily(pg_ctx, MONDAY)
    assert report.by_state == {"enforcement_off": 1, "m1_late": 2}
    assert set(by_loan(pg_ctx)) == {"LB0000000", "LB0000002"}


def test_an_ended_hold_and_a_broken_agreement_no_longer_switch_enforcement_off(ctx: Context) -> None:
    seed_accounts(ctx, 2, MONDAY, dpd=lambda i: 10)
    add_agreement(ctx, "LB0000000", "B0000000", "broken")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with ctx.db.transaction() as c:
        c.execute(text("INSERT INTO hold (borrower_id, kind, started_at, ended_at, source, note, created_by) "
                       "VALUES ('B0000001', 'dispute', :at, :at, 'staff', '', 'x')"), {"at": at})
    assert run_daily(ctx, MONDAY).by_state == {"m1_late": 2}


def test_reevaluation_interval_and_cap_read_the_queue_history(ctx: Context) -> None:
    # dpd 3 on Monday: m1_early sms, reevaluate_every_days 2, at most 2 in 7 days
    seed_accounts(ctx, 1, MONDAY, dpd=lambda i: 3)
    kinds = {}
    for k in range(7):
        day = MONDAY + timedelta(days=k)
        kinds[day.isoformat()] = run_daily(ctx, day).by_channel.get("sms", 0)
    # m1_early: due Mon; not Tue (1 day < 2); Wed (2 days later); Thu no; Fri: already 2 in the
    # last 7 days → capped. Sat (dpd 8) is m1_late, whose sms waits 3 days: due (Wed + 3); Sun not.
    assert kinds == {"2026-03-02": 1, "2026-03-03": 0, "2026-03-04": 1, "2026-03-05": 0,
                     "2026-03-06": 0, "2026-03-07": 1, "2026-03-08": 0}
    assert run_daily(ctx, date(2026, 3, 10)).by_channel.get("sms", 0) == 1


def test_no_action_is_planned_on_a_channel_the_borrower_cannot_be_reached_on(ctx: Context) -> None:
    # dpd 10 → m1_late: call, sms, email. (phone, e-mail) per borrower; borrower 4's only
    # phone is marked wrong after seeding.
    reach = [(True, True), (True, False), (False, True), (False, False), (True, True), (True, True)]
    seed_accounts(ctx, 6, MONDAY, dpd=lambda i: 10, collectors=1, reach=lambda i: reach[i])
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE borrower_phone SET is_valid = false WHERE borrower_id = 'B0000004'"))
    report = run_daily(ctx, MONDAY)
    phone, email = {"LB0000000", "LB0000001", "LB0000005"}, {"LB0000000", "LB0000002",
                                                              "LB0000004", "LB0000005"}
    expected = {loan: sorted([("m1_late", "call")] * (loan in phone) + [("m1_late", "email")]
                             * (loan in email) + [("m1_late", "sms")] * (loan in phone))
                for loan in phone | email}
    assert by_loan(ctx) == expected
    assert report.by_channel == {"call": 3, "email": 4, "sms": 3}
    assert report.unreachable == {"call": 3, "email": 2, "sms": 3}
    assert report.planned == report.inserted == 10
    # A later day goes through the history filters (another join): the same rule holds, and a
    # number found valid again makes the borrower reachable again.
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE borrower_phone SET is_valid = true WHERE borrower_id = 'B0000004'"))
        c.execute(text("DELETE FROM contact_queue"))
        c.execute(text("INSERT INTO borrower_phone (borrower_id, position, phone_type, e164_enc, "
                       "e164_index, masked, timezones, is_valid) VALUES ('B0000003', 1, 'mobile', "
                       ":enc, 'ix-3', '+86 *** 0003', '', :f)"), {"enc": b"x", "f": False})
    tuesday = MONDAY + timedelta(days=1)
    with ctx.db.transaction() as c:  # history from an earlier day, so the filters run
        c.execute(text(
            "INSERT INTO contact_queue (business_date, borrower_id, loan_id, strategy_id, arm, state, "
            "action_kind, channel, purpose, template_id, priority, not_before, status, attempts, "
            "idempotency_key, last_reason, created_at, updated_at) VALUES (:d, 'B0000005', 'LB0000005', "
            "'default', '', 'm1_late', 'sms', 'sms', 'collection', 'x', 20, :at, 'sent', 0, 'old|sms', "
            "'', :at, :at)"), {"d": MONDAY - timedelta(days=30), "at": datetime(2026, 1, 31, tzinfo=UTC)})
    report = run_daily(ctx, tuesday)
    kinds = by_loan(ctx)
    assert {loan for loan, acts in kinds.items() if ("m1_late", "sms") in acts} == phone | {"LB0000004"}
    assert {loan for loan, acts in kinds.items() if ("m1_late", "email") in acts} == email
    assert report.unreachable == {"call": 2, "email": 2, "sms": 2}


def test_weekday_filter_uses_the_business_date(ctx: Context) -> None:
    seed_accounts(ctx, 1, date(2026, 3, 8), dpd=lambda i: 10)  # a Sunday: m1_late calls are mon-fri
    report = run_daily(ctx, date(2026, 3, 8))
    assert report.by_channel == {"email": 1, "sms": 1}


def test_calls_go_to_collectors_by_capacity_and_skill(ctx: Context) -> None:
    # 20 accounts at dpd 45: most are m2 (call needs lang:zh); every 23rd borrower (i=0) has
    # tag lang_yue → m2_cantonese (needs lang:yue). Language: i%5 == 4 speaks en.
    seed_accounts(ctx, 20, MONDAY, dpd=lambda i: 45)
    add_staff(ctx, [("ZH1", "zh-Hans", "", 3), ("ZH2", "zh-Hans,en", "", 3),
                    ("YUE", "zh-Hant,zh-Hans", "lang:yue", 2)])
    report = run_daily(ctx, MONDAY)
    assert report.by_channel["call"] == 20
    assert report.tasks_assigned == 8 and report.tasks_unassigned == 12
    with ctx.db.read() as c:
        rows = c.execute(text(
            "SELECT q.collector_id, q.state, b.preferred_language FROM contact_queue q "
            "JOIN borrower b ON b.id = q.borrower_id WHERE q.channel = 'call'")).all()
    load: dict[str, int] = {}
    for collector, state, lang in rows:
        if collector is None:
            continue
        load[collector] = load.get(collector, 0) + 1
        if state == "m2_cantonese":
            assert collector == "YUE"
        if lang == "en":
            assert collector == "ZH2"
    assert load == {"ZH1": 3, "ZH2": 3, "YUE": 2}
    assert [r for r in rows if r[1] == "m2_cantonese"][0][0] == "YUE"


def test_interviews_and_visits_are_collector_tasks_assigned_like_calls(ctx: Context) -> None:
    # dpd 70: m3 — a call, a video 面谈 invitation and an SMS, on a Monday.
    seed_accounts(ctx, 4, MONDAY, dpd=lambda i: 70)
    add_staff(ctx, [("ZH1", "zh-Hans,en", "", 10)])
    report = run_daily(ctx, MONDAY)
    assert report.by_channel == {"call": 4, "interview": 4, "sms": 4}
    assert report.tasks_assigned == 8 and report.tasks_unassigned == 0
    with ctx.db.read() as c:
        got = dict(c.execute(text(
            "SELECT channel, COUNT(collector_id) FROM contact_queue GROUP BY channel")).all())
    assert got == {"call": 4, "interview": 4, "sms": 0}


def test_free_capacity_is_net_of_tasks_still_open_from_earlier_days(ctx: Context) -> None:
    seed_accounts(ctx, 3, MONDAY, start=1, dpd=lambda i: 45)  # m2: a call each (and an SMS)
    add_staff(ctx, [("ZH1", "zh-Hans,en", "", 3)])
    assert run_daily(ctx, MONDAY).tasks_assigned == 3
    tuesday, wednesday = MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)
    seed_accounts(ctx, 2, tuesday, start=10, prefix="T", dpd=lambda i: 45)
    report = run_daily(ctx, tuesday)  # Monday's three calls are still open: no room today
    assert (report.tasks_assigned, report.tasks_unassigned) == (0, 2)
    assert run_daily(ctx, tuesday).inserted == 0  # and a re-run agrees
    with ctx.db.transaction() as c:  # the collector works two of Monday's calls
        c.execute(text("UPDATE contact_queue SET status = 'done' WHERE id IN (SELECT id FROM "
                       "contact_queue WHERE collector_id = 'ZH1' ORDER BY id LIMIT 2)"))
    seed_accounts(ctx, 3, wednesday, start=20, prefix="W", dpd=lambda i: 45)
    report = run_daily(ctx, wednesday)
    assert report.tasks_assigned == 2
    with ctx.db.read() as c:
        open_now = c.execute(text(
            "SELECT COUNT(*) FROM contact_queue WHERE collector_id = 'ZH1' "
            "AND status IN ('pending', 'leased')")).scalar_one()
    assert open_now == 3


def test_a_call_whose_lease_ended_before_the_day_takes_no_capacity(ctx: Context) -> None:
    """The open-task rule (OPEN_TASK_SQL) counts the same for capacity as for holding a loan
    back: a call started on an earlier day and never logged takes its collector's slot only
    while its lease reaches into the day (Tuesday begins at 16:00 UTC on Monday)."""
    from sqlalchemy import update

    from parley.store.models.queue import ContactQueueItem as Q

    seed_accounts(ctx, 2, MONDAY, start=1, dpd=lambda i: 45)  # m2: a call each
    add_staff(ctx, [("ZH1", "zh-Hans,en", "", 2)])
    assert run_daily(ctx, MONDAY).tasks_assigned == 2
    tuesday = MONDAY + timedelta(days=1)
    seed_accounts(ctx, 2, tuesday, start=10, prefix="T", dpd=lambda i: 45)

    def tuesday_after_leasing_until(at: datetime) -> int:
        with ctx.db.transaction() as c:  # both of Monday's calls started, never logged
            c.execute(text("DELETE FROM contact_queue WHERE business_date = :d"), {"d": tuesday})
            c.execute(update(Q).where(Q.channel == "call", Q.business_date == MONDAY)
                      .values(status="leased", lease_until=at))
        return run_daily(ctx, tuesday).tasks_assigned

    assert tuesday_after_leasing_until(datetime(2026, 3, 2, 16, 0, tzinfo=UTC)) == 0  # still open
    # ended before Tuesday: both slots are free for the two new accounts (Monday's loans had
    # their call Monday, so the re-evaluation interval keeps them out today)
    assert tuesday_after_leasing_until(datetime(2026, 3, 2, 15, 59, tzinfo=UTC)) == 2


def test_champion_challenger_split_is_stable_and_reported_per_arm(ctx: Context) -> None:
    seed_accounts(ctx, 200, MONDAY)
    exp = Experiment("q1", "seed-a", (Arm("default", 70), Arm("challenger", 30)))
    report = run_daily(ctx, MONDAY, experiment=exp)
    expected: dict[str, int] = {}
    for i in range(200):
        arm = assign_arm(exp, f"B{i:07d}").strategy
        expected[arm] = expected.get(arm, 0) + 1
    assert report.by_arm == expected
    with ctx.db.read() as c:
        arms = dict(c.execute(text("SELECT DISTINCT borrower_id, arm FROM contact_queue")).all())
        stored = c.execute(text("SELECT COUNT(*) FROM borrower_arm WHERE seed = 'seed-a'")).scalar()
    assert stored == 200
    for bid, arm in arms.items():
        assert arm == f"q1/{assign_arm(exp, bid).strategy}"
    again = run_daily(ctx, MONDAY, experiment=exp)
    assert again.by_arm == expected and again.inserted == 0


def test_several_strategies_without_an_experiment_are_refused(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="experiment"):
        run_daily(ctx, MONDAY, strategy_ids=["default", "challenger"])


def test_proposed_time_is_inside_preferred_and_lawful_hours_in_every_zone() -> None:
    lawful = lawful_hours("CN", "sms", "CN")
    assert lawful == (8 * 60, 22 * 60)
    # Shanghai alone, preferred 07:00-09:00 → 08:00 local (lawful starts at 08:00)
    t = proposed_time(MONDAY, ("Asia/Shanghai",), ((7 * 60, 9 * 60),), lawful, SHANGHAI)
    assert t.astimezone(SHANGHAI).time().hour == 8
    # Shanghai and Urumqi (UTC+6): 08:00 in Urumqi is 10:00 in Shanghai
    t = proposed_time(MONDAY, ("Asia/Shanghai", "Asia/Urumqi"), (), lawful, SHANGHAI)
    assert t == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    # unknown zone: start of the day in the lender's zone; the gate decides at send time
    t = proposed_time(MONDAY, (), (), lawful, SHANGHAI)
    assert t == datetime(2026, 3, 2, 0, 0, tzinfo=SHANGHAI)


def test_the_set_based_run_agrees_with_the_pure_evaluator_day_after_day(ctx: Context) -> None:
    """For every account and day: the queue's new items are exactly ``due_actions`` of the pure
    ``evaluate`` on the same facts, with the history taken from the queue before that day."""
    from parley.core.strategy import AccountSnapshot, ActionHistory, due_actions, evaluate
    from parley.services.daily_run import resolve_strategy

    strategy = resolve_strategy("default")
    n = 120
    # every 5th borrower has no e-mail address, every 7th no phone
    seed_accounts(ctx, n, MONDAY, dpd=lambda i: 1 + (i * 37) % 200,
                  reach=lambda i: (i % 7 != 0, i % 5 != 0))
    with ctx.db.transaction() as c:  # some tags the strategy reads
        c.execute(text("UPDATE borrower SET tags = ',no_field_visit,' WHERE id LIKE '%7'"))
        c.execute(text("UPDATE borrower SET tags = ',lang_yue,vip,' WHERE id LIKE '%3'"))
    # room for every task the strategy asks for (capacity is the assignment tests' concern)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant,en", "lang:yue", 100_000)])
    add_agreement(ctx, "LB0000005", "B0000005", "active")
    add_agreement(ctx, "LB0000006", "B0000006", "broken")
    add_agreement(ctx, "LB0000016", "B0000016", "broken")  # two broken promises
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE agreement SET id = 'A-LB0000016b' WHERE loan_id = 'LB0000016'"))
    add_agreement(ctx, "LB0000016", "B0000016", "broken")
    with ctx.db.transaction() as c:
        c.execute(text("INSERT INTO hold (borrower_id, kind, started_at, source, note, created_by) "
                       "VALUES ('B0000009', 'vulnerable', :at, 'staff', '', 'x')"),
                  {"at": datetime(2026, 3, 1, tzinfo=UTC)})
        facts = {r.loan_id: r for r in c.execute(text(
            "SELECT l.id AS loan_id, l.borrower_id, l.currency, l.product, b.risk_score, b.tags, "
            "(SELECT SUM(CASE WHEN i.number = 1 THEN i.principal_due + i.interest_due ELSE i.principal_due END) "
            " FROM installment i WHERE i.loan_id = l.id) AS balance, "
            "(SELECT MIN(i.due_on) FROM installment i WHERE i.loan_id = l.id) AS due_on "
            "FROM loan l JOIN borrower b ON b.id = l.borrower_id"))}
        on_file = {r[0]: frozenset(r[1:]) - {None} for r in c.execute(text(
            "SELECT b.id, CASE WHEN EXISTS (SELECT 1 FROM borrower_phone p WHERE p.borrower_id = b.id "
            "AND p.is_valid) THEN 'phone' END, CASE WHEN EXISTS (SELECT 1 FROM borrower_email e "
            "WHERE e.borrower_id = b.id) THEN 'email' END FROM borrower b"))}
    off = {"LB0000005": "agreement_active", "LB0000009": "hold"}
    broken = {"LB0000006": 1, "LB0000016": 2}
    for day in [MONDAY + timedelta(days=k) for k in range(0, 12)]:
        with ctx.db.read() as c:  # what counts as taken: not the pool tasks the run expires
            history = c.execute(text(
                "SELECT loan_id, action_kind, business_date FROM contact_queue "
                "WHERE status NOT IN ('cancelled', 'dropped', 'expired') AND NOT (status = "
                "'pending' AND collector_id IS NULL AND channel IN ('call', 'interview', 'visit') "
                "AND business_date < :d)"), {"d": day}).all()
        done: dict[str, list[tuple[str, date]]] = {}
        for loan, kind, on in history:
            done.setdefault(loan, []).append((kind, on if isinstance(on, date) else date.fromisoformat(on)))
        expected: set[tuple[str, str, str]] = set()
        for loan, f in facts.items():
            due_on = f.due_on if isinstance(f.due_on, date) else date.fromisoformat(f.due_on)
            dpd = (day - due_on).days
            tags = frozenset(t for t in (f.tags or "").split(",") if t) | (
                {off[loan]} if loan in off else set())
            account = AccountSnapshot(loan, f.borrower_id, loan, dpd, ctx.buckets.bucket_for(dpd),
                                      int(f.balance), f.currency, f.product, f.risk_score,
                                      broken.get(loan, 0), tags)
            ev = evaluate(strategy, account, day)
            for action in due_actions(ev, ActionHistory(tuple(done.get(loan, ()))), day,
                                      on_file[f.borrower_id]):
                expected.add((loan, ev.state_name or "", action.kind))
        report = run_daily(ctx, day)
        with ctx.db.read() as c:
            got = {(r[0], r[1], r[2]) for r in c.execute(text(
                "SELECT loan_id, state, action_kind FROM contact_queue WHERE business_date = :d"),
                {"d": day})}
        assert got == expected, day
        assert report.inserted == len(expected)
        with ctx.db.transaction() as c:  # the collector works the day's tasks (an open one
            c.execute(text(               # holds back the next: the test below)
                "UPDATE contact_queue SET status = 'done' WHERE collector_id IS NOT NULL "
                "AND status = 'pending'"))


def test_parley_run_prints_a_summary_by_state_and_channel(ctx: Context, db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from parley.faces.cli.main import app

    # dpd 10 (m1_late: call, sms, email); borrowers 0 and 1 have no phone, 0 no e-mail either
    seed_accounts(ctx, 30, MONDAY, dpd=lambda i: 10, reach=lambda i: (i > 1, i > 0))
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    runner = CliRunner()
    table = runner.invoke(app, ["run", "--as-of", "2026-03-02"])
    assert table.exit_code == 0, table.output
    words = " ".join(table.output.split())  # the title wraps with the table's width
    assert "Daily run 2026-03-02: 30 delinquent accounts" in words
    assert "m1_late" in words and "total" in words
    assert "no valid phone or e-mail address on file: call 2, email 1, sms 2" in words
    again = runner.invoke(app, ["run", "--as-of", "2026-03-02", "--json"])
    data = json.loads(again.stdout)
    assert data["accounts"] == 30 and data["inserted"] == 0 and data["planned"] == 3 * 30 - 5
    assert sum(data["by_channel"].values()) == data["planned"]
    assert data["unreachable"] == {"call": 2, "email": 1, "sms": 2}
    bad = runner.invoke(app, ["run", "--as-of", "2026-02-30"])
    assert bad.exit_code == 2 and "as-of" in bad.output


def test_days_past_due_carry_only_the_loan_columns_named_for_it(ctx: Context) -> None:
    """The run takes currency, product and agency from the days-past-due pass; the column
    names are spliced into SQL, so anything else is refused."""
    from parley.services.delinquency import dpd_sql

    seed_accounts(ctx, 3, MONDAY)
    with ctx.db.read() as c:
        rows = c.execute(text(dpd_sql(c, ctx.buckets, ("currency", "agency_id"))),
                         {"as_of": MONDAY, "grace": 0}).all()
        assert {(r.currency, r.agency_id) for r in rows} == {("CNY", None)}
        with pytest.raises(ValueError, match="status"):
            dpd_sql(c, ctx.buckets, ("currency", "status"))


def test_constant_in_lists_are_valid_sql_with_one_item_too(ctx: Context) -> None:
    from parley.services.daily_run import _sql_list

    assert _sql_list(("call",)) == "('call')"  # a tuple's repr would be "('call',)"
    quoted = _sql_list(("a", "it's"))
    with ctx.db.read() as c:
        assert c.execute(text(f"SELECT 'call' IN {_sql_list(('call',))}, "
                              f"'it''s' IN {quoted}")).one() == (True, True)


def test_yesterdays_unassigned_tasks_expire_and_every_account_gets_its_turn(ctx: Context) -> None:
    """One collector with room for 3 calls, 9 accounts in m2 (a call every 3 days): 3 calls
    assigned, 3 more in the shared pool, the rest not queued; the pool of each day expires
    before the next day is planned. (On Tuesday four of the six due speak zh-Hans: no group
    has more than a day's capacity queued, so the pool has only two.) Pool tasks used to stay
    pending for ever, counted as a call made, so only the first three accounts were ever
    called and the pool grew by every day's overflow."""
    seed_accounts(ctx, 9, MONDAY, start=1, dpd=lambda i: 45)
    add_staff(ctx, [("ZH1", "zh-Hans,en", "", 3)])
    called: set[str] = set()
    for day, (expired, pool) in enumerate(((0, 3), (3, 2), (2, 0))):
        report = run_daily(ctx, MONDAY + timedelta(days=day))
        with ctx.db.transaction() as c:  # the collector works their three calls
            called |= set(c.execute(text(
                "SELECT loan_id FROM contact_queue WHERE collector_id = 'ZH1' "
                "AND status = 'pending'")).scalars())
            c.execute(text("UPDATE contact_queue SET status = 'done' WHERE collector_id = 'ZH1'"))
            waiting = c.execute(text("SELECT COUNT(*) FROM contact_queue WHERE status = 'pending' "
                                     "AND collector_id IS NULL AND channel = 'call'")).scalar_one()
        assert (report.tasks_assigned, report.tasks_expired, waiting) == (3, expired, pool)
    assert len(called) == 9  # every account was called once in three days
    assert run_daily(ctx, MONDAY + timedelta(days=2)).inserted == 0  # a re-run adds nothing


def test_a_day_killed_after_expiring_yesterdays_pool_and_run_again_equals_one_clean_run(
        ctx: Context) -> None:
    """The expiry of earlier days' pool tasks commits before the plan; a run killed after it and
    run again must plan exactly what one clean run of that day plans."""
    seed_accounts(ctx, 40, MONDAY)
    add_staff(ctx, [("C1", "zh-Hans,zh-Hant", "", 5), ("C2", "zh-Hans,en", "lang:yue", 4)])
    run_daily(ctx, MONDAY)
    tuesday = MONDAY + timedelta(days=1)
    with ctx.db.read() as c:
        monday = [tuple(r) for r in c.execute(text(
            "SELECT id, status, last_reason, updated_at FROM contact_queue"))]
    assert any(s == "pending" for _, s, _, _ in monday)

    def crash(step: str) -> None:
        if step == "planned":
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_daily(ctx, tuesday, fault=crash)
    rerun = run_daily(ctx, tuesday)
    assert rerun.tasks_expired == 0  # the killed run had already expired them
    recovered = queue(ctx)
    with ctx.db.transaction() as c:  # back to Monday evening, then one clean Tuesday
        c.execute(text("DELETE FROM contact_queue WHERE business_date = :d"), {"d": tuesday})
        c.execute(text("UPDATE contact_queue SET status = :s, last_reason = :r, updated_at = :u "
                       "WHERE id = :i"),
                  [{"i": i, "s": s, "r": r, "u": u} for i, s, r, u in monday])
    clean = run_daily(ctx, tuesday)
    assert clean.tasks_expired > 0 and (clean.planned, clean.inserted) == (rerun.planned, rerun.inserted)
    assert queue(ctx) == recovered


def test_tasks_beyond_capacity_are_counted_and_the_pool_holds_the_best_ranked_of_them(
        ctx: Context) -> None:
    """Room for 4 tasks: 4 assigned, and the 4 best-ranked of the rest — by (priority, time,
    loan), whatever their group, but no further down a group than the day's capacity — wait
    in the shared pool; the others are only counted. One language and no skills tags, so a
    group is a (state, kind) here. The ranking is read off a first run with room for all."""
    seed_accounts(ctx, 30, MONDAY, dpd=lambda i: (10, 45, 70)[i % 3])  # m1_late, m2, m3
    add_staff(ctx, [("ALL", "zh-Hans", "", 1000)])
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE borrower SET preferred_language = 'zh-Hans', tags = ''"))
    roomy = run_daily(ctx, MONDAY)
    collector_channels = "('call', 'interview', 'visit')"
    with ctx.db.transaction() as c:
        ranked = [tuple(r) for r in c.execute(text(
            "SELECT loan_id, action_kind, state FROM contact_queue WHERE channel IN "
            f"{collector_channels} ORDER BY priority, not_before, loan_id, action_kind"))]
        c.execute(text("DELETE FROM contact_queue"))
        c.execute(text("UPDATE staff_user SET daily_capacity = 4"))
    assert roomy.tasks_assigned == len(ranked) > 12 and roomy.tasks_pooled == 0
    tight = run_daily(ctx, MONDAY)
    with ctx.db.read() as c:
        rows = c.execute(text(
            "SELECT loan_id, action_kind, collector_id FROM contact_queue WHERE channel IN "
            f"{collector_channels}")).all()
    assigned = {(r[0], r[1]) for r in rows if r[2] is not None}
    pooled = {(r[0], r[1]) for r in rows if r[2] is None}
    assert (tight.tasks_assigned, tight.tasks_pooled, len(assigned), len(pooled)) == (4, 4, 4, 4)
    assert tight.tasks_unassigned == len(ranked) - 4
    in_reach = [t[:2] for k, t in enumerate(ranked)
                if sum(u[1:] == t[1:] for u in ranked[:k]) < 4]  # the first 4 of each group
    assert len({t[1:] for t in ranked}) > 2 and len(in_reach) < len(ranked)
    assert pooled == set([t for t in in_reach if t not in assigned][:4])
    assert tight.queued == tight.inserted == roomy.planned - (len(ranked) - 8)
    assert {t[:2] for t in ranked} >= assigned  # every queued task was one the strategy wanted


def test_a_loan_gets_no_new_collector_task_while_one_is_open_in_an_active_collectors_queue(
        ctx: Context) -> None:
    """m2 plans a call every 3 days. A call still open in a collector's queue holds back the
    next one for the loan (it used to stack a second call for the same borrower); once it is
    worked, or its collector is deactivated, the loan is planned again."""
    seed_accounts(ctx, 1, MONDAY, start=1, dpd=lambda i: 45)
    add_staff(ctx, [("ZH1", "zh-Hans,en", "", 10)])

    def calls(day: date) -> int:
        run_daily(ctx, day)
        with ctx.db.read() as c:
            return int(c.execute(text(
                "SELECT COUNT(*) FROM contact_queue WHERE channel = 'call' "
                "AND business_date = :d"), {"d": day}).scalar_one())

    assert calls(MONDAY) == 1
    thursday = MONDAY + timedelta(days=3)
    assert calls(thursday) == 0  # Monday's call is still open
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE contact_queue SET status = 'done' WHERE channel = 'call'"))
    assert calls(thursday + timedelta(days=1)) == 1  # worked: planned again
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE staff_user SET active = :f"), {"f": False})
        c.execute(text("INSERT INTO staff_user (id, username, display_name, role, badge_number, "
                       "password_hash, languages, skills, daily_capacity, active, created_at) "
                       "VALUES ('ZH2', 'zh2', 'ZH2', 'collector', 'G-ZH2', '', 'zh-Hans', '', 10, "
                       ":t, :at)"), {"t": True, "at": datetime(2026, 1, 1, tzinfo=UTC)})
    # Friday's call sits with a collector who has left: it does not hold the loan back
    assert calls(thursday + timedelta(days=4)) == 1
    # ZH2 starts Monday's call and never logs it: leased, with a lease that ends. Thursday (due
    # again) begins at 16:00 UTC on Wednesday, Shanghai time.
    next_thursday = thursday + timedelta(days=7)

    def lease_until(at: datetime) -> None:
        from sqlalchemy import update

        from parley.store.models.queue import ContactQueueItem as Q

        with ctx.db.transaction() as c:  # through the column's type, as the worker writes it
            c.execute(update(Q).where(Q.channel == "call", Q.status.in_(("pending", "leased")))
                      .values(status="leased", lease_until=at))

    lease_until(datetime(2026, 3, 11, 16, 0, tzinfo=UTC))
    assert calls(next_thursday) == 0  # the lease reaches into Thursday: still open
    with ctx.db.transaction() as c:
        c.execute(text("DELETE FROM contact_queue WHERE business_date = :d"), {"d": next_thursday})
    lease_until(datetime(2026, 3, 11, 15, 59, tzinfo=UTC))
    assert calls(next_thursday) == 1  # it ended before the day began: planned again


def test_each_groups_ranking_stops_at_a_cut_and_ranks_as_if_it_had_read_every_task(
        ctx: Context) -> None:
    """The ranking reads each group's tasks only up to a cut estimated from a sample, the
    first account of every chunk here (``_rank_cuts``); small chunks make it cut. The queue
    must be the one a ranking of every task gives:

    - on a first day where the sample sees only a later tier (its borrowers in Urumqi) and a
      few unsampled borrowers far down the loans (in Shanghai) rank before all of them: the
      cut must take every better tier whole;
    - on a day when the sampled loans have no history and the loans around them do, so the
      estimate is far too high and the cut falls where few tasks are left: the groups it cut
      short are ranked again whole (the loans past the cut, without history, rank in)."""
    seed_accounts(ctx, 150, MONDAY, dpd=lambda i: (10, 45, 70)[i % 3])
    add_staff(ctx, [("ALL", "zh-Hans,zh-Hant,en", "", 4)])
    sampled = [i for i in range(150) if i % 7 == 0]  # each chunk's first, at 7 a chunk
    early = (100, 101, 102, 103, 104, 106)  # not sampled, past every cut

    def ids(prefix: str, nums: Iterable[int]) -> str:
        return ", ".join(f"'{prefix}{i:07d}'" for i in nums)

    with ctx.db.transaction() as c:  # one language: a group is a bucket
        c.execute(text("UPDATE borrower SET preferred_language = 'zh-Hans', "
                       "declared_timezone = 'Asia/Urumqi'"))
        c.execute(text("UPDATE borrower SET declared_timezone = 'Asia/Shanghai' "
                       f"WHERE id IN ({ids('B', early)})"))

    def plan(day: date, chunk_size: int) -> tuple[tuple[int, int, int], list[tuple]]:
        report = run_daily(ctx, day, chunk_size=chunk_size)
        with ctx.db.transaction() as c:
            rows = sorted(tuple(r) for r in c.execute(text(
                f"SELECT {QUEUE_COLS} FROM contact_queue WHERE business_date = :d"), {"d": day}))
            c.execute(text("DELETE FROM contact_queue WHERE business_date = :d"), {"d": day})
        return (report.tasks_assigned, report.tasks_pooled, report.tasks_unassigned), rows

    whole = plan(MONDAY, 10_000)
    assert whole[0][2] > whole[0][0] > 0  # more tasks than room: there is something to cut
    taken = {r[2] for r in whole[1] if r[7] == "call"}
    assert taken & {f"LB{i:07d}" for i in early}  # the early ones rank in
    assert plan(MONDAY, 7) == whole
    with ctx.db.transaction() as c:  # Monday, every task queued and worked, is the history...
        c.execute(text("UPDATE staff_user SET daily_capacity = 1000"))
    run_daily(ctx, MONDAY)
    with ctx.db.transaction() as c:  # ...of the unsampled loans before the 100th only
        c.execute(text("UPDATE contact_queue SET status = 'done'"))
        c.execute(text(f"DELETE FROM contact_queue WHERE loan_id IN ({ids('LB', sampled)}) "
                       "OR loan_id >= 'LB0000100'"))
        c.execute(text("UPDATE staff_user SET daily_capacity = 4"))
        c.execute(text("UPDATE borrower SET declared_timezone = 'Asia/Shanghai'"))  # one tier
    tuesday = MONDAY + timedelta(days=1)
    whole = plan(tuesday, 10_000)
    assert whole[0][2] > whole[0][0] > 0
    # calls reach past the cuts (the first samples' chunks: loans 0-20)
    assert {r[2] for r in whole[1] if r[7] == "call"} & {f"LB{i:07d}" for i in range(21, 150)}
    assert plan(tuesday, 7) == whole
