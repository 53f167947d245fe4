"""Bad fields through the API answer 4xx naming the field and write nothing (invariant 10), on
both databases: control characters in any string field, duplicate JSON keys in any body, an
absurd gate-check pack or instant, amounts in non-ASCII digits, and a complaint assigned to
someone who cannot take it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from parley.store.models.contacts import AuditLog, ContactAttempt
from parley.store.models.loanbook import Payment
from parley.store.models.web import Complaint
from tests.integration.loanbook_data import write_csv
from tests.integration.test_api import SCENARIO, key
from tests.integration.web_data import World


@pytest.fixture
def api(web):  # type: ignore[no-untyped-def]
    return web


def _counts(world: World) -> dict[str, int]:
    with world.ctx.db.read() as conn:
        return {t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (Complaint, ContactAttempt, Payment, AuditLog)}


def _post_raw(api, world: World, url: str, raw: bytes):  # type: ignore[no-untyped-def]
    return api.post(url, content=raw, headers={**key(world), "content-type": "application/json"})


# --- control characters ----------------------------------------------------------------------

WRITES = [
    ("/api/v1/complaints", {"borrower_id": "B1", "category": "other"}, "description"),
    ("/api/v1/gate/inbound", {"loan_id": "L1", "channel": "call"}, "notes"),
    ("/api/v1/gate/permits", {"loan_id": "L1", "channel": "sms"}, "text"),
    ("/api/v1/gate/permits", {"loan_id": "L1", "channel": "call"}, "idempotency_key"),
    ("/api/v1/loans/L1/placement/recall", {}, "reason"),
]


@pytest.mark.parametrize("bad", ["nul \u0000 here", "\u0007bell", "esc\u001b[2J", "del\u007f",
                                 "c1\u0085", "lone \ud800 surrogate"])
@pytest.mark.parametrize(("url", "body", "field"), WRITES)
def test_a_control_character_in_a_string_field_is_a_422_naming_it_and_writes_nothing(
        api, world: World, url: str, body: dict[str, Any], field: str, bad: str) -> None:
    before = _counts(world)
    # json.dumps escapes to ASCII, so a lone surrogate travels as its \u escape
    r = _post_raw(api, world, url, json.dumps({**body, field: bad}).encode())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    if "surrogate" not in bad:  # pydantic refuses those itself, as not a unicode string
        k = next(i for i, ch in enumerate(bad) if not ch.isprintable())
        assert (f"must not contain control characters (found U+{ord(bad[k]):04X} at position "
                f"{k + 1};") in r.json()["error"]["message"]
    assert _counts(world) == before


def test_tabs_and_line_breaks_are_ordinary_text(api, world: World) -> None:
    r = api.post("/api/v1/complaints", headers=key(world), json={
        "borrower_id": "B1", "category": "other", "description": "line one\r\nline two\ttabbed"})
    assert r.status_code == 201, r.text
    c = api.get(f"/api/v1/complaints/{r.json()['id']}", headers=key(world)).json()
    assert c["description"] == "line one\r\nline two\ttabbed"


@pytest.mark.parametrize("tail", [b'"\\ud800":1', b'"\\ud800":1,"\\ud800":2'])
def test_a_key_with_a_lone_surrogate_is_a_422_not_a_crash(api, world: World, tail: bytes) -> None:
    body = b'{"payment_id":"P-9","loan_id":"L1","paid_at":"2026-03-01T10:00:00+08:00","amount":"1.00",'
    r = _post_raw(api, world, "/api/v1/payments", body + tail + b"}")
    assert r.status_code == 422, r.text
    assert _counts(world)["payment"] == 0


# --- duplicate JSON keys ---------------------------------------------------------------------


def test_a_duplicate_key_in_a_payment_is_a_422_naming_it_and_posts_nothing(api, world: World) -> None:
    before = _counts(world)
    r = _post_raw(api, world, "/api/v1/payments",
                  b'{"payment_id":"P-1","loan_id":"L1","loan_id":"L2",'
                  b'"paid_at":"2026-03-01T10:00:00+08:00","amount":"500.00"}')
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "loan_id" and "duplicate key" in err["message"] and err["record"] == "body"
    assert [e["field"] for e in r.json()["errors"]] == ["loan_id"]
    assert _counts(world) == before


@pytest.mark.parametrize(("url", "raw", "field"), [
    ("/api/v1/complaints", b'{"borrower_id":"B1","category":"other","category":"harassment"}',
     "category"),
    ("/api/v1/gate/permits", b'{"loan_id":"L1","channel":"call","channel":"sms"}', "channel"),
    ("/api/v1/gate/check", b'{"pack":"CN","request":{"at":"2026-05-06T10:00:00+08:00",'
                           b'"at":"2026-05-06T22:00:00+08:00"}}', "request.at"),
    ("/api/v1/gate/check", b'{"history":[{},{"result":"a","result":"b"}],"pack":"CN"}',
     "history[1].result"),
    ("/api/v1/webhooks", b'{"url":"https://a.example/h","url":"https://b.example/h"}', "url"),
])
def test_a_duplicate_key_anywhere_in_a_body_is_a_422_naming_its_path(
        api, world: World, url: str, raw: bytes, field: str) -> None:
    before = _counts(world)
    r = _post_raw(api, world, url, raw)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert _counts(world) == before


def test_every_operation_with_a_json_body_refuses_a_duplicate_key(api, world: World) -> None:
    doc = api.get("/openapi.json").json()
    seen = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "application/json" not in op.get("requestBody", {}).get("content", {}):
                continue
            r = api.request(method, re.sub(r"\{[^}]+\}", "1", path), content=b'{"zz": 1, "zz": 2}',
                            headers={**key(world), "content-type": "application/json"})
            assert r.status_code == 422, (method, path, r.text)
            assert r.json()["error"]["field"] == "zz", (method, path, r.text)
            seen += 1
    assert seen >= 10


def test_a_body_without_duplicates_still_reads_as_before(api, world: World) -> None:
    r = _post_raw(api, world, "/api/v1/gate/check", json.dumps(SCENARIO).encode())
    assert r.status_code == 200 and r.json()["decision"] == "deny"
    bad = _post_raw(api, world, "/api/v1/payments", b'{"payment_id": ')
    assert bad.status_code == 422  # malformed JSON is still FastAPI's json_invalid


# --- the gate check --------------------------------------------------------------------------


@pytest.mark.parametrize("pack", ["x" * 100_000, "CN\u0000", "../CN", "C N", "", "CN.yaml", 7])
def test_a_gate_check_with_an_impossible_pack_id_is_a_422_naming_pack(api, world: World, pack: object) -> None:
    r = api.post("/api/v1/gate/check", json={**SCENARIO, "pack": pack}, headers=key(world))
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["field"] == "pack"
    assert len(r.text) < 2000  # the 100,000 characters are not echoed back


@pytest.mark.parametrize(("field", "at"), [
    ("request.at", "9999-12-31T23:59:59-12:00"),
    ("request.at", "9998-12-31T23:59:59-12:00"),  # its 400-day search horizon overflowed too
    ("request.at", "0001-01-01T00:00:00+14:00"),
    ("request.at", "1969-12-31T23:59:59+00:00"),
    ("history[0].at", "9999-12-31T23:59:59-12:00"),
])
def test_a_gate_check_at_an_instant_out_of_range_is_a_422_naming_it(
        api, world: World, field: str, at: str) -> None:
    history = [{"at": "2026-05-06T10:00:00+08:00", "channel": "call", "to": "+8613800138000",
                "debt": "L-1001", "result": "no_answer"}]
    doc = {**SCENARIO, "history": history, "request": {**SCENARIO["request"]}}
    (doc["history"][0] if field.startswith("history") else doc["request"])["at"] = at
    r = api.post("/api/v1/gate/check", json=doc, headers=key(world))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


# --- money -----------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["١٠٠", "１００"])
def test_an_imported_payment_in_non_ascii_digits_is_refused_naming_amount(
        api, world: World, tmp_path: Path, amount: str) -> None:
    before = _counts(world)
    f = write_csv(tmp_path / "payments.csv", [
        {"payment_id": "P-7", "loan_id": "L1", "paid_at": "2026-03-01T10:00:00+08:00", "amount": amount}])
    r = api.post("/api/v1/imports/payments", headers=key(world),
                 files={"file": ("payments.csv", f.read_bytes(), "text/csv")})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "amount"
    assert _counts(world) == before


# --- complaints ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["nobody", "collector"])
def test_assigning_a_complaint_to_someone_who_cannot_take_it_names_staff_id(
        api, world: World, who: str) -> None:
    staff_id = world.staff.get(who, who)
    h = key(world)
    cid = api.post("/api/v1/complaints", headers=h, json={"borrower_id": "B1", "category": "other"}).json()["id"]
    audit = _counts(world)["audit_log"]
    r = api.post(f"/api/v1/complaints/{cid}/assign", headers=h, json={"staff_id": staff_id})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "staff_id"
    assert api.get(f"/api/v1/complaints/{cid}", headers=h).json()["assigned_to"] is None
    assert _counts(world)["audit_log"] == audit


def test_assigning_a_complaint_to_nobody_names_staff_id(api, world: World) -> None:
    h = key(world)
    cid = api.post("/api/v1/complaints", headers=h, json={"borrower_id": "B1", "category": "other"}).json()["id"]
    r = api.post(f"/api/v1/complaints/{cid}/assign", headers=h, json={"staff_id": ""})
    assert r.status_code == 422 and r.json()["error"]["field"] == "staff_id"
