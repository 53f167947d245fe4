"""The worker: drains due SMS and e-mail items from the contact queue, asking the gate first.

For each item, in order:

1. **lease** — due items (``pending`` with ``not_before <= now``, or ``leased`` whose lease has
   expired) are leased in one short transaction: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so
   concurrent workers never take the same row; the ``BEGIN IMMEDIATE`` write lock on SQLite.
2. **permit** — ``request_permit`` with ``idempotency_key = 'queue:<id>'``, in the same
   transaction that stores the permit's ids on the item (and only while the lease is still
   ours). A retry after a crash finds the recorded permit instead of recording a second
   attempt; because that permit was decided earlier, the worker then asks the gate again
   (``check_contact``, a logged preview) and sends only if the contact is still allowed now.
3. **send** — through the channel adapter, with the same key passed to the provider. For a
   provider that does not deduplicate (plain SMTP) the item is first marked ``sending``; an item
   found ``sending`` after a crash may or may not have gone out, so it is never sent again —
   it is marked ``failed`` with reason ``unconfirmed`` for a person to check.
4. **mark** — ``sent`` (with the provider's message id); a denial reschedules the item at the
   decision's ``next_allowed_at`` or drops it with the reasons when there is none; a transient
   channel error retries with exponential back-off, up to ``MAX_ATTEMPTS`` leases.

So a worker killed at any point loses nothing (an expired lease is leased again) and sends
nothing twice (the key reaches the provider; SMTP's ambiguous window is flagged, not retried).

Calls, 面谈 and visits are not sent by the worker: they are tasks in a collector's queue
(``collector_queue``, ``start_call`` with a click-to-call link, ``log_call_outcome``).

Agency placements (``agency``) and legal referrals (``legal``) are tasks the worker carries out
itself: they are leased with the contact items (same lease, same fencing token) and each is
done in one transaction by ``parley.services.placements.carry_out_task`` — placed / referred
and marked ``done``, or ``cancelled`` under an agreement or hold, never half of it.
``work_tasks`` does only these.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, or_, select, text

from parley.adapters.channels.base import ChannelAdapter, ChannelError, Message
from parley.adapters.channels.calls import ClickToCall
from parley.core.money import format_minor
from parley.errors import Conflict, InvalidInput, NotFound, ParleyError
from parley.services.context import Context
from parley.services.placements import TASK_CHANNELS, carry_out_task
from parley.services.templates import get_template, render
from parley.store.db import lock_borrower
from parley.store.hot import Hot
from parley.store.models.base import table_of
from parley.store.models.loanbook import Borrower, BorrowerEmail, BorrowerPhone
from parley.store.models.queue import LEASED_WHERE, WORKER_DUE_WHERE, ContactQueueItem
from parley.store.models.staff import StaffUser
from parley.store.types import UTCDateTime

WORKER_CHANNELS = ("sms", "email")
COLLECTOR_CHANNELS = ("call", "interview", "visit")
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
SENDING = "sending"
DEFAULT_VARIABLES: Mapping[str, str] = {"lender": "Parley", "portal_url": "https://parley.example/me"}

_q = table_of(ContactQueueItem)
_em = table_of(BorrowerEmail)
_ph = table_of(BorrowerPhone)
_b = table_of(Borrower)
_staff = table_of(StaffUser)


class SimulatedCrash(BaseException):
    """Raised by a test's ``fault`` hook to stop a worker mid-item, like ``kill -9`` would.
    A BaseException so no ``except Exception`` on the way can swallow it."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What happened to one leased item: status sent | rescheduled | retried | dropped | failed |
    skipped (lost the lease), or for an agency / legal task done | cancelled (agreement, hold,
    nothing overdue); reason: why, empty when sent."""

    item_id: int
    status: str
    reason: str = ""
    next_at: datetime | None = None
    message_id: str = ""


@dataclass(frozen=True)
class WorkReport:
    """Counts for one pass: leased, then each item's ending (see ``ItemResult``); done and
    cancelled count agency / legal tasks."""

    leased: int = 0
    sent: int = 0
    rescheduled: int = 0
    dropped: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    items: tuple[ItemResult, ...] = field(default=(), repr=False)
    done: int = 0
    cancelled: int = 0

    def __add__(self, other: WorkReport) -> WorkReport:
        return WorkReport(self.leased + other.leased, self.sent + other.sent,
                          self.rescheduled + other.rescheduled, self.dropped + other.dropped,
                          self.retried + other.retried, self.failed + other.failed,
                          self.skipped + other.skipped, self.items + other.items,
                          self.done + other.done, self.cancelled + other.cancelled)


@dataclass(frozen=True, slots=True)
class _Leased:
    id: int
    borrower_id: str
    loan_id: str | None
    channel: str
    purpose: str
    template_id: str | None
    attempts: int
    last_reason: str
    attempt_id: int | None
    lease_until: datetime  # the fencing token: marks apply only while the lease is this one


# --------------------------------------------------------------------------------------------
# Lease
# --------------------------------------------------------------------------------------------


# The worker's statements are built once (SQLAlchemy then reuses their cache key and compiled
# form): the per-item path is hot. Lists of ids and channels are expanding parameters.
_NOW = bindparam("now", type_=UTCDateTime())
_CHANNELS: Any = bindparam("channels", expanding=True)
_IDS: Any = bindparam("ids", expanding=True)
_DUE = and_(_q.c.channel.in_(_CHANNELS), or_(
    and_(_q.c.status == "pending", _q.c.not_before <= _NOW),
    and_(_q.c.status == "leased", _q.c.lease_until < _NOW)))
# Each walks its partial index in order and stops at the limit; the literal conditions are
# the indexes' own (see models.queue), which is what lets SQLite use them.
SQL_LEASE_EXPIRED = (select(_q.c.id).where(text(LEASED_WHERE), _q.c.lease_until < _NOW,
                                           _q.c.channel.in_(_CHANNELS))
                     .order_by(_q.c.lease_until, _q.c.id).limit(bindparam("limit")))
# One channel at a time: each query reads its own stretch of the index in order, where one
# query over several channels would gather and sort every due item of them all.
SQL_LEASE_DUE = (select(_q.c.not_before, _q.c.id).where(
    text(WORKER_DUE_WHERE), _q.c.channel == bindparam("channel"), _q.c.not_before <= _NOW)
    .order_by(_q.c.not_before, _q.c.id).limit(bindparam("limit")))
# PostgreSQL: concurrent workers never take the same row.
SQL_LEASE_EXPIRED_PG = SQL_LEASE_EXPIRED.with_for_update(skip_locked=True)
SQL_LEASE_DUE_PG = SQL_LEASE_DUE.with_for_update(skip_locked=True)
# SET lease_until, worker_id, updated_at: given as parameters.
SQL_LEASE = (_q.update().where(_q.c.id.in_(_IDS), _DUE)
             .values(status="leased", attempts=_q.c.attempts + 1))
SQL_LEASED = (select(_q.c.id, _q.c.borrower_id, _q.c.loan_id, _q.c.channel, _q.c.purpose,
                     _q.c.template_id, _q.c.attempts, _q.c.last_reason, _q.c.attempt_id)
              .where(_q.c.id.in_(_IDS), _q.c.worker_id == bindparam("worker"),
                     _q.c.status == "leased",
                     _q.c.lease_until == bindparam("until", type_=UTCDateTime()))
              .order_by(_q.c.not_before, _q.c.priority, _q.c.id))
# An item's update: the SET columns are the parameters given besides item_id (one compiled
# form per set of columns). SQL_MARK only while the lease is still the caller's.
SQL_SET = _q.update().where(_q.c.id == bindparam("item_id"))
SQL_MARK = Hot(_q.update().where(
    _q.c.id == bindparam("item_id"), _q.c.status == "leased",
    _q.c.worker_id == bindparam("worker"),
    _q.c.lease_until == bindparam("leased_until", type_=UTCDateTime())))
HOT_SET = Hot(SQL_SET)


def lease(ctx: Context, worker_id: str, limit: int,
          channels: tuple[str, ...] = WORKER_CHANNELS) -> list[_Leased]:
    """Lease up to ``limit`` due items for ``LEASE``; expired leases are taken over."""
    if limit < 1:
        raise InvalidInput("must be at least 1", record="worker", field="limit")
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        pg = conn.dialect.name == "postgresql"
        # Expired leases first (a crashed worker's items), then due items, earliest first:
        # each query walks its index in order and stops at the limit.
        expired, due = SQL_LEASE_EXPIRED, SQL_LEASE_DUE
        if pg:
            expired, due = SQL_LEASE_EXPIRED_PG, SQL_LEASE_DUE_PG
        ids = list(conn.execute(expired, {"now": now, "channels": channels, "limit": limit})
                   .scalars())
        if len(ids) < limit:
            room = limit - len(ids)
            due_rows = [r for ch in dict.fromkeys(channels)
                        for r in conn.execute(due, {"now": now, "channel": ch, "limit": room})]
            ids += [r[1] for r in sorted(due_rows, key=lambda r: (r[0], r[1]))[:room]]
        if not ids:
            return []
        until = now + LEASE
        conn.execute(SQL_LEASE, {"ids": ids, "now": now, "channels": channels,
                                 "lease_until": until, "worker_id": worker_id, "updated_at": now})
        rows = conn.execute(SQL_LEASED, {"ids": ids, "worker": worker_id, "until": until}).all()
    return [_Leased(r.id, r.borrower_id, r.loan_id, r.channel, r.purpose, r.template_id,
                    int(r.attempts), r.last_reason or "", r.attempt_id, until) for r in rows]


def _mark(conn: Connection, item: _Leased, worker_id: str, **values: Any) -> bool:
    """Update a leased item only while the lease is still ours (same worker, same lease);
    False if it is not — it expired and was taken over."""
    return SQL_MARK.run(conn, {"item_id": item.id, "worker": worker_id,
                               "leased_until": item.lease_until, **values}) == 1


def _set(conn: Connection, item_id: int, **values: Any) -> None:
    """Update an item whatever its lease."""
    HOT_SET.run(conn, {"item_id": item_id, **values})


# --------------------------------------------------------------------------------------------
# Composing the message
# --------------------------------------------------------------------------------------------


SQL_FIRST_EMAIL = Hot(select(_em.c.address).where(_em.c.borrower_id == bindparam("bid"))
                      .order_by(_em.c.position, _em.c.id).limit(1))
SQL_FIRST_PHONE = Hot(select(_ph.c.e164_enc)
                      .where(_ph.c.borrower_id == bindparam("bid"), _ph.c.is_valid.is_(True))
                      .order_by(_ph.c.position, _ph.c.id).limit(1))
SQL_NAME = Hot(select(_b.c.name, _b.c.preferred_language).where(_b.c.id == bindparam("bid")))
SQL_AMOUNT_DUE = Hot(text(
    "SELECT l.currency, COALESCE(SUM(i.principal_due + i.interest_due + i.fee_due + i.penalty_due "
    "- i.paid_principal - i.paid_interest - i.paid_fee - i.paid_penalty), 0), MIN(i.due_on) "
    "FROM loan l LEFT JOIN installment i ON i.loan_id = l.id AND i.due_on <= :today "
    "AND i.paid_off_on IS NULL WHERE l.id = :loan GROUP BY l.currency"))


def recipient_address(ctx: Context, conn: Connection, borrower_id: str, channel: str) -> str | None:
    """The first valid phone (decrypted) or e-mail address to send `channel` to; None if none."""
    if channel == "email":
        row = SQL_FIRST_EMAIL.first(conn, {"bid": borrower_id})
        return row[0] if row else None
    row = SQL_FIRST_PHONE.first(conn, {"bid": borrower_id})
    return ctx.keyring.decrypt(row[0], "phone.e164") if row else None


def loan_variables(ctx: Context, conn: Connection, borrower_id: str,
                   loan_id: str | None) -> dict[str, str]:
    """name, loan_id, amount_due (overdue now, with currency) and days_past_due."""
    b = SQL_NAME.first(conn, {"bid": borrower_id})
    out = {"name": b[0] if b else "", "loan_id": loan_id or "", "_lang": b[1] if b else "zh-Hans"}
    if loan_id:
        today = ctx.today()
        row = SQL_AMOUNT_DUE.first(conn, {
            "today": today.isoformat() if conn.dialect.name == "sqlite" else today,
            "loan": loan_id})
        if row is not None:
            out["amount_due"] = f"{row[0]} {format_minor(int(row[1]), row[0])}"
            oldest = row[2]
            if oldest is not None:
                oldest_d = oldest if not isinstance(oldest, str) else datetime.fromisoformat(oldest).date()
                out["days_past_due"] = str(max((today - oldest_d).days, 0))
    return out


def compose(ctx: Context, conn: Connection, item: _Leased,
            variables: Mapping[str, str] = DEFAULT_VARIABLES) -> tuple[str, str, str]:
    """(to, subject, body) for an item, read in the caller's transaction (the permit's);
    InvalidInput/NotFound when it cannot be composed."""
    to = recipient_address(ctx, conn, item.borrower_id, item.channel)
    if not to:
        raise InvalidInput(f"the borrower has no {'e-mail address' if item.channel == 'email' else 'valid phone'}",
                           record=f"queue item {item.id}", field="to")
    if not item.template_id:
        raise InvalidInput("no template", record=f"queue item {item.id}", field="template_id")
    values = {**variables, **loan_variables(ctx, conn, item.borrower_id, item.loan_id)}
    tpl = get_template(conn, item.template_id, values.pop("_lang"))
    subject, body = render(tpl, values)
    return to, subject, body


# --------------------------------------------------------------------------------------------
# One pass
# --------------------------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def _reasons(decision: Any) -> str:
    denials = [f for f in decision.reasons if f.effect == "deny"]
    return "; ".join(f"{f.rule_id}: {f.message('en')}" for f in denials)[:2000] or "denied"


def work_once(ctx: Context, worker_id: str, limit: int = 50, *,
              channels: Mapping[str, ChannelAdapter] | None = None,
              variables: Mapping[str, str] = DEFAULT_VARIABLES,
              fault: Callable[[str, int], None] | None = None,
              tasks: bool = True) -> WorkReport:
    """Lease up to ``limit`` due items and carry each out (see the module docstring).
    ``channels``: adapters by channel (default: from settings). ``tasks``: also carry out
    agency placements and legal referrals (they need no adapter). ``fault(point, item_id)`` is
    a test hook called at ``after_permit``, ``after_send`` and ``task_before_commit``."""
    if channels is None:
        from parley.adapters.channels.base import build_channels

        channels = build_channels(ctx.settings)
    handled = tuple(c for c in WORKER_CHANNELS if c in channels) + (TASK_CHANNELS if tasks else ())
    if not handled:
        return WorkReport()
    items = lease(ctx, worker_id, limit, handled)
    results = [_guarded(ctx, worker_id, it, lambda it=it: (
        _carry_out_task(ctx, worker_id, it, fault) if it.channel in TASK_CHANNELS
        else _carry_out(ctx, worker_id, it, channels[it.channel], variables, fault)))
        for it in items]
    return _report(len(items), results)


def _guarded(ctx: Context, worker_id: str, item: _Leased,
             carry_out: Callable[[], ItemResult]) -> ItemResult:
    """One item that fails in an unforeseen way (a number that no longer decrypts, a bug)
    must not stop the pass: the others leased with it would wait out their lease, and the bad
    one, leased first again as expired, would stop every pass after. It is put back with
    back-off, and failed once it has had MAX_ATTEMPTS leases; the error is its reason. An item
    caught mid-send by a provider that does not deduplicate is failed as unconfirmed instead,
    never retried. A simulated crash (a BaseException) still stops everything."""
    try:
        return carry_out()
    except Exception as exc:  # noqa: BLE001 - any error of one item; recorded on it
        error = f"{type(exc).__name__}: {exc}"[:1500]
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        reason_now = conn.execute(select(_q.c.last_reason).where(_q.c.id == item.id)).scalar()
        if reason_now == SENDING:
            status, values = "failed", {"last_reason": f"unconfirmed after error: {error}"}
        elif item.attempts >= MAX_ATTEMPTS:
            status, values = "failed", {"last_reason": f"failed after error: {error}"}
        else:
            status, values = "pending", {"last_reason": f"retry after error: {error}",
                                         "not_before": now + _backoff(item.attempts)}
        if not _mark(conn, item, worker_id, status=status, lease_until=None, updated_at=now,
                     **values):
            return ItemResult(item.id, "skipped", "lease lost to another worker")
    return ItemResult(item.id, "retried" if status == "pending" else "failed", error,
                      values.get("not_before"))


def work_tasks(ctx: Context, worker_id: str, limit: int = 50, *,
               fault: Callable[[str, int], None] | None = None) -> WorkReport:
    """Lease up to ``limit`` due agency / legal items and carry each out, one transaction per
    item (see ``parley.services.placements``)."""
    items = lease(ctx, worker_id, limit, TASK_CHANNELS)
    return _report(len(items), [_carry_out_task(ctx, worker_id, it, fault) for it in items])


def _report(leased: int, results: list[ItemResult]) -> WorkReport:
    count = {s: sum(1 for r in results if r.status == s) for s in
             ("sent", "rescheduled", "dropped", "retried", "failed", "skipped", "done",
              "cancelled")}
    return WorkReport(leased, count["sent"], count["rescheduled"], count["dropped"],
                      count["retried"], count["failed"], count["skipped"], tuple(results),
                      count["done"], count["cancelled"])


def _carry_out_task(ctx: Context, worker_id: str, item: _Leased,
                    fault: Callable[[str, int], None] | None) -> ItemResult:
    out = carry_out_task(ctx, worker_id, item.id, item.lease_until, fault=fault)
    return ItemResult(out.item_id, out.status, out.reason)


def _carry_out(ctx: Context, worker_id: str, item: _Leased, adapter: ChannelAdapter,
               variables: Mapping[str, str],
               fault: Callable[[str, int], None] | None) -> ItemResult:
    from parley.services.permits import PermitRequest, check_contact, request_permit

    key = f"queue:{item.id}"
    now = ctx.clock.now()
    if item.last_reason == SENDING and not adapter.idempotent:
        reason = (f"unconfirmed: a worker stopped while sending through {adapter.name}, which "
                  "does not deduplicate; not sent again — check the provider's log")
        with ctx.db.transaction() as conn:
            _mark(conn, item, worker_id, status="failed", last_reason=reason, lease_until=None,
                  updated_at=now)
        return ItemResult(item.id, "failed", reason)
    try:
        with ctx.db.transaction() as conn:
            # Composed in the permit's transaction: one transaction per item, not two.
            try:
                to, subject, body = compose(ctx, conn, item, variables)
            except (InvalidInput, NotFound) as exc:  # no address or no template: nothing to send
                _mark(conn, item, worker_id, status="dropped", last_reason=str(exc)[:2000],
                      lease_until=None, updated_at=now)
                return ItemResult(item.id, "dropped", str(exc))
            req = PermitRequest(borrower_id=item.borrower_id, channel=item.channel,
                                purpose=item.purpose, loan_id=item.loan_id, to=to, text=body,
                                template_id=item.template_id, queue_item_id=item.id,
                                idempotency_key=key, initiated_by="system")
            permit = request_permit(ctx, req, conn=conn)
            if not permit.repeated:
                settled = _settle(conn, item, worker_id, now, permit.allowed, permit.decision,
                                  permit.decision_id, permit.attempt_id)
        if permit.repeated:
            # Permitted by an earlier lease that never finished: that decision is old, so ask
            # the gate again for *now* (a logged preview) before sending anything.
            fresh = check_contact(ctx, replace(req, idempotency_key=None))
            with ctx.db.transaction() as conn:
                settled = _settle(conn, item, worker_id, now, fresh.allowed and permit.allowed,
                                  fresh.decision, fresh.decision_id, permit.attempt_id)
    except _LostLease:
        return ItemResult(item.id, "skipped", "lease lost to another worker")
    except (InvalidInput, NotFound, Conflict) as exc:
        with ctx.db.transaction() as conn:
            _mark(conn, item, worker_id, status="failed", last_reason=str(exc)[:2000],
                  lease_until=None, updated_at=now)
        return ItemResult(item.id, "failed", str(exc))
    if settled is not None:
        return settled
    if fault is not None:
        fault("after_permit", item.id)

    if not adapter.idempotent:
        with ctx.db.transaction() as conn:
            if not _mark(conn, item, worker_id, last_reason=SENDING, updated_at=ctx.clock.now()):
                return ItemResult(item.id, "skipped", "lease lost to another worker")
    try:
        receipt = adapter.send(Message(channel=item.channel, to=to, body=body, subject=subject,
                                       idempotency_key=key, reference=str(permit.attempt_id or "")))
    except ChannelError as exc:
        now = ctx.clock.now()
        with ctx.db.transaction() as conn:
            if exc.transient and item.attempts < MAX_ATTEMPTS:
                nxt = now + _backoff(item.attempts)
                _mark(conn, item, worker_id, status="pending", lease_until=None, not_before=nxt,
                      last_reason=f"retry: {exc}"[:2000], updated_at=now)
                return ItemResult(item.id, "retried", str(exc), nxt)
            _mark(conn, item, worker_id, status="failed", lease_until=None,
                  last_reason=f"failed: {exc}"[:2000], updated_at=now)
        return ItemResult(item.id, "failed", str(exc))
    if fault is not None:
        fault("after_send", item.id)
    with ctx.db.transaction() as conn:
        # Sent is the truth even if the item was cancelled meanwhile (the permit preceded it).
        _set(conn, item.id, status="sent", lease_until=None, updated_at=ctx.clock.now(),
             last_reason=f"{receipt.provider}:{receipt.message_id}"
                         + (" (duplicate)" if receipt.duplicate else ""))
    return ItemResult(item.id, "sent", "", None, receipt.message_id)


class _LostLease(Exception):
    pass


def _settle(conn: Connection, item: _Leased, worker_id: str, now: datetime, allowed: bool,
            decision: Any, decision_id: int, attempt_id: int | None) -> ItemResult | None:
    """Store the permit on the item; for a denial, reschedule or drop it and say so.
    None = allowed, go on and send. Raises _LostLease when the lease is no longer ours."""
    if allowed:
        if not _mark(conn, item, worker_id, attempt_id=attempt_id, decision_id=decision_id,
                     updated_at=now):
            raise _LostLease
        return None
    reason = _reasons(decision)
    if decision.next_allowed_at is not None:
        if not _mark(conn, item, worker_id, status="pending", lease_until=None,
                     not_before=decision.next_allowed_at, decision_id=decision_id,
                     last_reason=reason, updated_at=now):
            raise _LostLease
        return ItemResult(item.id, "rescheduled", reason, decision.next_allowed_at)
    if not _mark(conn, item, worker_id, status="dropped", lease_until=None,
                 decision_id=decision_id, last_reason=reason, updated_at=now):
        raise _LostLease
    return ItemResult(item.id, "dropped", reason)


def run_worker(ctx: Context, worker_id: str, *, channels: Mapping[str, ChannelAdapter] | None = None,
               limit: int = 50, poll_seconds: float = 2.0, once: bool = False,
               max_items: int | None = None, stop: threading.Event | None = None,
               on_pass: Callable[[WorkReport], None] | None = None,
               tasks: bool = True) -> WorkReport:
    """Run passes until ``stop`` is set (or, with ``once``, until nothing is due; with
    ``max_items``, until that many items were leased). Sleeps ``poll_seconds`` when idle.
    ``tasks``: also carry out agency placements and legal referrals (see ``work_once``)."""
    total = WorkReport()
    while stop is None or not stop.is_set():
        n = limit if max_items is None else min(limit, max_items - total.leased)
        if n <= 0:
            break
        report = work_once(ctx, worker_id, n, channels=channels, tasks=tasks)
        total = total + report
        if on_pass is not None:
            on_pass(report)
        if report.leased == 0:
            if once:
                break
            if stop is not None:
                stop.wait(poll_seconds)
            else:
                _time.sleep(poll_seconds)
    return total


# --------------------------------------------------------------------------------------------
# Collector tasks: calls (and the 面谈 / visit tasks that appointments are booked from)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallTask:
    """A task in a collector's queue. target: the call queue, interview mode or visit spec."""

    item_id: int
    borrower_id: str
    loan_id: str | None
    channel: str
    state: str
    target: str
    priority: int
    not_before: datetime
    collector_id: str | None


