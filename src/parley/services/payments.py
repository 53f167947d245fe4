"""Posting payments exactly once, reversing them by a reversing entry, and deriving balances
from the append-only ledger.

The `installment.paid_*` and `paid_off_on` columns are caches of the postings, updated in the
same transaction; `rebuild_installment_cache` recomputes them from the ledger alone, and a
test checks the two never disagree.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, Date, bindparam, func, insert, select, text, update

from parley.core.money import format_minor
from parley.core.text import ID
from parley.core.waterfall import Allocation, Component, Outstanding, allocate
from parley.errors import Conflict, InvalidInput, NotFound
from parley.services.context import Context
from parley.store.db import lock_borrower
from parley.store.models.loanbook import Installment, LedgerEntry, LedgerPosting, Loan, Payment
from parley.store.types import UTCDateTime


@dataclass
class PaymentRecord:
    """A payment as received. `id` is the lender's idempotency key."""

    id: str
    loan_id: str
    paid_at: datetime
    amount: int
    currency: str
    source: str = "api"
    where: str = ""

    @property
    def hash(self) -> str:
        parts = (self.id, self.loan_id, self.paid_at.isoformat(), self.amount, self.currency)
        return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class PostedPayment:
    payment_id: str
    loan_id: str
    amount: int
    allocation: Allocation
    paid_on: date
    already_posted: bool = False


_PAID = {
    Component.PRINCIPAL: "paid_principal",
    Component.INTEREST: "paid_interest",
    Component.FEE: "paid_fee",
    Component.PENALTY: "paid_penalty",
}


def _load_owed(conn: Connection, loan_ids: Sequence[str]) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    cols = Installment.__table__.c
    for i in range(0, len(loan_ids), 900):
        stmt = select(Installment.__table__).where(
            cols.loan_id.in_(bindparam("ids", expanding=True))
        )
        for row in conn.execute(stmt, {"ids": list(loan_ids[i : i + 900])}).mappings():
            out[row["loan_id"]][row["number"]] = dict(row)
    return out


def _outstanding(inst: dict[str, Any]) -> Outstanding:
    return Outstanding(
        inst["number"],
        inst["due_on"],
        principal=inst["principal_due"] - inst["paid_principal"],
        interest=inst["interest_due"] - inst["paid_interest"],
        fee=inst["fee_due"] - inst["paid_fee"],
        penalty=inst["penalty_due"] - inst["paid_penalty"],
    )


def _is_paid(inst: dict[str, Any]) -> bool:
    o = _outstanding(inst)
    return o.principal <= 0 and o.interest <= 0 and o.fee <= 0 and o.penalty <= 0


