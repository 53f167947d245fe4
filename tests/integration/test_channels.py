"""Channel adapters against real local servers (SMTP via aiosmtpd, an HTTP SMS webhook),
the console provider, click-to-call links, templates screened when saved, and 面谈 / visits."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from sqlalchemy import text

from parley.adapters.channels import ChannelError, Message, ProviderReceipt
from parley.adapters.channels.calls import ClickToCall
from parley.adapters.channels.console import ConsoleProvider
from parley.adapters.channels.sms_http import HttpSmsProvider
from parley.adapters.channels.smtp import SmtpProvider
from parley.errors import Conflict, InvalidInput
from parley.services.context import Context
from parley.services.templates import (
    get_template,
    list_templates,
    render,
    save_template,
    seed_default_templates,
)

# --------------------------------------------------------------------------------------------
# Local servers (also used by test_worker)
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpSink:
    """An aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


class SmsProviderState:
    """A generic JSON SMS provider that deduplicates by Idempotency-Key, as real ones do."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delivered: dict[str, dict[str, Any]] = {}
        self.fail_with: int | None = None
        self.lock = threading.Lock()


@pytest.fixture
def sms_server() -> Iterator[tuple[SmsProviderState, str]]:
    state = SmsProviderState()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key", "")
            with state.lock:
                state.requests.append({"key": key, **body})
                if state.fail_with is not None:
                    self._answer(state.fail_with, {"error": "simulated"})
                    return
                if key in state.delivered:
                    self._answer(200, {**state.delivered[key], "duplicate": True})
                    return
                answer = {"id": f"sms-{len(state.delivered) + 1}"}
                state.delivered[key] = {**answer, "to": body["to"], "text": body["text"]}
            self._answer(201, answer)

        def _answer(self, code: int, data: dict[str, Any]) -> None:
            raw = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/sms"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


def test_smtp_delivers_to_a_real_server_with_the_idempotency_key_as_message_id(smtp_server) -> None:
    sink, port = smtp_server
    smtp = SmtpProvider("127.0.0.1", port, "collections@parley.example")
    receipt = smtp.send(Message("email", "wang@example.cn", "王伟您好：\n应还 CNY 1,000.00。",
                                "queue:42", subject="还款提醒 statement"))
    assert len(sink.messages) == 1
    env = sink.messages[0]
    assert env.rcpt_tos == ["wang@example.cn"]
    msg = message_from_bytes(env.content)
    assert msg["X-Idempotency-Key"] == "queue:42"
    assert msg["Message-ID"] == receipt.message_id == smtp.message_id("queue:42")
    assert str(make_header(decode_header(msg["Subject"]))) == "还款提醒 statement"
    assert "应还 CNY 1,000.00" in msg.get_payload(decode=True).decode("utf-8")
    assert not smtp.idempotent


def test_smtp_unreachable_is_a_transient_error() -> None:
    smtp = SmtpProvider("127.0.0.1", free_port(), "c@parley.example", timeout=2)
    with pytest.raises(ChannelError) as err:
        smtp.send(Message("email", "a@example.cn", "hi", "queue:1"))
    assert err.value.transient


def test_sms_webhook_posts_json_and_the_provider_deduplicates_by_key(sms_server) -> None:
    state, url = sms_server
    sms = HttpSmsProvider(url, token="t0ken")
    first = sms.send(Message("sms", "+8613800138000", "您好", "queue:7", reference="99"))
    again = sms.send(Message("sms", "+8613800138000", "您好", "queue:7", reference="99"))
    assert first.message_id == again.message_id == "sms-1"
    assert not first.duplicate and again.duplicate
    assert len(state.delivered) == 1 and len(state.requests) == 2
    assert state.requests[0] == {"key": "queue:7", "to": "+8613800138000", "text": "您好",
                                 "idempotency_key": "queue:7", "reference": "99"}


@pytest.mark.parametrize(("code", "transient"), [(500, True), (503, True), (429, True),
                                                 (400, False), (422, False)])
def test_sms_webhook_errors_are_transient_or_permanent(sms_server, code: int, transient: bool) -> None:
    state, url = sms_server
    state.fail_with = code
    with pytest.raises(ChannelError) as err:
        HttpSmsProvider(url).send(Message("sms", "+8613800138000", "x", "queue:1"))
    assert err.value.transient is transient


def test_sms_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpSmsProvider("ftp://example.com")


def test_console_provider_prints_and_deduplicates() -> None:
    out = StringIO()
    c = ConsoleProvider(out)
    c.send(Message("sms", "+8613800138000", "您好", "queue:1"))
    assert c.send(Message("sms", "+8613800138000", "您好", "queue:1")).duplicate
    assert out.getvalue() == "[sms → +8613800138000] 您好\n"
    assert len(c.messages) == 1


def test_a_message_without_an_idempotency_key_is_refused() -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        Message("sms", "+8613800138000", "x", "")


def test_click_to_call_builds_the_link_from_a_url_template() -> None:
    assert ClickToCall().url(to="+8613800138000", item=5, key="queue:5:1", collector="C1") == \
        "tel:+8613800138000"
    pbx = ClickToCall("https://pbx.example/dial?to={to}&ref={key}&agent={collector}")
    assert pbx.url(to="+8613800138000", item=5, key="queue:5:1", collector="C 1") == \
        "https://pbx.example/dial?to=+8613800138000&ref=queue%3A5%3A1&agent=C%201"
    with pytest.raises(InvalidInput, match="unknown field"):
        ClickToCall("tel:{phone}")


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


def test_a_template_that_fails_screening_cannot_be_saved(ctx: Context) -> None:
    with pytest.raises(InvalidInput) as err:
        save_template(ctx, "bad", "zh-Hans", "sms", "{name}，再不还钱就去你单位曝光！")
    assert err.value.field == "body"
    assert "exposure" in str(err.value) and "曝光" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        save_template(ctx, "bad", "en", "sms", "Pay now or we will kill you, {name}")
    assert "threat" in str(err.value) and "kill you" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        save_template(ctx, "bad", "zh-Hant", "sms", "{name}您好，再不還錢就去你單位曝光")
    assert "exposure" in str(err.value)
    assert list_templates(ctx) == []


def test_templates_are_versioned_per_locale_and_render_their_variables(ctx: Context) -> None:
    v1 = save_template(ctx, "hello", "zh-Hans", "sms", "{name}您好，应还 {amount_due}。")
    v2 = save_template(ctx, "hello", "zh-Hans", "sms", "{name}您好，借款 {loan_id} 应还 {amount_due}。")
    save_template(ctx, "hello", "en", "sms", "Hello {name}, {amount_due} is due on {loan_id}.")
    assert (v1.version, v2.version) == (1, 2)
    with ctx.db.read() as c:
        current = get_template(c, "hello", "zh-Hans")
        hant = get_template(c, "hello", "zh-Hant")  # falls back to zh-Hans
    assert current.version == 2 and hant.locale == "zh-Hans"
    assert render(current, {"name": "王伟", "loan_id": "L1", "amount_due": "CNY 1.00"}) == \
        ("", "王伟您好，借款 L1 应还 CNY 1.00。")
    assert {(t.id, t.locale, t.version) for t in list_templates(ctx)} == {
        ("hello", "en", 1), ("hello", "zh-Hans", 2)}


def test_unknown_variables_and_locales_are_named(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="unknown variable {debt}"):
        save_template(ctx, "x", "en", "sms", "You owe {debt}")
    with pytest.raises(InvalidInput) as err:
        save_template(ctx, "x", "fr", "sms", "Bonjour")
    assert err.value.field == "locale"


def test_the_default_templates_are_seeded_once_in_three_locales(ctx: Context) -> None:
    added = seed_default_templates(ctx)
    assert added == len(list_templates(ctx)) and added % 3 == 0
    assert seed_default_templates(ctx) == 0
    assert {t.locale for t in list_templates(ctx)} == {"zh-Hans", "zh-Hant", "en"}


# --------------------------------------------------------------------------------------------
# 面谈 and field visits
# --------------------------------------------------------------------------------------------


def add_collectors(ctx: Context, *ids: str, badge: bool = True) -> None:
    with ctx.db.transaction() as c:
        for i, sid in enumerate(ids):
            c.execute(text(
                "INSERT INTO staff_user (id, username, display_name, role, badge_number, password_hash, "
                "languages, skills, daily_capacity, active, created_at) VALUES (:id, :id, :name, "
                "'collector', :badge, '', 'zh-Hans', '', 60, :t, :at)"),
                {"id": sid, "name": f"催收员{i + 1}", "badge": f"GH{i + 1:04d}" if badge else None,
                 "t": True, "at": datetime(2026, 1, 1, tzinfo=UTC)})


def test_a_field_visit_needs_two_identified_collectors_notifies_the_borrower_and_is_reported(
        ctx: Context) -> None:
    from parley.services.appointments import (
        book_appointment,
        check_in,
        check_out,
        get_appointment,
        send_notice,
    )
    from tests.integration.test_worker import seed_contactable

    seed_contactable(ctx, "B1", dpd=100, address=True)
    add_collectors(ctx, "V1", "V2")
    seed_default_templates(ctx)
    when = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 Shanghai, Tuesday
    with pytest.raises(InvalidInput, match="at least 2"):
        book_appointment(ctx, "B1", "field_visit", when, place="北京市朝阳区1号",
                         collector_ids=("V1",), loan_id="B1-L1", by="lead")
    appt = book_appointment(ctx, "B1", "field_visit", when, place="北京市朝阳区1号",
                            collector_ids=("V1", "V2"), loan_id="B1-L1", by="lead")
    assert appt.status == "scheduled" and appt.collectors == (
        ("V1", "催收员1", "GH0001"), ("V2", "催收员2", "GH0002"))

    sms = ConsoleProvider(StringIO())
    notice = send_notice(ctx, appt.id, sms)
    assert notice.allowed
    assert len(sms.messages) == 1
    body = sms.messages[0].body
    assert "催收员1" in body and "GH0001" in body and "催收员2" in body and "GH0002" in body
    assert "北京市朝阳区1号" in body and "2026-03-03 10:00" in body
    assert sms.messages[0].idempotency_key == f"appointment:{appt.id}:notice"
    with pytest.raises(Conflict):
        check_out(ctx, appt.id, report="x", by="V1")

    ctx.clock.set(when + timedelta(minutes=5))
    visit = check_in(ctx, appt.id, by="V1")
    assert visit.allowed and visit.attempt_id is not None
    ctx.clock.set(when + timedelta(minutes=50))
    done = check_out(ctx, appt.id, report="借款人在家，承诺下周还款 500 元。", by="V1")
    assert done.status == "completed"
    got = get_appointment(ctx, appt.id)
    assert got.check_in_at == when + timedelta(minutes=5)
    assert got.check_out_at == when + timedelta(minutes=50)
    assert got.report.startswith("借款人在家")
    with ctx.db.read() as c:
        att = c.execute(text("SELECT channel, notes FROM contact_attempt WHERE id = :i"),
                        {"i": visit.attempt_id}).one()
    assert att.channel == "visit" and "GH0001" in att.notes and "GH0002" in att.notes
    assert "report: 借款人在家" in att.notes


def test_a_visit_with_an_unidentified_collector_is_refused(ctx: Context) -> None:
    from parley.services.appointments import book_appointment
    from tests.integration.test_worker import seed_contactable

    seed_contactable(ctx, "B1", dpd=100, address=True)
    add_collectors(ctx, "V1")
    add_collectors(ctx, "NB", badge=False)
    with pytest.raises(InvalidInput, match="badge"):
        book_appointment(ctx, "B1", "field_visit", datetime(2026, 3, 3, 2, tzinfo=UTC),
                         place="x", collector_ids=("V1", "NB"), by="lead")


def test_a_phone_interview_needs_one_collector_and_no_place(ctx: Context) -> None:
    from parley.services.appointments import book_appointment, list_appointments
    from tests.integration.test_worker import seed_contactable

    seed_contactable(ctx, "B1", dpd=40)
    add_collectors(ctx, "V1")
    appt = book_appointment(ctx, "B1", "interview_phone", datetime(2026, 3, 3, 2, tzinfo=UTC),
                            collector_ids=("V1",), by="lead")
    assert appt.place == ""
    assert [a.id for a in list_appointments(ctx, borrower_id="B1")] == [appt.id]
    with pytest.raises(InvalidInput) as err:
        book_appointment(ctx, "B1", "tea", datetime(2026, 3, 3, 2, tzinfo=UTC),
                         collector_ids=("V1",), by="lead")
    assert err.value.field == "kind"
    with pytest.raises(InvalidInput, match="future"):
        book_appointment(ctx, "B1", "interview_phone", datetime(2026, 3, 1, 2, tzinfo=UTC),
                         collector_ids=("V1",), by="lead")


def test_a_booking_must_work_off_an_open_task_of_that_borrower_and_channel(ctx: Context) -> None:
    """Another borrower's SMS item, or a visit task a colleague booked a moment ago, refuses
    the booking and writes nothing."""
    from parley.services.appointments import book_appointment, list_appointments
    from tests.integration.test_worker import seed_contactable

    seed_contactable(ctx, "B1", dpd=100, address=True)
    seed_contactable(ctx, "B2", dpd=100, address=True, phone="+8613800138001")
    add_collectors(ctx, "V1", "V2")
    with ctx.db.transaction() as c:
        for bid, channel in (("B1", "visit"), ("B2", "sms")):
            c.execute(text(
                "INSERT INTO contact_queue (business_date, borrower_id, loan_id, strategy_id, arm, "
                "state, action_kind, channel, purpose, priority, not_before, status, attempts, "
                "idempotency_key, last_reason, created_at, updated_at) VALUES (:d, :b, :l, 'default', "
                "'', 'm4', :k, :ch, 'collection', 10, :t, 'pending', 0, :key, '', :t, :t)"),
                {"d": date(2026, 3, 2), "b": bid, "l": f"{bid}-L1", "ch": channel,
                 "k": "field_visit" if channel == "visit" else "sms", "key": f"k-{bid}",
                 "t": datetime(2026, 3, 2, tzinfo=UTC)})
        ids = dict(c.execute(text("SELECT borrower_id, id FROM contact_queue")).all())
    when = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    with pytest.raises(Conflict, match="not an open visit task"):
        book_appointment(ctx, "B1", "field_visit", when, place="x", collector_ids=("V1", "V2"),
                         queue_item_id=ids["B2"], by="lead")
    first = book_appointment(ctx, "B1", "field_visit", when, place="x",
                             collector_ids=("V1", "V2"), queue_item_id=ids["B1"], by="lead")
    with pytest.raises(Conflict):
        book_appointment(ctx, "B1", "field_visit", when, place="x", collector_ids=("V1", "V2"),
                         queue_item_id=ids["B1"], by="lead")
    assert [a.id for a in list_appointments(ctx, borrower_id="B1")] == [first.id]
    with ctx.db.read() as c:
        statuses = dict(c.execute(text("SELECT borrower_id, status FROM contact_queue")).all())
    assert statuses == {"B1": "done", "B2": "pending"}


class _FailOnce:
    name = "fail-once"
    channels = frozenset({"sms"})
    idempotent = True

    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[Message] = []

    def send(self, message: Message) -> ProviderReceipt:
        self.calls += 1
        if self.calls == 1:
            raise ChannelError("503 from provider", transient=True)
        self.sent.append(message)
        return ProviderReceipt("fail-once", "m1", message.idempotency_key, datetime.now(UTC))


def test_a_retried_appointment_notice_is_decided_again_by_the_gate(ctx: Context) -> None:
    """The first send failed after its permit; the borrower then disputed the debt. The retry
    finds the old permit by its key, but the gate decides again and nothing is sent."""
    from parley.services.appointments import book_appointment, send_notice
    from parley.services.permits import place_hold
    from tests.integration.test_worker import seed_contactable

    seed_contactable(ctx, "B1", dpd=100, address=True)
    add_collectors(ctx, "V1", "V2")
    seed_default_templates(ctx)
    appt = book_appointment(ctx, "B1", "field_visit", datetime(2026, 3, 3, 2, tzinfo=UTC),
                            place="北京市朝阳区1号", collector_ids=("V1", "V2"), loan_id="B1-L1",
                            by="lead")
    sms = _FailOnce()
    with pytest.raises(Conflict, match="could not be sent"):
        send_notice(ctx, appt.id, sms)
    place_hold(ctx, "B1", "dispute", note="disputes the debt")
    again = send_notice(ctx, appt.id, sms)
    assert not again.allowed and "hold" in again.reasons and sms.sent == []


class SlowSink(SmtpSink):
    """Keeps the message, then answers only after the client has given up waiting."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        import asyncio

        self.messages.append(envelope)
        await asyncio.sleep(1.5)
        return "250 Message accepted for delivery"


def test_smtp_silence_after_the_message_was_handed_over_is_unconfirmed_not_retried() -> None:
    """A timeout before DATA is safe to retry; one after it may mean the server has the
    message, so the error is not transient and the worker will not send it again."""
    from aiosmtpd.controller import Controller

    sink = SlowSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpProvider("127.0.0.1", port, "collections@parley.example", timeout=0.5)
        with pytest.raises(ChannelError) as err:
            smtp.send(Message("email", "wang@example.cn", "正文", "queue:1", subject="Parley"))
    finally:
        controller.stop()
    assert len(sink.messages) == 1  # the server has it
    assert not err.value.transient and str(err.value).startswith("unconfirmed")
    closed = SmtpProvider("127.0.0.1", free_port(), "collections@parley.example", timeout=0.5)
    with pytest.raises(ChannelError) as before:
        closed.send(Message("email", "wang@example.cn", "正文", "queue:2", subject="Parley"))
    assert before.value.transient  # nothing was handed over: try again later
