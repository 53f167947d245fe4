"""Benchmark: transactional permits per second with 8 concurrent worker processes.

Each permit is the real thing: lock the borrower, load the facts, decide, append to the
audit chain (+ decision_reason rows), record the attempt — one transaction. Workers pick
random borrowers (CN pack; every borrower soon reaches the 6-calls-a-day cap, so the mix is
allowed and denied permits). Afterwards the caps are checked in SQL (``permit_violations``).

PostgreSQL: a throwaway database on the server of PARLEY_BENCH_DATABASE_URL (else
PARLEY_TEST_DATABASE_URL, else postgres@127.0.0.1:5432), plus pgbench's TPC-B-like run
(`pgbench -c 8 -j 2 -T 10`, just before and just after the permits, averaged) against another
throwaway database on the same server in the same run, for the ratio. SQLite: a temporary
file. Each worker keeps one connection and runs one write transaction per permit on it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.pg import throwaway_database

WORKERS = 8
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday
CN_CAP = 6  # cn.unanswered-attempts-per-number-per-day (pending attempts count as unanswered)


def _seed(url: str, n: int) -> None:
    from parley.adapters.crypto import mask_phone
    from parley.config import Settings
    from parley.services.context import Context
    from parley.store.db import Database, bulk_insert, db_datetime
    from parley.store.migrate import upgrade

    db = Database(url)
    upgrade(db)
    ctx = Context(db, Settings(database_url=url, env="test"))
    keys = ctx.keyring
    with db.transaction() as conn:
        ts = db_datetime(conn, START - timedelta(days=30))
        bulk_insert(conn, "borrower", ("id", "name", "preferred_language", "declared_timezone",
                                       "jurisdiction", "tags", "content_hash", "created_at",
                                       "audit_seq", "audit_head"),
                    ((f"B{i:06d}", f"Borrower {i}", "zh-Hans", "Asia/Shanghai", "CN", "", "x",
                      ts, 0, "") for i in range(n)))
        phones = [(i, f"+86138{i:08d}") for i in range(n)]
        bulk_insert(conn, "borrower_phone", ("borrower_id", "position", "phone_type", "e164_enc",
                                             "e164_index", "masked", "timezones", "is_valid"),
                    ((f"B{i:06d}", 0, "mobile", keys.encrypt(p, "phone.e164"),
                      keys.blind_index(p, "phone"), mask_phone(p), "Asia/Shanghai", True)
                     for i, p in phones))
        # One loan each, overdue since a week before the run (the days-past-due cache the
        # gate reads): a borrower with nothing overdue gets no collection contact at all.
        def day(v: Any) -> Any:
            return v.isoformat() if conn.dialect.name == "sqlite" else v

        due = (START - timedelta(days=7)).date()
        bulk_insert(conn, "loan", ("id", "borrower_id", "currency", "principal", "annual_rate",
                                   "term", "method", "day_count", "disbursed_on", "first_due_on",
                                   "product", "schedule_source", "status", "content_hash",
                                   "created_at", "oldest_unpaid_due_on"),
                    ((f"L{i:06d}", f"B{i:06d}", "CNY", 500_000, "12", 6, "equal-principal",
                      "30/360", day(due - timedelta(days=30)), day(due), "cash_loan", "generated",
                      "active", "x", ts, day(due)) for i in range(n)))
    db.dispose()


def _worker(url: str, n: int, seed: int, duration: float, ready: Any, go: Any, out: Any) -> None:
    from parley.adapters.clock import FixedClock
    from parley.config import Settings
    from parley.services.context import Context
    from parley.services.permits import PermitRequest, request_permit
    from parley.store.db import Database

    ctx = Context(Database(url, pool_size=1), Settings(database_url=url, env="test"),
                  FixedClock(START))
    rng = random.Random(seed)
    clock = ctx.clock
    # Warm up: the pack, the screener-free path, the connection.
    k = rng.randrange(n)
    request_permit(ctx, PermitRequest(f"B{k:06d}", "call", "collection", loan_id=f"L{k:06d}",
                                      collector_id=f"w{seed}"))
    ready.release()
    go.wait()
    done = allowed = 0
    # A worker keeps its connection (as the queue worker does) and runs one write
    # transaction per permit on it: no pool checkout and liveness ping per permit.
    with ctx.db.engine.connect() as raw:
        conn = raw.execution_options(parley_write=True)
        t0 = time.perf_counter()
        end = t0 + duration
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            clock.set(START + timedelta(seconds=now - t0))  # type: ignore[attr-defined]
            k = rng.randrange(n)
            req = PermitRequest(f"B{k:06d}", "call", "collection", loan_id=f"L{k:06d}",
                                collector_id=f"w{seed}", agency_id="A1", badge=f"badge-{seed}")
            with conn.begin():
                p = request_permit(ctx, req, conn=conn)
            done += 1
            allowed += p.allowed
        elapsed = time.perf_counter() - t0
    out.put((done, allowed, elapsed))
    ctx.db.dispose()


def _run_workers(url: str, n: int, duration: float) -> tuple[float, int, int]:
    mpc = mp.get_context("spawn")
    ready = mpc.Semaphore(0)
    go = mpc.Event()
    out = mpc.Queue()
    procs = [mpc.Process(target=_worker, args=(url, n, 1000 + i, duration, ready, go, out))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a permit worker did not start")
    go.set()
    results = [out.get(timeout=duration + 120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    done = sum(r[0] for r in results)
    allowed = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    return done / elapsed, done, allowed


def _violations(url: str) -> int:
    """(borrower, number, Shanghai day) groups with more attempts than the CN cap, plus any
    borrower whose audit head disagrees with its chain length (a lost update)."""
    eng = create_engine(url)
    with eng.connect() as conn:
        if eng.dialect.name == "postgresql":
            day = "(at AT TIME ZONE 'Asia/Shanghai')::date"
        else:
            day = "date(at, '+8 hours')"
        over = conn.execute(text(
            f"SELECT count(*) FROM (SELECT borrower_id, to_index, {day} AS d, count(*) AS c "
            f"FROM contact_attempt GROUP BY borrower_id, to_index, {day} "
            f"HAVING count(*) > {CN_CAP}) x")).scalar_one()
        heads = conn.execute(text(
            "SELECT count(*) FROM borrower b WHERE b.audit_seq <> "
            "(SELECT count(*) FROM audit_log a WHERE a.chain_key = b.id)")).scalar_one()
    eng.dispose()
    return int(over) + int(heads)


def _pgbench(seconds: int) -> float:
    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench not found on PATH")
    with throwaway_database("parley_pgbench") as url:
        return _pgbench_on(exe, url, seconds)


def _pgbench_on(exe: str, url: str, seconds: int) -> float:
    u = make_url(url)
    name = u.database or ""
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = u.password
    conn_args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
                 "-U", u.username or "postgres"]
    subprocess.run([exe, *conn_args, "-i", "-s", "1", "-q", name], check=True, env=env,
                   capture_output=True, text=True)
    res = subprocess.run([exe, *conn_args, "-c", "8", "-j", "2", "-T", str(seconds),
                          "-b", "tpcb-like", name], check=True, env=env,
                         capture_output=True, text=True)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", res.stdout)
    if m is None:
        m = re.search(r"tps = ([0-9.]+)", res.stdout)
    if m is None:
        raise RuntimeError(f"cannot read pgbench output:\n{res.stdout}")
    return float(m.group(1))


def run(quick: bool = False) -> dict[str, float]:
    """Permits/s on PostgreSQL and SQLite with 8 worker processes, pgbench TPC-B-like tps on
    the same server, their ratio, and cap violations found afterwards (must be 0)."""
    n = 2_000 if quick else 20_000
    duration = 3.0 if quick else 10.0
    out: dict[str, float] = {}

    with throwaway_database("parley_bench") as pg_url:
        _seed(pg_url, n)
        # pgbench just before and just after the permits, averaged: the server (and whatever
        # else runs on the machine) is measured under the same conditions as the permits.
        tps_before = _pgbench(5 if quick else 10)
        pg_rate, pg_done, pg_allowed = _run_workers(pg_url, n, duration)
        tps_after = _pgbench(5 if quick else 10)
        pg_viol = _violations(pg_url)
    tps = (tps_before + tps_after) / 2

    tmp = tempfile.mkdtemp(prefix="parley-bench-")
    try:
        sq_url = f"sqlite:///{tmp}/bench.db"
        _seed(sq_url, n)
        sq_rate, sq_done, sq_allowed = _run_workers(sq_url, n, duration)
        sq_viol = _violations(sq_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not pg_allowed or not sq_allowed:  # denials alone are cheaper: not the figure asked for
        raise RuntimeError(f"no permit was allowed (PostgreSQL {pg_allowed}, SQLite {sq_allowed}): "
                           "the seeded book no longer fits the rules")

    out["permits_per_s_pg"] = round(pg_rate, 1)
    out["pgbench_tps"] = round(tps, 1)
    out["permits_vs_pgbench_ratio"] = round(pg_rate / tps, 3) if tps else 0.0
    out["permits_per_s_sqlite"] = round(sq_rate, 1)
    out["permit_violations"] = pg_viol + sq_viol
    out["permits_pg_total"] = pg_done
    out["permits_pg_allowed"] = pg_allowed
    out["permits_sqlite_allowed"] = sq_allowed
    out["permits_sqlite_total"] = sq_done
    out["pgbench_tps_before"] = round(tps_before, 1)
    out["pgbench_tps_after"] = round(tps_after, 1)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))  # noqa: T201
