"""Editing a staff member on /admin/staff: agency, badge number, languages, skills and daily
capacity. Administrators only, with the CSRF token; bad input re-shows the form (422) naming the
field and changes nothing; every change is on the audit chain with the old and new values."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import select

from parley.errors import InvalidInput
from parley.services import auth
from parley.services.audit import verify_audit
from parley.store.models.contacts import AuditLog
from tests.integration.web_data import World, client, sign_in_staff

EDIT = {"agency_id": "A2", "badge_number": "A2-100", "languages": ["zh-Hant", "en"],
        "skills": "粤语, negotiation", "daily_capacity": "35"}


def _record(world: World, username: str) -> auth.StaffRecord:
    admin = auth.Actor("staff", world.staff["admin"], "administrator")
    return next(s for s in auth.list_staff(world.ctx, admin) if s.username == username)


def _updates(world: World) -> list[tuple[str, str, dict]]:
    with world.ctx.db.read() as conn:
        return [(r.actor, r.subject, json.loads(r.payload) if isinstance(r.payload, str) else r.payload)
                for r in conn.execute(select(AuditLog.actor, AuditLog.subject, AuditLog.payload)
                                      .where(AuditLog.kind == "staff.updated").order_by(AuditLog.seq))]


def test_an_administrator_moves_an_agency_collector_to_another_agency(web, world: World) -> None:
    agent = client(web.app)
    sign_in_staff(agent, world, "agent")
    assert agent.get("/cases/L1").status_code == 200 and agent.get("/cases/L2").status_code == 404
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["agent"]
    page = web.get("/admin/staff").text
    assert f'action="/admin/staff/{sid}/edit"' in page
    r = web.post(f"/admin/staff/{sid}/edit", data={**EDIT, "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/admin/staff#staff-{sid}"
    rec = _record(world, "agent")
    assert (rec.agency_id, rec.badge_number, rec.languages, rec.skills, rec.daily_capacity) == (
        "A2", "A2-100", ("zh-Hant", "en"), ("粤语", "negotiation"), 35)
    row = web.get("/admin/staff").text.split('data-username="agent"')[1].split("</tr>")[0]
    assert "A2-100" in row and "粤语" in row and ">35<" in row
    # the move takes effect on the agent's next request: A2's case now, not A1's
    assert agent.get("/cases/L1").status_code == 404 and agent.get("/cases/L2").status_code == 200
    [(actor, subject, payload)] = _updates(world)
    assert actor == f"staff:{world.staff['admin']}" and subject == sid
    assert payload["changes"]["agency_id"] == ["A1", "A2"]
    assert payload["changes"]["daily_capacity"] == [60, 35]
    assert set(payload["changes"]) == {"agency_id", "badge_number", "languages", "skills", "daily_capacity"}
    # the same form again changes nothing and writes nothing
    assert web.post(f"/admin/staff/{sid}/edit", data={**EDIT, "csrf_token": csrf}).status_code == 303
    assert len(_updates(world)) == 1
    assert verify_audit(world.ctx).ok


@pytest.mark.parametrize(("bad", "field"), [
    ({"languages": []}, "languages"),
    ({"languages": ["fr"]}, "languages"),
    ({"daily_capacity": "lots"}, "daily_capacity"),
    ({"daily_capacity": "1001"}, "daily_capacity"),
    ({"daily_capacity": "-1"}, "daily_capacity"),
    ({"badge_number": "B" * 33}, "badge_number"),
    ({"agency_id": ""}, "agency_id"),  # an agency collector needs one
    ({"agency_id": "A 2"}, "agency_id"),
    ({"skills": "x" * 201}, "skills"),
])
def test_bad_input_is_refused_by_name_and_changes_nothing(web, world: World, bad: dict, field: str) -> None:
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["agent"]
    before = _record(world, "agent")
    r = web.post(f"/admin/staff/{sid}/edit", data={**EDIT, **bad, "csrf_token": csrf})
    assert r.status_code == 422
    assert f'data-field="{field}"' in r.text
    assert f'<details class="edit-staff" id="edit-{sid}" open>' in r.text  # the form is re-shown
    if "badge_number" not in bad:
        assert 'value="A2-100"' in r.text  # with what they typed
    assert _record(world, "agent") == before and _updates(world) == []


def test_only_agency_collectors_belong_to_an_agency(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    r = web.post(f"/admin/staff/{world.staff['collector']}/edit",
                 data={**EDIT, "agency_id": "A1", "csrf_token": csrf})
    assert r.status_code == 422 and 'data-field="agency_id"' in r.text
    ok = web.post(f"/admin/staff/{world.staff['collector']}/edit",
                  data={**EDIT, "agency_id": "", "csrf_token": csrf})
    assert ok.status_code == 303 and _record(world, "collector").agency_id is None
    assert _record(world, "collector").badge_number == "A2-100"


def test_only_administrators_edit_and_only_with_the_csrf_token(web, world: World) -> None:
    sid = world.staff["collector2"]
    for who in ("collector", "compliance", "auditor", "agent"):
        c = client(web.app)
        csrf = sign_in_staff(c, world, who)
        assert c.post(f"/admin/staff/{sid}/edit", data={**EDIT, "agency_id": "",
                                                        "csrf_token": csrf}).status_code == 403, who
    sign_in_staff(web, world, "admin")
    assert web.post(f"/admin/staff/{sid}/edit", data={**EDIT, "agency_id": ""}).status_code == 403
    with pytest.raises(auth.Forbidden):
        auth.admin_update_staff(world.ctx, auth.Actor("staff", world.staff["collector"], "collector"),
                                sid, agency_id=None, badge_number=None, languages="en", skills="",
                                daily_capacity=1)
    assert _record(world, "collector2").daily_capacity == 60 and _updates(world) == []


def test_an_unknown_member_is_not_found(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    assert web.post("/admin/staff/u-nobody/edit", data={**EDIT, "csrf_token": csrf}).status_code == 404


# --- one rule, in the service: daily capacity and the agency rule ---------------------------

def _admin(world: World) -> auth.Actor:
    return auth.Actor("staff", world.staff["admin"], "administrator")


def _edit(world: World, staff_id: str, **changes: object) -> auth.StaffRecord:
    values: dict[str, object] = {"agency_id": None, "badge_number": None, "languages": "en", "skills": "",
                    "daily_capacity": 60, **changes}
    return auth.admin_update_staff(world.ctx, _admin(world), staff_id, **values)


@pytest.mark.parametrize("capacity", ["lots", "", "  ", "3.5", "1001", "-1", "1e3", "+5", "1_000",
                                      "１０", True, 2.0, None])
def test_the_service_refuses_a_bad_capacity_on_edit_by_name_and_changes_nothing(
        world: World, capacity: object) -> None:
    before = _record(world, "collector")
    with pytest.raises(InvalidInput) as caught:
        _edit(world, world.staff["collector"], daily_capacity=capacity)
    assert (caught.value.record, caught.value.field) == ("staff", "daily_capacity")
    assert "0..1000" in caught.value.message
    assert _record(world, "collector") == before and _updates(world) == []


@pytest.mark.parametrize("capacity", ["35", " 35 ", 35], ids=["text", "spaced-text", "int"])
def test_the_service_takes_a_capacity_as_typed_in_a_form_or_as_a_number(
        world: World, capacity: object) -> None:
    rec = _edit(world, world.staff["collector"], daily_capacity=capacity)
    assert rec.daily_capacity == 35 and _record(world, "collector") == rec
    [(_, _, payload)] = _updates(world)
    assert payload["changes"]["daily_capacity"] == [60, 35]  # stored and audited as a number


@pytest.mark.parametrize("capacity", ["lots", "3.5", "1001", " "])
def test_the_edit_form_names_a_bad_capacity_and_changes_nothing(
        web, world: World, capacity: str) -> None:
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["agent"]
    before = _record(world, "agent")
    r = web.post(f"/admin/staff/{sid}/edit", data={**EDIT, "daily_capacity": capacity,
                                                    "csrf_token": csrf})
    assert r.status_code == 422
    assert 'data-field="daily_capacity"' in r.text and "must be a whole number 0..1000" in r.text
    assert f'<details class="edit-staff" id="edit-{sid}" open>' in r.text
    assert _record(world, "agent") == before and _updates(world) == []


def test_an_edit_returns_the_member_as_stored_without_listing_everyone(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("listed every staff member to find one")

    monkeypatch.setattr(auth, "list_staff", no_listing)
    rec = _edit(world, world.staff["collector"], badge_number=" C-9 ", languages="en,zh-Hant",
                skills="a, b", daily_capacity="12")
    assert (rec.id, rec.username, rec.badge_number, rec.languages, rec.skills, rec.daily_capacity) == (
        world.staff["collector"], "collector", "C-9", ("en", "zh-Hant"), ("a", "b"), 12)
    monkeypatch.undo()
    assert _record(world, "collector") == rec


def _outcome(call: Callable[[], object]) -> str:
    """'ok', or the field an InvalidInput named."""
    try:
        call()
    except InvalidInput as exc:
        return str(exc.field)
    return "ok"


@pytest.mark.parametrize("agency", [None, "", "  ", "A1", " A1 "])
@pytest.mark.parametrize("role", auth.STAFF_ROLES)
def test_the_agency_rule_is_the_same_on_create_and_edit(world: World, role: str,
                                                         agency: str | None) -> None:
    """Agency collectors need an agency and nobody else may have one; blank means none."""
    admin = _admin(world)
    needs_one = role == "agency_collector"
    member = auth.admin_create_staff(world.ctx, admin, username=f"m-{role}", role=role,
                                     agency_id="A2" if needs_one else None, languages="en")
    before = next(s for s in auth.list_staff(world.ctx, admin) if s.id == member.id)
    created = _outcome(lambda: auth.admin_create_staff(
        world.ctx, admin, username=f"n-{role}", role=role, agency_id=agency, languages="en"))
    edited = _outcome(lambda: _edit(world, member.id, agency_id=agency))
    has_one = bool((agency or "").strip())
    assert created == edited == ("ok" if has_one == needs_one else "agency_id")
    staff = {s.username: s for s in auth.list_staff(world.ctx, admin)}
    if created == "ok":
        assert staff[f"n-{role}"].agency_id == ((agency or "").strip() or None)
        assert staff[f"m-{role}"].agency_id == staff[f"n-{role}"].agency_id
    else:
        assert f"n-{role}" not in staff and staff[f"m-{role}"] == before and _updates(world) == []
