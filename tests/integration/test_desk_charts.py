"""The compliance desk's figures and charts: recovery counted in the bucket a loan was in when
it was paid (from the bucket history), and the charts drawn as inline SVG with their numbers
still in a table beside them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from parley.services.auth import Actor
from parley.services.casework import desk_metrics
from parley.services.delinquency import snapshot
from parley.services.payments import post_payment
from tests.integration.web_data import World, client, queue_item, sign_in_staff

DESK = Actor("staff", "x", "compliance_officer")


def test_recovery_counts_the_bucket_the_loan_was_in_when_it_was_paid(world: World) -> None:
    ctx = world.ctx
    snapshot(ctx, date(2026, 2, 20))  # L1 and L2 are 111 days past due: M4
    post_payment(ctx, "P-L1", "L1", datetime(2026, 2, 25, 2, 0, tzinfo=UTC), 80000)  # in M4
    post_payment(ctx, "P-L2", "L2", datetime(2026, 2, 17, 2, 0, tzinfo=UTC), 30000)  # before any snapshot
    snapshot(ctx, date(2026, 3, 2))  # both have rolled to M5 since
    m = desk_metrics(ctx, DESK)
    by_bucket = {r["bucket"]: (r["amount"], r["loans"]) for r in m["recovery_by_bucket"]}
    # L1 was paid while in M4 (counting by its current bucket would say M5); L2's payment
    # predates its bucket history, so it falls back to the current bucket.
    assert by_bucket == {"M4": ("800.00", 1), "M5": ("300.00", 1)}
    # and as integer minor units with their currency, for the charts
    assert [(r["bucket"], r["currency"], r["amount_minor"]) for r in m["recovery_by_bucket"]] == [
        ("M4", "CNY", 80000), ("M5", "CNY", 30000)]


def test_a_payment_that_cures_a_loan_counts_for_the_bucket_it_was_cured_from(world: World) -> None:
    ctx = world.ctx
    snapshot(ctx, date(2026, 2, 20))
    post_payment(ctx, "P-all", "L2", datetime(2026, 2, 24, 2, 0, tzinfo=UTC), 700000)  # pays it all
    snapshot(ctx, date(2026, 2, 24))
    snapshot(ctx, date(2026, 3, 2))
    m = desk_metrics(ctx, DESK)
    assert [r["bucket"] for r in m["recovery_by_bucket"]] == ["M4"]  # not M0, where it is now


def test_the_desk_draws_its_charts_as_svg_and_keeps_the_numbers_in_tables(web, world: World) -> None:
    from sqlalchemy import insert

    from parley.store.models.contacts import ContactAttempt

    queue_item(world.ctx, "L1", "B1", world.staff["collector"], 10, "q-arm")
    snapshot(world.ctx, date(2026, 2, 20))
    post_payment(world.ctx, "P-1", "L1", datetime(2026, 2, 25, 2, 0, tzinfo=UTC), 80000)
    with world.ctx.db.transaction() as conn:
        conn.execute(insert(ContactAttempt), [
            {"borrower_id": "B1", "loan_id": "L1", "person_role": "borrower", "channel": ch,
             "purpose": "collection", "at": datetime(2026, 3, 1, 3, i, tzinfo=UTC),
             "collector_id": world.staff["collector"], "result": "conversation" if ch == "call" else None}
            for i, ch in enumerate(("call", "call", "sms"))
        ])
    desk = client(web.app)
    csrf = sign_in_staff(desk, world, "compliance")
    desk.post("/lang", data={"lang": "en", "back": "/desk", "csrf_token": csrf})
    html = desk.get("/desk").text
    for chart in ("chart-contacts", "chart-rates", "chart-recovery-bucket", "chart-recovery-arm",
                  "chart-collectors"):
        svg = re.search(rf'<svg[^>]*id="{chart}"[^>]*>(.*?)</svg>', html, re.S)
        assert svg, chart
        assert "<title" in svg.group(1) and "<desc" in svg.group(1)
    contacts = re.search(r'<svg[^>]*id="chart-contacts".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    assert contacts.count('class="bar s0"') >= 1 and "Phone call" in contacts and "Text message" in contacts
    assert 'role="img"' in contacts
    # the numbers stay readable as a table
    bucket_table = html.split('id="recovery-bucket"')[1].split("</table>")[0]
    assert "M4" in bucket_table and "800.00" in bucket_table


def test_an_empty_desk_draws_no_bars_and_says_so(web, world: World) -> None:
    desk = client(web.app)
    sign_in_staff(desk, world, "compliance")
    html = desk.get("/desk").text
    assert 'class="bar' not in html
    assert "暂无联系记录" in html or "No contacts on record." in html or "没有联系记录" in html


def test_the_page_draws_the_window_the_service_counted_even_when_midnight_passes_between(
        web: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import insert

    from parley.adapters.clock import FixedClock
    from parley.faces.web import charts
    from parley.services import casework
    from parley.store.models.contacts import ContactAttempt

    clock = world.ctx.clock
    assert isinstance(clock, FixedClock)
    clock.set(datetime(2026, 3, 31, 15, 59, 30, tzinfo=UTC))  # 23:59:30 on 31 March in Shanghai
    with world.ctx.db.transaction() as conn:
        conn.execute(insert(ContactAttempt), [
            {"borrower_id": "B1", "loan_id": "L1", "person_role": "borrower", "channel": "call",
             "purpose": "collection", "at": datetime(2026, 3, 31, 3, 0, tzinfo=UTC)}])
    desk = client(web.app)
    sign_in_staff(desk, world, "compliance")

    seen: dict[str, dict[str, Any]] = {}
    counted = casework.desk_metrics
    draw = charts.desk_charts

    def count_then_midnight(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen["metrics"] = counted(*args, **kwargs)
        clock.advance(timedelta(minutes=1))  # 1 April has begun by the time the page draws
        return seen["metrics"]

    def drawn(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen["charts"] = draw(*args, **kwargs)
        return seen["charts"]

    monkeypatch.setattr(casework, "desk_metrics", count_then_midnight)
    monkeypatch.setattr(charts, "desk_charts", drawn)
    assert desk.get("/desk").status_code == 200

    m = seen["metrics"]
    # the service's window: business dates (Shanghai), 14 days back from the instant it counted
    assert (m["first_day"], m["last_day"]) == (date(2026, 3, 17), date(2026, 3, 31))
    assert [d["day"] for d in m["per_day"]] == ["2026-03-31"]
    # and the page draws exactly that window, not one recomputed from a later clock reading
    days = [c.label for c in seen["charts"]["contacts"].categories]
    assert days[0] == "2026-03-17" and days[-1] == "2026-03-31" and len(days) == 15
