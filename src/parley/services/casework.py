"""Read models for the pages and the API — the collector's queue, the case at a glance, the
borrower's own view — and the small writes made from them (notes, preferences, opt-outs).

Every access check lives here, against an `auth.Actor`:

- agency collectors (and agency-scoped API keys) see only loans whose `agency_id` is their
  agency; borrowers see only their own loans;
- a loan the actor may not see answers exactly like one that does not exist (`NotFound` with
  the same message), so nothing about other agencies' cases leaks;
- personal data is masked by role: nobody reads a full phone number through a page; collectors
  dial through the click-to-call hook, which decrypts on the server.

Calls that belong to other services (the permit gate, agreements, audit, appointments) go
through those service modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, text, update
from sqlalchemy.orm import Session as OrmSession

from parley.adapters.crypto import mask_id_number
from parley.core.money import format_minor
from parley.core.text import first_not_text, not_text_message
from parley.errors import Forbidden, InvalidInput, NotFound
from parley.services import agreements, appointments, audit, permits
from parley.services.auth import STAFF_ROLES, Actor
from parley.services.context import Context
from parley.services.payments import loan_balance
from parley.store.db import db_datetime, lock_borrower
from parley.store.models.agreements import Agreement
from parley.store.models.contacts import ContactAttempt, ContactPreference, Hold, OptOut
from parley.store.models.loanbook import (
    Borrower,
    BorrowerPhone,
    Installment,
    Loan,
    LoanDelinquency,
)
from parley.store.models.queue import ContactQueueItem
from parley.store.models.staff import StaffUser
from parley.store.models.web import CaseNote, Complaint

CASE_ROLES = frozenset(STAFF_ROLES)  # every staff role may open a case it can see
CALL_ROLES = frozenset({"administrator", "team_lead", "collector", "agency_collector"})
COMPLIANCE_ROLES = frozenset({"administrator", "compliance_officer", "auditor"})
COMPLIANCE_WRITE_ROLES = frozenset({"administrator", "compliance_officer"})
ID_NUMBER_ROLES = frozenset({"administrator", "compliance_officer", "team_lead"})
OPT_OUT_CHANNELS = ("call", "sms", "email", "visit")
OPEN_AGREEMENT = ("proposed", "approved", "accepted", "active")


def _orm(conn: Connection) -> OrmSession:
    """An ORM session on the caller's connection (joins its transaction), so reads can return
    entities; writes stay Core on the connection itself."""
    return OrmSession(bind=conn, autoflush=False)


def require_role(actor: Actor, roles: frozenset[str]) -> None:
    """The one role check every face uses; Forbidden names no detail beyond 'not allowed'."""
    if actor.role not in roles:
        raise Forbidden("not allowed for your role")


# --- access ----------------------------------------------------------------------------------


def visible_loans(actor: Actor) -> Any:
    """A WHERE clause on `loan` for the loans this actor may see."""
    if actor.role == "borrower":
        return Loan.borrower_id == actor.id
    if actor.role not in CASE_ROLES:
        return Loan.id.is_(None)  # sees nothing
    if actor.role == "agency_collector" or actor.agency_id:
        return Loan.agency_id == (actor.agency_id or "")
    return Loan.id.is_not(None)


def _unknown_loan(loan_id: str) -> NotFound:
    return NotFound(f"unknown loan {loan_id!r}")


def _load_loan(conn: Connection, actor: Actor, loan_id: str) -> Any:
    row = _orm(conn).execute(select(Loan).where(Loan.id == loan_id, visible_loans(actor))).scalars().first()
    if row is None:
        raise _unknown_loan(loan_id)
    return row


def check_loan_visible(ctx: Context, actor: Actor, loan_id: str) -> str:
    """The loan's borrower id if the actor may see the loan; NotFound otherwise."""
    with ctx.db.read() as conn:
        return str(_load_loan(conn, actor, loan_id).borrower_id)


# --- shared pieces ---------------------------------------------------------------------------


def _money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


def _since(conn: Connection, loan_id: str, today: date) -> date | None:
    """The due date of the oldest unpaid instalment that is already due (None = nothing overdue)."""
    return _orm(conn).execute(
        select(Installment.due_on)
        .where(
            Installment.loan_id == loan_id,
            Installment.paid_off_on.is_(None),
            Installment.due_on <= today,
        )
        .order_by(Installment.due_on)
        .limit(1)
    ).scalar_one_or_none()


def _loan_summary(conn: Connection, loan: Any, today: date) -> dict[str, Any]:
    bal = loan_balance(conn, loan.id, today)
    since = _since(conn, loan.id, today)
    snap = _orm(conn).execute(
        select(LoanDelinquency).where(LoanDelinquency.loan_id == loan.id)
    ).scalars().first()
    cur = loan.currency
    return {
        "id": loan.id,
        "borrower_id": loan.borrower_id,
        "currency": cur,
        "principal": _money(loan.principal, cur),
        "annual_rate": loan.annual_rate,
        "term": loan.term,
        "method": loan.method,
        "disbursed_on": loan.disbursed_on.isoformat(),
        "first_due_on": loan.first_due_on.isoformat(),
        "status": loan.status,
        "product": loan.product,
        "agency_id": loan.agency_id,
        "as_of": today.isoformat(),
        "overdue": {
            "principal": _money(bal.overdue_principal, cur),
            "interest": _money(bal.overdue_interest, cur),
            "fee": _money(bal.overdue_fee, cur),
            "penalty": _money(bal.overdue_penalty, cur),
            "total": _money(bal.overdue_total, cur),
        },
        "overdue_since": since.isoformat() if since else None,
        "days_past_due": (today - since).days if since else 0,
        "bucket": snap.bucket if snap else None,
        "outstanding_principal": _money(bal.outstanding_principal, cur),
        "paid_total": _money(bal.paid_total, cur),
        "credit": _money(bal.credit, cur),
    }


def _schedule(conn: Connection, loan: Any) -> list[dict[str, Any]]:
    cur = loan.currency
    rows = _orm(conn).execute(
        select(Installment).where(Installment.loan_id == loan.id).order_by(Installment.number)
    ).scalars()
    out = []
    for i in rows:
        due = i.principal_due + i.interest_due + i.fee_due + i.penalty_due
        paid = i.paid_principal + i.paid_interest + i.paid_fee + i.paid_penalty
        out.append(
            {
                "number": i.number,
                "due_on": i.due_on.isoformat(),
                "principal": _money(i.principal_due, cur),
                "interest": _money(i.interest_due, cur),
                "fee": _money(i.fee_due, cur),
                "penalty": _money(i.penalty_due, cur),
                "due": _money(due, cur),
                "paid": _money(paid, cur),
                "paid_off_on": i.paid_off_on.isoformat() if i.paid_off_on else None,
            }
        )
    return out


