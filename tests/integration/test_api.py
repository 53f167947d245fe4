"""The REST API on both databases: errors name the field, money is a string, agencies see only
their own cases (and another agency's case answers exactly like a missing one), CSRF holds for
cookie-authenticated calls, and the complaint endpoints work end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.loanbook_data import write_csv
from tests.integration.web_data import World, sign_in_staff


@pytest.fixture
def api(web):  # type: ignore[no-untyped-def]
    """The API is served by the same app as the pages (the `web` client from conftest)."""
    return web


def key(world: World, name: str = "lender") -> dict[str, str]:
    return {"X-API-Key": world.keys[name]}


# --- the document ----------------------------------------------------------------------------


def test_the_openapi_document_states_money_as_a_patterned_string_and_bounds_path_ids(api) -> None:
    doc = api.get("/openapi.json").json()
    amount = doc["components"]["schemas"]["PaymentIn"]["properties"]["amount"]
    assert amount["type"] == "string" and amount["pattern"].startswith("^[0-9]")
    (param,) = doc["paths"]["/api/v1/loans/{loan_id}"]["get"]["parameters"]
    assert param["schema"]["maxLength"] == 64 and "pattern" in param["schema"]
    assert "/api/v1/imports/{kind}" in doc["paths"] and "/api/v1/gate/check" in doc["paths"]
    for path, code, schema in (("/api/v1/gate/inbound", "201", "InboundOut"),
                               ("/api/v1/loans/{loan_id}/placement/recall", "200", "RecalledOut"),
                               ("/api/v1/loans/{loan_id}/legal-referrals/{referral_id}/close",
                                "200", "LegalReferralOut")):
        answer = doc["paths"][path]["post"]["responses"][code]["content"]["application/json"]
        assert answer["schema"]["$ref"].endswith("/" + schema), path  # documented, not Any


# --- authentication --------------------------------------------------------------------------


def test_no_credentials_is_401_and_a_wrong_key_is_401_too(api, world: World) -> None:
    r = api.get("/api/v1/loans/L1")
    assert r.status_code == 401 and r.json()["error"]["message"]
    assert api.get("/api/v1/loans/L1", headers={"X-API-Key": "pk_nope"}).status_code == 401


def test_a_bearer_token_works_like_the_key_header(api, world: World) -> None:
    r = api.get("/api/v1/loans/L1", headers={"Authorization": f"Bearer {world.keys['lender']}"})
    assert r.status_code == 200


def test_a_collector_key_may_not_import(api, world: World, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "borrowers.csv", [{"borrower_id": "B9", "name": "X", "phone": "+8613700137009"}])
    r = api.post("/api/v1/imports/borrowers", headers=key(world, "collector-key"),
                 files={"file": ("borrowers.csv", f.read_bytes(), "text/csv")})
    assert r.status_code == 403


# --- loans and agencies ----------------------------------------------------------------------


def test_a_loan_shows_what_is_overdue_since_when_and_its_schedule(api, world: World) -> None:
    r = api.get("/api/v1/loans/L1", headers=key(world))
    assert r.status_code == 200
    body = r.json()
    assert body["overdue_since"] == "2025-11-01"
    assert body["days_past_due"] == (world.ctx.today() - __import__("datetime").date(2025, 11, 1)).days
    assert isinstance(body["overdue"]["total"], str) and body["overdue"]["total"] != "0.00"
    assert len(body["schedule"]) == 12 and body["annual_rate"] == "18"


def test_an_agency_sees_its_own_case_but_another_agencys_answers_exactly_like_a_missing_one(
        api, world: World) -> None:
    h = key(world, "agency-a1")
    assert api.get("/api/v1/loans/L1", headers=h).status_code == 200
    other = api.get("/api/v1/loans/L2", headers=h)
    missing = api.get("/api/v1/loans/L404", headers=h)
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"].replace("L2", "X") == \
        missing.json()["error"]["message"].replace("L404", "X")
    assert set(other.headers) - {"content-length"} == set(missing.headers) - {"content-length"}


def test_an_agency_collector_signed_in_cannot_read_another_agencys_case_either(api, world: World) -> None:
    sign_in_staff(api, world, "agent")
    assert api.get("/api/v1/loans/L1").status_code == 200
    assert api.get("/api/v1/loans/L2").status_code == 404


def test_an_out_of_range_path_id_is_a_422_naming_it_not_a_crash(api, world: World) -> None:
    r = api.get("/api/v1/loans/" + "x" * 65, headers=key(world))
    assert r.status_code == 422 and r.json()["error"]["field"] == "loan_id"


# --- payments --------------------------------------------------------------------------------


def _payment(**over: object) -> dict[str, object]:
    body: dict[str, object] = {"payment_id": "P-1", "loan_id": "L1",
                               "paid_at": "2026-03-01T10:00:00+08:00", "amount": "500.00"}
    body.update(over)
    return body


def test_a_payment_is_posted_once_and_a_repeat_says_so(api, world: World) -> None:
    r = api.post("/api/v1/payments", json=_payment(), headers=key(world))
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount"] == "500.00" and not first["already_posted"] and first["allocation"]
    again = api.post("/api/v1/payments", json=_payment(), headers=key(world)).json()
    assert again["already_posted"] is True
    clash = api.post("/api/v1/payments", json=_payment(amount="501.00"), headers=key(world))
    assert clash.status_code == 409


@pytest.mark.parametrize(("over", "field"), [
    ({"amount": "12.345"}, "amount"),
    ({"amount": 12.5}, "amount"),
    ({"amount": ""}, "amount"),
    ({"paid_at": "yesterday"}, "paid_at"),
    ({"loan_id": "no spaces allowed"}, "loan_id"),
    ({"surprise": 1}, "surprise"),
])
def test_a_bad_payment_field_is_a_422_naming_it(api, world: World, over, field) -> None:
    r = api.post("/api/v1/payments", json=_payment(**over), headers=key(world))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_a_payment_with_no_utc_offset_is_refused_naming_paid_at(api, world: World) -> None:
    r = api.post("/api/v1/payments", json=_payment(paid_at="2026-03-01T10:00:00"), headers=key(world))
    assert r.status_code == 422 and r.json()["error"]["field"] == "paid_at"


def test_a_payment_to_another_agencys_loan_is_404(api, world: World) -> None:
    r = api.post("/api/v1/payments", json=_payment(loan_id="L2"), headers=key(world, "agency-a1"))
    assert r.status_code in (403, 404)


# --- imports ---------------------------------------------------------------------------------


def test_an_import_upload_reports_what_it_did(api, world: World, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "more.csv", [{"borrower_id": "B3", "name": "张三", "phone": "+8613700137003"}])
    r = api.post("/api/v1/imports/borrowers", headers=key(world),
                 files={"file": ("more.csv", f.read_bytes(), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1 and r.json()["file"] == "more.csv"


def test_an_import_with_a_bad_row_writes_nothing_and_names_row_and_field(api, world: World,
                                                                          tmp_path: Path) -> None:
    f = write_csv(tmp_path / "bad.csv", [
        {"borrower_id": "B4", "name": "好", "phone": "+8613700137004"},
        {"borrower_id": "B5", "name": "坏", "phone": "not a phone"},
    ])
    r = api.post("/api/v1/imports/borrowers", headers=key(world),
                 files={"file": ("bad.csv", f.read_bytes(), "text/csv")})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "phone" and "bad.csv" in err["record"] and "3" in err["record"]
    assert api.get("/api/v1/complaints", headers=key(world)).status_code == 200
    r2 = api.post("/api/v1/complaints", headers=key(world),
                  json={"borrower_id": "B4", "category": "other"})
    assert r2.status_code == 404  # B4 was not written


def test_an_unknown_import_kind_is_a_422_naming_kind(api, world: World) -> None:
    r = api.post("/api/v1/imports/widgets", headers=key(world),
                 files={"file": ("x.csv", b"a\n1\n", "text/csv")})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kind"


# --- the gate --------------------------------------------------------------------------------

SCENARIO = {
    "pack": "CN",
    "person": {"role": "borrower", "phones": ["+8613800138000"], "address": {"country": "CN"}},
    "debts": ["L-1001"], "history": [], "agreements": [],
    "request": {"at": "2026-05-06T22:30:00+08:00", "channel": "call", "to": "+8613800138000",
                "debt": "L-1001", "purpose": "collection"},
}


def test_the_gate_check_denies_a_night_call_and_says_when_it_becomes_lawful(api, world: World) -> None:
    r = api.post("/api/v1/gate/check", json=SCENARIO, headers=key(world))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["decision"] == "deny" and d["next_allowed_at"].startswith("2026-05-07T08:00")
    assert any(x["effect"] == "deny" for x in d["reasons"])


def test_a_malformed_scenario_is_a_422_naming_the_json_path(api, world: World) -> None:
    bad = {**SCENARIO, "request": {**SCENARIO["request"], "at": "soon"}}
    r = api.post("/api/v1/gate/check", json=bad, headers=key(world))
    assert r.status_code == 422 and r.json()["error"]["field"] == "request.at"


# --- complaints ------------------------------------------------------------------------------


def test_a_harassment_complaint_holds_collection_until_it_is_resolved(api, world: World) -> None:
    h = key(world)
    r = api.post("/api/v1/complaints", headers=h, json={
        "borrower_id": "B1", "category": "harassment", "description": "called 9 times"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    c = api.get(f"/api/v1/complaints/{cid}", headers=h).json()
    assert c["status"] == "open" and c["hold_id"] is not None
    assert c["acknowledge_due_at"] < c["resolve_due_at"]
    assert api.post(f"/api/v1/complaints/{cid}/acknowledge", headers=h).status_code == 200
    assert api.post(f"/api/v1/complaints/{cid}/acknowledge", headers=h).status_code == 409
    r = api.post(f"/api/v1/complaints/{cid}/assign", headers=h,
                 json={"staff_id": world.staff["compliance"]})
    assert r.status_code == 200
    r = api.post(f"/api/v1/complaints/{cid}/resolve", headers=h, json={"outcome": "apologised; coached"})
    assert r.status_code == 200
    c = api.get(f"/api/v1/complaints/{cid}", headers=h).json()
    assert c["status"] == "resolved" and c["assignee_name"] == "Compliance"
    from sqlalchemy import select

    from parley.store.models.contacts import Hold

    with world.ctx.db.read() as conn:
        ended = conn.execute(select(Hold.ended_at).where(Hold.id == c["hold_id"])).scalar_one()
    assert ended is not None


def test_the_complaint_deadlines_default_to_one_and_fifteen_business_days(api, world: World) -> None:
    r = api.post("/api/v1/complaints", headers=key(world), json={"borrower_id": "B1", "category": "other"})
    c = api.get(f"/api/v1/complaints/{r.json()['id']}", headers=key(world)).json()
    # Filed Monday 2 March 2026 10:00 Shanghai: acknowledge by the end of Tuesday 3 March,
    # resolve by the end of the 15th business day (Monday 23 March; no holiday in between).
    assert c["acknowledge_due_at"].startswith("2026-03-03T15:59:59")
    assert c["resolve_due_at"].startswith("2026-03-23T15:59:59")


@pytest.mark.parametrize(("body", "field"), [
    ({"borrower_id": "B1", "category": "rude"}, "category"),
    ({"borrower_id": "B1", "category": "other", "contact_ids": [0]}, "contact_ids[0]"),
    ({"category": "other"}, "borrower_id"),
])
def test_a_bad_complaint_is_a_422_naming_the_field(api, world: World, body, field) -> None:
    r = api.post("/api/v1/complaints", headers=key(world), json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field


def test_evidence_must_be_the_borrowers_own_contacts(api, world: World) -> None:
    r = api.post("/api/v1/complaints", headers=key(world),
                 json={"borrower_id": "B1", "category": "other", "contact_ids": [12345]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "contact_ids"


def test_an_agency_cannot_file_or_read_complaints_about_another_agencys_borrower(api, world: World) -> None:
    r = api.post("/api/v1/complaints", headers=key(world), json={"borrower_id": "B2", "category": "other"})
    cid = r.json()["id"]
    h = key(world, "agency-a1")
    assert api.get(f"/api/v1/complaints/{cid}", headers=h).status_code == 404
    assert [c["id"] for c in api.get("/api/v1/complaints", headers=h).json()] == []
    assert api.post("/api/v1/complaints", headers=h,
                    json={"borrower_id": "B2", "category": "other"}).status_code == 404


# --- CSRF on cookie-authenticated API calls --------------------------------------------------


def test_a_staff_session_may_call_the_api_but_writes_need_the_csrf_header(api, world: World) -> None:
    csrf = sign_in_staff(api, world, "admin")
    body = {"borrower_id": "B1", "category": "other"}
    assert api.post("/api/v1/complaints", json=body).status_code == 403
    assert api.post("/api/v1/complaints", json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert api.post("/api/v1/complaints", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201


# --- webhooks --------------------------------------------------------------------------------


def test_a_filed_complaint_is_posted_signed_to_subscribers_and_retried_with_back_off(api, world: World) -> None:
    from datetime import timedelta

    from parley.services import webhooks

    r = api.post("/api/v1/webhooks", headers=key(world),
                 json={"url": "https://lender.example/hook", "events": ["complaint.filed"]})
    assert r.status_code == 201
    secret = r.json()["secret"]
    assert api.post("/api/v1/webhooks", headers=key(world, "collector-key"),
                    json={"url": "https://x.example/h"}).status_code == 403
    api.post("/api/v1/complaints", headers=key(world), json={"borrower_id": "B1", "category": "other"})
    got: list[tuple[str, bytes, dict[str, str]]] = []
    answers = [webhooks.Response(503, "busy"), webhooks.Response(200)]

    def send(url: str, body: bytes, headers: dict[str, str]) -> webhooks.Response:
        got.append((url, body, headers))
        return answers.pop(0)

    ctx = world.ctx
    assert webhooks.deliver_due(ctx, send) == {"delivered": 0, "retrying": 1, "failed": 0}
    assert webhooks.deliver_due(ctx, send) == {"delivered": 0, "retrying": 0, "failed": 0}  # not due yet
    ctx.clock.advance(timedelta(seconds=31))  # type: ignore[attr-defined]
    assert webhooks.deliver_due(ctx, send) == {"delivered": 1, "retrying": 0, "failed": 0}
    url, body, headers = got[-1]
    assert url == "https://lender.example/hook" and headers["Parley-Event"] == "complaint.filed"
    assert webhooks.verify_signature(secret, headers["Parley-Signature"], body, ctx.clock.now())
    assert not webhooks.verify_signature(secret, headers["Parley-Signature"], body + b" ", ctx.clock.now())
    assert got[0][2]["Parley-Event-Id"] == got[1][2]["Parley-Event-Id"]  # the same event, retried


def test_webhook_back_off_doubles_and_is_capped() -> None:
    from datetime import timedelta

    from parley.services.webhooks import backoff

    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(20) == timedelta(hours=6)


def test_a_webhook_url_must_be_http(api, world: World) -> None:
    r = api.post("/api/v1/webhooks", headers=key(world), json={"url": "ftp://x.example/h"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"


# --- agreements ------------------------------------------------------------------------------


def test_a_plan_is_quoted_proposed_and_accepted_on_a_recorded_call(api, world: World) -> None:
    h = key(world)
    q = api.get("/api/v1/loans/L1/quote", params={"monthly": "2000"}, headers=h)
    assert q.status_code == 200 and any(p["key"] == "installment_plan/arrears" for p in q.json()["plans"])
    r = api.post("/api/v1/agreements", headers=h,
                 json={"loan_id": "L1", "plan": "installment_plan/arrears", "monthly": "2000"})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    assert api.post("/api/v1/agreements", headers=h, json={
        "loan_id": "L1", "plan": "installment_plan/arrears", "monthly": "2000"}).status_code == 409
    bad = api.post(f"/api/v1/agreements/{aid}/accept", headers=h, json={"channel": "call"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "recording_ref"
    ok = api.post(f"/api/v1/agreements/{aid}/accept", headers=h,
                  json={"channel": "call", "recording_ref": "rec-2026-03-02-0001"})
    assert ok.status_code == 200, ok.text
    assert api.get(f"/api/v1/agreements/{aid}", headers=h).json()["status"] == "active"


def test_another_agencys_agreement_answers_like_a_missing_one(api, world: World) -> None:
    r = api.post("/api/v1/agreements", headers=key(world),
                 json={"loan_id": "L2", "plan": "installment_plan/arrears", "monthly": "2000"})
    assert r.status_code == 201, r.text
    h = key(world, "agency-a1")
    assert api.get(f"/api/v1/agreements/{r.json()['id']}", headers=h).status_code == 404
    assert api.get("/api/v1/loans/L2/quote", headers=h).status_code == 404


# --- permits: what a lender's dialer or worker calls at the moment of contact ----------------


def test_a_permit_is_decided_now_recorded_once_and_its_outcome_reported_once(api, world: World) -> None:
    body = {"loan_id": "L1", "channel": "call", "idempotency_key": "dialer-42"}
    first = api.post("/api/v1/gate/permits", json=body, headers=key(world))
    assert first.status_code == 200, first.text
    permit = first.json()
    assert permit["allowed"] is True and permit["attempt_id"] and "****" in permit["to"]
    again = api.post("/api/v1/gate/permits", json=body, headers=key(world)).json()
    assert again["attempt_id"] == permit["attempt_id"]  # the same contact, not a second one
    outcome = {"loan_id": "L1", "result": "no_answer"}
    url = f"/api/v1/gate/attempts/{permit['attempt_id']}/outcome"
    assert api.post(url, json=outcome, headers=key(world)).status_code == 200
    assert api.post(url, json=outcome, headers=key(world)).status_code == 409


def test_a_permit_outside_lawful_hours_is_denied_with_the_rule_and_the_next_lawful_time(api, world: World) -> None:
    from datetime import UTC, datetime

    world.ctx.clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
    r = api.post("/api/v1/gate/permits", json={"loan_id": "L1", "channel": "sms", "text": "您好，请按时还款。"},
                 headers=key(world)).json()
    assert r["allowed"] is False and r["attempt_id"] is None
    assert any(reason["rule"].startswith("cn.") for reason in r["reasons"])
    assert datetime.fromisoformat(r["next_allowed_at"]) == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai


def test_a_permit_for_another_agencys_case_answers_like_a_missing_one(api, world: World) -> None:
    theirs = api.post("/api/v1/gate/permits", json={"loan_id": "L2", "channel": "call"}, headers=key(world, "agency-a1"))
    missing = api.post("/api/v1/gate/permits", json={"loan_id": "L404", "channel": "call"}, headers=key(world, "agency-a1"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"].replace("L2", "X") == missing.json()["error"]["message"].replace("L404", "X")


def test_a_call_from_the_borrower_is_recorded_and_counts_as_a_conversation(
        api, world: World) -> None:
    from parley.core.gate import Channel, ContactRequest, Purpose, Role
    from parley.services.facts import load_facts

    r = api.post("/api/v1/gate/inbound", headers=key(world),
                 json={"loan_id": "L1", "channel": "call", "sender": "+86 138 0013 8000",
                       "spoke": True, "notes": "asked for a plan"})
    assert r.status_code == 201, r.text
    assert r.json()["from_masked"].endswith("8000") and "****" in r.json()["from_masked"]
    now = world.ctx.clock.now()
    with world.ctx.db.read() as conn:
        req = ContactRequest(now, Channel.CALL, "B1", Role.BORROWER, "", Purpose.COLLECTION)
        history = load_facts(conn, world.ctx, "B1", req, now).history
    assert [(h.initiated_by, str(h.result)) for h in history] == [("consumer", "conversation")]
    bad = api.post("/api/v1/gate/inbound", headers=key(world),
                   json={"loan_id": "L1", "channel": "sms", "sender": "not a number"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "sender"
    theirs = api.post("/api/v1/gate/inbound", headers=key(world, "agency-a1"),
                      json={"loan_id": "L2", "channel": "call"})
    assert theirs.status_code == 404  # another agency's case, as if missing
    blank = api.post("/api/v1/gate/inbound", headers=key(world),
                     json={"loan_id": "L1", "channel": "sms", "sender": ""})
    assert blank.status_code == 201 and blank.json()["from_masked"] == ""  # not known


def test_a_bad_permit_request_names_the_field(api, world: World) -> None:
    r = api.post("/api/v1/gate/permits", json={"loan_id": "L1", "channel": "pigeon"}, headers=key(world))
    assert r.status_code == 422 and r.json()["error"]["field"].endswith("channel")
