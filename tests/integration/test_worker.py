"""The worker: lease due items, ask the gate, send through the channel with the item's
idempotency key, mark the outcome — and survive a crash at any point without losing an item or
sending one twice."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from io import StringIO

import pytest
from sqlalchemy import text

from parley.adapters.channels import ChannelError, Message, ProviderReceipt
from parley.adapters.channels.calls import ClickToCall
from parley.adapters.channels.console import ConsoleProvider
from parley.adapters.channels.sms_http import HttpSmsProvider
from parley.adapters.channels.smtp import SmtpProvider
from parley.adapters.crypto import mask_phone
from parley.adapters.zones import zones_for_phones
from parley.services.context import Context
from parley.services.daily_run import run_daily
from parley.services.templates import seed_default_templates
from parley.services.worker import (
    LEASE,
    MAX_ATTEMPTS,
    SimulatedCrash,
    collector_queue,
    lease,
    log_call_outcome,
    run_worker,
    start_call,
    work_once,
)
from parley.store.models.loanbook import Borrower, BorrowerPhone, Installment, Loan
from tests.integration.test_channels import (  # sms_server, smtp_server: fixtures
    add_collectors,
    sms_server,  # noqa: F401
    smtp_server,  # noqa: F401
)

MONDAY = date(2026, 3, 2)  # the conftest clock: 10:00 in Shanghai on this Monday
PHONE = "+8613800138000"


def seed_contactable(ctx: Context, bid: str, *, dpd: int, phone: str = PHONE,
                     email: str | None = "wang@example.cn", address: bool = False,
                     language: str = "zh-Hans") -> str:
    """A CN borrower in Shanghai with a phone (and e-mail), one loan overdue by ``dpd`` days
    on MONDAY; returns the loan id."""
    keys = ctx.keyring
    created = datetime(2026, 1, 1, tzinfo=UTC)
    lid = f"{bid}-L1"
    due = MONDAY - timedelta(days=dpd)
    with ctx.db.transaction() as c:
        c.execute(Borrower.__table__.insert(), {
            "id": bid, "name": "王伟", "preferred_language": language,
            "declared_timezone": "Asia/Shanghai", "jurisdiction": "CN", "tags": "",
            "content_hash": "x", "created_at": created, "audit_seq": 0, "audit_head": ""})
        c.execute(BorrowerPhone.__table__.insert(), {
            "borrower_id": bid, "position": 0, "phone_type": "mobile",
            "e164_enc": keys.encrypt(phone, "phone.e164"), "e164_index": keys.blind_index(phone, "phone"),
            "masked": mask_phone(phone), "timezones": ",".join(zones_for_phones([phone])),
            "is_valid": True})
        if email:
            c.execute(text("INSERT INTO borrower_email (borrower_id, position, address) VALUES (:b, 0, :a)"),
                      {"b": bid, "a": email})
        if address:
            c.execute(text("INSERT INTO borrower_address (borrower_id, position, country, region, city, "
                           "line_enc, postal_code) VALUES (:b, 0, 'CN', '北京', '北京', :l, '100000')"),
                      {"b": bid, "l": keys.encrypt("朝阳区1号", "address.line")})
        loan = {"id": lid, "borrower_id": bid, "currency": "CNY", "principal": 100_000,
                "annual_rate": "12", "term": 2, "method": "equal_principal", "day_count": "30/360",
                "disbursed_on": due - timedelta(days=30), "first_due_on": due, "product": "",
                "agency_id": None, "schedule_source": "generated", "status": "active",
                "content_hash": "x", "created_at": created}
        if "oldest_unpaid_due_on" in Loan.__table__.c:
            loan["oldest_unpaid_due_on"] = due
        c.execute(Loan.__table__.insert(), loan)
        c.execute(Installment.__table__.insert(), [
            {"loan_id": lid, "number": 1, "borrower_id": bid, "due_on": due, "principal_due": 50_000,
             "interest_due": 1_000},
            {"loan_id": lid, "number": 2, "borrower_id": bid, "due_on": due + timedelta(days=30),
             "principal_due": 50_000, "interest_due": 500}])
    return lid


def items(ctx: Context) -> dict[int, tuple]:
    with ctx.db.read() as c:
        return {r.id: r for r in c.execute(text(
            "SELECT id, channel, status, not_before, last_reason, attempt_id, attempts FROM contact_queue "
            "ORDER BY id"))}


def attempts_by_key(ctx: Context) -> dict[str, int]:
    with ctx.db.read() as c:
        return dict(c.execute(text(
            "SELECT idempotency_key, COUNT(*) FROM contact_attempt GROUP BY idempotency_key")).all())


def prepare(ctx: Context, n: int = 1, dpd: int = 10, collectors: tuple[str, ...] = ()) -> None:
    """Borrowers, templates, ``collectors`` (the run queues collector tasks only for collectors
    who can take them) and the daily run of MONDAY."""
    seed_default_templates(ctx)
    for k in range(n):
        seed_contactable(ctx, f"B{k}", dpd=dpd)
    add_collectors(ctx, *collectors)
    run_daily(ctx, MONDAY)


def crash_at(point: str, once: bool = True):
    fired = []

    def hook(where: str, item_id: int) -> None:
        if where == point and (not once or not fired):
            fired.append(item_id)
            raise SimulatedCrash(f"{where} {item_id}")
    return hook


def test_due_sms_and_email_are_permitted_sent_and_marked(ctx: Context) -> None:
    prepare(ctx, dpd=10, collectors=("C1",))  # m1_late: call (collector task), sms, email
    out = StringIO()
    console = ConsoleProvider(out)
    report = work_once(ctx, "w1", 10, channels={"sms": console, "email": console})
    assert (report.leased, report.sent) == (2, 2)
    rows = items(ctx)
    assert sorted((r.channel, r.status) for r in rows.values()) == [
        ("call", "pending"), ("email", "sent"), ("sms", "sent")]
    keys = attempts_by_key(ctx)
    for r in rows.values():
        if r.status == "sent":
            assert keys[f"queue:{r.id}"] == 1 and r.attempt_id is not None
            assert r.last_reason.startswith("console:console-")
    sms = next(m for m in console.messages if m.channel == "sms")
    assert sms.to == PHONE and sms.idempotency_key.startswith("queue:")
    assert "王伟您好" in sms.body and "逾期 10 天" in sms.body and "CNY 510.00" in sms.body
    email = next(m for m in console.messages if m.channel == "email")
    assert email.to == "wang@example.cn" and email.subject == "Parley: statement for loan B0-L1"
    assert work_once(ctx, "w1", 10, channels={"sms": console, "email": console}).leased == 0


def test_a_crash_between_permit_and_send_sends_exactly_once_after_the_lease_expires(ctx: Context) -> None:
    prepare(ctx, dpd=3)  # m1_early: one sms
    console = ConsoleProvider(StringIO())
    with pytest.raises(SimulatedCrash):
        work_once(ctx, "w1", 10, channels={"sms": console}, fault=crash_at("after_permit"))
    (item,) = items(ctx).values()
    assert item.status == "leased" and item.attempt_id is not None and console.messages == []
    # another worker cannot take it while the lease runs…
    assert work_once(ctx, "w2", 10, channels={"sms": console}).leased == 0
    # …and takes it over once it has expired
    ctx.clock.advance(LEASE + timedelta(seconds=1))
    report = work_once(ctx, "w2", 10, channels={"sms": console})
    assert report.sent == 1 and len(console.messages) == 1
    assert attempts_by_key(ctx) == {f"queue:{item.id}": 1}
    assert items(ctx)[item.id].status == "sent"
    with ctx.db.read() as c:  # the earlier permit was checked again before sending
        assert c.execute(text("SELECT COUNT(*) FROM audit_log WHERE kind = 'gate.preview'")).scalar() == 1


def test_a_crash_between_send_and_marking_does_not_send_twice(ctx: Context, sms_server) -> None:  # noqa: F811
    state, url = sms_server
    prepare(ctx, dpd=3)
    sms = HttpSmsProvider(url)
    with pytest.raises(SimulatedCrash):
        work_once(ctx, "w1", 10, channels={"sms": sms}, fault=crash_at("after_send"))
    assert len(state.delivered) == 1
    ctx.clock.advance(LEASE + timedelta(seconds=1))
    report = work_once(ctx, "w2", 10, channels={"sms": sms})
    assert report.sent == 1
    (item,) = items(ctx).values()
    assert item.status == "sent" and item.last_reason.endswith("(duplicate)")
    assert len(state.requests) == 2 and {r["key"] for r in state.requests} == {f"queue:{item.id}"}
    assert len(state.delivered) == 1  # the provider deduplicated by the key: one SMS
    assert attempts_by_key(ctx) == {f"queue:{item.id}": 1}


def test_smtp_interrupted_mid_send_is_flagged_not_resent_and_a_crash_before_it_is_resent(
        ctx: Context, smtp_server) -> None:  # noqa: F811
    sink, port = smtp_server
    seed_default_templates(ctx)
    seed_contactable(ctx, "B0", dpd=10)
    seed_contactable(ctx, "B1", dpd=10, phone="+8613900139001", email="li@example.cn")
    run_daily(ctx, MONDAY)
    smtp = SmtpProvider("127.0.0.1", port, "collections@parley.example")
    # first e-mail: crash after it was handed to the server, before it was marked
    with pytest.raises(SimulatedCrash):
        work_once(ctx, "w1", 1, channels={"email": smtp}, fault=crash_at("after_send"))
    # second e-mail: crash after the permit, before anything was sent
    with pytest.raises(SimulatedCrash):
        work_once(ctx, "w1", 1, channels={"email": smtp}, fault=crash_at("after_permit"))
    assert len(sink.messages) == 1
    ctx.clock.advance(LEASE + timedelta(seconds=1))
    report = work_once(ctx, "w2", 10, channels={"email": smtp})
    assert (report.sent, report.failed) == (1, 1)
    assert len(sink.messages) == 2
    assert {e.rcpt_tos[0] for e in sink.messages} == {"wang@example.cn", "li@example.cn"}
    ids = {message_from_bytes(e.content)["X-Idempotency-Key"] for e in sink.messages}
    assert len(ids) == 2
    statuses = sorted((r.status, r.last_reason.split(":")[0]) for r in items(ctx).values()
                      if r.channel == "email")
    assert statuses == [("failed", "unconfirmed"), ("sent", "smtp")]


def test_a_denied_item_is_rescheduled_at_the_next_lawful_time(ctx: Context) -> None:
    prepare(ctx, dpd=3)
    ctx.clock.set(datetime(2026, 3, 2, 14, 30, tzinfo=UTC))  # 22:30 in Shanghai
    report = work_once(ctx, "w1", 10, channels={"sms": ConsoleProvider(StringIO())})
    assert report.rescheduled == 1
    (item,) = items(ctx).values()
    nb = item.not_before if isinstance(item.not_before, datetime) else datetime.fromisoformat(item.not_before)
    assert item.status == "pending" and "cn.hours" in item.last_reason
    assert nb.replace(tzinfo=UTC) == datetime(2026, 3, 3, 0, 0)  .replace(tzinfo=UTC)  # 08:00 local
    assert attempts_by_key(ctx) == {}
    ctx.clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    assert work_once(ctx, "w1", 10, channels={"sms": ConsoleProvider(StringIO())}).sent == 1


def test_an_item_whose_borrower_came_under_a_hold_is_dropped_with_its_reason(ctx: Context) -> None:
    from parley.services.permits import place_hold

    prepare(ctx, dpd=3)
    place_hold(ctx, "B0", "dispute", note="borrower disputes the debt")
    console = ConsoleProvider(StringIO())
    report = work_once(ctx, "w1", 10, channels={"sms": console})
    assert report.dropped == 1 and console.messages == []
    (item,) = items(ctx).values()
    assert item.status == "dropped" and "hold" in item.last_reason


class Flaky:
    name = "flaky"
    channels = frozenset({"sms"})
    idempotent = True

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def send(self, message: Message) -> ProviderReceipt:
        self.calls += 1
        if self.calls <= self.failures:
            raise ChannelError("503 from provider", transient=True)
        return ProviderReceipt("flaky", "m1", message.idempotency_key, datetime.now(UTC))


def test_a_transient_error_retries_with_back_off_and_gives_up_after_max_attempts(ctx: Context) -> None:
    prepare(ctx, dpd=3)
    flaky = Flaky(failures=100)
    waits = []
    for _ in range(MAX_ATTEMPTS):
        report = work_once(ctx, "w1", 10, channels={"sms": flaky})
        (item,) = items(ctx).values()
        if item.status == "pending":
            nb = item.not_before if isinstance(item.not_before, datetime) else datetime.fromisoformat(item.not_before)
            nb = nb if nb.tzinfo else nb.replace(tzinfo=UTC)
            waits.append(nb - ctx.clock.now())
            ctx.clock.set(nb)
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert report.failed == 1 and item.status == "failed" and "503" in item.last_reason
    assert attempts_by_key(ctx) == {f"queue:{item.id}": 1}  # one permit, reused on each retry


def test_run_worker_once_drains_the_queue_and_stops(ctx: Context) -> None:
    prepare(ctx, n=3, dpd=10)
    console = ConsoleProvider(StringIO())
    total = run_worker(ctx, "w1", channels={"sms": console, "email": console}, limit=2, once=True,
                       poll_seconds=0)
    assert total.sent == 6 and len(console.messages) == 6
    assert run_worker(ctx, "w1", channels={"sms": console}, once=True, max_items=1).leased == 0


@pytest.mark.pg
def test_concurrent_workers_never_lease_the_same_item(pg_ctx: Context) -> None:
    seed_default_templates(pg_ctx)
    for k in range(30):
        seed_contactable(pg_ctx, f"B{k}", dpd=3, phone=f"+86139001390{k:02d}")
    run_daily(pg_ctx, MONDAY)
    got: list[list[int]] = []
    barrier = threading.Barrier(3)

    def take(name: str) -> None:
        barrier.wait()
        got.append([i.id for i in lease(pg_ctx, name, 12)])

    threads = [threading.Thread(target=take, args=(f"w{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for g in got for i in g]
    assert len(flat) == len(set(flat)) == 30


def test_a_call_task_gives_a_click_to_call_link_once_permitted_and_logs_the_outcome(ctx: Context) -> None:
    with ctx.db.transaction() as c:
        c.execute(text(
            "INSERT INTO staff_user (id, username, display_name, role, badge_number, password_hash, "
            "languages, skills, daily_capacity, active, created_at) VALUES ('C1', 'c1', '李娜', "
            "'collector', 'G0001', '', 'zh-Hans', '', 60, :t, :at)"),
            {"t": True, "at": datetime(2026, 1, 1, tzinfo=UTC)})
    prepare(ctx, dpd=10)
    (task,) = collector_queue(ctx, "C1")
    assert task.channel == "call" and task.target == "early-stage"
    started = start_call(ctx, task.item_id, "C1", ClickToCall("https://pbx.example/dial?to={to}&ref={key}"))
    assert started.allowed and started.rules == ()
    assert started.url == f"https://pbx.example/dial?to={PHONE}&ref=queue%3A{task.item_id}%3A1"
    assert collector_queue(ctx, "C1") == []
    status = log_call_outcome(ctx, task.item_id, started.attempt_id, "no_answer", by="C1")
    assert status == "pending"
    with ctx.db.read() as c:
        att = c.execute(text("SELECT result, collector_id, badge FROM contact_attempt WHERE id = :i"),
                        {"i": started.attempt_id}).one()
    assert tuple(att) == ("no_answer", "C1", "G0001")
    ctx.clock.advance(timedelta(hours=2))
    (again,) = collector_queue(ctx, "C1")
    second = start_call(ctx, again.item_id, "C1")
    assert second.allowed and second.url == f"tel:{PHONE}"
    assert log_call_outcome(ctx, again.item_id, second.attempt_id, "conversation", by="C1",
                            notes="promised to pay Friday") == "done"


def test_two_collectors_starting_one_call_at_once_get_one_permit(pg_ctx: Context) -> None:
    from parley.errors import Conflict

    prepare(pg_ctx, dpd=10, collectors=("C1", "C2"))
    (task,) = collector_queue(pg_ctx, "C1")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def press(cid: str) -> None:
        barrier.wait()
        try:
            results.append(start_call(pg_ctx, task.item_id, cid))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=press, args=(c,)) for c in ("C1", "C2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["CallStart", "Conflict"]
    with pg_ctx.db.read() as c:
        n = c.execute(text("SELECT COUNT(*) FROM contact_attempt WHERE queue_item_id = :i"),
                      {"i": task.item_id}).scalar_one()
    assert n == 1


def test_an_outcome_is_recorded_together_with_closing_the_task_or_not_at_all(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    import parley.services.worker as worker_mod

    prepare(ctx, dpd=10, collectors=("C1",))
    (task,) = collector_queue(ctx, "C1")
    started = start_call(ctx, task.item_id, "C1")

    real_close = worker_mod.SQL_CLOSE_CALL

    class FailingClose:  # the task's closing fails after the outcome was written
        def run(self, *a, **k):  # type: ignore[no-untyped-def]
            raise RuntimeError("crash")

    monkeypatch.setattr(worker_mod, "SQL_CLOSE_CALL", FailingClose())
    with pytest.raises(RuntimeError):
        log_call_outcome(ctx, task.item_id, started.attempt_id, "conversation", by="C1")
    monkeypatch.setattr(worker_mod, "SQL_CLOSE_CALL", real_close)
    with ctx.db.read() as c:
        result = c.execute(text("SELECT result FROM contact_attempt WHERE id = :i"),
                           {"i": started.attempt_id}).scalar_one()
    assert result is None  # rolled back with the task, so the retry can record it
    assert log_call_outcome(ctx, task.item_id, started.attempt_id, "conversation", by="C1") == "done"


def test_a_worker_whose_lease_was_taken_over_cannot_act_on_it_even_with_the_same_name(
        ctx: Context) -> None:
    from parley.services.worker import DEFAULT_VARIABLES, _carry_out

    prepare(ctx, dpd=3)
    console = ConsoleProvider(StringIO())
    (stale,) = lease(ctx, "w", 10)
    ctx.clock.advance(LEASE + timedelta(seconds=1))  # the first holder stalls past its lease
    assert work_once(ctx, "w", 10, channels={"sms": console}).sent == 1
    late = _carry_out(ctx, "w", stale, console, DEFAULT_VARIABLES, None)
    assert late.status == "skipped" and len(console.messages) == 1
    (item,) = items(ctx).values()
    assert item.status == "sent"


def test_parley_worker_once_sends_through_the_console(ctx: Context, db_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import time_machine
    from typer.testing import CliRunner

    from parley.faces.cli.main import app

    prepare(ctx, n=2, dpd=3)
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    with time_machine.travel(ctx.clock.now(), tick=False):  # the CLI reads the system clock
        result = CliRunner().invoke(app, ["worker", "--once", "--console", "--id", "cli-w",
                                          "--poll", "0"])
    assert result.exit_code == 0, result.output
    assert "cli-w: 2 leased, 2 sent" in result.output
    assert result.output.count("[sms → +8613800138000]") == 2


def test_an_outcome_logged_after_the_task_was_cancelled_keeps_it_cancelled(ctx: Context) -> None:
    """An agreement accepted while the call went on cancels the task; logging the call's
    outcome records it on the attempt but never reopens the task."""
    prepare(ctx, dpd=10, collectors=("C1",))
    (task,) = collector_queue(ctx, "C1")
    started = start_call(ctx, task.item_id, "C1")
    assert started.allowed
    with ctx.db.transaction() as c:  # what agreements.accept does to the loan's open items
        c.execute(text("UPDATE contact_queue SET status = 'cancelled', lease_until = NULL, "
                       "last_reason = 'agreement A1 accepted' WHERE id = :i"), {"i": task.item_id})
    assert log_call_outcome(ctx, task.item_id, started.attempt_id, "no_answer", by="C1") == "cancelled"
    with ctx.db.read() as c:
        row = c.execute(text("SELECT q.status, q.last_reason, a.result FROM contact_queue q "
                             "JOIN contact_attempt a ON a.id = q.attempt_id WHERE q.id = :i"),
                        {"i": task.item_id}).one()
    assert tuple(row) == ("cancelled", "agreement A1 accepted", "no_answer")
    assert collector_queue(ctx, "C1") == []


def test_one_item_failing_in_an_unforeseen_way_does_not_stop_the_pass(ctx: Context) -> None:
    """B0's number no longer decrypts (a rotated key, a corrupt row): its SMS is put back with
    back-off and, after MAX_ATTEMPTS leases, failed with the error; B1's goes out each time."""
    prepare(ctx, n=2, dpd=3)  # m1_early: one SMS each
    with ctx.db.transaction() as c:
        c.execute(text("UPDATE borrower_phone SET e164_enc = :junk WHERE borrower_id = 'B0'"),
                  {"junk": b"not a ciphertext"})
    console = ConsoleProvider(StringIO())
    report = work_once(ctx, "w1", 10, channels={"sms": console})
    assert (report.leased, report.sent, report.retried) == (2, 1, 1)
    bad = next(r for r in items(ctx).values() if r.status != "sent")
    assert bad.status == "pending" and bad.last_reason.startswith("retry after error: ")
    for _ in range(MAX_ATTEMPTS):
        ctx.clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
        work_once(ctx, "w1", 10, channels={"sms": console})
    bad = items(ctx)[bad.id]
    assert bad.status == "failed" and bad.last_reason.startswith("failed after error: ")
    assert bad.attempts == MAX_ATTEMPTS and len(console.messages) == 1