def _contacts(conn: Connection, borrower_id: str, loan_ids: list[str] | None) -> list[dict[str, Any]]:
    """Contacts with a borrower, newest first, with who made them (name and badge)."""
    q = (
        select(ContactAttempt, StaffUser.display_name)
        .outerjoin(StaffUser, StaffUser.id == ContactAttempt.collector_id)
        .where(ContactAttempt.borrower_id == borrower_id)
        .order_by(ContactAttempt.at.desc(), ContactAttempt.id.desc())
        .limit(500)
    )
    if loan_ids is not None:
        q = q.where(or_(ContactAttempt.loan_id.in_(loan_ids), ContactAttempt.loan_id.is_(None)))
    out = []
    for a, collector_name in _orm(conn).execute(q):
        out.append(
            {
                "id": a.id,
                "at": a.at,
                "loan_id": a.loan_id,
                "channel": a.channel,
                "person_role": a.person_role,
                "to_masked": a.to_masked,
                "purpose": a.purpose,
                "direction": a.direction,
                "collector_id": a.collector_id,
                "collector_name": collector_name or ("system" if not a.collector_id else a.collector_id),
                "agency_id": a.agency_id,
                "badge": a.badge or "",
                "content": a.content,
                "template_id": a.template_id,
                "result": a.result,
                "notes": a.notes,
                "recording_ref": a.recording_ref,
            }
        )
    return out


def _agreements(conn: Connection, borrower_id: str, loan_ids: list[str]) -> list[dict[str, Any]]:
    rows = _orm(conn).execute(
        select(Agreement)
        .where(Agreement.borrower_id == borrower_id, Agreement.loan_id.in_(loan_ids))
        .order_by(Agreement.proposed_at.desc())
    ).scalars()
    return [
        {
            "id": a.id,
            "loan_id": a.loan_id,
            "kind": a.kind,
            "status": a.status,
            "starts_on": a.starts_on.isoformat() if a.starts_on else None,
            "ends_on": a.ends_on.isoformat() if a.ends_on else None,
            "total": _money(a.total_amount, a.currency),
            "waived": _money(a.waived_amount, a.currency),
            "currency": a.currency,
            "proposed_at": a.proposed_at,
            "accepted_at": a.accepted_at,
            "expires_at": a.expires_at,
            "verification_code": a.verification_code,
            "installments": [
                {"number": i.get("number"), "due_on": i.get("due_on"),
                 "amount": _money(int(i.get("amount", 0)), a.currency)}
                for i in _json(a.terms).get("installments", [])
                if isinstance(i, dict)
            ],
        }
        for a in rows
    ]


def _json(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def _holds(conn: Connection, borrower_id: str) -> list[dict[str, Any]]:
    rows = _orm(conn).execute(
        select(Hold).where(Hold.borrower_id == borrower_id).order_by(Hold.started_at.desc())
    ).scalars()
    return [
        {
            "id": h.id,
            "kind": h.kind,
            "loan_id": h.loan_id,
            "started_at": h.started_at,
            "ended_at": h.ended_at,
            "active": h.ended_at is None,
            "source": h.source,
            "note": h.note,
        }
        for h in rows
    ]


def _phones(conn: Connection, borrower_id: str) -> list[dict[str, Any]]:
    rows = _orm(conn).execute(
        select(BorrowerPhone)
        .where(BorrowerPhone.borrower_id == borrower_id)
        .order_by(BorrowerPhone.position)
    ).scalars()
    return [
        {"id": p.id, "type": p.phone_type, "masked": p.masked, "valid": p.is_valid} for p in rows
    ]


# --- the API's loan -----------------------------------------------------------------------


def loan_view(ctx: Context, actor: Actor, loan_id: str) -> dict[str, Any]:
    """One loan as the API shows it: terms, what is overdue and since when, the schedule, its
    placements and legal referrals — all from one read transaction, after one access check."""
    today = ctx.today()
    with ctx.db.read() as conn:
        loan = _load_loan(conn, actor, loan_id)
        # After the loan check, as before: a loan out of sight answers NotFound, not Forbidden.
        require_role(actor, CASE_ROLES)
        out = _loan_summary(conn, loan, today)
        out["schedule"] = _schedule(conn, loan)
        return {**out, **_placed(conn, actor, loan.id)}


# --- the collector's workbench ---------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """One line of today's queue. not_before: the earliest time the plan allows (the gate
    still decides at call time). bucket/days_past_due: from the latest daily snapshot."""

    id: int
    loan_id: str | None
    borrower_id: str
    borrower_name: str
    action_kind: str
    channel: str
    priority: int
    not_before: datetime
    status: str
    bucket: str | None
    days_past_due: int | None
    last_reason: str


def work_queue(ctx: Context, actor: Actor, *, limit: int = 200) -> list[QueueEntry]:
    """Today's queue for this collector, in priority order (lower first), then time, then id.

    Collectors see the items assigned to them; agency collectors only those on loans placed with
    their agency; team leads and administrators see every open item they may see.
    """
    require_role(actor, CASE_ROLES)
    today = ctx.today()
    q = (
        select(
            ContactQueueItem,
            Borrower.name,
            LoanDelinquency.bucket,
            LoanDelinquency.days_past_due,
        )
        .join(Borrower, Borrower.id == ContactQueueItem.borrower_id)
        .outerjoin(Loan, Loan.id == ContactQueueItem.loan_id)
        .outerjoin(LoanDelinquency, LoanDelinquency.loan_id == ContactQueueItem.loan_id)
        .where(
            ContactQueueItem.status.in_(("pending", "leased")),
            ContactQueueItem.business_date <= today,
            visible_loans(actor),
        )
        .order_by(ContactQueueItem.priority, ContactQueueItem.not_before, ContactQueueItem.id)
        .limit(limit)
    )
    if actor.role in ("collector", "agency_collector"):
        q = q.where(ContactQueueItem.collector_id == actor.id)
    return _run_queue(ctx, q)


def _run_queue(ctx: Context, q: Any) -> list[QueueEntry]:
    with ctx.db.read() as conn:
        return [
            QueueEntry(
                item.id, item.loan_id, item.borrower_id, name, item.action_kind, item.channel,
                item.priority, item.not_before, item.status, bucket, dpd, item.last_reason,
            )
            for item, name, bucket, dpd in _orm(conn).execute(q)
        ]


def case_at_glance(ctx: Context, actor: Actor, loan_id: str) -> dict[str, Any]:
    """Everything a collector needs on one screen: who, what is owed and since when, the
    schedule, every contact, agreements, holds, notes, the loan's agency placements and legal
    referrals (see placements_and_referrals). Phones are masked. One read transaction: the
    access check and every section come from the same snapshot."""
    require_role(actor, CASE_ROLES)
    today = ctx.today()
    with ctx.db.read() as conn:
        loan = _load_loan(conn, actor, loan_id)  # NotFound for a loan out of sight
        placed = _placed(conn, actor, loan.id)
        b = _orm(conn).execute(select(Borrower).where(Borrower.id == loan.borrower_id)).scalars().one()
        loans = [
            r.id
            for r in _orm(conn).execute(
                select(Loan.id).where(Loan.borrower_id == b.id, visible_loans(actor))
            )
        ]
        id_number = None
        if actor.role in ID_NUMBER_ROLES and b.id_number_enc:
            id_number = mask_id_number(ctx.keyring.decrypt(b.id_number_enc, "borrower.id_number"))
        nq = (
            select(CaseNote, StaffUser.display_name)
            .outerjoin(StaffUser, StaffUser.id == CaseNote.author_id)
            .where(CaseNote.borrower_id == b.id)
            .order_by(CaseNote.at.desc())
        )
        if actor.agency_id:  # an agency sees only notes on the loans placed with it
            nq = nq.where(CaseNote.loan_id.in_(loans))
        notes = _orm(conn).execute(nq).all()
        who = {p[k] for p in placed["placements"] for k in ("placed_by", "ended_by")} | {
            r[k] for r in placed["legal_referrals"] for k in ("referred_by", "closed_by")}
        staff_names = {i: n for i, n in conn.execute(
            select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(who - {None})))}
        return {
            "loan": _loan_summary(conn, loan, today),
            "schedule": _schedule(conn, loan),
            "borrower": {
                "id": b.id,
                "name": b.name,
                "language": b.preferred_language,
                "jurisdiction": b.jurisdiction,
                "timezone": b.declared_timezone,
                "tags": [t for t in b.tags.split(",") if t],
                "id_number": id_number,
                "phones": _phones(conn, b.id),
                "loans": loans,
            },
            "contacts": _contacts(conn, b.id, loans if actor.agency_id else None),
            "agreements": _agreements(conn, b.id, loans),
            "holds": _holds(conn, b.id),
            "notes": [
                {"at": n.at, "author": name or n.author_id, "text": n.text, "loan_id": n.loan_id}
                for n, name in notes
            ],
            **placed,
            "staff_names": staff_names,  # placed_by & co. (staff ids) -> display names
        }


def refuse_control_characters(value: str | None, *, record: str, field: str) -> None:
    """Free text people type may hold tabs and line breaks, nothing else below U+0020 (nor DEL
    or the C1 controls): a NUL cannot be stored in PostgreSQL text, and the rest are never
    typed, only pasted or forged. InvalidInput names the field and the first one found."""
    found = first_not_text(value or "")
    if found:
        raise InvalidInput(not_text_message(found), record=record, field=field)


def add_note(ctx: Context, actor: Actor, loan_id: str, text: str) -> int:
    require_role(actor, CALL_ROLES)
    text = (text or "").strip()
    if not text:
        raise InvalidInput("must not be empty", record="note", field="text")
    if len(text) > 4000:
        raise InvalidInput("at most 4000 characters", record="note", field="text")
    refuse_control_characters(text, record="note", field="text")
    with ctx.db.transaction() as conn:
        loan = _load_loan(conn, actor, loan_id)
        res = conn.execute(
            insert(CaseNote).values(
                borrower_id=loan.borrower_id, loan_id=loan.id, author_id=actor.id,
                at=ctx.clock.now(), text=text,
            )
        )
        return int(res.inserted_primary_key[0])  # type: ignore[index]


# --- agency placements (委外) and legal referrals ---------------------------------------------
#
# Read through the placements service's connection-level reads, inside the caller's one read
# transaction and after its one loan check (the rules above); an agency's collector sees only its
# own agency's placements, of loans placed with it. Recalling a placement and closing
# a referral are managers' decisions: administrators, team leads and strategy managers, on a
# loan they may see; the placements service audits both on the borrower's chain.

PLACEMENT_WRITE_ROLES = frozenset({"administrator", "team_lead", "strategy_manager"})


def placements_and_referrals(ctx: Context, actor: Actor, loan_id: str) -> dict[str, Any]:
    """{"placements": [...], "legal_referrals": [...]}, newest first, as the actor may see them.

    A placement: id, agency_id, placed_at, placed_by, reason, ended_at/ended_by/end_reason
    (None while active), active. A referral: id, queue, status (open | closed), referred_at,
    referred_by, reason, closed_at/closed_by/close_reason (None while open). NotFound for a loan
    the actor may not see. A placement that came with the loan import has no row here; the
    loan's agency_id still names it."""
    require_role(actor, CASE_ROLES)
    with ctx.db.read() as conn:
        loan = _load_loan(conn, actor, loan_id)
        return _placed(conn, actor, loan.id)


