"""Chart geometry for the desk's server-rendered SVG charts: pure functions from numbers to
rectangles, ticks and labels. No I/O and no markup; `templates/partials/chart.html` draws the
result (so no JavaScript is needed and the page works without it).

Values are non-negative `int` or `Decimal` (counts, money in major units, rates): charts show
quantities from zero, so a negative value is a caller's mistake and raises ValueError. Axis
ticks are exact `Decimal`s on a 1-2-5 ladder, so labels never show binary-float noise; only
pixel positions are floats, rounded to 0.01 px. Money arrives as integer minor units and is
turned into major units only through `parley.core.money`; display strings are never read back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext
from typing import Any

from parley.core.money import Money

Number = int | Decimal

# Where the series' colours come from: CSS classes s0..s5 (parley.css); more series reuse them.
PALETTE_SIZE = 6
CHANNEL_ORDER = ("call", "sms", "email", "interview", "visit")


def _dec(value: Number) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise TypeError(f"chart values are int or Decimal, not {type(value).__name__}")
    d = Decimal(value)
    if not d.is_finite() or d < 0:
        raise ValueError(f"chart values must be finite and non-negative, got {value}")
    return d


def _px(x: float) -> float:
    return round(x, 2)


# --- scales ----------------------------------------------------------------------------------


def nice_step(raw: Decimal, *, integer: bool = False) -> Decimal:
    """The smallest of 1, 2, 5 × 10^k that is ≥ raw (raw > 0); at least 1 when integer."""
    if raw <= 0:
        return Decimal(1)
    exp = raw.adjusted()
    with localcontext() as c:
        c.prec = 60
        for mantissa in (1, 2, 5, 10):
            step = Decimal(mantissa).scaleb(exp)
            if step >= raw:
                break
    if integer and step < 1:
        return Decimal(1)
    return step.normalize() if step == step.to_integral_value() else step


@dataclass(frozen=True)
class Tick:
    """A gridline: its value (exact) and its distance in px from the axis origin."""

    value: Decimal
    offset: float


@dataclass(frozen=True)
class Scale:
    """A linear scale from [0, top] onto [0, length] px. ticks: 0, step, …, top (2..max+1)."""

    top: Decimal
    step: Decimal
    length: float
    ticks: tuple[Tick, ...]

    def offset(self, value: Number) -> float:
        """Distance from the origin in px (values above `top` are clamped to the end)."""
        v = min(_dec(value), self.top)
        with localcontext() as c:
            c.prec = 60
            return _px(float(v / self.top) * self.length)


def linear_scale(max_value: Number, length: float, *, max_ticks: int = 5,
                 integer: bool = True, top: Number | None = None) -> Scale:
    """A scale whose top is the first tick at or above max_value (1 for an all-zero chart).

    integer: the step is a whole number (counts). top: a fixed top instead (e.g. 1 for rates),
    with the step chosen for it."""
    if max_ticks < 1:
        raise ValueError("max_ticks must be at least 1")
    if length <= 0:
        raise ValueError("length must be positive")
    with localcontext() as c:
        c.prec = 60
        if top is not None:
            top_d = _dec(top)
            if top_d == 0:
                raise ValueError("a fixed top must be positive")
            step = nice_step(top_d / max_ticks, integer=False)
            count = math.ceil(top_d / step)
            top_d = step * count
        else:
            peak = _dec(max_value)
            step = nice_step(peak / max_ticks, integer=integer) if peak > 0 else Decimal(1)
            count = max(1, math.ceil(peak / step))
            top_d = step * count
        ticks = tuple(Tick(step * i, _px(float(Decimal(i) / count) * length)) for i in range(count + 1))
    return Scale(top_d, step, float(length), ticks)


# --- charts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One rectangle, in px inside the SVG. series: index into Chart.series; category: index
    into Chart.categories; value: what it stands for (drawn as its tooltip)."""

    x: float
    y: float
    w: float
    h: float
    series: int
    category: int
    value: Decimal


