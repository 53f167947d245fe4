"""面谈 (interviews by phone, video or in person) and 走访 field visits as appointments.

An appointment has a kind, a place and a time, and the collectors who attend. Booking checks
that every collector is identified (a name and a badge number) and that there are as many as
the borrower's rule pack requires for that channel (``collectors_identified_at_least``: two
for a field visit under the CN pack). Before anyone turns up, ``send_notice`` tells the
borrower by SMS — through the gate, like any contact — who is coming, with each collector's
name and badge number, where and when. ``check_in`` is the contact itself: the gate decides it
at that moment with the attending collectors, and the attempt is recorded. ``check_out``
closes it with the visit report.

status: scheduled → notified → checked_in → completed; or cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update

from parley.adapters.channels.base import ChannelAdapter, ChannelError, Message
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.services.context import Context
from parley.services.templates import get_template, render
from parley.store.models.contacts import ContactAttempt
from parley.store.models.loanbook import Borrower, BorrowerPhone
from parley.store.models.queue import ContactQueueItem
from parley.store.models.staff import StaffUser
from parley.store.models.templates import Appointment, AppointmentCollector

KINDS = ("interview_phone", "interview_video", "interview_in_person", "field_visit")
NEEDS_PLACE = frozenset({"interview_video", "interview_in_person", "field_visit"})
CHANNEL_OF = {"interview_phone": "interview", "interview_video": "interview",
              "interview_in_person": "interview", "field_visit": "visit"}
NOTICE_TEMPLATE = "appointment_notice"
RECORD = "appointment"


@dataclass(frozen=True, slots=True)
class AppointmentView:
    """An appointment as stored; collectors: (id, name, badge) in booking order, lead first."""

    id: int
    borrower_id: str
    loan_id: str | None
    kind: str
    place: str
    scheduled_at: datetime
    duration_minutes: int
    status: str
    collectors: tuple[tuple[str, str, str], ...]
    notice_sent_at: datetime | None
    check_in_at: datetime | None
    check_out_at: datetime | None
    report: str
    attempt_id: int | None


@dataclass(frozen=True, slots=True)
class ContactResult:
    """The gate's answer for a notice or a check-in. reasons: why not (empty when allowed)."""

    allowed: bool
    attempt_id: int | None
    decision_id: int
    reasons: str
    next_allowed_at: datetime | None
    message_id: str = ""


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, record=RECORD, field=field)


def collectors_required(jurisdiction: str, channel: str, default_jurisdiction: str) -> int:
    """How many identified collectors the pack wants for ``channel`` (at least 1); the
    default pack's when the jurisdiction has none, an error when its pack is broken."""
    from parley.services.gate_check import pack_or_default

    pack = pack_or_default(jurisdiction, default_jurisdiction)
    need = 1
    for rule in pack.rules:
        if rule.kind == "collectors_identified_at_least" and channel in {
                str(c) for c in rule.params["channels"]}:
            need = max(need, int(rule.params["collectors_at_least"]))
    return need