def _placed(conn: Connection, actor: Actor, loan_id: str) -> dict[str, Any]:
    """placements_and_referrals on the caller's connection, for a loan the caller has already
    checked the actor may see (an agency actor still gets only its own agency's placements)."""
    from parley.services import placements

    history = placements.loan_placements(conn, loan_id, agency_id=actor.agency_id)
    referrals = placements.loan_referrals(conn, loan_id)
    return {
        "placements": [
            {"id": p.id, "agency_id": p.agency_id, "placed_at": p.placed_at,
             "placed_by": p.placed_by, "reason": p.reason, "ended_at": p.ended_at,
             "ended_by": p.ended_by, "end_reason": p.end_reason, "active": p.ended_at is None}
            for p in history
        ],
        "legal_referrals": [
            {"id": r.id, "queue": r.queue, "status": r.status, "referred_at": r.referred_at,
             "referred_by": r.referred_by, "reason": r.reason, "closed_at": r.closed_at,
             "closed_by": r.closed_by, "close_reason": r.close_reason}
            for r in referrals
        ],
    }


def _by(actor: Actor) -> str:
    """Who the placements service records: a staff id, or 'api:<key id>' for an API key."""
    return actor.id if actor.kind == "staff" else f"{actor.kind}:{actor.id}"


def recall_case_placement(ctx: Context, actor: Actor, loan_id: str, reason: str) -> Any:
    """Recall the loan from its agency (``placements.recall_placement``) for a manager who may
    see the loan. Forbidden for other roles; NotFound for a loan the actor may not see;
    InvalidInput without a reason; Conflict when the loan is not placed."""
    from parley.services import placements

    require_role(actor, PLACEMENT_WRITE_ROLES)
    check_loan_visible(ctx, actor, loan_id)
    return placements.recall_placement(ctx, loan_id, by=_by(actor), reason=reason)


def close_case_referral(ctx: Context, actor: Actor, loan_id: str, referral_id: int,
                        reason: str) -> Any:
    """Close one of the loan's legal referrals (``placements.close_referral``) for a manager who
    may see the loan. A referral of another loan answers NotFound, like a missing one; Conflict
    when it is already closed. One read (the access check and that one referral), then the
    placements service's write transaction."""
    from parley.services import placements

    require_role(actor, PLACEMENT_WRITE_ROLES)
    with ctx.db.read() as conn:
        loan = _load_loan(conn, actor, loan_id)
        if placements.loan_referral(conn, loan.id, referral_id) is None:
            raise NotFound(f"unknown legal referral {referral_id}")
    return placements.close_referral(ctx, referral_id, by=_by(actor), reason=reason)


# --- the gate, permits and agreements (other services) ----------------------------------------


def _permit_request(ctx: Context, actor: Actor, borrower_id: str, loan_id: str,
                    phone_id: int | None, *, idempotency_key: str | None = None) -> Any:
    from parley.services.permits import PermitRequest

    to = ""
    if phone_id is not None:
        with ctx.db.read() as conn:
            phone = _orm(conn).execute(
                select(BorrowerPhone).where(BorrowerPhone.id == phone_id,
                                            BorrowerPhone.borrower_id == borrower_id)
            ).scalars().first()
        if phone is None:
            raise InvalidInput(f"unknown phone {phone_id}", record="call", field="phone_id")
        to = ctx.keyring.decrypt(phone.e164_enc, "phone.e164")
    return PermitRequest(
        borrower_id=borrower_id, channel="call", purpose="collection", loan_id=loan_id, to=to,
        collector_id=actor.id if actor.kind == "staff" else None, agency_id=actor.agency_id,
        badge=actor.badge or None, initiated_by="collector", idempotency_key=idempotency_key,
    )


