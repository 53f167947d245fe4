"""Editing a staff member on /admin/staff: agency, badge number, languages, skills and daily
capacity. Administrators only, with the CSRF token; bad input re-shows the form (422) naming the
field and changes nothing; every change is on the audit chain with the old and new values."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

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
