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


@contextmanager
def throwaway_database(prefix: str = "parley_bench") -> Iterator[str]:
    admin = create_engine(normalise_url(SERVER), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield normalise_url(SERVER).rsplit("/", 1)[0] + f"/{name}"
    finally:
        drop_databases(admin, [name])
        admin.dispose()


def drop_databases(admin: Engine, names: list[str]) -> None:
    """Drop scratch databases, first ending any session still connected to them."""
    with admin.connect() as conn:
        for name in names:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