def _permit_dict(permit: Any, lang: str) -> dict[str, Any]:
    d = permit.decision.to_json(lang)
    return {
        "status": "ok",
        "allowed": bool(permit.allowed),
        "decision": d["decision"],
        "reasons": d["reasons"],
        "next_allowed_at": d["next_allowed_at"],
        "flags": d["flags"],
        "pack": d["pack"],
        "decision_id": permit.decision_id,
        "attempt_id": permit.attempt_id,
        "to": permit.to_masked,
    }


def may_i_call(ctx: Context, actor: Actor, loan_id: str, phone_id: int | None = None,
               *, lang: str = "en") -> dict[str, Any]:
    """'May I call now?': the gate's answer for a call to the borrower now, with reasons and the
    next lawful time. Logged as a preview decision; nothing is dialled or recorded as a call."""
    require_role(actor, CALL_ROLES)
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    req = _permit_request(ctx, actor, borrower_id, loan_id, phone_id)
    return _permit_dict(permits.check_contact(ctx, req), lang)


PERMIT_CHANNELS = ("call", "sms", "email")
PERMIT_PURPOSES = ("collection", "agreement_service")


def request_contact_permit(ctx: Context, actor: Actor, loan_id: str, *, channel: str, purpose: str,
                           phone_id: int | None = None, text: str | None = None,
                           template_id: str | None = None, idempotency_key: str | None = None,
                           lang: str = "en") -> dict[str, Any]:
    """A permit for one contact about a visible loan, decided now and recorded with the caller's
    identity (the API face of `permits.request_permit`, for lenders' dialers and workers). A
    repeated idempotency key returns the original permit instead of a second contact; the key
    with a different request is a Conflict. An SMS or e-mail needs non-blank text (screened) or
    a stored template (screened when saved): the record must say what was sent."""
    require_role(actor, CALL_ROLES)
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    if channel not in PERMIT_CHANNELS:
        raise InvalidInput(f"{channel!r} is not one of {', '.join(PERMIT_CHANNELS)}", record="permit", field="channel")
    if purpose not in PERMIT_PURPOSES:
        raise InvalidInput(f"{purpose!r} is not one of {', '.join(PERMIT_PURPOSES)}", record="permit", field="purpose")
    if channel == "call" and text:
        raise InvalidInput("a call carries no text", record="permit", field="text")
    if text is not None and not text.strip():
        text = None  # blank text is no text
    if template_id is not None:
        from parley.store.models.templates import Template

        with ctx.db.read() as conn:
            stored = conn.execute(select(Template.id).where(Template.id == template_id).limit(1)).first()
        if stored is None:
            raise InvalidInput(f"no template {template_id!r}", record="permit", field="template_id")
    # An SMS or e-mail with neither is refused by the permit itself (permits._validate).
    from dataclasses import replace

    from parley.services.permits import request_permit

    req = replace(_permit_request(ctx, actor, borrower_id, loan_id, phone_id if channel != "email" else None,
                                  idempotency_key=idempotency_key),
                  channel=channel, purpose=purpose, text=text, template_id=template_id)
    return _permit_dict(request_permit(ctx, req), lang)


CALL_RESULTS = ("conversation", "no_answer", "voicemail", "not_connected", "refused", "wrong_party")


def log_outcome(ctx: Context, actor: Actor, loan_id: str, attempt_id: int, *, result: str,
                notes: str = "", promise: bool = False) -> dict[str, Any]:
    """Record the outcome of a call this collector placed (once). `promise` notes a promise to
    pay in the outcome's notes (the plan itself is proposed through the agreements service)."""
    require_role(actor, CALL_ROLES)
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    if result not in CALL_RESULTS:
        raise InvalidInput(f"unknown result {result!r}", record="call", field="result")
    if len(notes) > 4000:
        raise InvalidInput("at most 4000 characters", record="call", field="notes")
    refuse_control_characters(notes, record="call", field="notes")
    with ctx.db.read() as conn:
        att = _orm(conn).execute(
            select(ContactAttempt.borrower_id, ContactAttempt.collector_id)
            .where(ContactAttempt.id == attempt_id)
        ).first()
    if att is None or att.borrower_id != borrower_id or (
        actor.role in ("collector", "agency_collector") and att.collector_id != actor.id
    ):
        raise NotFound(f"unknown contact attempt {attempt_id}")
    from parley.services.permits import record_outcome

    text = ("[promise to pay] " if promise else "") + notes.strip()
    out = record_outcome(ctx, attempt_id, result, notes=text, by=actor.id)
    return {"status": "ok", "attempt_id": out.attempt_id, "result": out.result}


def log_inbound(ctx: Context, actor: Actor, loan_id: str, *, channel: str,
                sender: str | None = None, spoke: bool = False,
                notes: str = "") -> dict[str, Any]:
    """Record a contact the borrower started about a visible loan — their call reached this
    collector, or their SMS or e-mail arrived (``permits.record_inbound``): history the gate
    reads, e.g. for the one reply Reg F allows through a medium they opted out of."""
    require_role(actor, CALL_ROLES)
    refuse_control_characters(sender, record=permits.RECORD, field="sender")
    refuse_control_characters(notes, record=permits.RECORD, field="notes")
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    from parley.services.permits import record_inbound

    out = record_inbound(ctx, borrower_id, channel, sender=sender, loan_id=loan_id, spoke=spoke,
                         notes=notes.strip(), by=actor.id)
    return {"status": "ok", "attempt_id": out.attempt_id, "from_masked": out.to_masked}


def quote_plans(ctx: Context, actor: Actor, loan_id: str, *, monthly: str = "") -> dict[str, Any]:
    """Plans for this loan, optionally for what the borrower can pay per month (the
    agreements service's quote: every plan the policy allows, and why others do not fit)."""
    if actor.role != "borrower":
        require_role(actor, CASE_ROLES)
    check_loan_visible(ctx, actor, loan_id)
    monthly = (monthly or "").strip()
    out = agreements.quote(ctx, loan_id, monthly=monthly or None)
    return {"status": "ok", "monthly": monthly, **out}


def propose_plan(ctx: Context, actor: Actor, loan_id: str, plan: str, *,
                 monthly: str = "") -> dict[str, Any]:
    """Propose the quoted plan `plan` (its key) to the borrower, re-quoted now."""
    require_role(actor, CALL_ROLES)
    check_loan_visible(ctx, actor, loan_id)
    monthly = (monthly or "").strip()
    out = agreements.propose(ctx, loan_id, plan, proposed_by=actor.id, monthly=monthly or None)
    return {"status": "ok", "agreement": out}


def accept_plan(ctx: Context, actor: Actor, agreement_id: str) -> dict[str, Any]:
    """The borrower accepts a proposed agreement of their own (portal)."""
    if actor.role != "borrower":
        raise Forbidden("only the borrower accepts in the portal")
    with ctx.db.read() as conn:
        owner = _orm(conn).execute(
            select(Agreement.borrower_id).where(Agreement.id == agreement_id)
        ).scalar_one_or_none()
    if owner != actor.id:
        raise NotFound(f"unknown agreement {agreement_id!r}")
    out = agreements.accept(ctx, agreement_id, channel="portal", accepted_by=actor.id)
    return {"status": "ok", "agreement": out}


