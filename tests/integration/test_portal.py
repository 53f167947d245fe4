"""The borrower's portal and the collector's case page over HTTP (no browser): choosing a plan
accepts it, the one-button complaint attaches the contacts made after the agreement, opt-outs
reach the gate, and a logged call shows who called with their badge."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from parley.store.models.contacts import ContactAttempt, OptOut
from parley.store.models.queue import ContactQueueItem
from tests.integration.web_data import (
    World,
    client,
    queue_item,
    sign_in_borrower,
    sign_in_staff,
)


def hx(csrf: str) -> dict[str, str]:
    return {"X-CSRF-Token": csrf, "HX-Request": "true"}


def test_a_borrower_sees_what_they_owe_and_why_with_the_annual_rate(web, world: World) -> None:
    sign_in_borrower(web, world)
    html = web.get("/portal").text
    assert "¥5,500.80" in html  # overdue at 2 March 2026: five instalments
    assert "¥4,740.90" in html and "¥759.90" in html  # principal and interest
    assert "年利率：每年 18%。" in html


def test_choosing_an_affordable_plan_accepts_it_and_cancels_queued_calls(web, world: World) -> None:
    queue_item(world.ctx, "L1", "B1", world.staff["collector"], 10, "q-1")
    csrf = sign_in_borrower(web, world)
    quotes = web.post("/portal/quote", data={"loan_id": "L1", "monthly": "2000"}, headers=hx(csrf))
    assert quotes.status_code == 200 and 'data-plan="installment_plan/arrears"' in quotes.text
    r = web.post("/portal/plans", data={"loan_id": "L1", "plan": "installment_plan/arrears",
                                        "monthly": "2000"}, headers=hx(csrf))
    assert r.status_code == 200 and 'id="accepted"' in r.text
    assert "生效中" in web.get("/portal").text
    with world.ctx.db.read() as conn:
        status = conn.execute(select(ContactQueueItem.status)).scalar_one()
    assert status == "cancelled"


def test_a_plan_that_needs_approval_is_not_accepted_by_choosing_it(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    r = web.post("/portal/plans", data={"loan_id": "L1", "plan": "reduction/arrears/maximum",
                                        "monthly": "2000"}, headers=hx(csrf))
    assert r.status_code == 200 and 'id="needs-approval"' in r.text


def test_a_borrower_cannot_quote_someone_elses_loan(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    r = web.post("/portal/quote", data={"loan_id": "L2", "monthly": "2000"}, headers=hx(csrf))
    assert r.status_code == 404


def test_the_one_button_complaint_attaches_every_contact_made_after_the_agreement(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    web.post("/portal/plans", data={"loan_id": "L1", "plan": "installment_plan/arrears",
                                    "monthly": "2000"}, headers=hx(csrf))
    # A call that should never have happened (e.g. a dialer outside Parley), on the record:
    later = world.ctx.clock.now() + timedelta(hours=2)
    with world.ctx.db.transaction() as conn:
        conn.execute(insert(ContactAttempt).values(
            borrower_id="B1", loan_id="L1", person_role="borrower", channel="call",
            to_masked="+86138****8000", purpose="collection", at=later,
            collector_id=world.staff["collector"], badge="C-1001", result="conversation"))
    world.ctx.clock.advance(timedelta(hours=3))  # type: ignore[attr-defined]
    csrf = sign_in_borrower(web, world)  # (the 15-minute idle timeout passed)
    r = web.post("/portal/contacted-after-agreement", data={"csrf_token": csrf})
    assert r.status_code == 303
    cid = re.search(r"filed=([\w-]+)", r.headers["location"]).group(1)  # type: ignore[union-attr]
    desk = client(web.app)
    sign_in_staff(desk, world, "compliance")
    page = desk.get(f"/desk/complaints/{cid}").text
    assert "C-1001" in page and "达成协议后仍被联系" in page
    assert "调查期间暂停催收" in page  # the complaint holds collection while investigated


def test_opting_out_of_calls_is_recorded_and_can_be_undone(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    r = web.post("/portal/preferences", data={"opt_out": ["call", "visit"], "quiet_from": "12:00",
                                              "quiet_to": "14:00", "csrf_token": csrf})
    assert r.status_code == 303
    with world.ctx.db.read() as conn:
        active = sorted(conn.execute(select(OptOut.channel).where(OptOut.revoked_at.is_(None))).scalars())
    assert active == ["call", "visit"]
    web.post("/portal/preferences", data={"opt_out": ["visit"], "csrf_token": csrf})
    with world.ctx.db.read() as conn:
        active = sorted(conn.execute(select(OptOut.channel).where(OptOut.revoked_at.is_(None))).scalars())
    assert active == ["visit"]


def test_a_bad_quiet_window_is_refused_by_name(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    r = web.post("/portal/preferences", data={"quiet_from": "25:00", "quiet_to": "14:00", "csrf_token": csrf})
    assert r.status_code == 422 and "quiet_from" in r.text


def test_after_opting_out_of_calls_the_gate_says_no(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    web.post("/portal/preferences", data={"opt_out": ["call"], "csrf_token": csrf})
    staff = client(web.app)
    csrf = sign_in_staff(staff, world, "collector")
    r = staff.post("/cases/L1/may-i-call", headers=hx(csrf))
    assert 'data-allowed="no"' in r.text


def test_a_logged_call_shows_the_collectors_name_and_badge_to_the_borrower(web, world: World) -> None:
    staff = client(web.app)
    csrf = sign_in_staff(staff, world, "collector")
    phone_id = re.search(r'name="phone_id" value="(\d+)"', staff.get("/cases/L1").text).group(1)  # type: ignore[union-attr]
    r = staff.post("/cases/L1/dial", data={"phone_id": phone_id}, headers=hx(csrf))
    assert 'id="call-in-progress"' in r.text
    attempt = re.search(r'name="attempt_id" value="(\d+)"', r.text).group(1)  # type: ignore[union-attr]
    r = staff.post("/cases/L1/outcome", data={"attempt_id": attempt, "result": "conversation",
                                              "notes": "will pay Friday", "promise": "true"},
                   headers=hx(csrf))
    assert 'id="outcome-logged"' in r.text
    again = staff.post("/cases/L1/outcome", data={"attempt_id": attempt, "result": "no_answer"},
                       headers=hx(csrf))
    assert again.status_code == 409  # an outcome is recorded once
    sign_in_borrower(web, world)
    html = web.get("/portal").text
    assert "Collector" in html and "C-1001" in html and "已与借款人通话" in html


def test_a_collector_cannot_log_an_outcome_on_someone_elses_call(web, world: World) -> None:
    a = client(web.app)
    csrf_a = sign_in_staff(a, world, "collector")
    phone_id = re.search(r'name="phone_id" value="(\d+)"', a.get("/cases/L1").text).group(1)  # type: ignore[union-attr]
    r = a.post("/cases/L1/dial", data={"phone_id": phone_id}, headers=hx(csrf_a))
    attempt = re.search(r'name="attempt_id" value="(\d+)"', r.text).group(1)  # type: ignore[union-attr]
    b = client(web.app)
    csrf_b = sign_in_staff(b, world, "collector2")
    r = b.post("/cases/L1/outcome", data={"attempt_id": attempt, "result": "conversation"}, headers=hx(csrf_b))
    assert r.status_code == 404


def test_the_desk_shows_measures_and_denials_by_rule(web, world: World) -> None:
    csrf_b = sign_in_borrower(web, world)
    web.post("/portal/preferences", data={"opt_out": ["call"], "csrf_token": csrf_b})
    staff = client(web.app)
    csrf = sign_in_staff(staff, world, "collector")
    staff.post("/cases/L1/may-i-call", headers=hx(csrf))
    desk = client(web.app)
    sign_in_staff(desk, world, "compliance")
    html = desk.get("/desk").text
    assert "每万次联系的投诉数" in html and "cn." in html  # a CN rule id in the denials table


def test_the_vendored_htmx_file_matches_its_pinned_hash() -> None:
    import base64
    import hashlib
    from importlib import resources

    from parley.faces.web.pages import HTMX_FILE, HTMX_SRI

    data = resources.files("parley.faces.web").joinpath("static", HTMX_FILE).read_bytes()
    assert "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode() == HTMX_SRI
    assert data.startswith(b"var htmx=function()") and "2.0.11" in HTMX_FILE


def test_the_compliance_officer_attaches_a_contact_from_the_log_as_evidence(web, world: World) -> None:
    staff = client(web.app)
    csrf = sign_in_staff(staff, world, "collector")
    phone_id = re.search(r'name="phone_id" value="(\d+)"', staff.get("/cases/L1").text).group(1)  # type: ignore[union-attr]
    staff.post("/cases/L1/dial", data={"phone_id": phone_id}, headers=hx(csrf))
    csrf_b = sign_in_borrower(web, world)
    r = web.post("/portal/complaints", data={"category": "harassment", "description": "rude",
                                             "csrf_token": csrf_b})
    cid = re.search(r"filed=([\w-]+)", r.headers["location"]).group(1)  # type: ignore[union-attr]
    desk = client(web.app)
    csrf_d = sign_in_staff(desk, world, "compliance")
    page = desk.get(f"/desk/complaints/{cid}").text
    contact = re.search(r'<option value="(\d+)">', page.split('name="contact_id"')[1]).group(1)  # type: ignore[union-attr]
    r = desk.post(f"/desk/complaints/{cid}/evidence", data={"contact_id": contact, "csrf_token": csrf_d})
    assert r.status_code == 303
    assert "C-1001" in desk.get(f"/desk/complaints/{cid}").text.split('id="evidence"')[1]
    for action, data in (("acknowledge", {}), ("assign", {"staff_id": world.staff["compliance"]}),
                         ("resolve", {"outcome": "coached the collector", "upheld": "yes"})):
        assert desk.post(f"/desk/complaints/{cid}/{action}", data={**data, "csrf_token": csrf_d}).status_code == 303
    assert "coached the collector" in desk.get(f"/desk/complaints/{cid}").text


def test_the_desk_shows_recovery_by_bucket_and_by_strategy_arm(web, world: World) -> None:
    from parley.services.auth import Actor
    from parley.services.casework import desk_metrics

    queue_item(world.ctx, "L1", "B1", world.staff["collector"], 10, "q-arm")
    api_key = {"X-API-Key": world.keys["lender"]}
    r = web.post("/api/v1/payments", headers=api_key, json={
        "payment_id": "P-9", "loan_id": "L1", "paid_at": "2026-03-01T12:00:00+08:00", "amount": "800.00"})
    assert r.status_code == 201
    m = desk_metrics(world.ctx, Actor("staff", "x", "compliance_officer"))
    assert m["recovery_by_bucket"] == [{"bucket": "-", "currency": "CNY", "amount": "800.00",
                                        "amount_minor": 80000, "loans": 1}]
    assert m["recovery_by_arm"][0]["amount"] == "800.00"


def test_an_agency_sees_only_the_notes_on_its_own_loans(web, world: World, tmp_path: Path) -> None:
    from parley.services.imports import import_file
    from tests.integration.loanbook_data import write_csv

    import_file(world.ctx, "loans", write_csv(tmp_path / "more.csv", [
        {"loan_id": "L3", "borrower_id": "B1", "currency": "CNY", "principal": "1000.00",
         "annual_rate": "12", "term": "3", "method": "equal-principal",
         "disbursed_on": "2025-10-01", "first_due_on": "2025-11-01", "agency_id": "A2"}]))
    inhouse = client(web.app)
    csrf = sign_in_staff(inhouse, world, "collector")
    inhouse.post("/cases/L3/notes", data={"text": "note about the A2 loan", "csrf_token": csrf})
    inhouse.post("/cases/L1/notes", data={"text": "note about the A1 loan", "csrf_token": csrf})
    agent = client(web.app)
    sign_in_staff(agent, world, "agent")
    page = agent.get("/cases/L1").text
    assert "note about the A1 loan" in page and "note about the A2 loan" not in page


def test_a_borrower_who_prefers_traditional_chinese_gets_it(web, world: World, tmp_path: Path) -> None:
    from parley.services.imports import import_file
    from tests.integration.loanbook_data import write_csv

    import_file(world.ctx, "borrowers", write_csv(tmp_path / "tw.csv", [
        {"borrower_id": "B7", "name": "陳大文", "phone": "+8613700137007", "language": "zh-Hant"}]))
    import_file(world.ctx, "loans", write_csv(tmp_path / "tw-loans.csv", [
        {"loan_id": "L7", "borrower_id": "B7", "currency": "CNY", "principal": "1000.00",
         "annual_rate": "12", "term": "3", "method": "equal-principal",
         "disbursed_on": "2025-10-01", "first_due_on": "2025-11-01"}]))
    sign_in_borrower(web, world, "+8613700137007")
    html = web.get("/portal").text
    assert "對我的全部聯繫紀錄" in html and 'lang="zh-Hant"' in html


def test_the_receipt_is_a_pdf_for_its_borrower_and_can_be_checked_by_anyone(web, world: World) -> None:
    csrf = sign_in_borrower(web, world)
    web.post("/portal/plans", data={"loan_id": "L1", "plan": "installment_plan/arrears",
                                    "monthly": "2000"}, headers=hx(csrf))
    page = web.get("/portal").text
    receipt = re.search(r'href="(/agreements/[^"]+/receipt\.pdf)"', page).group(1)  # type: ignore[union-attr]
    pdf = web.get(receipt)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    check = re.search(r'href="(/verify\?code=[^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    anyone = client(web.app)
    r = anyone.get(check)
    assert r.status_code == 200 and 'data-genuine="yes"' in r.text and "5,500.80" in r.text
    assert 'data-genuine="no"' in anyone.get(check[:-3] + "xyz").text
    other = client(web.app)
    sign_in_staff(other, world, "agent")  # agency A1 holds L1: may see it
    assert other.get(receipt).status_code == 200
    b2 = client(web.app)
    sign_in_borrower(b2, world, "+8613900139001")
    assert b2.get(receipt).status_code == 404


def test_the_desk_counts_contacts_per_business_day_by_channel(web, world: World) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from parley.services.auth import Actor
    from parley.services.casework import desk_metrics
    from parley.store.models.contacts import ContactAttempt

    def attempt(at: datetime, channel: str) -> dict:
        return {"borrower_id": "B1", "loan_id": "L1", "person_role": "borrower", "channel": channel,
                "purpose": "collection", "at": at}

    with world.ctx.db.transaction() as conn:  # Shanghai is UTC+8: 15:50Z is 23:50, 16:10Z is 00:10
        conn.execute(insert(ContactAttempt), [
            attempt(datetime(2026, 3, 1, 15, 50, tzinfo=UTC), "call"),
            attempt(datetime(2026, 3, 1, 15, 59, tzinfo=UTC), "sms"),
            attempt(datetime(2026, 3, 1, 16, 10, tzinfo=UTC), "call"),
            attempt(datetime(2026, 2, 1, 1, 0, tzinfo=UTC), "call"),  # outside the 14-day window
        ])
    m = desk_metrics(world.ctx, Actor("staff", "x", "compliance_officer"))
    days = {d["day"]: d["channels"] for d in m["per_day"]}
    assert days == {"2026-03-01": {"call": 1, "sms": 1}, "2026-03-02": {"call": 1}}
    assert m["contacts_total"] == 3


def test_a_collector_records_a_call_from_the_borrower_and_both_pages_show_it_as_theirs(
        web, world: World) -> None:
    csrf = sign_in_staff(web, world, "collector")
    page = web.get("/cases/L1").text
    assert 'action="/cases/L1/inbound"' in page
    r = web.post("/cases/L1/inbound", data={"channel": "call", "sender": "+8613800138000",
                                            "spoke": "true", "notes": "wants a plan",
                                            "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/cases/L1#contacts"
    contacts = web.get("/cases/L1").text.split('id="contacts"')[1]
    assert "来自借款人" in contacts and "wants a plan" in contacts  # collector's language zh-Hans
    with world.ctx.db.read() as conn:
        row = conn.execute(select(ContactAttempt.direction, ContactAttempt.initiated_by,
                                  ContactAttempt.result, ContactAttempt.collector_id)).one()
    assert tuple(row) == ("inbound", "consumer", "conversation", None)
    bad = web.post("/cases/L1/inbound", data={"channel": "pigeon", "csrf_token": csrf})
    assert bad.status_code == 422 and "channel" in bad.text
    with world.ctx.db.read() as conn:
        assert len(conn.execute(select(ContactAttempt.id)).all()) == 1  # nothing more written
    borrower = client(web.app)
    sign_in_borrower(borrower, world)
    mine = borrower.get("/portal").text.split('id="contacts"')[1]
    assert "<td>您</td>" in mine.split("</section>")[0]  # their own call, in their language