def collector_queue(ctx: Context, collector_id: str, limit: int = 50,
                    include_pool: bool = True) -> list[CallTask]:
    """Due call / 面谈 / visit tasks for the collector (and unassigned ones if ``include_pool``),
    in priority order."""
    now = ctx.clock.now()
    who = _q.c.collector_id == collector_id
    if include_pool:
        who = or_(who, _q.c.collector_id.is_(None))
    with ctx.db.read() as conn:
        rows = conn.execute(select(
            _q.c.id, _q.c.borrower_id, _q.c.loan_id, _q.c.channel, _q.c.state, _q.c.template_id,
            _q.c.priority, _q.c.not_before, _q.c.collector_id).where(
            _q.c.channel.in_(COLLECTOR_CHANNELS), _q.c.status == "pending", _q.c.not_before <= now, who)
            .order_by(_q.c.priority, _q.c.not_before, _q.c.id).limit(limit)).all()
    return [CallTask(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6], r[7], r[8]) for r in rows]


@dataclass(frozen=True, slots=True)
class CallStart:
    """allowed: the gate's answer now; url: the click-to-call link (empty when denied);
    attempt_id: the recorded attempt to log the outcome against; reasons: why not, if denied;
    rules: the ids of the rules that denied it (what a screen or a report counts by)."""

    allowed: bool
    url: str
    attempt_id: int | None
    decision_id: int
    to_masked: str
    reasons: str
    next_allowed_at: datetime | None
    rules: tuple[str, ...] = ()


