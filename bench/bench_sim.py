"""Benchmark: simulated borrower-days per second, Parley and the naive run together, on SQLite
and on PostgreSQL (a throwaway database on 127.0.0.1:5432, user postgres, as tests/conftest.py
does; left out when no server answers). The whole `simulate` call is timed: writing the book,
the daily snapshot, every permit, payment and agreement, and the naive run with its judge.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from parley.adapters.clock import FixedClock
from parley.config import Settings
from parley.services.context import Context
from parley.sim.engine import SimConfig, simulate
from parley.sim.seams import Seams
from parley.store.db import Database, normalise_url
from parley.store.migrate import upgrade

PG_ADMIN = os.environ.get("PARLEY_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _one(url: str, config: SimConfig, seams: Seams | None = None) -> float:
    db = Database(url)
    upgrade(db)
    ctx = Context(db, Settings(database_url=url, env="test"),
                  FixedClock(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)))
    try:
        result = simulate(config, ctx, seams=seams)
    finally:
        db.dispose()
    return config.borrowers * config.days / result.seconds


def _sqlite(config: SimConfig) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _one(f"sqlite:///{Path(tmp) / 'sim.db'}", config)


def _pg(config: SimConfig) -> float | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(normalise_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    name = f"parley_bench_sim_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        return None
    url = normalise_url(PG_ADMIN).rsplit("/", 1)[0] + f"/{name}"
    try:
        return _one(url, config)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def run(quick: bool = False) -> dict[str, float]:
    """Figures for both databases; the PostgreSQL key is left out when no server answers."""
    config = SimConfig(borrowers=300, days=10, seed=5) if quick else SimConfig(borrowers=3000, days=20, seed=5)
    out = {"sim_borrower_days_per_s_sqlite": _sqlite(config)}
    pg = _pg(config)
    if pg is not None:
        out["sim_borrower_days_per_s_pg"] = pg
    return out


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))  # noqa: T201