def test_the_worker_leases_through_its_own_partial_indexes(ctx: Context) -> None:
    """The lease queries state the partial indexes' conditions word for word, so both
    databases walk those indexes (one index over every pending row made each lease walk past
    the day's call tasks: ≈ 0.5 s a lease at a million accounts)."""
    from parley.services import worker as w
    from parley.services.placements import TASK_CHANNELS
    from parley.store.models.queue import WORKER_LEASED_CHANNELS

    assert set(WORKER_LEASED_CHANNELS) == set(w.WORKER_CHANNELS) | set(TASK_CHANNELS)
    now = datetime(2026, 3, 2, 4, tzinfo=UTC)
    for stmt, index in ((w.SQL_LEASE_DUE, "ix_contact_queue_worker_due"),
                        (w.SQL_LEASE_EXPIRED, "ix_contact_queue_leased")):
        bound = stmt.params(channels=list(w.WORKER_CHANNELS), channel="sms", now=now, limit=10)
        with ctx.db.engine.connect() as conn:
            state = bound.compile(dialect=conn.dialect).construct_expanded_state()
            params = {k: v.isoformat(" ") if isinstance(v, datetime) else v
                      for k, v in state.parameters.items()}
            if conn.dialect.name == "sqlite":
                args = tuple(params[k] for k in state.positiontup or ())
                plan = " ".join(str(r) for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + state.statement, args))
            else:
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(str(r) for r in conn.exec_driver_sql(
                    "EXPLAIN " + state.statement, params))
        assert index in plan, plan
