"""The administrator's pages: staff (create, deactivate and reactivate, a one-time link to set a
password, a new authenticator secret) and API keys (created and shown once, listed, revoked).
Administrators only; every form needs its CSRF token; every change is on the audit chain."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import select

from parley.services import auth
from parley.services.audit import verify_audit
from parley.store.models.contacts import AuditLog
from tests.integration.web_data import PASSWORD, World, client, pre_csrf, sign_in_staff

NEW = {"username": "zhang", "display_name": "张敏", "role": "agency_collector",
       "agency_id": "A1", "badge_number": "A1-042", "languages": ["zh-Hans", "en"],
       "skills": "negotiation, 粤语", "daily_capacity": "45"}


def _reset_path(html: str) -> str:
    m = re.search(r'id="reset-link">https?://[^/]+(/signin/reset/[^<\s]+)<', html)
    assert m, "no reset link on the page"
    return m.group(1)


def _set_password(c, path: str, password: str) -> int:  # type: ignore[no-untyped-def]
    page = c.get(path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and token
    return c.post(path, data={"password": password, "confirm": password,  # type: ignore[no-any-return]
                              "csrf_token": token.group(1)}).status_code


def _audit_kinds(world: World) -> list[str]:
    with world.ctx.db.read() as conn:
        return list(conn.execute(select(AuditLog.kind).where(AuditLog.chain_key == "_system")
                                 .order_by(AuditLog.seq)).scalars())


def test_only_administrators_see_the_staff_and_key_pages(web, world: World) -> None:
    for who in ("collector", "compliance", "auditor", "agent"):
        c = client(web.app)
        csrf = sign_in_staff(c, world, who)
        assert c.get("/admin/staff").status_code == 403, who
        assert c.get("/admin/api-keys").status_code == 403, who
        assert c.post("/admin/staff", data={**NEW, "csrf_token": csrf}).status_code == 403
        assert c.post(f"/admin/staff/{world.staff['collector2']}/deactivate",
                      data={"csrf_token": csrf}).status_code == 403
        assert c.post("/admin/api-keys", data={"name": "x", "role": "administrator",
                                               "csrf_token": csrf}).status_code == 403
    anonymous = client(web.app)
    assert anonymous.get("/admin/staff").status_code == 303  # to sign-in, like every staff page
    admin = client(web.app)
    sign_in_staff(admin, world, "admin")
    page = admin.get("/admin/staff")
    assert page.status_code == 200 and 'href="/admin/staff"' in page.text
    assert all(f'data-username="{u}"' in page.text for u in world.staff)


def test_the_service_refuses_a_non_administrator_too(world: World) -> None:
    with pytest.raises(auth.Forbidden):
        auth.list_staff(world.ctx, auth.Actor("staff", world.staff["compliance"], "compliance_officer"))


def test_every_admin_form_needs_the_csrf_token(web, world: World) -> None:
    sign_in_staff(web, world, "admin")
    target = world.staff["collector2"]
    assert web.post("/admin/staff", data=NEW).status_code == 403
    assert web.post(f"/admin/staff/{target}/deactivate", data={"csrf_token": "forged"}).status_code == 403
    assert web.post(f"/admin/staff/{target}/password-reset").status_code == 403
    assert web.post("/admin/api-keys", data={"name": "x", "role": "collector"}).status_code == 403
    assert _audit_kinds(world) == []


def test_an_administrator_creates_an_agency_collector_who_sets_a_password_and_signs_in(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/staff", data={**NEW, "csrf_token": csrf})
    assert r.status_code == 201
    row = r.text.split('data-username="zhang"')[1].split("</tr>")[0]
    assert "A1" in row and "A1-042" in row and "English" in row and "粤语" in row and ">45<" in row
    path = _reset_path(r.text)
    assert "totp-secret" not in r.text  # collectors have no second factor
    # no password works until they choose one through the link
    with pytest.raises(auth.SignInFailed):
        auth.staff_sign_in(world.ctx, "zhang", PASSWORD)
    newcomer = client(web.app)
    assert _set_password(newcomer, path, "a long new secret") == 303
    assert newcomer.get(path).status_code == 410  # the link works once
    token = pre_csrf(newcomer)
    r = newcomer.post("/signin", data={"username": "zhang", "password": "a long new secret", "csrf_token": token})
    assert r.status_code == 303
    assert newcomer.get("/workbench").status_code == 200
    assert newcomer.get("/cases/L2").status_code == 404  # agency A1 sees only its own loans
    assert _audit_kinds(world) == ["staff.created", "staff.password_set"]
    assert verify_audit(world.ctx).ok


def test_bad_staff_input_is_refused_by_name_and_creates_nobody(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    for bad, field in (({"agency_id": ""}, "agency_id"), ({"username": "collector"}, "username"),
                       ({"languages": ["fr"]}, "languages"),
                       ({"role": "collector", "agency_id": "A1"}, "agency_id")):
        r = web.post("/admin/staff", data={**NEW, **bad, "csrf_token": csrf})
        assert r.status_code == 422, bad
        assert f'data-field="{field}"' in r.text
    assert 'data-username="zhang"' not in web.get("/admin/staff").text


def test_a_compliance_officer_created_here_gets_an_authenticator_secret_once(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/staff", data={"username": "li", "role": "compliance_officer",
                                       "languages": ["zh-Hant"], "csrf_token": csrf})
    assert r.status_code == 201
    secret = re.search(r'id="totp-value">([A-Z2-7]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert "otpauth://totp/Parley:li" in r.text
    assert secret not in web.get("/admin/staff").text  # never shown again
    assert auth.staff_totp_secret(world.ctx, _id_of(world, "li")) == secret


def _modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules of a segno SVG path ('M x y.5' then 'hN' runs and 'm dx dy' moves)."""
    d = re.search(r'class="qrline"[^>]* d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for op, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?:\s+(-?[\d.]+))?", d.replace("M", " M")):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            dark.update((int(x) + k, int(y)) for k in range(int(a)))
            x += int(a)
    return dark


def test_the_authenticator_code_on_the_page_encodes_the_address_shown_with_it(
        web, world: World) -> None:
    import segno

    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/staff", data={"username": "li", "role": "compliance_officer",
                                       "languages": ["zh-Hans"], "csrf_token": csrf})
    uri = html.unescape(re.search(r'<code class="receipt">(otpauth://[^<]+)</code>',
                                  r.text).group(1))  # type: ignore[union-attr]
    figure = re.search(r'<figure id="totp-qr">(.*?)</figure>', r.text, re.S).group(1)  # type: ignore[union-attr]
    qr = segno.make(uri, error="m")
    want = {(x + 4, y + 4) for y, row in enumerate(qr.matrix) for x, v in enumerate(row) if v}
    assert _modules(figure) == want  # what an authenticator app scans is the shown address
    assert "扫描" in figure  # the caption, in the administrator's language
    assert "totp-qr" not in web.get("/admin/staff").text  # shown once, with the secret


