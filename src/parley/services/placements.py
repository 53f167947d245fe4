"""Agency placements (委外) and legal referrals: what the daily run's ``agency`` and ``legal``
queue items do, and the same operations by hand.

The daily run writes ``agency_placement`` actions as queue items with channel ``agency`` (the
agency id in ``template_id``) and ``legal_referral`` actions with channel ``legal`` (the legal
queue in ``template_id``). They are tasks, not contacts, so no gate permit is asked; the worker
leases them with the contact items (same lease, same fencing token) and hands each to
``carry_out_task``, which, in **one transaction per item** under the borrower lock:

1. re-reads the item and checks the lease is still this worker's (``worker_id`` and
   ``lease_until``); a lost lease changes nothing (``skipped``);
2. checks the loan *now*, like the gate does at send time: an agreement that binds collection
   on the loan (the gate's own ``SQL_AGREEMENTS``) or an active hold covering it (borrower-wide
   or on this loan) → the item is ``cancelled`` with the reason and nothing is placed or
   referred; a loan with nothing overdue any more is ``cancelled`` too;
3. **agency**: sets ``loan.agency_id`` and opens an ``agency_placement`` row; a loan already
   placed with that agency is left as it is (no-op); one placed with another agency has that
   placement ended ("moved to agency …") first. **legal**: opens a ``legal_referral`` unless
   the loan already has an open one (no-op);
4. appends each change to the borrower's audit chain (``placement.started``,
   ``placement.ended``, ``legal_referral.opened``) and queues a webhook event of the same name
   (an outbox row, so the event exists exactly when the change committed);
5. marks the item ``done`` (or ``cancelled`` / ``dropped``) with its ``updated_at``, through the
   same lease fence — if the fence fails, the whole transaction rolls back.

So a worker killed anywhere loses nothing (the lease expires and the item is leased again) and
does nothing twice (the work and the mark commit together; ``queue_item_id`` is unique on both
tables as a last guard). Per item rather than set-based: each item appends hash-chained entries
to one borrower's audit log under that borrower's lock, which is sequential per borrower anyway;
placements recur every 30–90 days per loan, so the volumes are small; and one bad item then
never holds back or rolls back the others.

By hand: ``place_loan``, ``recall_placement`` (ends the active placement and clears
``loan.agency_id``), ``refer_to_legal`` and ``close_referral``. Case views: ``loan_placements``,
``loan_referrals`` and ``loan_referral`` read on the caller's connection: casework reads them
inside the case's own transaction, after its access check (``casework.placements_and_referrals``
is the read for one loan under those rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from parley.errors import Conflict, InvalidInput, NotFound
from parley.services.audit import append_for_borrower
from parley.services.context import Context
from parley.services.delinquency import loan_days_past_due
from parley.services.facts import NOTICE_WAIT, SQL_AGREEMENTS, SQL_HOLDS
from parley.store.db import lock_borrower
from parley.store.models.base import table_of
from parley.store.models.loanbook import Loan
from parley.store.models.placements import AgencyPlacement, LegalReferral
from parley.store.models.queue import ContactQueueItem
from parley.store.models.staff import StaffUser

AGENCY_CHANNEL = "agency"
LEGAL_CHANNEL = "legal"
TASK_CHANNELS = (AGENCY_CHANNEL, LEGAL_CHANNEL)
DEFAULT_LEGAL_QUEUE = "legal"
SYSTEM = "system"

_q = table_of(ContactQueueItem)
_staff = table_of(StaffUser)
_loan = table_of(Loan)
_pl = table_of(AgencyPlacement)
_lr = table_of(LegalReferral)


@dataclass(frozen=True, slots=True)
class Placement:
    """One placement. ended_at None = active. placed_by / ended_by: staff id or 'system';
    queue_item_id: the strategy's queue item (None when placed by hand)."""

    id: int
    loan_id: str
    borrower_id: str
    agency_id: str
    placed_at: datetime
    placed_by: str
    reason: str
    queue_item_id: int | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Referral:
    """One legal referral. status open | closed; closed_* None while open."""

    id: int
    loan_id: str
    borrower_id: str
    queue: str
    status: str
    referred_at: datetime
    referred_by: str
    reason: str
    queue_item_id: int | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """changed: False when the loan was already placed with that agency (a no-op).
    placement: the active placement (None only for a no-op on a placement imported with the
    loan, which has no history row). ended: the placement this one replaced, if any."""

    changed: bool
    placement: Placement | None
    ended: Placement | None


