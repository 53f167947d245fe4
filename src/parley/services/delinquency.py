"""Days past due for every loan at once, delinquency pauses, and the daily bucket snapshot.

The query is set-based and follows `parley.core.delinquency` exactly: the oldest instalment
unpaid at the end of `as_of`, minus paused days, zero within grace. One statement, with its
date arithmetic spelled per dialect; `tests/integration/test_payments_and_delinquency.py`
checks both against the pure definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from parley.core.delinquency import BucketScheme, Pause, days_past_due
from parley.errors import Conflict, InvalidInput, NotFound
from parley.services.context import Context
from parley.store.db import lock_borrower
from parley.store.models.loanbook import DelinquencyPause, Installment, Loan

# The oldest instalment unpaid at the end of :as_of. For a loan whose last instalment became
# paid on or before :as_of the loan row's cache answers it; only loans with a later payment
# (historical as-of dates) look at their instalments.
_OLDEST = """CASE WHEN l.last_paid_off_on IS NULL OR l.last_paid_off_on <= :as_of THEN l.oldest_unpaid_due_on
     ELSE (SELECT MIN(i.due_on) FROM installment i
           WHERE i.loan_id = l.id AND (i.paid_off_on IS NULL OR i.paid_off_on > :as_of)) END"""

# One pass over the loans: the oldest unpaid due date, less the paused days after it (only the
# few paused loans are aggregated, from the pauses' side), zero within grace. Reading the
# overdue loans first and joining them back to every loan read the loan table twice and
# hashed it (a second of the daily run at a million loans). Only the date arithmetic differs
# between the dialects (``_DATES``).
_DPD = """WITH paused AS (
  SELECT p.loan_id,
         SUM({greatest}(0, {day_span})) AS days
  FROM delinquency_pause p JOIN loan l ON l.id = p.loan_id
  WHERE ({oldest}) < {as_of}
  GROUP BY p.loan_id
)
SELECT o.loan_id, o.borrower_id,{outer_columns}
       CASE WHEN o.due_on < {as_of} AND {days} > :grace THEN {days} ELSE 0 END AS days_past_due
