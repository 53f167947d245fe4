"""Shared fixtures. `ctx` runs a test on SQLite and, when configured, on PostgreSQL.

PostgreSQL: PARLEY_TEST_DATABASE_URL points at a server; the session creates its own database
there (so parallel runs do not collide), migrates it once and truncates between tests. Under
CI (CI=true) a missing PostgreSQL fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from parley.adapters.clock import FixedClock
from parley.config import Settings
from parley.services.context import Context
from parley.store.db import Database, normalise_url
from parley.store.migrate import upgrade
from parley.store.models import metadata

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("PARLEY_TEST_DATABASE_URL", "")
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday


def require_postgres() -> str:
    if PG_URL:
        return PG_URL
    if IN_CI:
        pytest.fail("PostgreSQL tests are mandatory under CI: PARLEY_TEST_DATABASE_URL is not set")
    pytest.skip("PostgreSQL not configured: set PARLEY_TEST_DATABASE_URL to run this test")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "parley.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    url = require_postgres()
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    name = f"parley_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    test_url = normalise_url(url).rsplit("/", 1)[0] + f"/{name}"
    db = Database(test_url)
    upgrade(db)
    db.dispose()
    try:
        yield test_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _truncate_all(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def make_ctx(url: str, clock: FixedClock | None = None, **overrides: object) -> Context:
    settings = Settings(database_url=url, env="test", **overrides)  # type: ignore[arg-type]
    return Context(Database(url), settings, clock or FixedClock(START))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on each backend."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "parley.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        db = Database(url)
        _truncate_all(db)
        db.dispose()
        yield url


@pytest.fixture
def ctx(db_url: str) -> Iterator[Context]:
    context = make_ctx(db_url)
    yield context
    context.db.dispose()


@pytest.fixture
def pg_ctx(request: pytest.FixtureRequest) -> Iterator[Context]:
    """PostgreSQL only (concurrency tests)."""
    url = request.getfixturevalue("pg_database")
    db = Database(url)
    _truncate_all(db)
    db.dispose()
    context = make_ctx(url)
    yield context
    context.db.dispose()