@dataclass(frozen=True, slots=True)
class Recalled:
    """loan_id, the agency it was placed with, the ended placement (None when the placement
    came with the loan import and has no history row) and when."""

    loan_id: str
    agency_id: str
    placement: Placement | None
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What ``carry_out_task`` did with a leased item. status: done | cancelled (agreement,
    hold, nothing overdue) | dropped (the item names no loan or target) | skipped (the lease
    was lost: nothing changed). record_id: the placement or referral written or found."""

    item_id: int
    status: str
    reason: str = ""
    record_id: int | None = None


class _LostLease(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Shared checks and writes (caller holds the borrower lock)
# --------------------------------------------------------------------------------------------


def _placement(row: Any) -> Placement:
    return Placement(int(row.id), row.loan_id, row.borrower_id, row.agency_id, row.placed_at,
                     row.placed_by, row.reason or "", row.queue_item_id, row.ended_at,
                     row.ended_by, row.end_reason)


def _referral(row: Any) -> Referral:
    return Referral(int(row.id), row.loan_id, row.borrower_id, row.queue, row.status,
                    row.referred_at, row.referred_by, row.reason or "", row.queue_item_id,
                    row.closed_at, row.closed_by, row.close_reason)


def why_blocked(conn: Connection, borrower_id: str, loan_id: str, now: datetime) -> str | None:
    """Why the loan may not be placed or referred now (an agreement binding collection on it,
    or an active hold covering it — the same conditions the daily run and the gate use); None
    when nothing stands in the way."""
    for agreed_loan, status, _starts, _ends in SQL_AGREEMENTS.rows(
            conn, {"bid": borrower_id, "notice_cutoff": now - NOTICE_WAIT}):
        if agreed_loan == loan_id:
            return f"agreement_active: an agreement ({status}) binds collection on loan {loan_id}"
    for kind, held_loan, _started in SQL_HOLDS.rows(conn, {"bid": borrower_id}):
        if held_loan is None or held_loan == loan_id:
            scope = "the borrower" if held_loan is None else f"loan {loan_id}"
            return f"hold: an active {kind} hold covers {scope}"
    return None


def _overdue(ctx: Context, conn: Connection, loan_id: str) -> bool:
    """Delinquent today by the same definition as everywhere (pauses and grace count)."""
    return loan_days_past_due(ctx, conn, loan_id, ctx.today()) > 0


def _event(conn: Connection, kind: str, event_id: str, data: dict[str, Any], now: datetime) -> None:
    from parley.services.webhooks import emit

    emit(conn, kind, data, at=now, event_id=event_id)


def _active_placement(conn: Connection, loan_id: str) -> Row[Any] | None:
    return conn.execute(select(_pl).where(_pl.c.loan_id == loan_id, _pl.c.ended_at.is_(None))
                        .order_by(_pl.c.id.desc()).limit(1)).first()


def _end_placement(ctx: Context, conn: Connection, row: Any, *, by: str, reason: str,
                   now: datetime) -> Placement:
    conn.execute(update(AgencyPlacement).where(_pl.c.id == row.id, _pl.c.ended_at.is_(None))
                 .values(ended_at=now, ended_by=by, end_reason=reason))
    ended = _placement(conn.execute(select(_pl).where(_pl.c.id == row.id)).one())
    append_for_borrower(ctx, conn, row.borrower_id, "placement.ended",
                        {"placement": ended.id, "agency": ended.agency_id,
                         "placed_at": ended.placed_at, "reason": reason},
                        actor=by, at=now, subject=row.loan_id)
    _event(conn, "placement.ended", f"placement-{ended.id}-ended",
           {"placement_id": ended.id, "loan_id": ended.loan_id, "borrower_id": ended.borrower_id,
            "agency_id": ended.agency_id, "reason": reason}, now)
    return ended


# Collector tasks: worked from a collector's queue (the worker's COLLECTOR_CHANNELS).
_TASK_CHANNELS_OF_COLLECTORS = ("call", "interview", "visit")


def _cancel_others_tasks(conn: Connection, loan: Any, agency_id: str | None, now: datetime) -> None:
    """The loan now belongs to ``agency_id`` (None = back in house): open collector tasks on it
    assigned to anyone else are cancelled in the same transaction — they could no longer see
    the case, yet the tasks would hold their capacity and, for in-house collectors, keep them
    calling about a debt handed over. Unassigned tasks stay for the next run to assign."""
    team = select(_staff.c.id).where(
        _staff.c.agency_id == agency_id if agency_id is not None else _staff.c.agency_id.is_(None))
    conn.execute(update(ContactQueueItem).where(
        _q.c.borrower_id == loan.borrower_id, _q.c.loan_id == loan.id,
        _q.c.status == "pending", _q.c.channel.in_(_TASK_CHANNELS_OF_COLLECTORS),
        _q.c.collector_id.is_not(None), _q.c.collector_id.not_in(team)).values(
        status="cancelled", updated_at=now,
        last_reason=f"loan {loan.id} placed with agency {agency_id}" if agency_id is not None
        else f"loan {loan.id} recalled from its agency"))


def _place(ctx: Context, conn: Connection, loan: Any, agency_id: str, *, by: str, reason: str,
           queue_item_id: int | None, now: datetime) -> PlaceResult:
    current = _active_placement(conn, loan.id)
    if loan.agency_id == agency_id:
        return PlaceResult(False, _placement(current) if current is not None else None, None)
    ended = None
    if current is not None:
        ended = _end_placement(ctx, conn, current, by=by, reason=f"moved to agency {agency_id}",
                               now=now)
    pid = int(conn.execute(insert(AgencyPlacement).returning(_pl.c.id).values(
        loan_id=loan.id, borrower_id=loan.borrower_id, agency_id=agency_id, placed_at=now,
        placed_by=by, reason=reason, queue_item_id=queue_item_id)).scalar_one())
    conn.execute(update(Loan).where(_loan.c.id == loan.id).values(agency_id=agency_id))
    _cancel_others_tasks(conn, loan, agency_id, now)
    placed = _placement(conn.execute(select(_pl).where(_pl.c.id == pid)).one())
    append_for_borrower(ctx, conn, loan.borrower_id, "placement.started",
                        {"placement": pid, "agency": agency_id, "previous_agency": loan.agency_id,
                         "ended_placement": ended.id if ended else None,
                         "queue_item": queue_item_id, "reason": reason},
                        actor=by, at=now, subject=loan.id)
    _event(conn, "placement.started", f"placement-{pid}-started",
           {"placement_id": pid, "loan_id": loan.id, "borrower_id": loan.borrower_id,
            "agency_id": agency_id, "previous_agency_id": loan.agency_id}, now)
    return PlaceResult(True, placed, ended)


def _open_referral(conn: Connection, loan_id: str) -> Row[Any] | None:
    return conn.execute(select(_lr).where(_lr.c.loan_id == loan_id, _lr.c.status == "open")
                        .order_by(_lr.c.id).limit(1)).first()


def _refer(ctx: Context, conn: Connection, loan: Any, queue: str, *, by: str, reason: str,
           queue_item_id: int | None, now: datetime) -> tuple[bool, Referral]:
    """(created, the open referral): an open referral already there is kept (no-op)."""
    existing = _open_referral(conn, loan.id)
    if existing is not None:
        return False, _referral(existing)
    rid = int(conn.execute(insert(LegalReferral).returning(_lr.c.id).values(
        loan_id=loan.id, borrower_id=loan.borrower_id, queue=queue, status="open",
        referred_at=now, referred_by=by, reason=reason, queue_item_id=queue_item_id)).scalar_one())
    append_for_borrower(ctx, conn, loan.borrower_id, "legal_referral.opened",
                        {"referral": rid, "queue": queue, "queue_item": queue_item_id,
                         "reason": reason}, actor=by, at=now, subject=loan.id)
    _event(conn, "legal_referral.opened", f"legal-referral-{rid}-opened",
           {"referral_id": rid, "loan_id": loan.id, "borrower_id": loan.borrower_id,
            "queue": queue}, now)
    return True, _referral(conn.execute(select(_lr).where(_lr.c.id == rid)).one())


def _loan_locked(conn: Connection, loan_id: str) -> Any:
    """The loan, with its borrower locked for the rest of the transaction; NotFound if none."""
    loan = conn.execute(select(_loan.c.id, _loan.c.borrower_id).where(_loan.c.id == loan_id)).first()
    if loan is None or not lock_borrower(conn, loan.borrower_id):
        raise NotFound(f"unknown loan {loan_id!r}")
    # read agency_id only after the lock, so it is the committed value the lock protects
    return conn.execute(select(_loan.c.id, _loan.c.borrower_id, _loan.c.agency_id)
                        .where(_loan.c.id == loan_id)).one()


def _unblocked_loan(conn: Connection, loan_id: str, now: datetime, verb: str) -> Any:
    """The loan, locked; Conflict when an agreement or hold stops collection on it now."""
    loan = _loan_locked(conn, loan_id)
    blocked = why_blocked(conn, loan.borrower_id, loan.id, now)
    if blocked is not None:
        raise Conflict(f"loan {loan_id} may not be {verb}: {blocked}")
    return loan


def _required(value: str, record: str, field: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput("must not be empty", record=record, field=field)
    if len(value) > 64 and field != "reason":
        raise InvalidInput("at most 64 characters", record=record, field=field)
    return value


# --------------------------------------------------------------------------------------------
# The worker's consumer: one leased queue item, one transaction
# --------------------------------------------------------------------------------------------


def carry_out_task(ctx: Context, worker_id: str, item_id: int, lease_until: datetime, *,
                   fault: Callable[[str, int], None] | None = None) -> TaskOutcome:
    """Carry out one leased ``agency`` or ``legal`` item (see the module docstring).
    ``fault(point, item_id)`` is a test hook called at ``task_before_commit``, inside the
    transaction after the work and before the mark."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        head = conn.execute(select(_q.c.borrower_id).where(_q.c.id == item_id)).first()
    if head is None:
        return TaskOutcome(item_id, "skipped", f"no queue item {item_id}")
    fence = (_q.c.id == item_id, _q.c.status == "leased", _q.c.worker_id == worker_id,
             _q.c.lease_until == lease_until)
    try:
        with ctx.db.transaction() as conn:
            lock_borrower(conn, head.borrower_id)
            item = conn.execute(select(_q).where(*fence)).first()
            if item is None:
                raise _LostLease
            status, reason, record_id = _task(ctx, conn, item, worker_id, now)
            if fault is not None:
                fault("task_before_commit", item_id)
            done = conn.execute(update(ContactQueueItem).where(*fence).values(
                status=status, last_reason=reason[:2000], lease_until=None, updated_at=now))
            if done.rowcount != 1:
                raise _LostLease  # rolls back the work with it
    except _LostLease:
        return TaskOutcome(item_id, "skipped", "lease lost to another worker")
    return TaskOutcome(item_id, status, reason, record_id)


