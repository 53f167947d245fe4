"""Benchmark: the daily run over 1,000,000 delinquent accounts on SQLite and PostgreSQL.

Seeds synthetic borrowers, loans and instalments directly with ``bulk_insert`` (not through
the CSV importer, which validates and encrypts row by row), then times ``run_daily`` end to end
— days past due, tags, state, actions, history filters, times, collector assignment and the
queue writes — and, as the floor, bulk-writing the same number of queue rows alone (COPY on
PostgreSQL, executemany on SQLite). ``quick=True`` uses 50,000 accounts.

PostgreSQL runs when ``PARLEY_BENCH_DATABASE_URL`` or ``PARLEY_TEST_DATABASE_URL`` is set (a
scratch database is created and dropped there).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.pg import throwaway_database
from parley.adapters.clock import FixedClock
from parley.adapters.crypto import mask_phone
from parley.config import Settings
from parley.services.context import Context
from parley.store.db import Database, bulk_insert
from parley.store.migrate import upgrade

AS_OF = date(2026, 3, 2)  # a Monday
NOW = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
LANGS = ("zh-Hans", "zh-Hans", "zh-Hans", "zh-Hant", "en")
ZONES = ("Asia/Shanghai", "Asia/Shanghai", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Urumqi")


def dpd_of(i: int) -> int:
    """Days past due for synthetic account ``i``: spread over 1..200 so every state is used."""
    return 1 + (i * 7919) % 200


def reachable_by_all(i: int) -> tuple[bool, bool]:
    """Every synthetic borrower has a valid mobile number and an e-mail address."""
    return True, True


def seed_accounts(ctx: Context, n: int, as_of: date = AS_OF, *, start: int = 0,
                  prefix: str = "B", collectors: int = 0,
                  dpd: Callable[[int], int] = dpd_of,
                  reach: Callable[[int], tuple[bool, bool]] = reachable_by_all) -> None:
    """``n`` borrowers with one loan each, overdue by ``dpd_of(i)`` days on ``as_of``: one unpaid
    instalment due ``dpd_of(i)`` days before ``as_of`` and one not yet due; a mobile number
    (encrypted, with its blind index) and an e-mail address as ``reach(i)`` says. Plus
    ``collectors`` in-house collectors (capacity 60, zh/en, a few with Cantonese)."""
    created = db_datetime_for(ctx, NOW)
    with ctx.db.transaction() as conn:
        def d(v: date) -> Any:
            return v.isoformat() if conn.dialect.name == "sqlite" else v

        rng = range(start, start + n)
        bulk_insert(conn, "borrower", (
            "id", "name", "preferred_language", "declared_timezone", "jurisdiction", "risk_score",
            "tags", "content_hash", "created_at", "audit_seq", "audit_head"), (
            (f"{prefix}{i:07d}", f"借款人{i}", LANGS[i % 5], ZONES[i % 5], "CN", i % 1000,
             ",lang_yue," if i % 23 == 0 else "", "x", created, 0, "") for i in rng))
        loan_cols = ["id", "borrower_id", "currency", "principal", "annual_rate", "term", "method",
                     "day_count", "disbursed_on", "first_due_on", "product", "schedule_source",
                     "status", "content_hash", "created_at", "oldest_unpaid_due_on"]
        # oldest_unpaid_due_on: the loan row's days-past-due cache, filled as the importer does.

        def loans():  # type: ignore[no-untyped-def]
            for i in rng:
                due = d(as_of - timedelta(days=dpd(i)))
                row = (f"L{prefix}{i:07d}", f"{prefix}{i:07d}", "CNY", 200_000 + (i % 97) * 10_000,
                       "12", 2, "equal-principal", "30/360", d(as_of - timedelta(days=300)), due,
                       "cash_loan", "generated", "active", "x", created)
                yield (*row, due)

        bulk_insert(conn, "loan", loan_cols, loans())

        def installments():  # type: ignore[no-untyped-def]
            for i in rng:
                due = as_of - timedelta(days=dpd(i))
                principal = 100_000 + (i % 97) * 5_000
                yield (f"L{prefix}{i:07d}", 1, f"{prefix}{i:07d}", d(due), principal, 2_000, 0, 0,
                       0, 0, 0, 0, None)
                yield (f"L{prefix}{i:07d}", 2, f"{prefix}{i:07d}", d(as_of + timedelta(days=30)),
                       principal, 2_000, 0, 0, 0, 0, 0, 0, None)

        bulk_insert(conn, "installment", (
            "loan_id", "number", "borrower_id", "due_on", "principal_due", "interest_due",
            "fee_due", "penalty_due", "paid_principal", "paid_interest", "paid_fee",
            "paid_penalty", "paid_off_on"), installments())
        keys = ctx.keyring

        def phones():  # type: ignore[no-untyped-def]
            for i in rng:
                if reach(i)[0]:
                    number = f"+86138{i:08d}"
                    yield (f"{prefix}{i:07d}", 1, "mobile", keys.encrypt(number, "phone.e164"),
                           keys.blind_index(number, "phone"), mask_phone(number), ZONES[i % 5], True)

        bulk_insert(conn, "borrower_phone", ("borrower_id", "position", "phone_type", "e164_enc",
                                             "e164_index", "masked", "timezones", "is_valid"),
                    phones())
        bulk_insert(conn, "borrower_email", ("borrower_id", "position", "address"), (
            (f"{prefix}{i:07d}", 1, f"b{prefix.lower()}{i:07d}@example.com") for i in rng
            if reach(i)[1]))
        if collectors:
            bulk_insert(conn, "staff_user", (
                "id", "username", "display_name", "role", "badge_number", "password_hash",
                "languages", "skills", "daily_capacity", "active", "created_at"), (
                (f"C{k:04d}", f"c{k:04d}", f"催收员{k}", "collector", f"G{k:05d}", "",
                 "zh-Hans,en" if k % 3 else "zh-Hans,zh-Hant", "lang:yue" if k % 5 == 0 else "",
                 60, True, created) for k in range(collectors)))
        if conn.dialect.name == "postgresql":
            for t in ("borrower", "borrower_phone", "borrower_email", "loan", "installment",
                      "staff_user"):
                conn.execute(text(f"ANALYZE {t}"))


def db_datetime_for(ctx: Context, value: datetime) -> Any:
    if ctx.db.is_sqlite:
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def queue_floor(ctx: Context, n: int, borrowers: int,
                mix: list[tuple[str, str, int]] | None = None) -> float:
    """Seconds to bulk-write ``n`` queue rows alone, in one transaction (then removed): the
    floor the daily run is compared with, for the same number of rows it wrote. ``mix``:
    (channel, action kind, rows) as the run wrote them, interleaved in those proportions, so
    the floor feeds the same partial indexes the run does (the worker's covers only its own
    channels); without it every row is an SMS."""
    pattern: list[tuple[str, str]] = []
    for channel, kind, count in mix or [("sms", "sms", 1)]:
        pattern += [(channel, kind)] * max(1, round(1000 * count / max(n, 1)))
    now = db_datetime_for(ctx, NOW)
    cols = ("business_date", "borrower_id", "loan_id", "strategy_id", "arm", "state", "action_kind",
            "channel", "purpose", "template_id", "priority", "not_before", "status", "collector_id",
            "attempts", "idempotency_key", "last_reason", "created_at", "updated_at")
    day = "2026-01-01" if ctx.db.is_sqlite else date(2026, 1, 1)
    t0 = time.perf_counter()
    with ctx.db.transaction() as conn:
        bulk_insert(conn, "contact_queue", cols, (
            (day, f"B{i % borrowers:07d}", f"LB{i % borrowers:07d}", "default", "", "m1_late",
             pattern[i % len(pattern)][1], pattern[i % len(pattern)][0], "collection",
             "m1_reminder", 20, now, "pending", None, 0, f"floor|{i}", "", now, now)
            for i in range(n)))
    elapsed = time.perf_counter() - t0
    with ctx.db.transaction() as conn:
        conn.execute(text("DELETE FROM contact_queue WHERE business_date = :d"), {"d": day})
    return elapsed


def _one(url: str, n: int) -> tuple[float, float, dict[str, Any]]:
    """Seed, run the day once (timed), empty the queue, then time writing as many rows."""
    from parley.services.daily_run import run_daily

    db = Database(url)
    upgrade(db)
    ctx = Context(db, Settings(database_url=url, env="test"), FixedClock(NOW))
    seed_accounts(ctx, n, collectors=max(2, n // 2000))
    t0 = time.perf_counter()
    report = run_daily(ctx, AS_OF)
    elapsed = time.perf_counter() - t0
    with ctx.db.transaction() as conn:
        mix = [(str(ch), str(kind), int(k)) for ch, kind, k in conn.execute(text(
            "SELECT channel, action_kind, COUNT(*) FROM contact_queue GROUP BY channel, action_kind "
            "ORDER BY channel, action_kind"))]
        conn.execute(text("DELETE FROM contact_queue"))
    floor = queue_floor(ctx, report.inserted, n, mix)
    info = {"planned": report.planned, "inserted": report.inserted, "timings": report.timings,
            "tasks_assigned": report.tasks_assigned}
    db.dispose()
    return elapsed, floor, info


def run(quick: bool = False) -> dict[str, Any]:
    n = 50_000 if quick else 1_000_000
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_s, floor_s, info = _one(f"sqlite:///{Path(tmp) / 'bench.db'}", n)
    out["daily_run_1m_s_sqlite"] = round(run_s, 2)
    out["queue_write_1m_s_sqlite"] = round(floor_s, 2)
    out["daily_run_rows_sqlite"] = info["inserted"]
    out["daily_run_steps_sqlite"] = {k: round(v, 2) for k, v in info["timings"].items()}
    ratios = [run_s / floor_s]
    with throwaway_database() as url:
        run_s, floor_s, info = _one(url, n)
    out["daily_run_1m_s_pg"] = round(run_s, 2)
    out["queue_write_1m_s_pg"] = round(floor_s, 2)
    out["daily_run_rows_pg"] = info["inserted"]
    out["daily_run_steps_pg"] = {k: round(v, 2) for k, v in info["timings"].items()}
    ratios.append(run_s / floor_s)
    out["daily_run_vs_floor_ratio"] = round(max(ratios), 2)
    out["daily_run_accounts"] = n
    return out


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))
