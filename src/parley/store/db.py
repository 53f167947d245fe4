"""The database: one engine, transactions as units of work, and the few places where SQLite
and PostgreSQL must be spoken to differently (locking, bulk writes, date arithmetic)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import cast, func, literal_column
from sqlalchemy.types import Integer

from parley.store.hot import Hot

T = TypeVar("T")

_RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock detected


def normalise_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """An engine plus Parley's transaction discipline.

    `transaction()` is a write unit of work: on SQLite it begins IMMEDIATE (takes the write lock
    up front, so two writers never deadlock upgrading read locks); on PostgreSQL it is READ
    COMMITTED with explicit row locks where invariants need them (`lock_borrower`).
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5) -> None:
        self.url = normalise_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[1] if "///" in self.url else ""
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True)
            # No JIT on Parley's connections: it pays off only for long analytic queries, and
            # here it compiled each batch statement anew (0.4 s of a 0.45 s days-past-due
            # query; hundreds of ms per daily-run chunk) while permits never need it.
            # temp_buffers: the daily run's temporary tables (about 400 MB for a million
            # accounts) otherwise page through 8 MB of local buffers; at 256 MB its accounts
            # step still took twice as long. It can only be set before a session's first
            # temporary table, and is allocated only as a session actually uses them.
            kwargs["connect_args"] = {"options": "-c jit=off -c temp_buffers=1GB"}
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: commits if the block returns, rolls back if it raises."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(parley_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot on PostgreSQL)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def run(self, work: Callable[[Connection], T], *, attempts: int = 5) -> T:
        """Run `work` in one write transaction, retrying serialization failures and deadlocks."""
        for attempt in range(attempts):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except (DBAPIError, OperationalError) as exc:
                if attempt == attempts - 1 or not self._retryable(exc):
                    raise
                time.sleep(0.005 * (2**attempt))
        raise RuntimeError("unreachable")

    def _retryable(self, exc: DBAPIError) -> bool:
        if self.is_postgres:
            return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_PG
        return "database is locked" in str(exc.orig)

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas on connect, and BEGIN IMMEDIATE for write transactions.

    Both hooks sit on the pool and the dialect, not on the engine's connection events: an
    engine with any connection listener dispatches four (empty) events around every statement,
    a few per cent of the simulator's time."""

    @event.listens_for(engine.pool, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=60000",
            "temp_store=MEMORY",
            "cache_size=-262144",
            "mmap_size=1073741824",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info.pop(_WRITE, None)  # the next checkout starts as a reader

    dialect = engine.dialect
    set_options = dialect.set_connection_execution_options

    def _set_options(connection: Connection, opts: Any) -> None:
        if _WRITE in opts:  # remembered where do_begin, which sees only the pooled
            connection.connection.info[_WRITE] = bool(opts[_WRITE])  # connection, can read it
        set_options(connection, opts)

    def _do_begin(dbapi_conn: Any) -> None:
        dbapi_conn.execute("BEGIN IMMEDIATE" if dbapi_conn.info.get(_WRITE) else "BEGIN")

    dialect.set_connection_execution_options = _set_options  # type: ignore[method-assign]
    dialect.do_begin = _do_begin  # type: ignore[method-assign,assignment]


_WRITE = "parley_write"  # execution option: this connection's transactions write


_LOCK = Hot(text("SELECT id FROM borrower WHERE id = :id"))  # services lock often
_LOCK_PG = Hot(text("SELECT id FROM borrower WHERE id = :id FOR UPDATE"))


def lock_borrower(conn: Connection, borrower_id: str) -> bool:
    """Take the per-borrower lock for the rest of the transaction; False if no such borrower.

    The borrower is the unit of locking for every invariant (caps, agreements, holds), which
    is what lets the online path shard by borrower. On SQLite the IMMEDIATE transaction already
    holds the database write lock, so a plain read suffices.
    """
    sql = _LOCK_PG if conn.dialect.name == "postgresql" else _LOCK
    return sql.first(conn, {"id": borrower_id}) is not None


def db_datetime(conn: Connection, value: datetime) -> Any:
    """A tz-aware instant in the form the raw driver path expects (bulk writes bypass types)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused")
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    return value.astimezone(UTC)


def bulk_insert(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Append rows as fast as the driver allows: COPY on PostgreSQL, executemany on SQLite.

    Rows must already hold driver-ready values (ints, strs, dates, bytes; datetimes via
    `db_datetime`). Runs inside the caller's transaction, so a later failure rolls it back.
    """
    raw = conn.connection.driver_connection
    count = 0
    if conn.dialect.name == "postgresql":
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    cur = raw.cursor()
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 10_000:
            cur.executemany(sql, batch)
            count += len(batch)
            batch.clear()
    if batch:
        cur.executemany(sql, batch)
        count += len(batch)
    cur.close()
    return count


def bulk_copy_text(conn: Connection, table: str, columns: Sequence[str], block: str) -> int:
    """PostgreSQL only: COPY a block already in COPY text format (tab-separated, one row per
    line, nothing needing escapes). Lets another process do the encoding. Returns rows written."""
    if conn.dialect.name != "postgresql":
        raise ValueError("bulk_copy_text is for PostgreSQL; use bulk_insert")
    raw = conn.connection.driver_connection
    data = block.encode()
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(0, len(data), 1 << 20):
            copy.write(data[i : i + (1 << 20)])
    return block.count("\n")


def days_between(
    conn: Connection, start: ColumnElement[Any], end: ColumnElement[Any]
) -> ColumnElement[int]:
    """Whole days from `start` to `end` (both DATE), in each dialect's own arithmetic."""
    if conn.dialect.name == "sqlite":
        return cast(func.julianday(end) - func.julianday(start), Integer)
    return end - start  # type: ignore[no-any-return]


def sql_literal_date(conn: Connection, value: Any) -> ColumnElement[Any]:
    """A date literal usable in date arithmetic on both dialects."""
    if conn.dialect.name == "sqlite":
        return literal_column(f"'{value.isoformat()}'")
    return literal_column(f"DATE '{value.isoformat()}'")