def choose_plan(ctx: Context, actor: Actor, loan_id: str, plan: str, *,
                monthly: str = "") -> dict[str, Any]:
    """Self-service in the portal: the borrower picks a quoted plan; it is proposed in their name
    and, unless the policy wants a supervisor's approval first, accepted at once (and so in
    force: collection contact about the debt stops)."""
    if actor.role != "borrower":
        raise Forbidden("borrowers only")
    check_loan_visible(ctx, actor, loan_id)
    monthly = (monthly or "").strip()
    proposed = agreements.propose(ctx, loan_id, plan, proposed_by=actor.id, monthly=monthly or None)
    if proposed.get("needs_approval"):
        return {"status": "needs_approval", "agreement": proposed}
    out = agreements.accept(ctx, proposed["id"], channel="portal", accepted_by=actor.id)
    return {"status": "ok", "agreement": out}


def _plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value


# --- the borrower's own view -----------------------------------------------------------------


def borrower_overview(ctx: Context, actor: Actor) -> dict[str, Any]:
    """What I owe and why, my agreements, every contact made to me (with who: name and badge),
    my holds, preferences, opt-outs and complaints."""
    if actor.role != "borrower":
        raise Forbidden("borrowers only")
    today = ctx.today()
    with ctx.db.read() as conn:
        b = _orm(conn).execute(select(Borrower).where(Borrower.id == actor.id)).scalars().first()
        if b is None:
            raise NotFound("unknown borrower")
        loans = _orm(conn).execute(
            select(Loan).where(Loan.borrower_id == b.id).order_by(Loan.disbursed_on)
        ).scalars().all()
        loan_views = []
        for loan in loans:
            v = _loan_summary(conn, loan, today)
            v["schedule"] = _schedule(conn, loan)
            loan_views.append(v)
        opt_outs = _orm(conn).execute(
            select(OptOut).where(
                OptOut.borrower_id == b.id, OptOut.revoked_at.is_(None),
                OptOut.third_party_id.is_(None),
            )
        ).scalars().all()
        prefs = _orm(conn).execute(
            select(ContactPreference).where(
                ContactPreference.borrower_id == b.id, ContactPreference.revoked_at.is_(None)
            )
        ).scalars().all()
        complaints = _orm(conn).execute(
            select(Complaint).where(Complaint.borrower_id == b.id).order_by(Complaint.filed_at.desc())
        ).scalars().all()
        contacts = [
            c for c in _contacts(conn, b.id, None) if c["person_role"] == "borrower"
        ]
        return {
            "borrower": {"id": b.id, "name": b.name, "language": b.preferred_language,
                         "phones": _phones(conn, b.id)},
            "loans": loan_views,
            "agreements": _agreements(conn, b.id, [ln.id for ln in loans]),
            "contacts": contacts,
            "holds": [h for h in _holds(conn, b.id) if h["active"]],
            "opt_outs": sorted({o.channel for o in opt_outs}),
            "preferences": [{"kind": p.kind, "params": _json(p.params)} for p in prefs],
            "complaints": [
                {"id": c.id, "category": c.category, "status": c.status, "filed_at": c.filed_at,
                 "resolve_due_at": c.resolve_due_at, "outcome": c.outcome}
                for c in complaints
            ],
        }


def _borrowers_only(actor: Actor) -> None:
    if actor.role != "borrower":
        raise Forbidden("borrowers only")


def _checked_opt_outs(channels: set[str]) -> set[str]:
    bad = sorted(set(channels) - set(OPT_OUT_CHANNELS))
    if bad:
        raise InvalidInput(f"unknown channel {bad[0]!r}", record="preferences", field="opt_out")
    return set(channels)


_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def _checked_quiet_window(start: str, end: str) -> tuple[str, str]:
    if start and not _HHMM.fullmatch(start):
        raise InvalidInput("use HH:MM", record="preferences", field="quiet_from")
    if start and not _HHMM.fullmatch(end or ""):
        raise InvalidInput("use HH:MM", record="preferences", field="quiet_to")
    return start, end


def _write_opt_outs(ctx: Context, conn: Connection, actor: Actor, channels: set[str],
                    now: datetime) -> None:
    """Inside the caller's transaction, with the borrower locked; `channels` already checked."""
    current = {
        o.channel: o.id
        for o in _orm(conn).execute(
            select(OptOut).where(
                OptOut.borrower_id == actor.id, OptOut.revoked_at.is_(None),
                OptOut.third_party_id.is_(None), OptOut.address_index.is_(None),
            )
        ).scalars()
    }
    for ch in sorted(set(channels) - set(current)):
        conn.execute(insert(OptOut).values(borrower_id=actor.id, channel=ch, created_at=now))
    for ch in sorted(set(current) - set(channels)):
        conn.execute(update(OptOut).where(OptOut.id == current[ch]).values(revoked_at=now))
    audit.append_for_borrower(ctx, conn, actor.id, "preferences.opt_out",
                              {"channels": sorted(channels)}, actor=actor.id, at=now)


def _write_quiet_window(ctx: Context, conn: Connection, actor: Actor, start: str, end: str,
                        now: datetime) -> None:
    """Inside the caller's transaction, with the borrower locked; the window already checked."""
    conn.execute(
        update(ContactPreference)
        .where(
            and_(
                ContactPreference.borrower_id == actor.id,
                ContactPreference.kind == "inconvenient_window",
                ContactPreference.revoked_at.is_(None),
            )
        )
        .values(revoked_at=now)
    )
    if start:
        conn.execute(
            insert(ContactPreference).values(
                borrower_id=actor.id, kind="inconvenient_window",
                params=json.dumps({"from": start, "to": end}, sort_keys=True), created_at=now,
            )
        )
    audit.append_for_borrower(ctx, conn, actor.id, "preferences.quiet_window",
                              {"from": start, "to": end}, actor=actor.id, at=now)


def set_opt_outs(ctx: Context, actor: Actor, channels: set[str]) -> list[str]:
    """The borrower's channel opt-outs become exactly `channels` (revoking the others).
    Recorded on the borrower's audit chain; governs every gate decision from now on."""
    _borrowers_only(actor)
    channels = _checked_opt_outs(channels)
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        lock_borrower(conn, actor.id)
        _write_opt_outs(ctx, conn, actor, channels, now)
    return sorted(channels)


def set_quiet_window(ctx: Context, actor: Actor, start: str, end: str) -> None:
    """A stated inconvenient window (local time, e.g. 12:00–14:00); empty start clears it."""
    _borrowers_only(actor)
    start, end = _checked_quiet_window(start, end)
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        lock_borrower(conn, actor.id)
        _write_quiet_window(ctx, conn, actor, start, end, now)


