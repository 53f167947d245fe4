"""Column types that keep Parley's habits in the database: UTC instants, exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def key_string(length: int) -> TypeEngine[str]:
    """A string compared byte by byte: identifiers, keys and codes.

    On PostgreSQL it is ``COLLATE "C"``. A database created with a libc locale (even C.UTF-8)
    otherwise compares every key through strcoll, without abbreviated keys, which made index
    inserts and sorts on ids several times slower; "C" orders exactly as SQLite's BINARY, so both
    databases sort ids alike. Equality, and so every join, is the same under either collation.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


ID = key_string(64)


class UTCDateTime(TypeDecorator[datetime]):
    """A tz-aware instant stored as UTC; naive datetimes are refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: Parley stores tz-aware instants only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class DecimalText(TypeDecorator[str]):
    """An exact decimal kept as its canonical string (rates), identical on SQLite and PostgreSQL."""

    impl = String(24)
    cache_ok = True