def _task(ctx: Context, conn: Connection, item: Any, worker_id: str,
          now: datetime) -> tuple[str, str, int | None]:
    """(status, reason, record id) for one item; writes the placement or referral."""
    target = (item.template_id or "").strip()
    if item.channel not in TASK_CHANNELS:
        return "dropped", f"not a task channel: {item.channel!r}", None
    loan = None
    if item.loan_id:
        loan = conn.execute(select(_loan.c.id, _loan.c.borrower_id, _loan.c.agency_id)
                            .where(_loan.c.id == item.loan_id)).first()
    if loan is None or loan.borrower_id != item.borrower_id:
        return "dropped", f"no loan {item.loan_id!r} of borrower {item.borrower_id!r}", None
    if item.channel == AGENCY_CHANNEL and not target:
        return "dropped", "the placement names no agency", None
    blocked = why_blocked(conn, loan.borrower_id, loan.id, now)
    if blocked is not None:
        return "cancelled", blocked, None
    if not _overdue(ctx, conn, loan.id):
        return "cancelled", f"loan {loan.id} has nothing overdue any more", None
    why = (f"strategy {item.strategy_id or '-'}, state {item.state or '-'}"
           + (f", arm {item.arm}" if item.arm else "") + f" (queue item {item.id}, "
           f"{item.business_date}, worker {worker_id})")
    if item.channel == AGENCY_CHANNEL:
        res = _place(ctx, conn, loan, target[:64], by=SYSTEM, reason=why, queue_item_id=item.id,
                     now=now)
        pid = res.placement.id if res.placement else None
        if not res.changed:
            return "done", f"already placed with agency {target}" + (
                f" (placement {pid})" if pid else " (with the loan import)"), pid
        moved = f", ending placement {res.ended.id} with {res.ended.agency_id}" if res.ended else ""
        return "done", f"placed with agency {target}: placement {pid}{moved}", pid
    queue = target[:64] or DEFAULT_LEGAL_QUEUE
    created, ref = _refer(ctx, conn, loan, queue, by=SYSTEM, reason=why, queue_item_id=item.id,
                          now=now)
    if not created:
        return "done", f"already referred to legal: referral {ref.id} open in {ref.queue}", ref.id
    return "done", f"referred to legal queue {queue}: referral {ref.id}", ref.id


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def place_loan(ctx: Context, loan_id: str, agency_id: str, *, by: str,
               reason: str = "") -> PlaceResult:
    """Place a loan with an agency (a manager's decision, outside any strategy). The same rules
    as the worker's: Conflict under a binding agreement or an active hold; a no-op when already
    placed there; a placement with another agency is ended first."""
    agency_id = _required(agency_id, "placement", "agency_id")
    by = _required(by, "placement", "by")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        loan = _unblocked_loan(conn, loan_id, now, "placed")
        return _place(ctx, conn, loan, agency_id, by=by, reason=reason.strip(),
                      queue_item_id=None, now=now)