def post_payments(
    ctx: Context, conn: Connection, recs: Sequence[PaymentRecord], now: datetime
) -> list[PostedPayment]:
    """Allocate and record new payments (callers have checked they are new), in paid_at order."""
    owed = _load_owed(conn, sorted({r.loan_id for r in recs}))
    borrower_of = dict(
        conn.execute(
            select(Loan.id, Loan.borrower_id).where(Loan.id.in_(bindparam("ids", expanding=True))),
            {"ids": sorted({r.loan_id for r in recs})},
        )
        .all()
    )
    posted: list[PostedPayment] = []
    touched: set[tuple[str, int]] = set()
    for rec in sorted(recs, key=lambda r: (r.paid_at, r.id)):
        paid_on = rec.paid_at.astimezone(ctx.business_zone).date()
        insts = owed[rec.loan_id]
        alloc = allocate(
            rec.amount, [_outstanding(i) for i in insts.values()], paid_on, ctx.waterfall
        )
        for line in alloc.lines:
            inst = insts[line.number]
            inst[_PAID[line.component]] += line.amount
            if inst["paid_off_on"] is None and _is_paid(inst):
                inst["paid_off_on"] = paid_on
            touched.add((rec.loan_id, line.number))
        posted.append(PostedPayment(rec.id, rec.loan_id, rec.amount, alloc, paid_on))
    conn.execute(
        insert(Payment),
        [
            {
                "id": r.id,
                "loan_id": r.loan_id,
                "borrower_id": borrower_of[r.loan_id],
                "paid_at": r.paid_at,
                "paid_on": r.paid_at.astimezone(ctx.business_zone).date(),
                "amount": r.amount,
                "currency": r.currency,
                "source": r.source,
                "content_hash": r.hash,
                "posted_at": now,
            }
            for r in recs
        ],
    )
    entry_ids = (
        conn.execute(
            insert(LedgerEntry).returning(LedgerEntry.id, sort_by_parameter_order=True),
            [
                {
                    "loan_id": p.loan_id,
                    "borrower_id": borrower_of[p.loan_id],
                    "kind": "payment",
                    "effective_on": p.paid_on,
                    "recorded_at": now,
                    "payment_id": p.payment_id,
                    "memo": "",
                }
                for p in posted
            ],
        )
        .scalars()
        .all()
    )
    postings = []
    for entry_id, p in zip(entry_ids, posted, strict=True):
        postings += [
            {
                "entry_id": entry_id,
                "loan_id": p.loan_id,
                "installment_number": line.number,
                "component": line.component.value,
                "amount": line.amount,
            }
            for line in p.allocation.lines
        ]
        if p.allocation.credit:
            postings.append(
                {
                    "entry_id": entry_id,
                    "loan_id": p.loan_id,
                    "installment_number": None,
                    "component": "credit",
                    "amount": p.allocation.credit,
                }
            )
    if postings:
        conn.execute(insert(LedgerPosting), postings)
    _write_cache(conn, owed, touched)
    _cancel_when_nothing_overdue(conn, {p.loan_id: borrower_of[p.loan_id] for p in posted},
                                 now.astimezone(ctx.business_zone).date(), now)
    return posted


# Pending collection items of a loan the payment left with nothing overdue: cancelled with the
# payment, as an accepted agreement cancels its loan's items, so no collector is handed a call
# the gate would refuse (the gate still decides every contact; this only tidies the queue).
# One statement per chunk of loans; by borrower first, so the queue's unique
# (borrower_id, idempotency_key) index finds the few rows (most payers have none pending).
_SQL_CANCEL_PAID_UP = text(
    "UPDATE contact_queue SET status = 'cancelled', "
    "last_reason = 'nothing overdue on ' || loan_id || ' after a payment', updated_at = :now "
    "WHERE borrower_id IN :borrowers AND status = 'pending' "
    "AND purpose IN ('collection', 'location') AND loan_id IN (SELECT l.id FROM loan l "
    "WHERE l.id IN :loans AND (l.oldest_unpaid_due_on IS NULL OR l.oldest_unpaid_due_on >= :today))"
).bindparams(bindparam("now", type_=UTCDateTime), bindparam("today", type_=Date),
             bindparam("borrowers", expanding=True), bindparam("loans", expanding=True))


def _cancel_when_nothing_overdue(conn: Connection, borrower_of: dict[str, str],
                                 today: date, now: datetime) -> None:
    loans = sorted(borrower_of)
    for i in range(0, len(loans), 400):
        chunk = loans[i : i + 400]
        conn.execute(_SQL_CANCEL_PAID_UP, {
            "borrowers": sorted({borrower_of[lid] for lid in chunk}), "loans": chunk,
            "today": today, "now": now})


def refresh_loan_cache(conn: Connection, loan_ids: Sequence[str]) -> None:
    """Recompute loan.oldest_unpaid_due_on / last_paid_off_on from the instalments. Whoever
    changes an instalment's paid_off_on or due amounts calls this in the same transaction."""
    if not loan_ids:
        return
    conn.execute(
        text(
            "UPDATE loan SET "
            "oldest_unpaid_due_on = (SELECT MIN(i.due_on) FROM installment i WHERE i.loan_id = loan.id AND i.paid_off_on IS NULL), "
            "last_paid_off_on = (SELECT MAX(i.paid_off_on) FROM installment i WHERE i.loan_id = loan.id) "
            "WHERE loan.id = :id"
        ),
        [{"id": lid} for lid in sorted(set(loan_ids))],
    )