def set_preferences(ctx: Context, actor: Actor, *, opt_outs: set[str], quiet_from: str,
                    quiet_to: str) -> list[str]:
    """The portal's preferences form: the opt-outs (as `set_opt_outs`) and the inconvenient
    window (as `set_quiet_window`) checked together and written in one transaction, so a bad
    window saves no opt-out either. Returns the opt-outs now in force."""
    _borrowers_only(actor)
    channels = _checked_opt_outs(opt_outs)
    start, end = _checked_quiet_window(quiet_from, quiet_to)
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        lock_borrower(conn, actor.id)
        _write_opt_outs(ctx, conn, actor, channels, now)
        _write_quiet_window(ctx, conn, actor, start, end, now)
    return sorted(channels)


# --- payments through the API ----------------------------------------------------------------


def record_payment(ctx: Context, actor: Actor, *, payment_id: str, loan_id: str,
                   paid_at: datetime, amount: str) -> dict[str, Any]:
    """Post a payment given as a decimal string in the loan's currency (exactly once)."""
    from parley.core.money import MoneyError, parse_minor
    from parley.services.payments import post_payment

    require_role(actor, frozenset({"administrator", "team_lead"}))
    with ctx.db.read() as conn:
        currency = _load_loan(conn, actor, loan_id).currency
    try:
        minor = parse_minor(amount, currency)
    except MoneyError as exc:
        raise InvalidInput(str(exc), record="payment", field="amount") from None
    posted = post_payment(ctx, payment_id, loan_id, paid_at, minor, source="api")
    return {
        "payment_id": posted.payment_id,
        "loan_id": posted.loan_id,
        "amount": _money(posted.amount, currency),
        "paid_on": posted.paid_on.isoformat(),
        "already_posted": posted.already_posted,
        "allocation": [
            {"installment": line.number, "component": line.component.value,
             "amount": _money(line.amount, currency)}
            for line in posted.allocation.lines
        ],
        "credit": _money(posted.allocation.credit, currency),
    }


# --- the compliance desk ---------------------------------------------------------------------


def denials_by_rule(ctx: Context, actor: Actor, *, days: int = 30) -> list[dict[str, Any]]:
    """Contacts the gate denied in the last `days` days, grouped by the deciding rule, with
    the channels and collectors involved (decision_reason rows, effect 'deny')."""
    from datetime import timedelta

    from sqlalchemy import func

    from parley.store.models.contacts import DecisionReason

    require_role(actor, COMPLIANCE_ROLES)
    if not 1 <= days <= 3660:
        raise InvalidInput("must be 1..3660", record="query", field="days")
    since = ctx.clock.now() - timedelta(days=days)
    dr = DecisionReason
    with ctx.db.read() as conn:
        rows = _orm(conn).execute(
            select(dr.rule_id, dr.channel, func.count(), func.count(func.distinct(dr.borrower_id)),
                   func.max(dr.at))
            .where(dr.effect == "deny", dr.at >= since)
            .group_by(dr.rule_id, dr.channel)
            .order_by(dr.rule_id, dr.channel)
        ).all()
        collectors = _orm(conn).execute(
            select(dr.rule_id, dr.collector_id, func.count())
            .where(dr.effect == "deny", dr.at >= since, dr.collector_id.is_not(None))
            .group_by(dr.rule_id, dr.collector_id)
        ).all()
    grouped: dict[str, dict[str, Any]] = {}
    for rule_id, channel, count, borrowers, last in rows:
        g = grouped.setdefault(rule_id, {"rule_id": rule_id, "total": 0, "borrowers": 0,
                                         "channels": {}, "collectors": {}, "last_at": last})
        g["total"] += count
        g["borrowers"] = max(g["borrowers"], borrowers)
        g["channels"][channel] = count
        g["last_at"] = max(g["last_at"], last)
    for rule_id, collector_id, count in collectors:
        if rule_id in grouped:
            grouped[rule_id]["collectors"][collector_id] = count
    return sorted(grouped.values(), key=lambda g: (-g["total"], g["rule_id"]))


def packs_in_force(actor: Actor) -> list[dict[str, Any]]:
    """Every rule pack shipped, with its version and rules (id, kind, citation, provisional)."""
    from parley.services.gate_check import available_packs, load_pack

    require_role(actor, COMPLIANCE_ROLES | frozenset({"strategy_manager", "team_lead"}))
    out = []
    for pack_id in available_packs():
        try:
            pack = load_pack(pack_id)
        except InvalidInput as exc:
            out.append({"id": pack_id, "error": str(exc), "rules": []})
            continue
        out.append(
            {
                "id": pack.id,
                "name": pack.name,
                "version": pack.version,
                "extends": pack.extends,
                "rules": [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "messages": dict(r.messages),
                        "citation": _plain(r.citation),
                        "provisional": bool(getattr(r, "provisional", False)),
                    }
                    for r in pack.rules
                ],
            }
        )
    return out


def verify_audit_log(ctx: Context, actor: Actor) -> dict[str, Any]:
    """Run the audit chain verification (every chain end to end)."""
    require_role(actor, COMPLIANCE_ROLES)
    report = audit.verify_audit(ctx)
    return {
        "status": "ok",
        "ok": report.ok,
        "entries_checked": report.entries_checked,
        "problems": [p._asdict() for p in report.problems[:100]],
    }


def staff_directory(ctx: Context, actor: Actor, roles: frozenset[str]) -> list[dict[str, str]]:
    """Staff with one of `roles` (for assignment pickers)."""
    require_role(actor, COMPLIANCE_ROLES)
    with ctx.db.read() as conn:
        rows = _orm(conn).execute(
            select(StaffUser.id, StaffUser.display_name, StaffUser.role)
            .where(StaffUser.role.in_(sorted(roles)), StaffUser.active.is_(True))
            .order_by(StaffUser.display_name)
        ).all()
    return [{"id": r.id, "name": r.display_name, "role": r.role} for r in rows]


def click_to_call(ctx: Context, actor: Actor, loan_id: str, phone_id: int,
                  dialer: Callable[[str, dict[str, Any]], str], *, lang: str = "en",
                  idempotency_key: str | None = None) -> dict[str, Any]:
    """The click-to-call hook. The gate decides at this moment, in the transaction that records
    the call attempt; only an allowed call is handed to the dialer. The number is decrypted on
    the server and never shown to the collector."""
    require_role(actor, CALL_ROLES)
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    req = _permit_request(ctx, actor, borrower_id, loan_id, phone_id,
                          idempotency_key=idempotency_key)
    out = _permit_dict(permits.request_permit(ctx, req), lang)
    if out["allowed"]:
        out["call_ref"] = dialer(req.to, {"loan_id": loan_id, "collector_id": actor.id,
                                          "attempt_id": out["attempt_id"]})
    return out


# --- 面谈 and field visits (the appointments service) -----------------------------------------


APPOINTMENT_KINDS = ("interview_phone", "interview_video", "interview_in_person", "field_visit")


def colleagues(ctx: Context, actor: Actor) -> list[dict[str, str]]:
    """Collectors who may attend a visit with this actor: the same agency, or in-house."""
    require_role(actor, CALL_ROLES)
    q = select(StaffUser.id, StaffUser.display_name, StaffUser.badge_number).where(
        StaffUser.active.is_(True), StaffUser.id != actor.id,
        StaffUser.role.in_(("collector", "agency_collector", "team_lead")),
    )
    q = q.where(StaffUser.agency_id == actor.agency_id) if actor.agency_id else q.where(
        StaffUser.agency_id.is_(None))
    with ctx.db.read() as conn:
        rows = _orm(conn).execute(q.order_by(StaffUser.display_name)).all()
    return [{"id": r.id, "name": r.display_name, "badge": r.badge_number or ""} for r in rows]


