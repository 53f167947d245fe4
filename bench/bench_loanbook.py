"""Issue 3: import 1,000,000 loans with their schedules, and days past due for all of them,
on SQLite and PostgreSQL. Borrowers are seeded directly (not measured).

Besides the rates it prints (not stored) the CPU seconds of the writing process and of the
parsing children: on a shared machine the wall-clock rate moves with other load, the CPU
seconds much less. `python -m bench.bench_loanbook --loans 200000` measures a smaller file.
"""

from __future__ import annotations

import resource
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from bench.datagen import write_loans
from bench.pg import throwaway_database
from parley.adapters.clock import FixedClock
from parley.config import Settings
from parley.services.context import Context
from parley.services.delinquency import days_past_due_all
from parley.services.imports import import_file
from parley.store.db import Database, bulk_insert, db_datetime
from parley.store.migrate import upgrade


def _seed_borrowers(ctx: Context, n: int) -> None:
    with ctx.db.transaction() as conn:
        ts = db_datetime(conn, ctx.clock.now())
        bulk_insert(conn, "borrower", ("id", "name", "preferred_language", "jurisdiction", "tags", "content_hash", "created_at",
                                       "audit_seq", "audit_head"),
                    ((f"B{i:07d}", "x", "zh-Hans", "CN", "", "-", ts, 0, "") for i in range(n)))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _one(url: str, loans_file: Path, borrowers: int) -> tuple[float, float, int, str]:
    db = Database(url)
    upgrade(db)
    ctx = Context(db, Settings(database_url=url, env="test"), FixedClock(datetime(2026, 3, 1, tzinfo=UTC)))
    _seed_borrowers(ctx, borrowers)
    t0, cpu0, children0 = time.perf_counter(), time.process_time(), _children_cpu()
    report = import_file(ctx, "loans", loans_file)
    import_s = time.perf_counter() - t0
    cpu = f"{report.inserted:,} loans in {import_s:.1f} s; CPU s: writer {time.process_time() - cpu0:.1f}, parsers {_children_cpu() - children0:.1f}"
    with db.read() as conn:
        t1 = time.perf_counter()
        rows = days_past_due_all(ctx, conn, date(2026, 3, 31))
        dpd_s = time.perf_counter() - t1
    db.dispose()
    assert len(rows) == report.inserted
    return report.inserted / import_s, dpd_s, report.inserted, cpu


def run(quick: bool = False, loans: int = 0) -> dict[str, float | str]:
    n = loans or (50_000 if quick else 1_000_000)
    borrowers = n // 2
    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loans_file = Path(tmp) / "loans.csv"
        write_loans(loans_file, n, borrowers)
        rate, dpd_s, _, cpu = _one(f"sqlite:///{tmp}/bench.db", loans_file, borrowers)
        out["import_loans_per_s_sqlite"] = round(rate)
        out["import_sqlite_cpu"] = cpu
        out["dpd_1m_s_sqlite"] = round(dpd_s * 1_000_000 / n, 2)
        with throwaway_database() as url:
            rate, dpd_s, _, cpu = _one(url, loans_file, borrowers)
        out["import_loans_per_s_pg"] = round(rate)
        out["import_pg_cpu"] = f"{cpu} (plus the server's)"
        out["dpd_1m_s_pg"] = round(dpd_s * 1_000_000 / n, 2)
    return out


if __name__ == "__main__":
    import json
    import sys

    loans = int(sys.argv[sys.argv.index("--loans") + 1]) if "--loans" in sys.argv else 0
    print(json.dumps(run(quick="--quick" in sys.argv, loans=loans), indent=2))