def recall_placement(ctx: Context, loan_id: str, *, by: str, reason: str) -> Recalled:
    """Recall a loan from its agency: end the active placement (audited, webhook
    ``placement.ended``) and clear ``loan.agency_id``, so the agency's collectors no longer see
    it. Conflict when the loan is not placed. Allowed under an agreement or hold (recalling is
    never a collection step)."""
    reason = _required(reason, "recall", "reason")
    by = _required(by, "recall", "by")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        loan = _loan_locked(conn, loan_id)
        current = _active_placement(conn, loan.id)
        if current is None and not loan.agency_id:
            raise Conflict(f"loan {loan_id} is not placed with an agency")
        agency = loan.agency_id or current.agency_id  # type: ignore[union-attr]
        ended = None
        if current is not None:
            ended = _end_placement(ctx, conn, current, by=by, reason=f"recalled: {reason}", now=now)
        else:  # placed by the loan import: no history row, but the recall is on the record
            append_for_borrower(ctx, conn, loan.borrower_id, "placement.ended",
                                {"placement": None, "agency": agency,
                                 "reason": f"recalled: {reason}"},
                                actor=by, at=now, subject=loan.id)
            _event(conn, "placement.ended", f"placement-import-{loan.id}-ended-{now.isoformat()}",
                   {"placement_id": None, "loan_id": loan.id, "borrower_id": loan.borrower_id,
                    "agency_id": agency, "reason": f"recalled: {reason}"}, now)
        conn.execute(update(Loan).where(_loan.c.id == loan.id).values(agency_id=None))
        _cancel_others_tasks(conn, loan, None, now)
    return Recalled(loan_id, agency, ended, now)