def book_visit(ctx: Context, actor: Actor, loan_id: str, *, kind: str, local_time: str,
               place: str = "", with_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """Book a 面谈 or a field visit on this case, led by the actor. local_time: 'YYYY-MM-DDTHH:MM'
    in the lender's business zone (what a datetime-local field sends)."""
    require_role(actor, CALL_ROLES)
    refuse_control_characters(place, record="appointment", field="place")
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    try:
        at = datetime.fromisoformat(local_time)
    except ValueError:
        raise InvalidInput("use YYYY-MM-DDTHH:MM", record="appointment", field="scheduled_at") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ctx.business_zone)
    allowed = {c["id"] for c in colleagues(ctx, actor)}
    others = tuple(i for i in with_ids if i)
    if any(i not in allowed for i in others):
        raise InvalidInput("not a colleague who may attend", record="appointment",
                           field="collector_ids")
    view = appointments.book_appointment(
        ctx, borrower_id, kind, at, collector_ids=(actor.id, *others), place=place,
        loan_id=loan_id, by=actor.id,
    )
    return {"status": "ok", "appointment": _plain(view)}


def visits(ctx: Context, actor: Actor, loan_id: str) -> list[dict[str, Any]]:
    borrower_id = check_loan_visible(ctx, actor, loan_id)
    return [_plain(v) for v in appointments.list_appointments(ctx, borrower_id=borrower_id)
            if v.loan_id in (None, loan_id) or not actor.agency_id]


# --- the desk's measures ---------------------------------------------------------------------


_SLOT_COUNTS = {
    "sqlite": "SELECT channel, strftime('%Y-%m-%d %H:', at) || printf('%02d', CAST(strftime('%M', at) AS INTEGER) / 15 * 15) "
              "AS slot, COUNT(*) FROM contact_attempt WHERE at >= :since GROUP BY channel, slot",
    "postgresql": "SELECT channel, date_trunc('hour', at AT TIME ZONE 'UTC') + "
                  "floor(extract(minute FROM at AT TIME ZONE 'UTC') / 15) * interval '15 minutes' AS slot, "
                  "COUNT(*) FROM contact_attempt WHERE at >= :since GROUP BY channel, slot",
}


def _payments_with_bucket_at_payment(paid: Any) -> Any:
    """`paid` (loan_id, currency, amount, paid_on) with `bucket`: the loan's bucket at the end of
    the day before the payment took effect, i.e. the bucket it was in when it was paid (a
    payment that cures a loan must count for the bucket it was cured from, not for M0).

    Read from the bucket history the daily snapshot keeps (`bucket_change`, one row per
    change): the bucket entered by the latest change before `paid_on`; failing that, the bucket
    left by the first change on or after it (the snapshot only writes a change row, so a loan
    whose history starts in the first bucket was in that bucket until it moved). When no
    snapshot covers the date at all - the loan's history starts after the payment, or there
    is none - this falls back to the loan's current bucket (`loan_delinquency`), and to NULL
    (shown as '-') for a loan never snapshotted. One correlated look-up per payment in the
    window, on the (loan_id) index of bucket_change.
    """
    from parley.store.models.loanbook import BucketChange

    bc = BucketChange
    before = (select(bc.to_bucket)
              .where(bc.loan_id == paid.c.loan_id, bc.changed_on < paid.c.paid_on)
              .order_by(bc.changed_on.desc(), bc.id.desc()).limit(1)
              .correlate(paid).scalar_subquery())
    after = (select(bc.from_bucket)
             .where(bc.loan_id == paid.c.loan_id, bc.changed_on >= paid.c.paid_on)
             .order_by(bc.changed_on, bc.id).limit(1)
             .correlate(paid).scalar_subquery())
    current = (select(LoanDelinquency.bucket).where(LoanDelinquency.loan_id == paid.c.loan_id)
               .correlate(paid).scalar_subquery())
    from sqlalchemy import func

    return (select(paid.c.loan_id, paid.c.currency, paid.c.amount,
                   func.coalesce(before, after, current).label("bucket"))
            .select_from(paid).subquery())