def _id_of(world: World, username: str) -> str:
    admin = auth.Actor("staff", world.staff["admin"], "administrator")
    return next(s.id for s in auth.list_staff(world.ctx, admin) if s.username == username)


def test_a_deactivated_member_is_signed_out_and_cannot_sign_in_until_reactivated(web, world: World) -> None:
    victim = client(web.app)
    sign_in_staff(victim, world, "collector2")
    assert victim.get("/workbench").status_code == 200
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["collector2"]
    assert web.post(f"/admin/staff/{sid}/deactivate", data={"csrf_token": csrf}).status_code == 303
    assert victim.get("/workbench").status_code == 303
    with pytest.raises(auth.SignInFailed):
        auth.staff_sign_in(world.ctx, "collector2", PASSWORD)
    assert "Deactivated" in web.get("/admin/staff").text or "已停用" in web.get("/admin/staff").text
    assert web.post(f"/admin/staff/{sid}/reactivate", data={"csrf_token": csrf}).status_code == 303
    assert auth.staff_sign_in(world.ctx, "collector2", PASSWORD).stage == "full"
    # nobody deactivates themselves (the last administrator cannot lock everyone out)
    assert web.post(f"/admin/staff/{world.staff['admin']}/deactivate", data={"csrf_token": csrf}).status_code == 422
    assert _audit_kinds(world) == ["staff.deactivated", "staff.reactivated"]


def test_a_password_reset_kills_the_old_password_and_sessions_and_older_links(web, world: World) -> None:
    victim = client(web.app)
    sign_in_staff(victim, world, "collector")
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["collector"]
    first = _reset_path(web.post(f"/admin/staff/{sid}/password-reset", data={"csrf_token": csrf}).text)
    assert victim.get("/workbench").status_code == 303
    with pytest.raises(auth.SignInFailed):
        auth.staff_sign_in(world.ctx, "collector", PASSWORD)
    second = _reset_path(web.post(f"/admin/staff/{sid}/password-reset", data={"csrf_token": csrf}).text)
    other = client(web.app)
    assert other.get(first).status_code == 410  # the newer link replaced it
    assert other.get(second[:-4] + "AAAA").status_code == 410  # a forged one
    assert _set_password(other, second, "short") == 422
    assert _set_password(other, second, "another good password") == 303
    assert auth.staff_sign_in(world.ctx, "collector", "another good password").stage == "full"


def test_a_reset_link_expires_after_a_day(web, world: World) -> None:
    from datetime import timedelta

    csrf = sign_in_staff(web, world, "admin")
    path = _reset_path(web.post(f"/admin/staff/{world.staff['auditor']}/password-reset",
                                data={"csrf_token": csrf}).text)
    world.ctx.clock.advance(timedelta(hours=24, seconds=1))  # type: ignore[attr-defined]
    assert client(web.app).get(path).status_code == 410