@dataclass(frozen=True)
class Category:
    """A category (a day, a bucket, a collector): its label, its centre along the category
    axis in px, and whether its label is drawn (long axes draw every n-th)."""

    label: str
    centre: float
    show_label: bool


@dataclass(frozen=True)
class Chart:
    """Everything the template draws. orientation 'columns' (values up the y axis) or 'rows'
    (values along the x axis). plot_*: the plotting area in px inside width × height.
    series: series keys, in legend order (one series = no legend needed)."""

    orientation: str
    width: int
    height: int
    plot_x: float
    plot_y: float
    plot_w: float
    plot_h: float
    scale: Scale
    categories: tuple[Category, ...]
    series: tuple[str, ...]
    bars: tuple[Bar, ...]
    stacked: bool

    @property
    def empty(self) -> bool:
        return not self.categories

    @property
    def baseline(self) -> float:
        return self.plot_y + self.plot_h if self.orientation == "columns" else self.plot_x


def _check_series(categories: Sequence[str], series: Sequence[tuple[str, Sequence[Number]]]) -> None:
    for key, values in series:
        if len(values) != len(categories):
            raise ValueError(f"series {key!r} has {len(values)} values for {len(categories)} categories")


def _peak(categories: Sequence[str], series: Sequence[tuple[str, Sequence[Number]]],
          stacked: bool) -> Decimal:
    if not categories or not series:
        return Decimal(0)
    if stacked:
        return max(sum((_dec(v[i]) for _, v in series), Decimal(0)) for i in range(len(categories)))
    return max(_dec(x) for _, v in series for x in v)


def column_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[Number]]], *,
                 stacked: bool = True, width: int = 720, height: int = 240,
                 margin: tuple[int, int, int, int] = (12, 12, 28, 64),
                 max_ticks: int = 5, integer: bool = True, max_labels: int = 12) -> Chart:
    """Vertical bars per category (days, buckets), the series stacked or side by side.
    margin: top, right, bottom, left in px (the left holds the value labels)."""
    _check_series(categories, series)
    top, right, bottom, left = margin
    plot_w, plot_h = float(width - left - right), float(height - top - bottom)
    scale = linear_scale(_peak(categories, series, stacked), plot_h, max_ticks=max_ticks,
                         integer=integer)
    n = len(categories)
    band = plot_w / n if n else plot_w
    every = max(1, math.ceil(n / max_labels)) if n else 1
    cats = tuple(Category(label, _px(left + band * (i + 0.5)), i % every == 0)
                 for i, label in enumerate(categories))
    bar_w = min(band * 0.7, 56.0)  # one or two categories still get bars, not slabs
    bars: list[Bar] = []
    for i in range(n):
        x0 = left + band * (i + 0.5) - bar_w / 2
        base = 0.0
        for s, (_, values) in enumerate(series):
            v = _dec(values[i])
            h = scale.offset(v)
            if stacked:
                if v > 0:
                    bars.append(Bar(_px(x0), _px(top + plot_h - base - h), _px(bar_w), h, s, i, v))
                base += h
            else:
                w = bar_w / len(series)
                if v > 0:
                    bars.append(Bar(_px(x0 + w * s), _px(top + plot_h - h), _px(w), h, s, i, v))
    return Chart("columns", width, height, float(left), float(top), plot_w, plot_h, scale, cats,
                 tuple(k for k, _ in series), tuple(bars), stacked)


def row_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[Number]]], *,
              width: int = 720, row: int = 22, margin: tuple[int, int, int, int] = (8, 48, 24, 220),
              max_ticks: int = 5, integer: bool = True, top: Number | None = None) -> Chart:
    """Horizontal bars, one row per category (collectors, strategy arms, rates), the series
    side by side within the row. top: a fixed scale top (1 for rates). Height follows the rows."""
    _check_series(categories, series)
    m_top, right, bottom, left = margin
    n, k = len(categories), max(1, len(series))
    band = float(row * k + 8)
    plot_h = band * n if n else float(row)
    plot_w = float(width - left - right)
    height = int(m_top + plot_h + bottom)
    scale = linear_scale(_peak(categories, series, False), plot_w, max_ticks=max_ticks,
                         integer=integer, top=top)
    cats = tuple(Category(label, _px(m_top + band * (i + 0.5)), True) for i, label in enumerate(categories))
    bars: list[Bar] = []
    for i in range(n):
        y0 = m_top + band * i + 4
        for s, (_, values) in enumerate(series):
            v = _dec(values[i])
            bars.append(Bar(float(left), _px(y0 + row * s), scale.offset(v), _px(row - 4), s, i, v))
    return Chart("rows", width, height, float(left), float(m_top), plot_w, plot_h, scale, cats,
                 tuple(key for key, _ in series), tuple(bars), False)


