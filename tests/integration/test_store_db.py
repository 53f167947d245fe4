"""SQLite transaction discipline: a write transaction takes the write lock at BEGIN (so two
writers never deadlock upgrading read locks), a read does not, and the write flag never leaks
into the next user of a pooled connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from parley.store.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'lock.db'}")
    with database.transaction() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield database
    database.dispose()


def _another_writer_can_start(path: str) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


def _path(db: Database) -> str:
    return db.url.split("///", 1)[1]


def test_a_write_transaction_holds_the_write_lock_before_its_first_write(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(text("SELECT COUNT(*) FROM t")).scalar()  # only read so far
        assert not _another_writer_can_start(_path(db))


def test_a_read_transaction_leaves_writers_free(db: Database) -> None:
    with db.read() as conn:
        conn.execute(text("SELECT COUNT(*) FROM t")).scalar()
        assert _another_writer_can_start(_path(db))


def test_the_write_flag_does_not_outlive_its_checkout(db: Database) -> None:
    for _ in range(3):  # the pool hands the same connection back each time
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with db.read() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM t")).scalar()
            assert _another_writer_can_start(_path(db))


def test_a_connection_can_switch_between_reading_and_writing(db: Database) -> None:
    """The daily run reads its plan and then writes its chunks on one connection."""
    with db.engine.connect() as conn:
        conn.execution_options(parley_write=False)
        with conn.begin():
            conn.execute(text("SELECT 1")).scalar()
            assert _another_writer_can_start(_path(db))
        conn.execution_options(parley_write=True)
        with conn.begin():
            assert not _another_writer_can_start(_path(db))


def test_no_listener_runs_around_every_statement(db: Database) -> None:
    """Connection events would be dispatched around each statement; the hooks live on the
    pool and the dialect instead."""
    assert not db.engine._has_events
