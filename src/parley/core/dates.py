"""Calendar arithmetic the loan book needs: month stepping and day-count fractions."""

from __future__ import annotations

import calendar
from datetime import date
from enum import StrEnum
from fractions import Fraction


class DayCount(StrEnum):
    """How many years of interest a period earns.

    30/360: every whole month is exactly 1/12; an irregular period (disbursement to first due)
    uses 30E/360 day counting. actual/365 and actual/360 count calendar days.
    """

    THIRTY_360 = "30/360"
    ACTUAL_365 = "actual/365"
    ACTUAL_360 = "actual/360"


def add_months(anchor: date, months: int) -> date:
    """`anchor` moved by whole months, keeping the anchor's day where the month has it.

    Stepping from the anchor (not from the previous result) avoids drift: 31 Jan → 28/29 Feb
    → 31 Mar, never 28 Mar.
    """
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def days_30e_360(start: date, end: date) -> int:
    """Days between two dates under the 30E/360 (Eurobond) convention."""
    d1 = min(start.day, 30)
    d2 = min(end.day, 30)
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (d2 - d1)


def year_fraction(start: date, end: date, day_count: DayCount, *, regular_month: bool) -> Fraction:
    """The exact fraction of a year between `start` and `end` under `day_count`.

    `regular_month` marks a whole scheduled month, which is exactly 1/12 under 30/360.
    """
    if end < start:
        raise ValueError("period ends before it starts")
    if day_count is DayCount.THIRTY_360:
        if regular_month:
            return Fraction(1, 12)
        return Fraction(days_30e_360(start, end), 360)
    days = (end - start).days
    if day_count is DayCount.ACTUAL_365:
        return Fraction(days, 365)
    return Fraction(days, 360)