class _Collector(NamedTuple):
    id: str
    display_name: str
    badge_number: str | None
    agency_id: str | None
    active: bool


class _Task(NamedTuple):
    borrower_id: str
    loan_id: str | None
    channel: str
    purpose: str
    status: str
    worker_id: str | None
    attempts: int
    attempt_id: int | None


SQL_COLLECTOR = Hot(select(*(_staff.c[f] for f in _Collector._fields))
                    .where(_staff.c.id == bindparam("sid")))
SQL_TASK = Hot(select(*(_q.c[f] for f in _Task._fields)).where(_q.c.id == bindparam("item_id")))
# start_call's update when the call is allowed (the other SET columns are parameters).
SQL_CALL_LEASE = Hot(SQL_SET.values(attempts=_q.c.attempts + 1))
# Closing a call task only while it is still leased for this attempt (SET columns: parameters).
SQL_CLOSE_CALL = Hot(_q.update().where(_q.c.id == bindparam("item_id"), _q.c.status == "leased",
                                       _q.c.attempt_id == bindparam("attempt")))


def _collector(conn: Connection, collector_id: str) -> _Collector:
    row = SQL_COLLECTOR.first(conn, {"sid": collector_id})
    if row is None or not row[4]:
        raise NotFound(f"no active collector {collector_id!r}")
    return _Collector(*row)