def refer_to_legal(ctx: Context, loan_id: str, queue: str = DEFAULT_LEGAL_QUEUE, *, by: str,
                   reason: str = "") -> tuple[bool, Referral]:
    """Refer a loan to legal by hand: (created, the open referral). Conflict under a binding
    agreement or an active hold; an open referral already there is returned unchanged."""
    queue = _required(queue, "legal referral", "queue")
    by = _required(by, "legal referral", "by")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        loan = _unblocked_loan(conn, loan_id, now, "referred")
        return _refer(ctx, conn, loan, queue, by=by, reason=reason.strip(), queue_item_id=None,
                      now=now)


def close_referral(ctx: Context, referral_id: int, *, by: str, reason: str) -> Referral:
    """Close an open legal referral (audited, webhook ``legal_referral.closed``)."""
    reason = _required(reason, "legal referral", "reason")
    by = _required(by, "legal referral", "by")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        row = conn.execute(select(_lr.c.loan_id).where(_lr.c.id == referral_id)).first()
        if row is None:
            raise NotFound(f"unknown legal referral {referral_id}")
        loan = _loan_locked(conn, row.loan_id)
        res = conn.execute(update(LegalReferral).where(_lr.c.id == referral_id, _lr.c.status == "open")
                           .values(status="closed", closed_at=now, closed_by=by, close_reason=reason))
        if res.rowcount != 1:
            raise Conflict(f"legal referral {referral_id} is already closed")
        append_for_borrower(ctx, conn, loan.borrower_id, "legal_referral.closed",
                            {"referral": referral_id, "reason": reason},
                            actor=by, at=now, subject=loan.id)
        _event(conn, "legal_referral.closed", f"legal-referral-{referral_id}-closed",
               {"referral_id": referral_id, "loan_id": loan.id, "borrower_id": loan.borrower_id,
                "reason": reason}, now)
        return _referral(conn.execute(select(_lr).where(_lr.c.id == referral_id)).one())


