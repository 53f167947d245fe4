"""Throwaway PostgreSQL databases for benchmarks (same server as the tests)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text

from parley.store.db import normalise_url

SERVER = (os.environ.get("PARLEY_BENCH_DATABASE_URL") or os.environ.get("PARLEY_TEST_DATABASE_URL")
          or "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def server_answers() -> bool:
    """Whether a PostgreSQL server listens at ``SERVER``. Only a refused connection means
    "no server" (the figure is then left out); any other failure — a wrong database or
    password — is raised, so a misconfigured run is not mistaken for a machine without one."""
    from sqlalchemy.exc import OperationalError

    engine = create_engine(normalise_url(SERVER))
    try:
        with engine.connect():
            return True
    except OperationalError as exc:
        if "Connection refused" in str(exc.orig):
            return False
        raise
    finally:
        engine.dispose()


@contextmanager
def throwaway_databases(n: int, prefix: str = "parley_bench") -> Iterator[list[str]]:
    """``n`` empty databases on ``SERVER``, dropped afterwards (with whatever connects to them)."""
    admin = create_engine(normalise_url(SERVER), isolation_level="AUTOCOMMIT")
    stem = f"{prefix}_{uuid.uuid4().hex[:8]}"
    names: list[str] = []
    try:
        with admin.connect() as conn:
            for k in range(n):
                conn.execute(text(f'CREATE DATABASE "{stem}_{k}"'))
                names.append(f"{stem}_{k}")
        base = normalise_url(SERVER).rsplit("/", 1)[0]
        yield [f"{base}/{name}" for name in names]
    finally:
        drop_databases(admin, names)
        admin.dispose()


@contextmanager
def throwaway_database(prefix: str = "parley_bench") -> Iterator[str]:
    with throwaway_databases(1, prefix) as urls:
        yield urls[0]


def drop_databases(admin: Engine, names: list[str]) -> None:
    """Drop scratch databases, first ending any session still connected to them."""
    with admin.connect() as conn:
        for name in names:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
