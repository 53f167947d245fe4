"""The desk's chart geometry: scales with 1-2-5 ticks that cover the data, bars that stay in
the plotting area, and the awkward cases - nothing, zeros, one point, huge values."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.faces.web.charts import (
    column_chart,
    desk_charts,
    linear_scale,
    nice_step,
    row_chart,
)

BIG = 9_223_372_036_854_775_807  # the largest BigInteger a payment amount can hold


def test_nice_steps_climb_the_1_2_5_ladder() -> None:
    assert [nice_step(Decimal(x)) for x in ("0.7", "1", "1.1", "3", "7", "23", "0.013")] == \
        [Decimal("1"), Decimal("1"), Decimal("2"), Decimal("5"), Decimal("10"), Decimal("50"), Decimal("0.02")]
    assert nice_step(Decimal("0.3"), integer=True) == 1


def test_a_scale_ends_at_the_first_tick_at_or_above_the_peak() -> None:
    s = linear_scale(87, 200)
    assert [t.value for t in s.ticks] == [0, 20, 40, 60, 80, 100]
    assert s.ticks[0].offset == 0 and s.ticks[-1].offset == 200
    assert s.offset(50) == 100.0


def test_an_all_zero_chart_gets_a_unit_axis_and_no_bars() -> None:
    s = linear_scale(0, 100)
    assert [t.value for t in s.ticks] == [0, 1]
    c = column_chart(["2026-03-01", "2026-03-02"], [("call", [0, 0])])
    assert c.bars == () and not c.empty


def test_an_empty_chart_is_empty() -> None:
    c = column_chart([], [])
    assert c.empty and c.bars == ()
    r = row_chart([], [("rate", [])], top=1, integer=False)
    assert r.empty and r.height > 0


def test_one_point_is_one_centred_bar_reaching_the_top_tick() -> None:
    c = column_chart(["M1"], [("amount", [Decimal("800.00")])], integer=False)
    (bar,) = c.bars
    assert c.scale.top == 800 and bar.h == c.plot_h
    assert abs((bar.x + bar.w / 2) - c.categories[0].centre) < 0.02


def test_rates_use_a_fixed_zero_to_one_axis() -> None:
    r = row_chart(["right_party_rate"], [("rate", [Decimal("0.25")])], top=1, integer=False)
    assert [t.value for t in r.scale.ticks] == [Decimal(x) for x in ("0", "0.2", "0.4", "0.6", "0.8", "1")]
    assert r.bars[0].w == r.plot_w / 4


def test_huge_values_keep_exact_tick_labels() -> None:
    s = linear_scale(BIG, 300)
    assert s.top >= BIG and all(t.value == s.step * i for i, t in enumerate(s.ticks))
    assert s.step == Decimal("2E+18")


def test_negative_values_and_floats_are_refused() -> None:
    with pytest.raises(ValueError):
        column_chart(["a"], [("x", [-1])])
    with pytest.raises(TypeError):
        column_chart(["a"], [("x", [1.5])])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        column_chart(["a", "b"], [("x", [1])])


def test_long_day_axes_label_every_nth_day() -> None:
    days = [f"d{i}" for i in range(60)]
    c = column_chart(days, [("call", [1] * 60)], max_labels=12)
    shown = [cat.label for cat in c.categories if cat.show_label]
    assert 1 < len(shown) <= 12 and shown[0] == "d0"


values = st.lists(st.integers(min_value=0, max_value=BIG // 8), min_size=1, max_size=40)


@given(values, st.integers(min_value=1, max_value=10))
def test_ticks_cover_the_peak_evenly_and_never_exceed_the_budget(vs: list[int], max_ticks: int) -> None:
    s = linear_scale(max(vs), 240, max_ticks=max_ticks)
    assert s.top >= max(vs) and s.ticks[0].value == 0 and s.ticks[-1].value == s.top
    assert 2 <= len(s.ticks) <= max_ticks + 1 or max(vs) == 0
    assert all(b.value - a.value == s.step for a, b in zip(s.ticks, s.ticks[1:], strict=False))
    assert all(0 <= t.offset <= 240 for t in s.ticks)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
                min_size=1, max_size=30))
def test_stacked_bars_stay_inside_the_plot(rows: list[tuple[int, int, int]]) -> None:
    cats = [str(i) for i in range(len(rows))]
    series = [(k, [r[j] for r in rows]) for j, k in enumerate(("call", "sms", "email"))]
    c = column_chart(cats, series, stacked=True)
    for b in c.bars:
        assert b.value > 0 and b.h > 0 or b.h == 0
        assert c.plot_x - 0.01 <= b.x and b.x + b.w <= c.plot_x + c.plot_w + 0.01
        assert c.plot_y - 0.05 <= b.y and b.y + b.h <= c.plot_y + c.plot_h + 0.05


@given(st.lists(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False), min_size=1, max_size=20))
def test_row_bars_are_proportional_to_their_values(vs: list[Decimal]) -> None:
    c = row_chart([str(i) for i in range(len(vs))], [("amount", vs)], integer=False)
    for b in c.bars:
        assert abs(b.w - float(b.value / c.scale.top) * c.plot_w) < 0.011
        assert b.x + b.w <= c.plot_x + c.plot_w + 0.01


def test_desk_charts_fill_the_window_with_days_and_split_money_by_currency() -> None:
    metrics = {
        "first_day": date(2026, 2, 27), "last_day": date(2026, 3, 2),
        "per_day": [{"day": "2026-03-01", "channels": {"sms": 2, "call": 1}, "total": 3}],
        "right_party_rate": 0.5, "promises_kept_rate": None, "complaints_per_10k": 12.5,
        "recovery_by_bucket": [{"bucket": "M1", "currency": "CNY", "amount": "800.00",
                                "amount_minor": 80000, "loans": 1},
                               {"bucket": "M2", "currency": "USD", "amount": "5.00",
                                "amount_minor": 500, "loans": 1}],
        "recovery_by_arm": [], "collectors": [
            {"name": "A", "contacts": 3, "kept_agreements": 1, "denials": 2, "complaints": 0}],
    }
    ch = desk_charts(metrics)
    assert [c.label for c in ch["contacts"].categories] == ["2026-02-27", "2026-02-28", "2026-03-01",
                                                            "2026-03-02"]
    assert ch["contacts"].series == ("call", "sms")  # channels in their usual order
    assert [c.label for c in ch["rates"].categories] == ["right_party_rate"]  # no data, no bar
    assert set(ch["recovery_bucket"]) == {"CNY", "USD"} and ch["recovery_arm"] == {}
    assert [b.value for b in ch["recovery_bucket"]["CNY"].bars] == [Decimal("800.00")]
    assert ch["collectors"].series == ("kept_agreements", "denials", "complaints")
    assert desk_charts({"per_day": []})["contacts"].empty


def test_desk_charts_draw_the_window_they_are_given_not_one_of_their_own() -> None:
    # A window across a month boundary, ending on a day with no contacts: every day of it is
    # drawn, from the first day the metrics name to the last, and no other.
    metrics = {"first_day": date(2026, 3, 18), "last_day": date(2026, 4, 1),
               "per_day": [{"day": "2026-03-31", "channels": {"call": 2}, "total": 2}]}
    labels = [c.label for c in desk_charts(metrics)["contacts"].categories]
    assert len(labels) == 15 and labels[0] == "2026-03-18" and labels[-1] == "2026-04-01"
    assert labels[13:] == ["2026-03-31", "2026-04-01"]


def test_money_bars_are_drawn_from_minor_units_whatever_the_amounts_look_like_as_text() -> None:
    # The rows for the tables carry amounts as text, which a locale may write with other
    # separators ("1.234,50") or a sign ("¥123,456"); the charts draw from the minor units,
    # through the currency's exponent, so the bars come out at the right height regardless.
    metrics = {
        "per_day": [],
        "recovery_by_bucket": [
            {"bucket": "M1", "currency": "EUR", "amount": "1.234,50", "amount_minor": 123450},
            {"bucket": "M2", "currency": "EUR", "amount": "800,00", "amount_minor": 80000},
            {"bucket": "M1", "currency": "JPY", "amount": "¥123,456", "amount_minor": 123456},
            {"bucket": "M1", "currency": "KWD", "amount": "1,234.567", "amount_minor": 1234567},
        ],
    }
    ch = desk_charts(metrics)["recovery_bucket"]
    eur = ch["EUR"]
    assert [b.value for b in eur.bars] == [Decimal("1234.50"), Decimal("800.00")]
    assert eur.scale.top == 1500  # 1-2-5 ticks of 500 up to the first at or above 1,234.50
    m1, m2 = eur.bars
    assert m1.h == eur.scale.offset(Decimal("1234.50")) and m2.h == eur.scale.offset(Decimal("800"))
    assert abs(m1.h / m2.h - 1234.5 / 800) < 0.001
    assert [b.value for b in ch["JPY"].bars] == [Decimal(123456)]  # no minor digits
    assert [b.value for b in ch["KWD"].bars] == [Decimal("1234.567")]  # three minor digits
