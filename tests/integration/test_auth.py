"""Signing in and staying safe: passwords, the second factor, one-time codes for borrowers,
sessions that expire, CSRF on every form, rate limits that hold across processes (they are in
the database), and role and agency checks on the pages."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from parley.services import auth
from parley.services.context import Context
from parley.store.models.web import OtpCode, WebSession
from tests.integration.web_data import (
    PASSWORD,
    PHONE_B1,
    World,
    client,
    pre_csrf,
    queue_item,
    sign_in_borrower,
    sign_in_staff,
)


def advance(world: World, **delta: float) -> None:
    world.ctx.clock.advance(timedelta(**delta))  # type: ignore[attr-defined]


# --- staff passwords -------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes(world: World) -> None:
    from parley.store.models.staff import StaffUser

    with world.ctx.db.read() as conn:
        h = conn.execute(select(StaffUser.password_hash).where(StaffUser.username == "collector")).scalar()
    assert h.startswith("$argon2id$") and PASSWORD not in h


def test_a_collector_signs_in_with_a_password_and_lands_on_the_workbench(web, world: World) -> None:
    sign_in_staff(web, world, "collector")
    r = web.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/workbench"
    assert web.get("/workbench").status_code == 200


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(web, world: World) -> None:
    token = pre_csrf(web)
    wrong_pw = web.post("/signin", data={"username": "collector", "password": "nope-nope-nope", "csrf_token": token})
    no_user = web.post("/signin", data={"username": "nobody", "password": "nope-nope-nope", "csrf_token": token})
    assert wrong_pw.status_code == no_user.status_code == 401
    assert "parley_session" not in web.cookies


def test_sign_in_is_rate_limited_per_user_even_with_the_right_password_afterwards(web, world: World) -> None:
    token = pre_csrf(web)
    for _ in range(5):
        r = web.post("/signin", data={"username": "collector", "password": "wrong-wrong-1", "csrf_token": token})
        assert r.status_code == 401
    r = web.post("/signin", data={"username": "collector", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    advance(world, minutes=16)
    r = web.post("/signin", data={"username": "collector", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303


def test_the_rate_limit_is_shared_by_every_process_using_the_database(world: World) -> None:
    other = Context(type(world.ctx.db)(world.ctx.db.url), world.ctx.settings, world.ctx.clock)
    for c in (world.ctx, other) * 2 + (world.ctx,):
        with pytest.raises(auth.SignInFailed):
            auth.staff_sign_in(c, "agent", "wrong-wrong-2")
    with pytest.raises(auth.RateLimited):
        auth.staff_sign_in(other, "agent", PASSWORD)
    other.db.dispose()


def test_the_sign_in_form_needs_its_csrf_token(web, world: World) -> None:
    pre_csrf(web)
    r = web.post("/signin", data={"username": "collector", "password": PASSWORD})
    assert r.status_code == 403
    r = web.post("/signin", data={"username": "collector", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403


# --- the second factor -----------------------------------------------------------------------


def test_a_compliance_officer_needs_a_totp_code_before_any_page(web, world: World) -> None:
    token = pre_csrf(web)
    r = web.post("/signin", data={"username": "compliance", "password": PASSWORD, "csrf_token": token})
    assert r.headers["location"] == "/signin/totp"
    assert web.get("/desk").status_code == 303  # half signed-in sees nothing
    page = web.get("/signin/totp")
    import re

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert web.post("/signin/totp", data={"code": "000000", "csrf_token": csrf}).status_code == 401
    code = pyotp.TOTP(world.totp["compliance"]).at(world.ctx.clock.now())
    assert web.post("/signin/totp", data={"code": code, "csrf_token": csrf}).status_code == 303
    assert web.get("/desk").status_code == 200


def test_a_totp_code_signs_in_once_and_the_session_token_changes(web, world: World) -> None:
    import re

    token = pre_csrf(web)
    code = pyotp.TOTP(world.totp["admin"]).at(world.ctx.clock.now())
    for expected in (303, 401):
        web.post("/signin", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
        half = web.cookies.get("parley_session")
        page = web.get("/signin/totp")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = web.post("/signin/totp", data={"code": code, "csrf_token": csrf})
        assert r.status_code == expected
        if expected == 303:
            assert web.cookies.get("parley_session") != half
            web.cookies.set("parley_session", half)  # the half-signed-in token is dead now
            assert web.get("/desk").status_code == 303
            web.cookies.clear()
            token = pre_csrf(web)


def test_administrators_get_a_totp_secret_and_collectors_do_not(world: World) -> None:
    assert set(world.totp) == {"compliance", "admin"}


# --- borrowers: phone + one-time code -------------------------------------------------------


def test_a_borrower_signs_in_with_a_one_time_code_and_sees_their_account(web, world: World) -> None:
    sign_in_borrower(web, world)
    r = web.get("/portal")
    assert r.status_code == 200 and "王伟" in r.text


def test_the_code_is_stored_only_as_a_hash(web, world: World) -> None:
    token = pre_csrf(web, "/portal/signin")
    web.post("/portal/signin/code", data={"phone": "13800138000", "csrf_token": token})
    (_, code) = world.codes[-1]
    with world.ctx.db.read() as conn:
        stored = conn.execute(select(OtpCode.code_hash)).scalars().all()
    assert len(stored) == 1 and code not in stored[0] and len(stored[0]) == 64


def test_an_unknown_phone_gets_the_same_answer_and_no_code(web, world: World) -> None:
    token = pre_csrf(web, "/portal/signin")
    known = web.post("/portal/signin/code", data={"phone": PHONE_B1, "csrf_token": token})
    unknown = web.post("/portal/signin/code", data={"phone": "+8613600136000", "csrf_token": token})
    assert known.status_code == unknown.status_code == 200
    assert len(world.codes) == 1
    assert known.text.replace(PHONE_B1, "N") == unknown.text.replace("+8613600136000", "N")


def test_a_code_expires_after_five_minutes(web, world: World) -> None:
    token = pre_csrf(web, "/portal/signin")
    web.post("/portal/signin/code", data={"phone": PHONE_B1, "csrf_token": token})
    advance(world, minutes=5, seconds=1)
    r = web.post("/portal/signin/verify", data={"phone": PHONE_B1, "code": world.codes[-1][1], "csrf_token": token})
    assert r.status_code == 401


def test_a_code_dies_after_five_wrong_tries(web, world: World) -> None:
    token = pre_csrf(web, "/portal/signin")
    web.post("/portal/signin/code", data={"phone": PHONE_B1, "csrf_token": token})
    code = world.codes[-1][1]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = web.post("/portal/signin/verify", data={"phone": PHONE_B1, "code": wrong, "csrf_token": token})
        assert r.status_code == 401
    r = web.post("/portal/signin/verify", data={"phone": PHONE_B1, "code": code, "csrf_token": token})
    assert r.status_code == 401


def test_a_code_signs_in_once(web, world: World) -> None:
    sign_in_borrower(web, world)
    token = pre_csrf(web, "/portal/signin")  # (a fresh pre-token for the anonymous form)
    r = web.post("/portal/signin/verify", data={"phone": PHONE_B1, "code": world.codes[-1][1], "csrf_token": token})
    assert r.status_code in (401, 403)


def test_code_requests_are_rate_limited_per_phone(web, world: World) -> None:
    token = pre_csrf(web, "/portal/signin")
    for _ in range(3):
        assert web.post("/portal/signin/code", data={"phone": PHONE_B1, "csrf_token": token}).status_code == 200
    r = web.post("/portal/signin/code", data={"phone": PHONE_B1, "csrf_token": token})
    assert r.status_code == 429 and len(world.codes) == 3


def test_a_malformed_phone_is_refused_by_name(world: World) -> None:
    with pytest.raises(auth.InvalidInput) as e:
        auth.request_otp(world.ctx, "12", send=world.send)
    assert e.value.field == "phone"


# --- sessions --------------------------------------------------------------------------------


def test_a_staff_session_ends_after_thirty_idle_minutes(web, world: World) -> None:
    sign_in_staff(web, world, "collector")
    advance(world, minutes=29)
    assert web.get("/workbench").status_code == 200
    advance(world, minutes=29)
    assert web.get("/workbench").status_code == 200  # activity resets the idle timer
    advance(world, minutes=31)
    r = web.get("/workbench")
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    advance(world, minutes=-31)
    assert web.get("/workbench").status_code == 303  # ended sessions stay ended


def test_a_staff_session_ends_after_twelve_hours_however_active(web, world: World) -> None:
    sign_in_staff(web, world, "collector")
    for _ in range(12 * 3 - 1):
        advance(world, minutes=20)
        assert web.get("/workbench").status_code == 200
    advance(world, minutes=20)
    assert web.get("/workbench").status_code == 303


def test_a_borrower_session_idles_out_after_fifteen_minutes(web, world: World) -> None:
    sign_in_borrower(web, world)
    advance(world, minutes=16)
    r = web.get("/portal")
    assert r.status_code == 303 and r.headers["location"] == "/portal/signin"


def test_signing_out_ends_the_session_on_the_server(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "collector")
    cookie = web.cookies.get("parley_session")
    assert web.post("/signout", data={"csrf_token": csrf}).status_code == 303
    web.cookies.set("parley_session", cookie)  # a copied cookie does not come back to life
    assert web.get("/workbench").status_code == 303
    with world.ctx.db.read() as conn:
        assert conn.execute(select(func.count()).where(WebSession.ended_at.is_(None))).scalar() == 0


# --- CSRF on pages ---------------------------------------------------------------------------


def test_every_form_post_needs_the_sessions_csrf_token(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "collector")
    assert web.post("/cases/L1/notes", data={"text": "hello"}).status_code == 403
    assert web.post("/cases/L1/notes", data={"text": "hello", "csrf_token": "x"}).status_code == 403
    assert web.post("/cases/L1/notes", data={"text": "hello", "csrf_token": csrf}).status_code == 303
    # HTMX sends it as a header
    r = web.post("/cases/L1/may-i-call", headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
    assert r.status_code == 200


# --- roles and agencies on pages ------------------------------------------------------------


def test_an_agency_collector_cannot_open_another_agencys_case_page(web, world: World) -> None:
    sign_in_staff(web, world, "agent")
    assert web.get("/cases/L1").status_code == 200
    other, missing = web.get("/cases/L2"), web.get("/cases/L999")
    assert other.status_code == missing.status_code == 404
    assert other.text.replace("L2", "X") == missing.text.replace("L999", "X")


def test_the_workbench_lists_only_my_queue_in_priority_order(web, world: World) -> None:
    queue_item(world.ctx, "L1", "B1", world.staff["collector"], 50, "k1")
    queue_item(world.ctx, "L2", "B2", world.staff["collector"], 10, "k2")
    queue_item(world.ctx, "L2", "B2", world.staff["agent"], 1, "k3")
    sign_in_staff(web, world, "collector")
    html = web.get("/workbench").text
    assert html.index("/cases/L2") < html.index("/cases/L1")
    agent = client(web.app)
    sign_in_staff(agent, world, "agent")
    assert "/cases/L2" not in agent.get("/workbench").text  # L2 is placed with another agency


def test_a_collector_may_not_open_the_compliance_desk_and_an_auditor_may_not_log_calls(web, world: World) -> None:
    sign_in_staff(web, world, "collector")
    assert web.get("/desk").status_code == 403
    auditor = client(web.app)
    csrf = sign_in_staff(auditor, world, "auditor")
    assert auditor.get("/desk").status_code == 200
    assert auditor.post("/cases/L1/notes", data={"text": "x", "csrf_token": csrf}).status_code == 403
    assert auditor.post("/cases/L1/inbound", data={"channel": "call",
                                                   "csrf_token": csrf}).status_code == 403


def test_a_borrower_cannot_use_staff_pages_or_the_api(web, world: World) -> None:
    sign_in_borrower(web, world)
    assert web.get("/workbench").status_code == 303
    assert web.get("/api/v1/loans/L1").status_code == 401


def test_collectors_see_masked_phone_numbers_only(web, world: World) -> None:
    sign_in_staff(web, world, "collector")
    html = web.get("/cases/L1").text
    assert "+86138****8000" in html and PHONE_B1 not in html and "13800138000" not in html


def test_a_collector_books_a_field_visit_with_a_second_identified_collector(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "collector")
    form = {"kind": "field_visit", "scheduled_at": "2026-03-04T14:00", "place": "北京市朝阳区1号",
            "csrf_token": csrf}
    alone = web.post("/cases/L1/visits", data=form)
    assert alone.status_code == 422  # the CN pack wants two identified collectors on a visit
    r = web.post("/cases/L1/visits", data={**form, "with_id": world.staff["collector2"]})
    assert r.status_code == 303
    page = web.get("/cases/L1").text
    assert "C-1001" in page and "C-1002" in page and "北京市朝阳区1号" in page


def test_a_visit_cannot_take_along_someone_from_another_agency(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "agent")
    r = web.post("/cases/L1/visits", data={"kind": "field_visit", "scheduled_at": "2026-03-04T14:00",
                                           "place": "x", "with_id": world.staff["collector"],
                                           "csrf_token": csrf})
    assert r.status_code == 422


# --- languages -------------------------------------------------------------------------------


def test_pages_default_to_simplified_chinese_and_follow_the_chosen_language(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "collector")
    assert "今天的工作队列" in web.get("/workbench").text
    web.post("/lang", data={"lang": "en", "back": "/workbench", "csrf_token": csrf})
    assert "Nothing in your queue today." in web.get("/workbench").text
    web.post("/lang", data={"lang": "zh-Hant", "back": "/workbench", "csrf_token": csrf})
    assert "今天的工作佇列" in web.get("/workbench").text


def test_every_page_message_is_translated_and_the_compiled_catalogues_are_current() -> None:
    from parley.locale.catalogue import problems

    assert problems() == []


@pytest.mark.parametrize(("role", "agency", "field"), [
    ("collector", "A1", "agency_id"),          # only agency collectors belong to an agency
    ("agency_collector", None, "agency_id"),   # and they must
    ("collector", None, "languages"),          # an unknown language (below)
])
def test_creating_staff_applies_the_same_rules_as_an_administrators_edit(
        world: World, role: str, agency: str | None, field: str) -> None:
    from parley.errors import InvalidInput

    languages = "fr" if field == "languages" else "zh-Hans"
    with pytest.raises(InvalidInput) as err:
        auth.create_staff(world.ctx, username=f"new-{role}-{field}", password=None, role=role,
                          agency_id=agency, languages=languages)
    assert err.value.field == field
    with world.ctx.db.read() as conn:
        from parley.store.models.staff import StaffUser

        assert conn.execute(select(func.count()).select_from(StaffUser).where(
            StaffUser.username == f"new-{role}-{field}")).scalar_one() == 0