def _write_cache(
    conn: Connection, owed: dict[str, dict[int, dict[str, Any]]], touched: set[tuple[str, int]]
) -> None:
    if not touched:
        return
    refresh = sorted({lid for lid, _ in touched})
    t = Installment.__table__
    stmt = (
        update(t)
        .where(t.c.loan_id == bindparam("k_loan"), t.c.number == bindparam("k_number"))
        .values(
            paid_principal=bindparam("v_pp"),
            paid_interest=bindparam("v_pi"),
            paid_fee=bindparam("v_pf"),
            paid_penalty=bindparam("v_pn"),
            paid_off_on=bindparam("v_off"),
        )
    )
    conn.execute(
        stmt,
        [
            {
                "k_loan": lid,
                "k_number": n,
                "v_pp": owed[lid][n]["paid_principal"],
                "v_pi": owed[lid][n]["paid_interest"],
                "v_pf": owed[lid][n]["paid_fee"],
                "v_pn": owed[lid][n]["paid_penalty"],
                "v_off": owed[lid][n]["paid_off_on"],
            }
            for lid, n in sorted(touched)
        ],
    )
    refresh_loan_cache(conn, refresh)


# A payment cannot have been made after now, but the lender's clock may run a little ahead of
# ours, so a time this close to now is taken as skew rather than refused. Anything later would
# post money that has not arrived yet: balances and days past due as of today would count it
# while the payment itself lies in the future.
CLOCK_SKEW = timedelta(minutes=5)



def paid_at_problem(paid_at: datetime, now: datetime, disbursed_on: date, zone: tzinfo) -> str:
    """Why `paid_at` cannot be when a loan disbursed on `disbursed_on` (a business date in
    `zone`) was paid, as of `now`; "" when it can. Shared by `post_payment` and the import."""
    if paid_at.utcoffset() is None:
        return "needs a UTC offset, e.g. 2026-03-31T10:00:00+08:00"
    try:
        utc = paid_at.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-12:00 is in the year 10000 in UTC
        return f"{paid_at.isoformat()} is out of the range of dates that can be stored"
    if utc > now + CLOCK_SKEW:
        return f"{paid_at.isoformat()} is in the future (it is now {now.astimezone(UTC).isoformat()})"
    try:
        paid_on = utc.astimezone(zone).date()
    except OverflowError:  # before the year 1 in the business zone: before any disbursement
        paid_on = date.min
    if paid_on < disbursed_on:
        return f"{paid_at.isoformat()} is before the loan was disbursed on {disbursed_on.isoformat()}"
    return ""


def post_payment(
    ctx: Context,
    payment_id: str,
    loan_id: str,
    paid_at: datetime,
    amount: int,
    *,
    source: str = "api",
) -> PostedPayment:
    """Post one payment exactly once. Re-posting the same id with the same content returns the
    original result; with different content it is a Conflict."""
    if not isinstance(payment_id, str) or not ID.fullmatch(payment_id):
        raise InvalidInput(
            f"{payment_id!r} is not a valid payment id (letters, digits, . _ : -; at most 64)",
            field="payment_id",
        )
    if paid_at.tzinfo is None or paid_at.utcoffset() is None:
        raise InvalidInput("paid_at needs a UTC offset", field="paid_at")
    if amount <= 0:
        raise InvalidInput("amount must be positive", field="amount")
    with ctx.db.transaction() as conn:
        loan = conn.execute(
            select(Loan.borrower_id, Loan.currency, Loan.disbursed_on).where(Loan.id == loan_id)
        ).first()
        if loan is None:
            raise NotFound(f"unknown loan {loan_id!r}")
        problem = paid_at_problem(paid_at, ctx.clock.now(), loan.disbursed_on, ctx.business_zone)
        if problem:
            raise InvalidInput(problem, field="paid_at")
        lock_borrower(conn, loan.borrower_id)
        rec = PaymentRecord(payment_id, loan_id, paid_at, amount, loan.currency, source=source)
        existing = conn.execute(
            select(Payment.content_hash, Payment.paid_on).where(Payment.id == payment_id)
        ).first()
        if existing is not None:
            if existing.content_hash != rec.hash:
                raise Conflict(f"payment {payment_id!r} was already posted with different content")
            return PostedPayment(
                payment_id,
                loan_id,
                amount,
                Allocation((), 0),
                existing.paid_on,
                already_posted=True,
            )
        (posted,) = post_payments(ctx, conn, [rec], ctx.clock.now())
        return posted


