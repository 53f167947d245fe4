"""The versioned business calendar: seeded from `holidays`, read back as a core value.

``calendar_day`` holds, per jurisdiction, every non-working date (public holidays, 调休 days
off) and every make-up working day (调休) on a weekend; ordinary weekdays and weekends are
implied. A year is covered only when it has a ``calendar_year`` row, so a year nobody loaded
is unknown and calendar rules fail closed.

China: ``holidays.China`` knows the State Council make-up working days only for years whose
schedule was published; for a later year it computes holidays without make-up days (which
would fail open), so seeding such a year is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import date
from typing import Any

import holidays as holidays_lib
from sqlalchemy import Connection, delete, select

from parley.core.gate import BusinessCalendar
from parley.errors import InvalidInput
from parley.store.models.base import table_of
from parley.store.models.loanbook import CalendarDay, CalendarYear

_day = table_of(CalendarDay)
_year = table_of(CalendarYear)

_HOLIDAYS_VERSION = str(getattr(holidays_lib, "__version__", "?"))
CACHE_SECONDS = 60.0
_cache: dict[tuple[str, str, tuple[int, ...]], tuple[float, BusinessCalendar]] = {}
_cache_lock = threading.Lock()


def _holidays_for(jurisdiction: str, year: int) -> Any:
    """The `holidays` calendar for a jurisdiction id: CN, US, US-MA (state), GB, IN..."""
    country, _, subdiv = jurisdiction.upper().partition("-")
    if country == "CN":
        return holidays_lib.country_holidays("CN", years=year)
    if country == "US":
        return holidays_lib.country_holidays("US", subdiv=subdiv or None, years=year)
    try:
        return holidays_lib.country_holidays("GB" if country == "UK" else country,
                                             subdiv=subdiv or None, years=year)
    except NotImplementedError as exc:
        raise InvalidInput(f"no holiday calendar for {jurisdiction!r}",
                           record="calendar", field="jurisdiction") from exc


def calendar_rows(jurisdiction: str, year: int) -> list[tuple[date, bool, str]]:
    """(day, is_working_day, reason) for one year: holidays and weekend make-up workdays."""
    cal = _holidays_for(jurisdiction, year)
    rows: dict[date, tuple[bool, str]] = {}
    for d, name in cal.items():
        if d.year == year:
            rows[d] = (False, str(name))
    workdays = sorted(d for d in getattr(cal, "weekend_workdays", ()) if d.year == year)
    if jurisdiction.upper().startswith("CN") and not workdays:
        raise InvalidInput(
            f"no published make-up working days (调休) for CN {year} in holidays "
            f"{_HOLIDAYS_VERSION}; refusing to seed a calendar that would fail open",
            record="calendar", field="years")
    for d in workdays:
        rows[d] = (True, "make-up working day (调休)")
    return [(d, w, r[:200]) for d, (w, r) in sorted(rows.items())]


def seed_calendar(ctx: Any, jurisdiction: str, years: Iterable[int]) -> dict[int, int]:
    """Load (or reload) ``years`` of ``jurisdiction`` from `holidays` in one transaction;
    returns the rows written per year. Replaces whatever the years held before."""
    jur = jurisdiction.upper()
    plan = {y: calendar_rows(jur, y) for y in sorted(set(years))}  # validate before writing
    now = ctx.clock.now()
    source = f"holidays {_HOLIDAYS_VERSION}"
    with ctx.db.transaction() as conn:
        for y, rows in plan.items():
            conn.execute(delete(_day).where(_day.c.jurisdiction == jur,
                                            _day.c.day >= date(y, 1, 1),
                                            _day.c.day <= date(y, 12, 31)))
            conn.execute(delete(_year).where(_year.c.jurisdiction == jur, _year.c.year == y))
            if rows:
                conn.execute(_day.insert(), [
                    {"jurisdiction": jur, "day": d, "is_working_day": w, "reason": r}
                    for d, w, r in rows])
            conn.execute(_year.insert(), {"jurisdiction": jur, "year": y, "source": source,
                                          "loaded_at": now})
    clear_cache()
    return {y: len(rows) for y, rows in plan.items()}


def load_calendar(conn: Connection, jurisdiction: str, years: Iterable[int]) -> BusinessCalendar:
    """The business calendar of ``jurisdiction`` for those of ``years`` that are loaded."""
    jur = jurisdiction.upper()
    wanted = sorted(set(years))
    if not wanted:
        return BusinessCalendar()
    covered = frozenset(int(y) for (y,) in conn.execute(
        select(_year.c.year).where(_year.c.jurisdiction == jur, _year.c.year.in_(wanted))))
    if not covered:
        return BusinessCalendar()
    off: set[date] = set()
    work: set[date] = set()
    for d, is_working in conn.execute(
        select(_day.c.day, _day.c.is_working_day).where(
            _day.c.jurisdiction == jur, _day.c.day >= date(min(covered), 1, 1),
            _day.c.day <= date(max(covered), 12, 31))
    ):
        if d.year in covered:
            (work if is_working else off).add(d)
    return BusinessCalendar(covered, frozenset(off), frozenset(work))


def cached_calendar(conn: Connection, jurisdiction: str, years: Iterable[int]) -> BusinessCalendar:
    """``load_calendar`` behind a short per-process cache (the calendar changes once a year;
    ``seed_calendar`` clears it in this process, other processes see it within a minute)."""
    key = (str(conn.engine.url), jurisdiction.upper(), tuple(sorted(set(years))))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    cal = load_calendar(conn, jurisdiction, key[2])
    with _cache_lock:
        _cache[key] = (now, cal)
    return cal


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