FROM (SELECT l.id AS loan_id, l.borrower_id AS borrower_id,{inner_columns} {oldest} AS due_on FROM loan l{inner_where}) o
LEFT JOIN paused pz ON pz.loan_id = o.loan_id"""

# Per dialect: :as_of as a date, the larger of two numbers, the paused days of pause p after
# the oldest due date ({oldest}) up to the end of :as_of, and the days since the oldest due
# date less those paused.
_DATES = {
    "sqlite": {
        "as_of": ":as_of",
        "greatest": "MAX",
        "day_span": "julianday(MIN(date(:as_of, '+1 day'), p.end_on)) - julianday(MAX(date(({oldest}), '+1 day'), p.start_on))",
        "days": "CAST(julianday(:as_of) - julianday(o.due_on) AS INTEGER) - CAST(COALESCE(pz.days, 0) AS INTEGER)",
    },
    "postgresql": {
        "as_of": "CAST(:as_of AS DATE)",
        "greatest": "GREATEST",
        "day_span": "LEAST(CAST(:as_of AS DATE) + 1, p.end_on) - GREATEST(({oldest}) + 1, p.start_on)",
        "days": "(CAST(:as_of AS DATE) - o.due_on) - CAST(COALESCE(pz.days, 0) AS INTEGER)",
    },
}


def bucket_case(scheme: BucketScheme, column: str = "days_past_due") -> str:
    """The bucket scheme as a SQL CASE over a days-past-due column (names are validated)."""
    parts = []
    for b in scheme.buckets:
        name = b.name.replace("'", "''")
        if b.max_days is None:
            parts.append(f"ELSE '{name}'")
        else:
            parts.append(f"WHEN {column} <= {int(b.max_days)} THEN '{name}'")
    return "CASE " + " ".join(parts) + " END"


# Loan columns a caller may carry along (the daily run: it would otherwise join the loans again).
LOAN_COLUMNS = frozenset({"currency", "product", "agency_id"})


def dpd_sql(conn: Connection, scheme: BucketScheme, loan_columns: tuple[str, ...] = (), *,
            overdue_only: bool = False) -> str:
    """SELECT loan_id, borrower_id, days_past_due, bucket for every loan, as of :as_of, then
    ``loan_columns`` (from ``LOAN_COLUMNS``) of the loan row. ``overdue_only``: only the loans
    with days past due above zero (the daily run's accounts)."""
    if not set(loan_columns) <= LOAN_COLUMNS:
        raise ValueError(f"not a loan column to carry: {sorted(set(loan_columns) - LOAN_COLUMNS)}")
    dates = _DATES["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    as_of = dates["as_of"]
    # overdue_only: a first cut on the loan row's own columns, which the planner has statistics
    # for (it guessed a ninth of the loans through the CASE, and probed the borrowers one by one)
    parts = {
        **dates,
        "inner_columns": "".join(f" l.{c} AS {c}," for c in loan_columns),
        "outer_columns": "".join(f" o.{c} AS {c}," for c in loan_columns),
        "inner_where": (f" WHERE l.oldest_unpaid_due_on < {as_of} OR l.last_paid_off_on > {as_of}"
                        if overdue_only else ""),
    }
    base = _DPD
    for name, value in parts.items():
        base = base.replace("{" + name + "}", value)
    base = base.replace("{oldest}", _OLDEST.replace(":as_of", as_of))  # also inside day_span
    extra = "".join(f", d.{c}" for c in loan_columns)
    return (f"SELECT d.loan_id, d.borrower_id, d.days_past_due, "
            f"{bucket_case(scheme, 'd.days_past_due')} AS bucket{extra} FROM ({base}) d"
            + (" WHERE d.days_past_due > 0" if overdue_only else ""))


def loan_days_past_due(ctx: Context, conn: Connection, loan_id: str, as_of: date) -> int:
    """One loan's days past due as of today or later, by the core's definition (its pauses and
    the grace period count): the oldest instalment unpaid now, and the loan's pauses."""
    oldest = conn.execute(select(func.min(Installment.due_on)).where(
        Installment.loan_id == loan_id, Installment.paid_off_on.is_(None))).scalar_one()
    pauses = [Pause(r.start_on, r.end_on) for r in conn.execute(
        select(DelinquencyPause.start_on, DelinquencyPause.end_on)
        .where(DelinquencyPause.loan_id == loan_id))]
    if isinstance(oldest, str):  # SQLite hands back an aggregate's date as text
        oldest = date.fromisoformat(oldest)
    return days_past_due(oldest, as_of, pauses, ctx.settings.grace_days)


def days_past_due_all(ctx: Context, conn: Connection, as_of: date) -> list[Any]:
    """Rows (loan_id, borrower_id, days_past_due, bucket) for all loans."""
    return conn.execute(text(dpd_sql(conn, ctx.buckets)), {"as_of": as_of, "grace": ctx.settings.grace_days}).all()


def borrower_days_past_due(ctx: Context, conn: Connection, as_of: date) -> list[Any]:
    """Per borrower: the worst loan's days past due and its bucket."""
    sql = (f"SELECT b.borrower_id, b.days_past_due, {bucket_case(ctx.buckets, 'b.days_past_due')} AS bucket FROM ("
           f"SELECT d.borrower_id, MAX(d.days_past_due) AS days_past_due FROM ({dpd_sql(conn, ctx.buckets)}) d "
           f"GROUP BY d.borrower_id) b")
    return conn.execute(text(sql), {"as_of": as_of, "grace": ctx.settings.grace_days}).all()


@dataclass(frozen=True)
class SnapshotReport:
    as_of: date
    loans: int
    changes: int
    by_bucket: dict[str, int]


def snapshot(ctx: Context, as_of: date) -> SnapshotReport:
    """Record today's days past due and bucket per loan; append a bucket_change row for each
    loan whose bucket moved. Idempotent for a date; a date older than a loan's last snapshot
    does not overwrite it."""
    with ctx.db.transaction() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tmp_dpd"))
        conn.execute(text("CREATE TEMPORARY TABLE tmp_dpd (loan_id VARCHAR(64) PRIMARY KEY, borrower_id VARCHAR(64), "
                          "days_past_due INTEGER, bucket VARCHAR(8))"))
        conn.execute(text(f"INSERT INTO tmp_dpd {dpd_sql(conn, ctx.buckets)}"), {"as_of": as_of, "grace": ctx.settings.grace_days})
        params = {"as_of": as_of}
        first = ctx.buckets.buckets[0].name
        changes = conn.execute(text(
            "INSERT INTO bucket_change (loan_id, borrower_id, changed_on, from_bucket, to_bucket, days_past_due) "
            "SELECT t.loan_id, t.borrower_id, :as_of, ld.bucket, t.bucket, t.days_past_due FROM tmp_dpd t "
            "LEFT JOIN loan_delinquency ld ON ld.loan_id = t.loan_id "
            "WHERE (ld.loan_id IS NULL AND t.bucket <> :first) OR (ld.as_of < :as_of AND ld.bucket <> t.bucket)"),
            {**params, "first": first}).rowcount
        conn.execute(text(
            "INSERT INTO loan_delinquency (loan_id, borrower_id, as_of, days_past_due, bucket, bucket_since) "
            "SELECT loan_id, borrower_id, :as_of, days_past_due, bucket, :as_of FROM tmp_dpd WHERE true "
            "ON CONFLICT (loan_id) DO UPDATE SET "
            "bucket_since = CASE WHEN loan_delinquency.bucket = excluded.bucket THEN loan_delinquency.bucket_since ELSE excluded.as_of END, "
            "as_of = excluded.as_of, days_past_due = excluded.days_past_due, bucket = excluded.bucket "
            "WHERE loan_delinquency.as_of <= excluded.as_of"), params)
        counts = dict(conn.execute(text("SELECT bucket, COUNT(*) FROM tmp_dpd GROUP BY bucket")).all())
        total = sum(counts.values())
        conn.execute(text("DROP TABLE tmp_dpd"))
    return SnapshotReport(as_of, total, max(changes, 0), counts)


def add_pause(ctx: Context, loan_id: str, start_on: date, end_on: date, *, reason: str = "", by: str = "system",
              agreement_id: str | None = None, conn: Connection | None = None) -> int:
    """Pause delinquency for [start_on, end_on). At least one day, never overlapping another
    pause on the loan, never before disbursement; backdating is allowed (staff often learn of
    an arrangement a day or two late)."""
    if end_on <= start_on:
        raise InvalidInput("a pause lasts at least one day: end_on must be after start_on", field="end_on")

    def work(c: Connection) -> int:
        loan = c.execute(select(Loan.borrower_id, Loan.disbursed_on).where(Loan.id == loan_id)).first()
        if loan is None:
            raise NotFound(f"unknown loan {loan_id!r}")
        lock_borrower(c, loan.borrower_id)
        if start_on < loan.disbursed_on:
            raise InvalidInput(f"a pause cannot start before disbursement ({loan.disbursed_on})", field="start_on")
        clash = c.execute(select(DelinquencyPause.start_on, DelinquencyPause.end_on).where(
            DelinquencyPause.loan_id == loan_id, DelinquencyPause.start_on < end_on, DelinquencyPause.end_on > start_on)).first()
        if clash is not None:
            raise Conflict(f"overlaps the pause {clash.start_on}–{clash.end_on} on loan {loan_id}")
        return int(c.execute(insert(DelinquencyPause).returning(DelinquencyPause.id), {
            "loan_id": loan_id, "borrower_id": loan.borrower_id, "start_on": start_on, "end_on": end_on,
            "reason": reason, "agreement_id": agreement_id, "created_at": ctx.clock.now(), "created_by": by}).scalar_one())

    if conn is not None:
        return work(conn)
    with ctx.db.transaction() as c:
        return work(c)


def resume(ctx: Context, loan_id: str, on: date, *, conn: Connection | None = None) -> int:
    """End the pause covering `on` early (Fineract's RESUME): its end becomes `on`, so days
    from `on` count again. Returns the pause id; Conflict if no pause covers that day."""

    def work(c: Connection) -> int:
        loan = c.execute(select(Loan.borrower_id).where(Loan.id == loan_id)).first()
        if loan is None:
            raise NotFound(f"unknown loan {loan_id!r}")
        lock_borrower(c, loan.borrower_id)
        pause = c.execute(select(DelinquencyPause.id, DelinquencyPause.start_on).where(
            DelinquencyPause.loan_id == loan_id, DelinquencyPause.start_on <= on, DelinquencyPause.end_on > on)).first()
        if pause is None:
            raise Conflict(f"no pause on loan {loan_id} covers {on}")
        if pause.start_on == on:  # a pause of zero days is no pause: remove the interval entirely
            raise Conflict(f"the pause on loan {loan_id} starts on {on}; it cannot end the same day")
        c.execute(update(DelinquencyPause).where(DelinquencyPause.id == pause.id).values(end_on=on))
        return int(pause.id)

    if conn is not None:
        return work(conn)
    with ctx.db.transaction() as c:
        return work(c)