def _task(conn: Connection, item_id: int) -> _Task | None:
    row = SQL_TASK.first(conn, {"item_id": item_id})
    return None if row is None else _Task(*row)


def start_call(ctx: Context, item_id: int, collector_id: str,
               click: ClickToCall | None = None) -> CallStart:
    """"May I call now?" for a call task, decided and recorded by the gate under the
    collector's identity; when allowed, the click-to-call link for the borrower's number."""
    from parley.services.permits import PermitRequest, request_permit

    click = click or ClickToCall()
    now = ctx.clock.now()
    # One transaction, the task read again under the borrower's lock: two collectors pressing
    # "call" on one task at once get one permit and one Conflict, not two calls. (SQLite's
    # IMMEDIATE transaction holds the write lock from its start: the first read is under it.)
    with ctx.db.transaction() as conn:
        item = _task(conn, item_id)
        if item is None or item.channel != "call":
            raise NotFound(f"no call task {item_id}")
        if conn.dialect.name == "postgresql":
            lock_borrower(conn, item.borrower_id)
            item = _task(conn, item_id)
            assert item is not None  # noqa: S101  # the locked borrower's task cannot vanish
        # A collector may dial again a task they already hold (e.g. the line dropped).
        if item.status != "pending" and not (item.status == "leased"
                                             and item.worker_id == collector_id):
            raise Conflict(f"call task {item_id} is {item.status}")
        who = _collector(conn, collector_id)
        to = recipient_address(ctx, conn, item.borrower_id, "call")
        if not to:
            raise InvalidInput("the borrower has no valid phone", record=f"call task {item_id}",
                               field="to")
        key = f"queue:{item_id}:{item.attempts + 1}"
        req = PermitRequest(borrower_id=item.borrower_id, channel="call", purpose=item.purpose,
                            loan_id=item.loan_id, to=to, collector_id=collector_id,
                            agency_id=who.agency_id, badge=who.badge_number,
                            queue_item_id=item_id, idempotency_key=key, initiated_by="collector")
        permit = request_permit(ctx, req, conn=conn)
        values: dict[str, Any] = {"decision_id": permit.decision_id, "updated_at": now,
                                  "collector_id": collector_id}
        if permit.allowed:
            values.update(status="leased", worker_id=collector_id, attempt_id=permit.attempt_id,
                          lease_until=now + timedelta(hours=1))
            SQL_CALL_LEASE.run(conn, {"item_id": item_id, **values})  # and attempts + 1
        else:
            values["last_reason"] = _reasons(permit.decision)
            if permit.decision.next_allowed_at is not None:
                values["not_before"] = permit.decision.next_allowed_at
            _set(conn, item_id, **values)
    url = click.url(to=to, item=item_id, key=key, collector=collector_id) if permit.allowed else ""
    return CallStart(permit.allowed, url, permit.attempt_id, permit.decision_id, permit.to_masked,
                     "" if permit.allowed else _reasons(permit.decision),
                     permit.decision.next_allowed_at, permit.decision.rule_ids("deny"))