def desk_metrics(ctx: Context, actor: Actor, *, days: int = 14) -> dict[str, Any]:
    """What the compliance desk charts, over the last `days` days: contacts per day by channel,
    the right-party contact rate of calls, promises kept, complaints per 10,000 contacts, and
    each collector's quality beside their results (denials and complaints next to contacts and
    kept agreements), so nobody is rewarded for pressure.

    Counts are grouped in SQL; quarter-hour counts are assigned to business dates here.
    """
    from collections import Counter, defaultdict
    from datetime import timedelta

    from sqlalchemy import case, func

    from parley.store.models.contacts import DecisionReason
    from parley.store.models.loanbook import Payment
    from parley.store.models.web import ComplaintEvidence

    require_role(actor, COMPLIANCE_ROLES)
    if not 1 <= days <= 366:
        raise InvalidInput("must be 1..366", record="query", field="days")
    now = ctx.clock.now()
    since = now - timedelta(days=days)
    ca = ContactAttempt
    zone = ctx.business_zone
    with ctx.db.read() as conn:
        s = _orm(conn)
        # Counted in SQL per channel and UTC quarter-hour (fine enough for every zone offset,
        # incl. +05:30 and +05:45); only those few rows are moved to business dates here.
        per_slot = conn.execute(text(_SLOT_COUNTS[conn.dialect.name]), {"since": db_datetime(conn, since)}).all()
        calls = dict(s.execute(
            select(ca.result, func.count()).where(ca.at >= since, ca.channel == "call",
                                                  ca.result.is_not(None)).group_by(ca.result)
        ).all())
        kept_broken = dict(s.execute(
            select(Agreement.status, func.count())
            .where(Agreement.status.in_(("kept", "broken")),
                   func.coalesce(Agreement.ended_at, Agreement.proposed_at) >= since)
            .group_by(Agreement.status)
        ).all())
        complaints_n = s.execute(
            select(func.count()).select_from(Complaint).where(Complaint.filed_at >= since)
        ).scalar_one()
        by_collector = s.execute(
            select(ca.collector_id, func.count(),
                   func.sum(case((ca.result == "conversation", 1), else_=0)))
            .where(ca.at >= since, ca.collector_id.is_not(None)).group_by(ca.collector_id)
        ).all()
        denials = dict(s.execute(
            select(DecisionReason.collector_id, func.count(func.distinct(DecisionReason.audit_id)))
            .where(DecisionReason.at >= since, DecisionReason.effect == "deny",
                   DecisionReason.collector_id.is_not(None))
            .group_by(DecisionReason.collector_id)
        ).all())
        complained = dict(s.execute(
            select(ca.collector_id, func.count(func.distinct(ComplaintEvidence.complaint_id)))
            .join(ca, ca.id == ComplaintEvidence.contact_attempt_id)
            .where(ComplaintEvidence.added_at >= since, ca.collector_id.is_not(None))
            .group_by(ca.collector_id)
        ).all())
        kept_by = dict(s.execute(
            select(Agreement.proposed_by, func.count())
            .where(Agreement.status == "kept",
                   func.coalesce(Agreement.ended_at, Agreement.proposed_at) >= since)
            .group_by(Agreement.proposed_by)
        ).all())
        names = dict(s.execute(select(StaffUser.id, StaffUser.display_name)).all())
        paid = (select(Payment.loan_id, Payment.currency, Payment.amount, Payment.paid_on)
                .where(Payment.paid_at >= since, Payment.reversed_at.is_(None)).subquery())
        bucketed = _payments_with_bucket_at_payment(paid)
        by_bucket = s.execute(
            select(bucketed.c.bucket, bucketed.c.currency,
                   func.sum(bucketed.c.amount), func.count(func.distinct(bucketed.c.loan_id)))
            .group_by(bucketed.c.bucket, bucketed.c.currency)
        ).all()
        arms = (select(ContactQueueItem.loan_id, ContactQueueItem.strategy_id, ContactQueueItem.arm)
                .where(ContactQueueItem.created_at >= since, ContactQueueItem.loan_id.is_not(None))
                .distinct().subquery())
        by_arm = s.execute(
            select(arms.c.strategy_id, arms.c.arm, paid.c.currency, func.sum(paid.c.amount),
                   func.count(func.distinct(paid.c.loan_id)))
            .select_from(paid).join(arms, arms.c.loan_id == paid.c.loan_id)
            .group_by(arms.c.strategy_id, arms.c.arm, paid.c.currency)
        ).all()
    daily: dict[str, Counter[str]] = defaultdict(Counter)
    contacts_total = 0
    for channel, slot, n in per_slot:
        at = (slot if isinstance(slot, datetime) else datetime.fromisoformat(slot)).replace(tzinfo=UTC)
        daily[at.astimezone(zone).date().isoformat()][channel] += int(n)
        contacts_total += int(n)
    call_total = sum(calls.values())
    decided = kept_broken.get("kept", 0) + kept_broken.get("broken", 0)
    collectors = sorted(
        (
            {
                "id": cid,
                "name": names.get(cid, cid),
                "contacts": int(n),
                "conversations": int(conv or 0),
                "denials": int(denials.get(cid, 0)),
                "complaints": int(complained.get(cid, 0)),
                "kept_agreements": int(kept_by.get(cid, 0)),
            }
            for cid, n, conv in by_collector
        ),
        key=lambda r: (-r["complaints"], -r["denials"], r["name"]),
    )
    peak = max((sum(c.values()) for c in daily.values()), default=0)
    bucket_rows = sorted(by_bucket, key=lambda r: (r[0] or "-", r[1]))
    arm_rows = sorted(by_arm, key=lambda r: (str(r[0]), str(r[1]), r[2]))
    return {
        "days": days,
        # The window as business dates, worked out here from the one `now` the counts used, so
        # a page drawing it cannot disagree with them (e.g. when midnight passes mid-request).
        "first_day": since.astimezone(zone).date(),
        "last_day": now.astimezone(zone).date(),
        "contacts_total": contacts_total,
        "per_day": [
            {"day": d, "channels": dict(sorted(c.items())), "total": sum(c.values())}
            for d, c in sorted(daily.items())
        ],
        "peak": peak,
        "right_party_rate": (calls.get("conversation", 0) / call_total) if call_total else None,
        "calls_with_outcome": call_total,
        "promises_kept_rate": (kept_broken.get("kept", 0) / decided) if decided else None,
        "agreements_decided": decided,
        "complaints": int(complaints_n),
        "complaints_per_10k": (complaints_n * 10_000 / contacts_total) if contacts_total else None,
        "collectors": collectors,
        # Recovery: payments received in the window (not reversed), by the bucket the loan
        # was in when each was paid (see _payments_with_bucket_at_payment), and by the
        # strategy arm that planned contact for the loan in the window.
        # amount: text for the tables; amount_minor: integer minor units for the charts.
        "recovery_by_bucket": [
            {"bucket": b or "-", "currency": cur, "amount": _money(int(total), cur),
             "amount_minor": int(total), "loans": int(n)}
            for b, cur, total, n in bucket_rows
        ],
        "recovery_by_arm": [
            {"strategy": st or "-", "arm": arm or "-", "currency": cur,
             "amount": _money(int(total), cur), "amount_minor": int(total), "loans": int(n)}
            for st, arm, cur, total, n in arm_rows
        ],
    }



# --- agreement receipts ----------------------------------------------------------------------


def agreement_receipt_pdf(ctx: Context, actor: Actor, agreement_id: str, lang: str) -> bytes:
    """The receipt PDF of an agreement the actor may see (the borrower's own; staff through
    the loan's visibility). Anything else answers like a missing agreement."""
    with ctx.db.read() as conn:
        row = _orm(conn).execute(
            select(Agreement.borrower_id, Agreement.loan_id).where(Agreement.id == agreement_id)
        ).first()
        visible = row is not None and (
            row.borrower_id == actor.id if actor.role == "borrower"
            else actor.role in CASE_ROLES and _orm(conn).execute(
                select(Loan.id).where(Loan.id == row.loan_id, visible_loans(actor))).first() is not None
        )
    if not visible:
        raise NotFound(f"unknown agreement {agreement_id!r}")
    from parley.services.receipts import receipt_pdf

    return receipt_pdf(ctx, agreement_id, lang=lang)


def verify_receipt(ctx: Context, code: str) -> dict[str, Any]:
    """Public: is this receipt code genuine? Says nothing about who the borrower is."""
    from parley.services.receipts import verify_code

    return verify_code(ctx, code)


def agreement_view(ctx: Context, actor: Actor, agreement_id: str) -> dict[str, Any]:
    """One agreement (instalments, progress, who did what when) if the actor may see its loan."""
    _visible_agreement(ctx, actor, agreement_id)
    from parley.services.agreements import show

    return show(ctx, agreement_id)


def accept_recorded(ctx: Context, actor: Actor, agreement_id: str, *, channel: str,
                    recording_ref: str = "", code: str = "") -> dict[str, Any]:
    """Acceptance taken outside the portal: during a recorded call (by the collector, with the
    recording reference) or with the one-time code the borrower was sent."""
    require_role(actor, CALL_ROLES)
    _visible_agreement(ctx, actor, agreement_id)
    if channel not in ("call", "otp"):
        raise InvalidInput("use call or otp", record="acceptance", field="channel")
    from parley.services.agreements import accept

    return accept(ctx, agreement_id, channel=channel, accepted_by=actor.id if channel == "call" else None,
                  code=code or None, recording_ref=recording_ref or None)


def _visible_agreement(ctx: Context, actor: Actor, agreement_id: str) -> None:
    with ctx.db.read() as conn:
        loan_id = _orm(conn).execute(
            select(Agreement.loan_id).where(Agreement.id == agreement_id)).scalar_one_or_none()
        seen = loan_id is not None and _orm(conn).execute(
            select(Loan.id).where(Loan.id == loan_id, visible_loans(actor))).first() is not None
    if not seen:
        raise NotFound(f"unknown agreement {agreement_id!r}")
