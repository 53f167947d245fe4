"""Bad input on a web form gets a clear error and changes nothing (brief invariant 10): the
page comes back (422) with the field named next to its form and what was typed still in it,
and no table holds anything it did not hold before."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from parley.errors import InvalidInput
from parley.services import casework
from parley.services.auth import Actor
from parley.services.context import Context
from parley.store.models import metadata
from parley.store.models.web import Complaint
from tests.integration.web_data import World, client, sign_in_borrower, sign_in_staff

# Signing in and loading pages touch these; nothing a form writes lives in them.
SIGN_IN_TABLES = frozenset({"web_session", "otp_code", "rate_limit_hit"})


def snapshot(ctx: Context) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the sign-in ones, in a stable order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with ctx.db.read() as conn:
        for table in metadata.sorted_tables:
            if table.name in SIGN_IN_TABLES:
                continue
            out[table.name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
    return out


def refused_at(page: str, section: str) -> str:
    """The text of the section whose form refused the input (it must carry the alert)."""
    part = page.split(f'id="{section}"')[1].split("</section>")[0]
    assert 'class="error" role="alert"' in part, f"no error shown in #{section}"
    return part


def post_refused(signed_in: tuple[TestClient, str], world: World, url: str,
                 data: dict[str, Any], section: str) -> str:
    """Post a form that must be refused: 422, the error shown in ``section`` (whose text is
    returned), and nothing in the database changed."""
    web, csrf = signed_in
    before = snapshot(world.ctx)
    r = web.post(url, data={**data, "csrf_token": csrf})
    assert r.status_code == 422
    part = refused_at(r.text, section)
    assert snapshot(world.ctx) == before
    return part


@pytest.fixture
def collector(web: TestClient, world: World) -> tuple[TestClient, str]:
    return web, sign_in_staff(web, world, "collector")


@pytest.fixture
def borrower(web: TestClient, world: World) -> tuple[TestClient, str]:
    return web, sign_in_borrower(web, world)


# --- 1. the portal's preferences are saved together or not at all ---------------------------


def test_a_bad_quiet_window_saves_no_opt_out_either(borrower, world: World) -> None:
    part = post_refused(borrower, world, "/portal/preferences", {
        "opt_out": ["sms", "visit"], "quiet_from": "25:00", "quiet_to": "01:00"}, "preferences")
    assert 'data-field="quiet_from"' in part and "use HH:MM" in part
    assert 'value="25:00"' in part and 'value="01:00"' in part  # as the borrower typed it
    assert 'value="sms" checked' in part and 'value="visit" checked' in part
    assert 'value="call" >' in part  # not ticked, as they left it


def test_a_good_preferences_form_saves_both_in_one_go(borrower, world: World) -> None:
    web, csrf = borrower
    r = web.post("/portal/preferences", data={"opt_out": ["sms"], "quiet_from": "12:00",
                                              "quiet_to": "14:00", "csrf_token": csrf})
    assert r.status_code == 303
    part = web.get("/portal").text.split('id="preferences"')[1]
    assert 'value="sms" checked' in part and 'value="12:00"' in part and 'value="14:00"' in part


def test_the_preferences_use_case_checks_both_before_writing_either(world: World) -> None:
    actor = Actor("borrower", "B1", "borrower")
    before = snapshot(world.ctx)
    for opt_outs, start, end, field in (({"sms"}, "12:00", "14:00\n", "quiet_to"),
                                        ({"sms"}, "24:00", "01:00", "quiet_from"),
                                        ({"sms", "fax"}, "12:00", "14:00", "opt_out")):
        with pytest.raises(InvalidInput) as exc:
            casework.set_preferences(world.ctx, actor, opt_outs=opt_outs, quiet_from=start,
                                     quiet_to=end)
        assert exc.value.field == field
    assert snapshot(world.ctx) == before
    assert casework.set_preferences(world.ctx, actor, opt_outs={"sms", "call"},
                                    quiet_from="", quiet_to="") == ["call", "sms"]


# --- 2. the case page's forms keep what was typed ----------------------------------------------


@pytest.mark.parametrize("text", ["x" * 4001, " \n\t "], ids=["too-long", "blank"])
def test_a_refused_note_comes_back_in_its_form(collector, world: World, text: str) -> None:
    part = post_refused(collector, world, "/cases/L1/notes", {"text": text}, "notes")
    assert 'data-field="text"' in part and 'maxlength="4000"' in part
    typed = re.search(r'<textarea name="text"[^>]*>(.*?)</textarea>', part, re.S)
    assert typed and html.unescape(typed.group(1)) == text


@pytest.mark.parametrize(("form", "field"), [
    ({"kind": "interview_phone", "scheduled_at": "next tuesday", "place": "tea house"},
     "scheduled_at"),
    ({"kind": "interview_phone", "scheduled_at": "2026-03-04T14:00", "place": "tea house",
      "with_id": "u-auditor"}, "collector_ids"),
], ids=["bad-date", "not-a-colleague"])
def test_a_refused_visit_comes_back_in_its_form(collector, world: World, form: dict[str, str],
                                                field: str) -> None:
    part = post_refused(collector, world, "/cases/L1/visits", form, "visits")
    assert f'data-field="{field}"' in part
    assert f'value="{form["scheduled_at"]}"' in part and 'value="tea house"' in part
    assert '<option value="interview_phone" selected>' in part


def test_a_refused_inbound_contact_comes_back_in_its_form(collector, world: World) -> None:
    part = post_refused(collector, world, "/cases/L1/inbound", {
        "channel": "sms", "sender": "12345", "notes": "asked for a plan"}, "contacts")
    assert 'data-field="sender"' in part and "E.164" in part
    assert '<details id="log-inbound" open>' in part
    assert '<option value="sms" selected>' in part
    assert 'value="12345"' in part and 'value="asked for a plan"' in part


def test_a_refused_complaint_comes_back_in_its_form(borrower, world: World) -> None:
    text = "they rang at night " * 250  # 4,750 characters
    part = post_refused(borrower, world, "/portal/complaints", {
        "category": "harassment", "description": text}, "complaints")
    assert 'data-field="description"' in part and "4000" in part
    assert '<option value="harassment" selected>' in part and 'maxlength="4000"' in part
    typed = re.search(r'<textarea name="description"[^>]*>(.*?)</textarea>', part, re.S)
    assert typed and html.unescape(typed.group(1)) == text


# --- 3. a complaint is upheld or not, nothing else --------------------------------------------


@pytest.mark.parametrize("upheld", ["maybe", "", "YES"])
def test_resolving_a_complaint_needs_upheld_yes_or_no(web, world: World, upheld: str) -> None:
    b = client(web.app)
    b_csrf = sign_in_borrower(b, world)
    r = b.post("/portal/complaints", data={"category": "other", "description": "wrong amount",
                                           "csrf_token": b_csrf})
    cid = re.search(r"filed=([\w-]+)", r.headers["location"]).group(1)  # type: ignore[union-attr]
    csrf = sign_in_staff(web, world, "compliance")
    before = snapshot(world.ctx)
    r = web.post(f"/desk/complaints/{cid}/resolve",
                 data={"outcome": "explained the amount", "upheld": upheld, "csrf_token": csrf})
    assert r.status_code == 422 and "upheld" in r.text
    assert snapshot(world.ctx) == before
    r = web.post(f"/desk/complaints/{cid}/resolve",
                 data={"outcome": "explained the amount", "upheld": "no", "csrf_token": csrf})
    assert r.status_code == 303
    with world.ctx.db.read() as conn:
        assert conn.execute(select(Complaint.status)).scalar_one() == "rejected"


# --- 4. control characters in free text -----------------------------------------------------


def test_a_nul_in_a_case_note_is_refused_by_name(collector, world: World) -> None:
    part = post_refused(collector, world, "/cases/L1/notes", {"text": "called\x00back"}, "notes")
    assert 'data-field="text"' in part and "control characters" in part and "U+0000 at position 7" in part
    web, csrf = collector
    ok = web.post("/cases/L1/notes", data={"text": "line one\r\n\tline two", "csrf_token": csrf})
    assert ok.status_code == 303  # tabs and line breaks are text


@pytest.mark.parametrize(("form", "field"), [
    ({"channel": "call", "notes": "wants\x00a plan"}, "notes"),
    ({"channel": "email", "sender": "b1\x00@example.com"}, "sender"),
    ({"channel": "call", "notes": "bell\x07"}, "notes"),
])
def test_control_characters_in_an_inbound_contact_are_refused_by_name(
        collector, world: World, form: dict[str, str], field: str) -> None:
    part = post_refused(collector, world, "/cases/L1/inbound", form, "contacts")
    assert f'data-field="{field}"' in part and "control characters" in part


def test_a_nul_in_a_complaint_is_refused_by_name(borrower, world: World) -> None:
    part = post_refused(borrower, world, "/portal/complaints", {
        "category": "other", "description": "a\x00b"}, "complaints")
    assert 'data-field="description"' in part and "control characters" in part


def test_a_nul_in_a_visit_place_or_call_notes_is_refused(collector, world: World) -> None:
    web, csrf = collector
    before = snapshot(world.ctx)
    r = web.post("/cases/L1/visits", data={"kind": "field_visit", "place": "No.\x001",
                                           "scheduled_at": "2026-03-04T14:00", "csrf_token": csrf})
    assert r.status_code == 422 and 'data-field="place"' in refused_at(r.text, "visits")
    r = web.post("/cases/L1/outcome", data={"attempt_id": "1", "result": "conversation",
                                            "notes": "a\x00b", "csrf_token": csrf})
    assert r.status_code == 422 and "notes" in r.text
    assert snapshot(world.ctx) == before


def test_a_nul_in_a_complaint_outcome_is_refused(web, world: World) -> None:
    b = client(web.app)
    b_csrf = sign_in_borrower(b, world)
    r = b.post("/portal/complaints", data={"category": "other", "csrf_token": b_csrf})
    cid = re.search(r"filed=([\w-]+)", r.headers["location"]).group(1)  # type: ignore[union-attr]
    csrf = sign_in_staff(web, world, "compliance")
    before = snapshot(world.ctx)
    r = web.post(f"/desk/complaints/{cid}/resolve",
                 data={"outcome": "ok\x00", "upheld": "yes", "csrf_token": csrf})
    assert r.status_code == 422 and "outcome" in r.text
    assert snapshot(world.ctx) == before
