"""The daily run's one WAL checkpoint on SQLite: it turns automatic checkpoints off while the
queue is written and gives the connection back with the setting it had, since the connection
returns to the pool and whoever takes it next expects its own setting, not SQLite's default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from parley.services.daily_run import _one_checkpoint
from parley.store.db import Database


def _autocheckpoint(conn: Connection) -> int:
    raw: Any = conn.connection.driver_connection
    return int(raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


@pytest.fixture
def conn(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'parley.db'}")
    with db.engine.connect() as connection:
        connection.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=250")
        assert _autocheckpoint(connection) == 250  # not SQLite's default of 1000
        yield connection
    db.dispose()


def test_the_connection_gets_back_the_autocheckpoint_it_had(conn: Connection) -> None:
    with _one_checkpoint(conn):
        assert _autocheckpoint(conn) == 0
    assert _autocheckpoint(conn) == 250


def test_a_failing_run_gives_the_connection_back_its_autocheckpoint_too(conn: Connection) -> None:
    with pytest.raises(RuntimeError, match="crash"), _one_checkpoint(conn):
        assert _autocheckpoint(conn) == 0
        raise RuntimeError("crash")
    assert _autocheckpoint(conn) == 250
