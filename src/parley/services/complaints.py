"""Complaints (投诉): filed by borrowers (portal, the one-button "contacted after my agreement"),
by staff on their behalf, or through the API; acknowledged, assigned, resolved with an outcome.

Deadlines are business days in the lender's zone: by default acknowledge within 1 and resolve
within 15 (settings `complaint_ack_business_days` / `complaint_resolve_business_days` when
present). Business days come from the versioned calendar of the borrower's jurisdiction; for a
year with no calendar loaded, Saturdays and Sundays are the only days off — which can only
make a deadline earlier, never later.

A harassment complaint (and a "contacted after my agreement" one) places a
`complaint_investigation` hold on the borrower when the borrower's rule pack has a rule that
honours that hold, in the same transaction; resolving the complaint ends the hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session as OrmSession

from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.services.audit import append_for_borrower
from parley.services.auth import Actor
from parley.services.casework import (
    COMPLIANCE_ROLES,
    COMPLIANCE_WRITE_ROLES,
    refuse_control_characters,
    visible_loans,
)
from parley.services.context import Context
from parley.store.db import lock_borrower
from parley.store.models.agreements import Agreement
from parley.store.models.contacts import ContactAttempt, Hold
from parley.store.models.loanbook import Borrower, Loan
from parley.store.models.staff import StaffUser
from parley.store.models.web import Complaint, ComplaintEvidence

CATEGORIES = (
    "harassment",
    "contact_after_agreement",
    "third_party_contact",
    "unidentified_caller",
    "wrong_amount",
    "identity",
    "other",
)
HOLD_CATEGORIES = frozenset({"harassment", "contact_after_agreement", "third_party_contact"})
STATUSES = ("open", "acknowledged", "resolved", "rejected")
MAX_TEXT = 4000


def _orm(conn: Connection) -> OrmSession:
    """An ORM session on the caller's connection (joins its transaction), so reads can return
    entities; writes stay Core on the connection itself."""
    return OrmSession(bind=conn, autoflush=False)


@dataclass(frozen=True)
class DeadlinePolicy:
    acknowledge_business_days: int = 1
    resolve_business_days: int = 15

    @classmethod
    def from_settings(cls, settings: Any) -> DeadlinePolicy:
        return cls(
            settings.complaint_ack_business_days,
            settings.complaint_resolve_business_days,
        )


def add_business_days(start: date, days: int, is_working: Any) -> date:
    """The `days`-th business day after `start` (is_working(d) -> bool | None; None = unknown,
    treated as Monday–Friday)."""
    d = start
    left = days
    while left > 0:
        d += timedelta(days=1)
        known = is_working(d)
        working = known if known is not None else d.weekday() < 5
        if working:
            left -= 1
    return d


def _deadline(ctx: Context, conn: Connection, jurisdiction: str, filed_at: datetime,
              days: int) -> datetime:
    zone = ctx.business_zone
    local = filed_at.astimezone(zone).date()
    from parley.services.calendar import load_calendar

    cal = load_calendar(conn, jurisdiction, range(local.year, local.year + 2))
    day = add_business_days(local, days, cal.is_working_day)
    # The last second of that business day, local time.
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone).astimezone(filed_at.tzinfo)


def _pack_honours_complaint_hold(jurisdiction: str) -> bool:
    """Whether this complaint should place a hold: when the jurisdiction's pack has a rule that
    honours it. No pack for the jurisdiction must not stop a complaint being filed, so then
    the hold is placed (failing towards protecting the borrower). A pack that exists but is
    broken is not "no pack": that raises, and the complaint is not filed until it is fixed,
    rather than its hold being decided by a guess."""
    from parley.services.gate_check import UnknownPack, load_pack

    try:
        pack = load_pack(jurisdiction)
    except UnknownPack:
        return True
    return any(
        r.kind == "hold_blocks" and r.raw_params.get("hold") == "complaint_investigation"
        for r in pack.rules
    )


def file_complaint(
    ctx: Context,
    actor: Actor,
    *,
    borrower_id: str | None = None,
    category: str,
    description: str = "",
    loan_id: str | None = None,
    contact_ids: tuple[int, ...] = (),
    channel: str = "portal",
) -> str:
    """File a complaint; returns its id. Borrowers file for themselves; staff and API clients
    for a borrower whose loans they may see. Evidence must be the borrower's own contacts."""
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}", record="complaint", field="category")
    description = (description or "").strip()
    if len(description) > MAX_TEXT:
        raise InvalidInput(f"at most {MAX_TEXT} characters", record="complaint", field="description")
    refuse_control_characters(description, record="complaint", field="description")
    if actor.role == "borrower":
        borrower_id = actor.id
    if not borrower_id:
        raise InvalidInput("required", record="complaint", field="borrower_id")
    now = ctx.clock.now()
    policy = DeadlinePolicy.from_settings(ctx.settings)
    cid = f"c-{uuid.uuid4().hex[:12]}"
    with ctx.db.transaction() as conn:
        if actor.role != "borrower":
            seen = _orm(conn).execute(
                select(Loan.id).where(Loan.borrower_id == borrower_id, visible_loans(actor)).limit(1)
            ).first()
            if seen is None:
                raise NotFound(f"unknown borrower {borrower_id!r}")
        if not lock_borrower(conn, borrower_id):
            raise NotFound(f"unknown borrower {borrower_id!r}")
        if loan_id is not None:
            owner = _orm(conn).execute(select(Loan.borrower_id).where(Loan.id == loan_id)).scalar()
            if owner != borrower_id:
                raise InvalidInput("not a loan of this borrower", record="complaint", field="loan_id")
        jurisdiction = _orm(conn).execute(
            select(Borrower.jurisdiction).where(Borrower.id == borrower_id)
        ).scalar_one()
        ids = sorted(set(contact_ids))
        if ids:
            found = set(
                _orm(conn).execute(
                    select(ContactAttempt.id).where(
                        ContactAttempt.id.in_(ids), ContactAttempt.borrower_id == borrower_id
                    )
                ).scalars()
            )
            missing = [i for i in ids if i not in found]
            if missing:
                raise InvalidInput(f"unknown contact {missing[0]}", record="complaint",
                                   field="contact_ids")
        hold_id = None
        if category in HOLD_CATEGORIES and _pack_honours_complaint_hold(jurisdiction):
            res = conn.execute(
                insert(Hold).values(
                    borrower_id=borrower_id, loan_id=None, kind="complaint_investigation",
                    started_at=now, source="complaint", complaint_id=cid,
                    note=f"complaint {cid} ({category}) under investigation",
                    created_by=actor.id,
                )
            )
            hold_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(
            insert(Complaint).values(
                id=cid, borrower_id=borrower_id, loan_id=loan_id, category=category,
                channel=channel, description=description, status="open", filed_at=now,
                filed_by=actor.id,
                acknowledge_due_at=_deadline(ctx, conn, jurisdiction, now,
                                             policy.acknowledge_business_days),
                resolve_due_at=_deadline(ctx, conn, jurisdiction, now,
                                         policy.resolve_business_days),
                hold_id=hold_id,
            )
        )
        if ids:
            conn.execute(
                insert(ComplaintEvidence),
                [{"complaint_id": cid, "contact_attempt_id": i, "note": "", "added_at": now,
                  "added_by": actor.id} for i in ids],
            )
        append_for_borrower(
            ctx, conn, borrower_id, "complaint.filed",
            {"complaint": cid, "category": category, "evidence": ids, "hold": hold_id},
            actor=actor.id, at=now, subject=cid)
        from parley.services.webhooks import emit

        emit(conn, "complaint.filed", {"complaint_id": cid, "borrower_id": borrower_id,
                                       "loan_id": loan_id, "category": category,
                                       "channel": channel}, at=now)
    return cid