# --------------------------------------------------------------------------------------------
# What the case shows (casework's access rules)
# --------------------------------------------------------------------------------------------


def loan_placements(conn: Connection, loan_id: str, *,
                    agency_id: str | None = None) -> tuple[Placement, ...]:
    """The loan's placements, newest first; with ``agency_id``, only that agency's (all an
    agency's collector may see). Read on the caller's connection, so a case page reads them in
    its own transaction; the caller has already checked that the actor may see the loan."""
    q = select(_pl).where(_pl.c.loan_id == loan_id).order_by(_pl.c.placed_at.desc(), _pl.c.id.desc())
    if agency_id:
        q = q.where(_pl.c.agency_id == agency_id)
    return tuple(_placement(r) for r in conn.execute(q))


def loan_referrals(conn: Connection, loan_id: str) -> tuple[Referral, ...]:
    """The loan's legal referrals, newest first, on the caller's connection (access checked by
    the caller, as for ``loan_placements``)."""
    return tuple(_referral(r) for r in conn.execute(
        select(_lr).where(_lr.c.loan_id == loan_id)
        .order_by(_lr.c.referred_at.desc(), _lr.c.id.desc())))


def loan_referral(conn: Connection, loan_id: str, referral_id: int) -> Referral | None:
    """One referral, if it is one of the loan's; None when it is missing *or* belongs to another
    loan, so a caller answers both alike (nothing leaks about other loans' referrals). Reads that
    one row, not the loan's whole list."""
    row = conn.execute(select(_lr).where(_lr.c.id == referral_id, _lr.c.loan_id == loan_id)).first()
    return _referral(row) if row is not None else None


__all__ = [
    "TASK_CHANNELS", "PlaceResult", "Placement", "Recalled", "Referral", "TaskOutcome",
    "carry_out_task", "close_referral", "loan_placements", "loan_referral", "loan_referrals",
    "place_loan", "recall_placement", "refer_to_legal", "why_blocked",
]