# --- the desk's charts -----------------------------------------------------------------------


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)] if first <= last else []


def _major(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units as an exact Decimal in major units (what the axis is labelled in)."""
    return Money.of_minor(amount_minor, currency).to_decimal()


def desk_charts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The desk's figures (`casework.desk_metrics`) as charts, drawn from its data as given:
    the window is its `first_day`..`last_day` (business dates the service worked out from the
    same instant as its counts; not recomputed here) and money is its rows' `amount_minor`.

    contacts: stacked columns per business day of the window (days without contacts count 0),
        one series per channel. rates: right-party contact rate and promises kept on a
        0-100 % axis (a rate with no data is left out). complaints: complaints per 10,000
        contacts. recovery_bucket / recovery_arm: {currency: chart}, money in major units
        (one chart per currency: amounts in different currencies share no axis).
        collectors: kept agreements, denials and complaints per collector, side by side.
    """
    per_day = {d["day"]: d["channels"] for d in metrics.get("per_day", ())}
    days = _days(metrics["first_day"], metrics["last_day"]) if per_day else []
    seen = {ch for chans in per_day.values() for ch in chans}
    channels = [c for c in CHANNEL_ORDER if c in seen] + sorted(seen - set(CHANNEL_ORDER))
    contacts = column_chart(
        [d.isoformat() for d in days],
        [(ch, [int(per_day.get(d.isoformat(), {}).get(ch, 0)) for d in days]) for ch in channels],
        stacked=True)

    rate_rows = [(key, Decimal(str(round(metrics[key], 4))))
                 for key in ("right_party_rate", "promises_kept_rate") if metrics.get(key) is not None]
    rates = row_chart([k for k, _ in rate_rows], [("rate", [v for _, v in rate_rows])],
                      top=1, integer=False)
    per_10k = metrics.get("complaints_per_10k")
    complaints = row_chart(["complaints_per_10k"] if per_10k is not None else [],
                           [("rate", [Decimal(str(round(per_10k, 2)))] if per_10k is not None else [])],
                           integer=False)

    def by_currency(rows: Sequence[Mapping[str, Any]], label: Any, rows_chart: bool) -> dict[str, Chart]:
        out: dict[str, Chart] = {}
        for cur in sorted({r["currency"] for r in rows}):
            mine = [r for r in rows if r["currency"] == cur]
            cats = [label(r) for r in mine]
            values = [_major(r["amount_minor"], cur) for r in mine]
            out[cur] = (row_chart(cats, [("amount", values)], integer=False, width=400,
                                  margin=(8, 56, 24, 140)) if rows_chart
                        else column_chart(cats, [("amount", values)], integer=False, width=400,
                                          height=220))
        return out

    collectors = list(metrics.get("collectors", ()))
    return {
        "contacts": contacts,
        "rates": rates,
        "complaints": complaints,
        "recovery_bucket": by_currency(metrics.get("recovery_by_bucket", ()),
                                       lambda r: r["bucket"], rows_chart=False),
        "recovery_arm": by_currency(metrics.get("recovery_by_arm", ()),
                                    lambda r: f"{r['strategy']} / {r['arm']}", rows_chart=True),
        "collectors": row_chart(
            [c["name"] for c in collectors],
            [(key, [int(c[key]) for c in collectors])
             for key in ("kept_agreements", "denials", "complaints")]),
    }