def reverse_payment(ctx: Context, payment_id: str, reason: str) -> int:
    """Undo a payment by appending a reversing entry with the exact negative postings.

    The reversal takes effect on the payment's own date (the money never arrived), so days past
    due are recomputed as if it had not been made; the original entry stays on the record.
    Returns the reversing entry's id.
    """
    if not reason.strip():
        raise InvalidInput("a reversal needs a reason", field="reason")
    with ctx.db.transaction() as conn:
        pay = conn.execute(select(Payment).where(Payment.id == payment_id)).mappings().first()
        if pay is None:
            raise NotFound(f"unknown payment {payment_id!r}")
        lock_borrower(conn, pay["borrower_id"])
        if pay["reversed_at"] is not None:
            raise Conflict(
                f"payment {payment_id!r} was already reversed at {pay['reversed_at'].isoformat()}"
            )
        entry = conn.execute(
            select(LedgerEntry.id, LedgerEntry.effective_on).where(
                LedgerEntry.payment_id == payment_id, LedgerEntry.kind == "payment"
            )
        ).one()
        lines = conn.execute(
            select(
                LedgerPosting.installment_number, LedgerPosting.component, LedgerPosting.amount
            ).where(LedgerPosting.entry_id == entry.id)
        ).all()
        now = ctx.clock.now()
        rev_id = conn.execute(
            insert(LedgerEntry).returning(LedgerEntry.id),
            {
                "loan_id": pay["loan_id"],
                "borrower_id": pay["borrower_id"],
                "kind": "reversal",
                "effective_on": entry.effective_on,
                "recorded_at": now,
                "payment_id": payment_id,
                "reverses_entry_id": entry.id,
                "memo": reason.strip(),
            },
        ).scalar_one()
        if lines:
            conn.execute(
                insert(LedgerPosting),
                [
                    {
                        "entry_id": rev_id,
                        "loan_id": pay["loan_id"],
                        "installment_number": n,
                        "component": c,
                        "amount": -a,
                    }
                    for n, c, a in lines
                ],
            )
        owed = _load_owed(conn, [pay["loan_id"]])
        touched = set()
        for n, c, a in lines:
            if n is None:
                continue
            inst = owed[pay["loan_id"]][n]
            inst[_PAID[Component(c)]] -= a
            if not _is_paid(inst):
                inst["paid_off_on"] = None
            touched.add((pay["loan_id"], n))
        _write_cache(conn, owed, touched)
        conn.execute(
            update(Payment)
            .where(Payment.id == payment_id)
            .values(reversed_at=now, reversal_reason=reason.strip())
        )
        return int(rev_id)


@dataclass(frozen=True)
class LoanBalance:
    """A loan's position as of a date, derived from the schedule and the ledger only.

    overdue: due on or before `as_of` and unpaid. outstanding_principal: all principal not
    yet paid (due or not). credit: overpayment held for the borrower.
    """

    loan_id: str
    currency: str
    as_of: date
    overdue_principal: int
    overdue_interest: int
    overdue_fee: int
    overdue_penalty: int
    outstanding_principal: int
    credit: int
    paid_total: int

    @property
    def overdue_total(self) -> int:
        return (
            self.overdue_principal + self.overdue_interest + self.overdue_fee + self.overdue_penalty
        )

    def as_dict(self) -> dict[str, Any]:
        f = lambda v: format_minor(v, self.currency)  # noqa: E731
        return {
            "loan_id": self.loan_id,
            "currency": self.currency,
            "as_of": self.as_of.isoformat(),
            "overdue": {
                "principal": f(self.overdue_principal),
                "interest": f(self.overdue_interest),
                "fee": f(self.overdue_fee),
                "penalty": f(self.overdue_penalty),
                "total": f(self.overdue_total),
            },
            "outstanding_principal": f(self.outstanding_principal),
            "credit": f(self.credit),
            "paid_total": f(self.paid_total),
        }