def contacted_after_agreement(ctx: Context, actor: Actor) -> str:
    """The one button: a complaint carrying, as evidence, every contact made to the borrower
    after the acceptance of an agreement (the earliest accepted one that is or was in force)."""
    if actor.role != "borrower":
        raise Forbidden("borrowers only")
    with ctx.db.read() as conn:
        since = _orm(conn).execute(
            select(func.min(Agreement.accepted_at)).where(
                Agreement.borrower_id == actor.id, Agreement.accepted_at.is_not(None),
                Agreement.status.in_(("accepted", "active", "kept", "broken")),
            )
        ).scalar()
        ids: tuple[int, ...] = ()
        if since is not None:
            ids = tuple(
                _orm(conn).execute(
                    select(ContactAttempt.id).where(
                        ContactAttempt.borrower_id == actor.id,
                        ContactAttempt.person_role == "borrower",
                        ContactAttempt.at > since,
                        ContactAttempt.initiated_by != "consumer",
                    ).order_by(ContactAttempt.at)
                ).scalars()
            )
    # No free text: the category says what happened and the evidence shows it, in any language.
    return file_complaint(ctx, actor, category="contact_after_agreement", description="",
                          contact_ids=ids, channel="portal")


def list_complaints(ctx: Context, actor: Actor, *, status: str | None = None,
                    limit: int = 200) -> list[dict[str, Any]]:
    """Complaints, soonest deadline first. Compliance roles see all; staff with cases see those
    of borrowers they may see; borrowers their own."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", record="query", field="status")
    now = ctx.clock.now()
    q = (
        select(Complaint, Borrower.name, StaffUser.display_name)
        .join(Borrower, Borrower.id == Complaint.borrower_id)
        .outerjoin(StaffUser, StaffUser.id == Complaint.assigned_to)
        .order_by(Complaint.resolve_due_at, Complaint.id)
        .limit(limit)
    )
    if status:
        q = q.where(Complaint.status == status)
    if actor.role == "borrower":
        q = q.where(Complaint.borrower_id == actor.id)
    elif actor.role not in COMPLIANCE_ROLES:
        q = q.where(Complaint.borrower_id.in_(select(Loan.borrower_id).where(visible_loans(actor))))
    with ctx.db.read() as conn:
        rows = _orm(conn).execute(q).all()
        evidence = _evidence_counts(conn, [c.id for c, _, _ in rows])
    return [_complaint_dict(c, name, assignee, evidence.get(c.id, 0), now) for c, name, assignee in rows]


def _evidence_counts(conn: Connection, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    return dict(
        _orm(conn).execute(
            select(ComplaintEvidence.complaint_id, func.count())
            .where(ComplaintEvidence.complaint_id.in_(ids))
            .group_by(ComplaintEvidence.complaint_id)
        ).all()
    )


def _complaint_dict(c: Any, borrower_name: str, assignee: str | None, evidence: int,
                    now: datetime) -> dict[str, Any]:
    open_ = c.status in ("open", "acknowledged")
    return {
        "id": c.id,
        "borrower_id": c.borrower_id,
        "borrower_name": borrower_name,
        "loan_id": c.loan_id,
        "category": c.category,
        "channel": c.channel,
        "description": c.description,
        "status": c.status,
        "filed_at": c.filed_at.isoformat(),
        "acknowledge_due_at": c.acknowledge_due_at.isoformat(),
        "resolve_due_at": c.resolve_due_at.isoformat(),
        "acknowledged_at": c.acknowledged_at.isoformat() if c.acknowledged_at else None,
        "resolved_at": c.resolved_at.isoformat() if c.resolved_at else None,
        "assigned_to": c.assigned_to,
        "assignee_name": assignee,
        "outcome": c.outcome,
        "hold_id": c.hold_id,
        "evidence_count": evidence,
        "acknowledge_overdue": c.acknowledged_at is None and open_ and now > c.acknowledge_due_at,
        "resolve_overdue": open_ and now > c.resolve_due_at,
    }


def get_complaint(ctx: Context, actor: Actor, complaint_id: str) -> dict[str, Any]:
    """One complaint with its evidence (the contact records themselves)."""
    return _one(ctx, actor, complaint_id)


def _one(ctx: Context, actor: Actor, complaint_id: str) -> dict[str, Any]:
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        row = _orm(conn).execute(
            select(Complaint, Borrower.name, StaffUser.display_name)
            .join(Borrower, Borrower.id == Complaint.borrower_id)
            .outerjoin(StaffUser, StaffUser.id == Complaint.assigned_to)
            .where(Complaint.id == complaint_id)
        ).first()
        if row is None or not _may_see(conn, actor, row[0].borrower_id):
            raise NotFound(f"unknown complaint {complaint_id!r}")
        c, name, assignee = row
        ev = _orm(conn).execute(
            select(ComplaintEvidence, ContactAttempt, StaffUser.display_name)
            .outerjoin(ContactAttempt, ContactAttempt.id == ComplaintEvidence.contact_attempt_id)
            .outerjoin(StaffUser, StaffUser.id == ContactAttempt.collector_id)
            .where(ComplaintEvidence.complaint_id == complaint_id)
            .order_by(ComplaintEvidence.id)
        ).all()
        out = _complaint_dict(c, name, assignee, len(ev), now)
        out["evidence"] = [
            {
                "id": e.id,
                "note": e.note,
                "contact": None if a is None else {
                    "id": a.id, "at": a.at.isoformat(), "channel": a.channel,
                    "to_masked": a.to_masked, "collector_id": a.collector_id,
                    "collector_name": cname, "badge": a.badge, "agency_id": a.agency_id,
                    "content": a.content, "result": a.result, "recording_ref": a.recording_ref,
                },
            }
            for e, a, cname in ev
        ]
        attached = {e.contact_attempt_id for e, _, _ in ev}
        out["contact_log"] = [
            {"id": a.id, "at": a.at.isoformat(), "channel": a.channel, "collector_name": cname,
             "badge": a.badge, "result": a.result}
            for a, cname in _orm(conn).execute(
                select(ContactAttempt, StaffUser.display_name)
                .outerjoin(StaffUser, StaffUser.id == ContactAttempt.collector_id)
                .where(ContactAttempt.borrower_id == c.borrower_id)
                .order_by(ContactAttempt.at.desc()).limit(200)
            )
            if a.id not in attached
        ] if actor.role in COMPLIANCE_ROLES else []
        return out


def _may_see(conn: Connection, actor: Actor, borrower_id: str) -> bool:
    if actor.role == "borrower":
        return actor.id == borrower_id
    if actor.role in COMPLIANCE_ROLES:
        return True
    return _orm(conn).execute(
        select(Loan.id).where(Loan.borrower_id == borrower_id, visible_loans(actor)).limit(1)
    ).first() is not None


def _update(ctx: Context, actor: Actor, complaint_id: str, kind: str, payload: dict[str, Any],
            change: Any) -> None:
    if actor.role not in COMPLIANCE_WRITE_ROLES:
        raise Forbidden("not allowed for your role")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        c = _orm(conn).execute(select(Complaint).where(Complaint.id == complaint_id)).scalars().first()
        if c is None:
            raise NotFound(f"unknown complaint {complaint_id!r}")
        lock_borrower(conn, c.borrower_id)
        values = change(conn, c, now)
        if values:
            conn.execute(update(Complaint).where(Complaint.id == complaint_id).values(**values))
        if kind == "complaint.resolved":
            from parley.services.webhooks import emit

            emit(conn, kind, {"complaint_id": complaint_id, "borrower_id": c.borrower_id,
                              "status": values.get("status")}, at=now)
        append_for_borrower(ctx, conn, c.borrower_id, kind, {"complaint": complaint_id, **payload},
                            actor=actor.id, at=now, subject=complaint_id)


def acknowledge(ctx: Context, actor: Actor, complaint_id: str) -> None:
    def change(_conn: Connection, c: Any, now: datetime) -> dict[str, Any]:
        if c.status != "open":
            raise Conflict(f"complaint is {c.status}, not open")
        return {"status": "acknowledged", "acknowledged_at": now}

    _update(ctx, actor, complaint_id, "complaint.acknowledged", {}, change)


def assign(ctx: Context, actor: Actor, complaint_id: str, staff_id: str) -> None:
    def change(conn: Connection, c: Any, _now: datetime) -> dict[str, Any]:
        if c.status in ("resolved", "rejected"):
            raise Conflict(f"complaint is {c.status}")
        role = _orm(conn).execute(select(StaffUser.role).where(StaffUser.id == staff_id)).scalar()
        if role not in COMPLIANCE_WRITE_ROLES:
            raise InvalidInput("not a compliance officer", record="complaint", field="staff_id")
        return {"assigned_to": staff_id}

    _update(ctx, actor, complaint_id, "complaint.assigned", {"to": staff_id}, change)


def resolve(ctx: Context, actor: Actor, complaint_id: str, outcome: str, *,
            upheld: bool = True) -> None:
    """Close a complaint with its outcome; ends its investigation hold."""
    outcome = (outcome or "").strip()
    if not outcome:
        raise InvalidInput("required", record="complaint", field="outcome")
    if len(outcome) > MAX_TEXT:
        raise InvalidInput(f"at most {MAX_TEXT} characters", record="complaint", field="outcome")
    refuse_control_characters(outcome, record="complaint", field="outcome")

    def change(conn: Connection, c: Any, now: datetime) -> dict[str, Any]:
        if c.status in ("resolved", "rejected"):
            raise Conflict(f"complaint is already {c.status}")
        conn.execute(
            update(Hold)
            .where(Hold.complaint_id == c.id, Hold.ended_at.is_(None))
            .values(ended_at=now)
        )
        return {
            "status": "resolved" if upheld else "rejected",
            "resolved_at": now,
            "acknowledged_at": c.acknowledged_at or now,
            "outcome": outcome,
        }

    _update(ctx, actor, complaint_id, "complaint.resolved", {"upheld": upheld, "outcome": outcome},
            change)


def add_evidence(ctx: Context, actor: Actor, complaint_id: str, *, contact_id: int | None = None,
                 note: str = "") -> None:
    if contact_id is None and not note.strip():
        raise InvalidInput("give a contact or a note", record="evidence", field="contact_id")
    refuse_control_characters(note, record="evidence", field="note")

    def change(conn: Connection, c: Any, now: datetime) -> dict[str, Any]:
        if contact_id is not None:
            owner = _orm(conn).execute(
                select(ContactAttempt.borrower_id).where(ContactAttempt.id == contact_id)
            ).scalar()
            if owner != c.borrower_id:
                raise InvalidInput(f"unknown contact {contact_id}", record="evidence",
                                   field="contact_id")
            dup = _orm(conn).execute(
                select(ComplaintEvidence.id).where(
                    ComplaintEvidence.complaint_id == c.id,
                    ComplaintEvidence.contact_attempt_id == contact_id,
                )
            ).first()
            if dup:
                return {}
        conn.execute(
            insert(ComplaintEvidence).values(
                complaint_id=c.id, contact_attempt_id=contact_id, note=note.strip(),
                added_at=now, added_by=actor.id,
            )
        )
        return {}

    _update(ctx, actor, complaint_id, "complaint.evidence", {"contact": contact_id}, change)