def test_resetting_the_authenticator_replaces_the_secret(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    sid = world.staff["compliance"]
    r = web.post(f"/admin/staff/{sid}/totp-reset", data={"csrf_token": csrf})
    assert r.status_code == 200
    new = re.search(r'id="totp-value">([A-Z2-7]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert new != world.totp["compliance"]
    world.totp["compliance"] = new
    officer = client(web.app)
    sign_in_staff(officer, world, "compliance")  # signs in with the new secret
    assert officer.get("/desk").status_code == 200
    # a collector has no second factor to reset
    assert web.post(f"/admin/staff/{world.staff['collector']}/totp-reset",
                    data={"csrf_token": csrf}).status_code == 422
    assert web.post("/admin/staff/u-nobody/totp-reset", data={"csrf_token": csrf}).status_code == 404


def test_an_api_key_is_shown_once_listed_and_revoked(web, world: World) -> None:
    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/api-keys", data={"name": "lender-2", "role": "agency_collector",
                                          "agency_id": "A1", "csrf_token": csrf})
    assert r.status_code == 201
    key = re.search(r'id="new-key-value">(pk_[\w-]+)<', r.text).group(1)  # type: ignore[union-attr]
    listing = web.get("/admin/api-keys").text
    assert "lender-2" in listing and key not in listing
    api = client(web.app)
    assert api.get("/api/v1/loans/L1", headers={"X-API-Key": key}).status_code == 200
    assert api.get("/api/v1/loans/L2", headers={"X-API-Key": key}).status_code == 404  # agency scope
    kid = auth.actor_for_api_key(world.ctx, key).id
    assert web.post(f"/admin/api-keys/{kid}/revoke", data={"csrf_token": csrf}).status_code == 303
    assert api.get("/api/v1/loans/L1", headers={"X-API-Key": key}).status_code == 401
    assert web.post(f"/admin/api-keys/{kid}/revoke", data={"csrf_token": csrf}).status_code == 404
    assert _audit_kinds(world) == ["apikey.created", "apikey.revoked"]
    assert web.post("/admin/api-keys", data={"name": "x", "role": "boss", "csrf_token": csrf}).status_code == 422


def test_an_api_key_whose_audit_entry_fails_is_not_created(world: World,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and its 'apikey.created' entry are one transaction: no working key unrecorded."""
    admin = auth.Actor("staff", world.staff["admin"], "administrator")
    before = auth.list_api_keys(world.ctx, admin)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(auth, "_audit_admin", broken)
    with pytest.raises(RuntimeError):
        auth.admin_create_api_key(world.ctx, admin, "lender-3", role="administrator")
    assert auth.list_api_keys(world.ctx, admin) == before


@pytest.mark.parametrize("capacity", ["lots", "1001", "-1", "3.5"])
def test_a_bad_capacity_on_the_new_staff_form_is_named_and_creates_nobody(
        web, world: World, capacity: str) -> None:
    """The service parses the capacity as typed, so the form comes back (422) with the input
    kept and the field named, as for every other field."""
    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/staff", data={**NEW, "daily_capacity": capacity, "csrf_token": csrf})
    assert r.status_code == 422
    assert 'data-field="daily_capacity"' in r.text and "must be a whole number 0..1000" in r.text
    assert 'value="A1-042"' in r.text  # what they typed is kept
    assert 'data-username="zhang"' not in web.get("/admin/staff").text
    assert _audit_kinds(world) == []


@pytest.mark.parametrize(("typed", "stored"), [("", 60), (" 45 ", 45), ("0", 0)])
def test_the_new_staff_capacity_is_taken_as_typed_and_blank_means_the_default(
        web, world: World, typed: str, stored: int) -> None:
    csrf = sign_in_staff(web, world, "admin")
    r = web.post("/admin/staff", data={**NEW, "daily_capacity": typed, "csrf_token": csrf})
    assert r.status_code == 201
    admin = auth.Actor("staff", world.staff["admin"], "administrator")
    [new] = [s for s in auth.list_staff(world.ctx, admin) if s.username == "zhang"]
    assert new.daily_capacity == stored
    with world.ctx.db.read() as conn:
        [payload] = conn.execute(select(AuditLog.payload)
                                 .where(AuditLog.kind == "staff.created")).scalars()
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert (payload["daily_capacity"], payload["agency_id"]) == (stored, "A1")


def test_a_password_reset_looks_up_only_the_one_member(web, world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The action needs one user name; only the page it shows lists everyone."""
    csrf = sign_in_staff(web, world, "admin")
    listed = []
    real = auth.list_staff

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        listed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(auth, "list_staff", counting)
    r = web.post(f"/admin/staff/{world.staff['auditor']}/password-reset", data={"csrf_token": csrf})
    assert r.status_code == 200 and "auditor" in r.text and len(listed) == 1
    assert web.post("/admin/staff/u-nobody/password-reset", data={"csrf_token": csrf}).status_code == 404


def test_one_staff_member_is_for_administrators_only_and_unknown_is_not_found(world: World) -> None:
    admin = auth.Actor("staff", world.staff["admin"], "administrator")
    rec = auth.get_staff(world.ctx, admin, world.staff["agent"])
    assert rec in auth.list_staff(world.ctx, admin) and rec.agency_id == "A1"
    with pytest.raises(auth.NotFound):
        auth.get_staff(world.ctx, admin, "u-nobody")
    with pytest.raises(auth.Forbidden):
        auth.get_staff(world.ctx, auth.Actor("staff", world.staff["auditor"], "auditor"),
                       world.staff["agent"])