RETRY_RESULTS = frozenset({"not_connected", "no_answer", "voicemail"})


def log_call_outcome(ctx: Context, item_id: int, attempt_id: int, result: str, *, by: str,
                     notes: str = "", recording_ref: str | None = None,
                     retry_after: timedelta = timedelta(hours=2)) -> str:
    """Record the call's outcome on its attempt (once) and close the task; an unanswered call
    goes back to the collector's queue ``retry_after`` later. Returns the task's new status."""
    from parley.services.permits import record_outcome

    now = ctx.clock.now()
    status = "pending" if result in RETRY_RESULTS else "done"
    values: dict[str, Any] = {"status": status, "lease_until": None, "updated_at": now,
                              "last_reason": f"call {result}" + (f": {notes}" if notes else "")}
    if status == "pending":
        values["not_before"] = now + retry_after
    # The outcome and the task's closing in one transaction: a crash between them used to
    # leave an outcome recorded on a task still leased, which a retry could not close.
    with ctx.db.transaction() as conn:
        task = _task(conn, item_id)
        if task is None:
            raise NotFound(f"no call task {item_id}")
        if task.attempt_id != attempt_id:
            raise Conflict(f"attempt {attempt_id} is not the current attempt of task {item_id}")
        record_outcome(ctx, attempt_id, result, recording_ref=recording_ref, notes=notes, by=by,
                       conn=conn)
        if SQL_CLOSE_CALL.run(conn, {"item_id": item_id, "attempt": attempt_id, **values}) != 1:
            # Cancelled while the call went on (an agreement accepted, a hold placed): the
            # outcome is on the record, and the task stays as it was left, never reopened.
            now_task = _task(conn, item_id)
            return now_task.status if now_task is not None else task.status
    return status


__all__ = [
    "CallStart", "CallTask", "ItemResult", "ParleyError", "SimulatedCrash", "WorkReport",
    "collector_queue", "compose", "lease", "log_call_outcome", "run_worker", "start_call",
    "work_once", "work_tasks",
]