def book_appointment(ctx: Context, borrower_id: str, kind: str, scheduled_at: datetime, *,
                     collector_ids: tuple[str, ...], place: str = "", loan_id: str | None = None,
                     queue_item_id: int | None = None, duration_minutes: int = 60,
                     by: str) -> AppointmentView:
    """Book a 面谈 or a field visit; the first collector leads. Raises InvalidInput naming the
    field (kind, scheduled_at, place, collector_ids), NotFound for an unknown borrower."""
    if kind not in KINDS:
        raise _bad("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if scheduled_at.tzinfo is None:
        raise _bad("scheduled_at", "must be timezone-aware")
    if scheduled_at <= ctx.clock.now():
        raise _bad("scheduled_at", "must be in the future")
    if kind in NEEDS_PLACE and not place.strip():
        raise _bad("place", f"a {kind} needs a place (an address or a meeting link)")
    if not 10 <= duration_minutes <= 480:
        raise _bad("duration_minutes", "between 10 and 480")
    ids = tuple(dict.fromkeys(collector_ids))
    if not ids:
        raise _bad("collector_ids", "at least one collector attends")
    with ctx.db.transaction() as conn:
        b = conn.execute(select(Borrower.id, Borrower.jurisdiction)
                         .where(Borrower.id == borrower_id)).first()
        if b is None:
            raise NotFound(f"no borrower {borrower_id!r}")
        people = _collectors(conn, ids)
        need = collectors_required(b.jurisdiction, CHANNEL_OF[kind], ctx.settings.default_jurisdiction)
        if len(people) < need:
            raise _bad("collector_ids", f"a {kind} under the {b.jurisdiction} pack needs at least "
                                        f"{need} identified collectors; got {len(people)}")
        now = ctx.clock.now()
        appt_id = int(conn.execute(insert(Appointment).returning(Appointment.id).values(
            borrower_id=borrower_id, loan_id=loan_id, queue_item_id=queue_item_id, kind=kind,
            place=place.strip(), scheduled_at=scheduled_at, duration_minutes=duration_minutes,
            status="scheduled", report="", created_by=by, created_at=now)).scalar_one())
        conn.execute(insert(AppointmentCollector), [
            {"appointment_id": appt_id, "collector_id": cid, "lead": i == 0}
            for i, (cid, _, _) in enumerate(people)])
        if queue_item_id is not None:
            # The task this booking works off: this borrower's, of this channel, still open.
            # Anything else (another borrower's SMS, a task booked by a colleague a moment
            # ago) refuses the booking, which rolls back with the transaction.
            done = conn.execute(update(ContactQueueItem).where(
                ContactQueueItem.id == queue_item_id,
                ContactQueueItem.borrower_id == borrower_id,
                ContactQueueItem.channel == CHANNEL_OF[kind],
                ContactQueueItem.status == "pending").values(
                status="done", last_reason=f"appointment {appt_id} booked", updated_at=now))
            if done.rowcount != 1:
                raise Conflict(f"queue item {queue_item_id} is not an open {CHANNEL_OF[kind]} "
                               f"task of borrower {borrower_id!r}")
        return _view(conn, appt_id)


def _collectors(conn: Connection, ids: tuple[str, ...]) -> list[tuple[str, str, str]]:
    rows = {r.id: r for r in conn.execute(select(
        StaffUser.id, StaffUser.display_name, StaffUser.badge_number, StaffUser.active)
        .where(StaffUser.id.in_(ids)))}
    out = []
    for i, cid in enumerate(ids):
        r = rows.get(cid)
        if r is None or not r.active:
            raise _bad(f"collector_ids[{i}]", f"no active collector {cid!r}")
        if not (r.display_name or "").strip() or not (r.badge_number or "").strip():
            raise _bad(f"collector_ids[{i}]", f"collector {cid!r} has no name or badge number; "
                                              "every visitor must be identifiable")
        out.append((r.id, r.display_name, r.badge_number))
    return out


def _view(conn: Connection, appointment_id: int) -> AppointmentView:
    a = conn.execute(select(Appointment.__table__).where(Appointment.id == appointment_id)).first()
    if a is None:
        raise NotFound(f"no appointment {appointment_id}")
    people = conn.execute(select(StaffUser.id, StaffUser.display_name, StaffUser.badge_number)
                          .join(AppointmentCollector, AppointmentCollector.collector_id == StaffUser.id)
                          .where(AppointmentCollector.appointment_id == appointment_id)
                          .order_by(AppointmentCollector.lead.desc(), StaffUser.id)).all()
    return AppointmentView(a.id, a.borrower_id, a.loan_id, a.kind, a.place, a.scheduled_at,
                           a.duration_minutes, a.status,
                           tuple((p[0], p[1] or "", p[2] or "") for p in people),
                           a.notice_sent_at, a.check_in_at, a.check_out_at, a.report, a.attempt_id)


def get_appointment(ctx: Context, appointment_id: int) -> AppointmentView:
    with ctx.db.read() as conn:
        return _view(conn, appointment_id)


def list_appointments(ctx: Context, *, borrower_id: str | None = None,
                      collector_id: str | None = None) -> list[AppointmentView]:
    """Appointments by time, for one borrower and/or one collector."""
    q = select(Appointment.id).order_by(Appointment.scheduled_at, Appointment.id)
    if borrower_id is not None:
        q = q.where(Appointment.borrower_id == borrower_id)
    if collector_id is not None:
        q = q.where(Appointment.id.in_(select(AppointmentCollector.appointment_id).where(
            AppointmentCollector.collector_id == collector_id)))
    with ctx.db.read() as conn:
        return [_view(conn, i) for i in conn.execute(q).scalars()]


def _reasons(decision: Any) -> str:
    return "; ".join(f"{f.rule_id}: {f.message('en')}" for f in decision.reasons
                     if f.effect == "deny") or "denied"


def notice_text(ctx: Context, conn: Connection, appt: AppointmentView) -> tuple[str, str]:
    """(template id, text) of the notice in the borrower's language and local time."""
    b = conn.execute(select(Borrower.name, Borrower.preferred_language, Borrower.declared_timezone)
                     .where(Borrower.id == appt.borrower_id)).one()
    zone = ZoneInfo(b.declared_timezone) if b.declared_timezone else ctx.business_zone
    local = appt.scheduled_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    lang = b.preferred_language or "zh-Hans"
    sep, badge = ("、", "工号") if lang.startswith("zh") else (", ", "badge")
    people = sep.join(f"{name}（{badge} {no}）" if lang.startswith("zh") else f"{name} ({badge} {no})"
                      for _, name, no in appt.collectors)
    values = {"name": b.name, "lender": "Parley", "place": appt.place or "—",
              "scheduled_at": local, "collectors": people, "loan_id": appt.loan_id or ""}
    try:
        tpl = get_template(conn, NOTICE_TEMPLATE, lang)
        return NOTICE_TEMPLATE, render(tpl, values)[1]
    except NotFound:
        return "", (f"{b.name}: {local}, {appt.place or '—'}; {people}")


def send_notice(ctx: Context, appointment_id: int, sms: ChannelAdapter) -> ContactResult:
    """Tell the borrower by SMS who is coming (names and badge numbers), where and when —
    permitted by the gate and sent with key ``appointment:<id>:notice`` (sent once)."""
    from parley.services.permits import PermitRequest, check_contact, request_permit

    with ctx.db.read() as conn:
        appt = _view(conn, appointment_id)
        if appt.status not in ("scheduled", "notified"):
            raise Conflict(f"appointment {appointment_id} is {appt.status}")
        template_id, body = notice_text(ctx, conn, appt)
        row = conn.execute(select(BorrowerPhone.e164_enc).where(
            BorrowerPhone.borrower_id == appt.borrower_id, BorrowerPhone.is_valid.is_(True))
            .order_by(BorrowerPhone.position, BorrowerPhone.id).limit(1)).first()
    if row is None:
        raise InvalidInput("the borrower has no valid phone for the notice", record=RECORD, field="to")
    to = ctx.keyring.decrypt(row[0], "phone.e164")
    key = f"appointment:{appointment_id}:notice"
    lead = appt.collectors[0]
    req = PermitRequest(
        borrower_id=appt.borrower_id, channel="sms", purpose="collection", loan_id=appt.loan_id,
        to=to, text=body, template_id=template_id or None, collector_id=lead[0], badge=lead[2],
        idempotency_key=key, initiated_by="system")
    permit = request_permit(ctx, req)
    decision, decision_id = permit.decision, permit.decision_id
    if permit.repeated and permit.allowed:
        # A retry after a failed send finds the first permit by its key; that decision is
        # old, so the gate decides again for now (a logged preview) before anything is sent.
        fresh = check_contact(ctx, replace(req, idempotency_key=None))
        decision, decision_id = fresh.decision, fresh.decision_id
    if not (permit.allowed and decision.allowed):
        return ContactResult(False, None, decision_id, _reasons(decision),
                             decision.next_allowed_at)
    try:
        receipt = sms.send(Message("sms", to, body, key, reference=str(permit.attempt_id or "")))
    except ChannelError as exc:
        raise Conflict(f"the notice could not be sent ({exc}); try again") from exc
    with ctx.db.transaction() as conn:
        conn.execute(update(Appointment).where(Appointment.id == appointment_id).values(
            status="notified", notice_sent_at=ctx.clock.now(), notice_attempt_id=permit.attempt_id))
    return ContactResult(True, permit.attempt_id, permit.decision_id, "", None, receipt.message_id)


def check_in(ctx: Context, appointment_id: int, *, by: str) -> ContactResult:
    """The visit or interview starts now: the gate decides it with every attending collector
    identified; when allowed the attempt is recorded and check_in_at set. ``by`` must attend."""
    from parley.services.permits import PermitRequest, request_permit

    appt = get_appointment(ctx, appointment_id)
    if by not in {c[0] for c in appt.collectors}:
        raise Forbidden(f"{by!r} is not assigned to appointment {appointment_id}")
    if appt.status != "notified":
        raise Conflict(f"appointment {appointment_id} is {appt.status}; the borrower must be "
                       "sent the collectors' names and badge numbers first")
    channel = CHANNEL_OF[appt.kind]
    to = "" if appt.kind == "field_visit" else f"appointment:{appointment_id}"
    permit = request_permit(ctx, PermitRequest(
        borrower_id=appt.borrower_id, channel=channel, purpose="collection", loan_id=appt.loan_id,
        to=to, collector_id=by, badge=next(c[2] for c in appt.collectors if c[0] == by),
        collectors=appt.collectors, idempotency_key=f"appointment:{appointment_id}:visit",
        initiated_by="collector"))
    if not permit.allowed:
        return ContactResult(False, None, permit.decision_id, _reasons(permit.decision),
                             permit.decision.next_allowed_at)
    with ctx.db.transaction() as conn:
        conn.execute(update(Appointment).where(Appointment.id == appointment_id,
                                               Appointment.status == "notified").values(
            status="checked_in", check_in_at=ctx.clock.now(), attempt_id=permit.attempt_id))
    return ContactResult(True, permit.attempt_id, permit.decision_id, "", None)


def check_out(ctx: Context, appointment_id: int, *, report: str, by: str) -> AppointmentView:
    """Close a checked-in appointment with the visit report (required); the report is also the
    outcome of the contact attempt."""
    from parley.services.permits import record_outcome

    if not report.strip():
        raise _bad("report", "a visit report is required")
    appt = get_appointment(ctx, appointment_id)
    if by not in {c[0] for c in appt.collectors}:
        raise Forbidden(f"{by!r} is not assigned to appointment {appointment_id}")
    if appt.status != "checked_in":
        raise Conflict(f"appointment {appointment_id} is {appt.status}, not checked in")
    if appt.attempt_id is not None:
        with ctx.db.read() as conn:  # keep the permit's "attended by" line, add the report
            attended = conn.execute(select(ContactAttempt.notes).where(
                ContactAttempt.id == appt.attempt_id)).scalar() or ""
        record_outcome(ctx, appt.attempt_id, "conversation", by=by,
                       notes="\n".join(x for x in (attended, f"report: {report.strip()}") if x))
    with ctx.db.transaction() as conn:
        conn.execute(update(Appointment).where(Appointment.id == appointment_id).values(
            status="completed", check_out_at=ctx.clock.now(), report=report.strip()))
        return _view(conn, appointment_id)


def cancel_appointment(ctx: Context, appointment_id: int, *, reason: str, by: str) -> AppointmentView:
    """Cancel a scheduled or notified appointment (a reason is required)."""
    if not reason.strip():
        raise _bad("reason", "a reason is required")
    with ctx.db.transaction() as conn:
        done = conn.execute(update(Appointment).where(
            Appointment.id == appointment_id, Appointment.status.in_(("scheduled", "notified")))
            .values(status="cancelled", report=f"cancelled by {by}: {reason.strip()}")).rowcount
        if done != 1:
            _view(conn, appointment_id)  # NotFound if absent
            raise Conflict(f"appointment {appointment_id} cannot be cancelled now")
        return _view(conn, appointment_id)