def loan_balance(
    conn: Connection, loan_id: str, as_of: date, known_at: datetime | None = None
) -> LoanBalance:
    """The balance as of `as_of` (effective dates), optionally as it was known at `known_at`
    (only postings recorded by then) — so any past balance can be reproduced."""
    loan = conn.execute(select(Loan.currency).where(Loan.id == loan_id)).first()
    if loan is None:
        raise NotFound(f"unknown loan {loan_id!r}")
    insts = conn.execute(
        select(
            Installment.number,
            Installment.due_on,
            Installment.principal_due,
            Installment.interest_due,
            Installment.fee_due,
            Installment.penalty_due,
        ).where(Installment.loan_id == loan_id)
    ).all()
    q = (
        select(
            LedgerPosting.installment_number,
            LedgerPosting.component,
            LedgerEntry.kind,
            func.sum(LedgerPosting.amount),
        )
        .join(LedgerEntry, LedgerEntry.id == LedgerPosting.entry_id)
        .where(LedgerPosting.loan_id == loan_id, LedgerEntry.effective_on <= as_of)
    )
    if known_at is not None:
        q = q.where(LedgerEntry.recorded_at <= known_at)
    q = q.group_by(LedgerPosting.installment_number, LedgerPosting.component, LedgerEntry.kind)
    paid: dict[tuple[int | None, str], int] = defaultdict(int)
    charged: dict[tuple[int | None, str], int] = defaultdict(int)
    credit = paid_total = 0
    for number, component, kind, total in conn.execute(q):
        amount = int(total)  # SUM over BIGINT is NUMERIC (Decimal) on PostgreSQL; keep ints
        if kind in ("payment", "reversal"):
            if component == "credit":
                credit += amount
            else:
                paid[(number, component)] += amount
            paid_total += amount
        elif kind == "waiver":
            charged[(number, component)] -= amount
    od = {"principal": 0, "interest": 0, "fee": 0, "penalty": 0}
    outstanding_principal = 0
    for number, due_on, p_due, i_due, f_due, n_due in insts:
        # Scheduled amounts from the instalment row; waivers (agreements kept) reduce them.
        due = {
            "principal": p_due + charged[(number, "principal")],
            "interest": i_due + charged[(number, "interest")],
            "fee": f_due + charged[(number, "fee")],
            "penalty": n_due + charged[(number, "penalty")],
        }
        outstanding_principal += due["principal"] - paid[(number, "principal")]
        if due_on <= as_of:
            for comp in od:
                od[comp] += due[comp] - paid[(number, comp)]
    return LoanBalance(
        loan_id,
        loan.currency,
        as_of,
        od["principal"],
        od["interest"],
        od["fee"],
        od["penalty"],
        outstanding_principal,
        credit,
        paid_total,
    )


def rebuild_installment_cache(conn: Connection, loan_id: str) -> dict[int, dict[str, Any]]:
    """What the paid_* caches should hold, recomputed from the ledger (used by tests and repair)."""
    rows = conn.execute(
        select(
            LedgerPosting.installment_number,
            LedgerPosting.component,
            func.sum(LedgerPosting.amount),
        )
        .join(LedgerEntry, LedgerEntry.id == LedgerPosting.entry_id)
        .where(
            LedgerPosting.loan_id == loan_id,
            LedgerEntry.kind.in_(("payment", "reversal")),
            LedgerPosting.installment_number.is_not(None),
        )
        .group_by(LedgerPosting.installment_number, LedgerPosting.component)
    ).all()
    out: dict[int, dict[str, Any]] = defaultdict(lambda: {v: 0 for v in _PAID.values()})
    for number, component, amount in rows:
        out[number][_PAID[Component(component)]] = int(amount)
    return dict(out)
