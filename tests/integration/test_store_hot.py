"""Hot statements (parley.store.hot) read and write exactly what Core does, on both databases:
the same types through the same processors, the same errors, the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from parley.store.db import Database
from parley.store.hot import Hot
from parley.store.types import UTCDateTime

_meta = MetaData()
_t = Table(
    "hot_probe", _meta,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=True),
    Column("day", Date, nullable=True),
    Column("flag", Boolean, nullable=True),
    Column("amount", BigInteger, nullable=True),
    Column("note", String(200), nullable=True),
    Column("tag", String(20), default="from-python"),
)
_COLS = ("id", "at", "day", "flag", "amount", "note")
HOT_INSERT = Hot(insert(_t).returning(_t.c.id))
HOT_GET = Hot(select(*(_t.c[c] for c in _COLS)).where(_t.c.id == bindparam("id")))
HOT_SET = Hot(_t.update().where(_t.c.id == bindparam("key")))
CORE_GET = select(*(_t.c[c] for c in _COLS)).where(_t.c.id == bindparam("id"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    with database.transaction() as conn:
        _meta.drop_all(conn)
        _meta.create_all(conn)
    yield database
    with database.transaction() as conn:
        _meta.drop_all(conn)
    database.dispose()


def _row(i: int, at: datetime | None = None) -> dict[str, object]:
    return {"id": i, "at": at or datetime(2026, 3, 1, 8, 30, tzinfo=UTC), "day": date(2026, 3, 1),
            "flag": True, "amount": 12_345_678_901, "note": "欠款 ¥1,000", "tag": "x"}


instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                                   timezone(timedelta(hours=-5, minutes=-30))]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=instants, day=st.dates(min_value=date(1971, 1, 1), max_value=date(2099, 12, 31)),
       flag=st.none() | st.booleans(), amount=st.none() | st.integers(-(2**62), 2**62),
       note=st.none() | st.text(max_size=50).filter(lambda s: "\x00" not in s))
def test_what_one_path_writes_the_other_reads_back_equal(
        db: Database, at: datetime, day: date, flag: bool | None, amount: int | None,
        note: str | None) -> None:
    values = {"id": 1, "at": at, "day": day, "flag": flag, "amount": amount, "note": note,
              "tag": ""}
    want = (1, at, day, flag, amount, note)
    with db.transaction() as conn:
        conn.execute(_t.delete())
        assert HOT_INSERT.one(conn, values) == (1,)
        core = tuple(conn.execute(CORE_GET, {"id": 1}).one())
        conn.execute(_t.delete())
        conn.execute(insert(_t), {**values, "id": 2})
        hot = HOT_GET.one(conn, {"id": 2})
    assert core == want
    assert hot == (2, *want[1:])
    assert hot[1].tzinfo is not None and hot[1] == at  # the same instant, tz-aware


def test_a_naive_datetime_is_refused_by_the_columns_own_type(db: Database) -> None:
    """UTCDateTime's bind processor refuses it, as under Core; Core wraps the ValueError in a
    StatementError, Hot lets the ValueError itself through."""
    with db.transaction() as conn, pytest.raises(ValueError, match="naive"):
        HOT_INSERT.one(conn, _row(1, at=datetime(2026, 3, 1, 8, 30)))  # noqa: DTZ001


def test_a_duplicate_key_raises_sqlalchemys_integrity_error(db: Database) -> None:
    with db.transaction() as conn:
        HOT_INSERT.one(conn, _row(1))
        with pytest.raises(IntegrityError):
            HOT_INSERT.one(conn, _row(1))
    with db.transaction() as conn, pytest.raises(IntegrityError):  # many at once, too
        Hot(insert(_t)).run_many(conn, [_row(2), _row(2)])


def test_an_update_sets_the_columns_given_and_counts_the_rows(db: Database) -> None:
    with db.transaction() as conn:
        HOT_INSERT.one(conn, _row(1))
        assert HOT_SET.run(conn, {"key": 1, "note": "paid"}) == 1
        assert HOT_SET.run(conn, {"key": 1, "flag": False, "amount": 5}) == 1  # another form
        assert HOT_SET.run(conn, {"key": 99, "note": "nobody"}) == 0
        row = HOT_GET.one(conn, {"id": 1})
    assert (row[3], row[4], row[5]) == (False, 5, "paid")


def test_many_rows_in_one_statement_and_fixed_parameters_kept(db: Database) -> None:
    first = Hot(select(_t.c.id).where(_t.c.flag.is_(True)).order_by(_t.c.id).limit(1))
    with db.transaction() as conn:
        Hot(insert(_t)).run_many(conn, [{**_row(i), "flag": i % 2 == 0} for i in range(1, 6)])
        assert first.scalar(conn, {}) == 2  # LIMIT 1 travels as the statement's own parameter
        assert Hot(text("SELECT COUNT(*) FROM hot_probe")).scalar(conn, {}) == 5
        assert HOT_GET.first(conn, {"id": 42}) is None


def test_the_rows_belong_to_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"), db.transaction() as conn:
        HOT_INSERT.one(conn, _row(1))
        raise RuntimeError("boom")
    with db.read() as conn:
        assert HOT_GET.first(conn, {"id": 1}) is None


def test_statements_that_need_cores_machinery_are_refused(db: Database) -> None:
    with db.transaction() as conn:
        with pytest.raises(TypeError, match="IN lists"):
            Hot(select(_t.c.id).where(_t.c.id.in_([1, 2]))).rows(conn, {})
        with pytest.raises(TypeError, match="tag"):  # a Python-side default left to fill
            Hot(insert(_t)).run(conn, {k: v for k, v in _row(1).items() if k != "tag"})
        with pytest.raises(TypeError, match="'id'"):
            HOT_GET.first(conn, {})
        with pytest.raises(TypeError, match="nte"):  # a misspelt column is not dropped quietly
            HOT_SET.run(conn, {"key": 1, "nte": "paid"})
        stamped = Table("hot_stamped", MetaData(), Column("id", Integer, primary_key=True),
                        Column("n", Integer), Column("touched", Integer, onupdate=1))
        with pytest.raises(TypeError, match="touched"):  # an onupdate filled in Python
            Hot(stamped.update().where(stamped.c.id == bindparam("key"))).run(conn, {"key": 1,
                                                                                   "n": 2})
        with pytest.raises(TypeError, match="literal-rendered"):
            Hot(select(_t.c.id).where(_t.c.id == bindparam("k", 1, literal_execute=True))
                ).rows(conn, {})


def test_a_hot_statement_outside_a_transaction_is_refused(db: Database) -> None:
    with db.engine.connect() as conn, pytest.raises(RuntimeError, match="inside a transaction"):
        HOT_GET.first(conn, {"id": 1})


@pytest.mark.pg
def test_a_lost_server_connection_is_invalidated_not_handed_out_again(pg_ctx) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    db = pg_ctx.db
    with pytest.raises(DBAPIError) as err, db.transaction() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        Hot(text("SELECT 1")).scalar(conn, {})
    assert err.value.connection_invalidated
    with db.read() as conn:  # the pool gives a live connection next
        assert Hot(text("SELECT 1")).scalar(conn, {}) == 1
