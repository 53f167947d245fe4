"""Agreements against real databases: once a plan is accepted the calls stop (invariant 1),
in the same transaction; a missed instalment past grace breaks it and collection resumes,
after a notice; a kept plan posts its waivers. Races on PostgreSQL with threads."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, text

from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.services import agreements as ag
from parley.services.context import Context
from parley.services.delinquency import days_past_due_all
from parley.services.imports import import_file
from parley.services.payments import loan_balance, post_payment, reverse_payment
from parley.services.receipts import receipt_html, receipt_pdf, verify_code
from parley.store.models.agreements import Agreement, AgreementInstallment
from parley.store.models.contacts import AuditLog
from parley.store.models.loanbook import DelinquencyPause, Installment, LedgerEntry
from parley.store.models.queue import ContactQueueItem
from parley.store.models.staff import StaffUser
from tests.integration.test_channels import add_collectors

SH = ZoneInfo("Asia/Shanghai")

BORROWERS = ("borrower_id,name,phone,language\n"
             "B1,王伟,+8613800138000,zh-Hans\n"
             "B2,李娜,+8613900139000,zh-Hant\n")
# 12000.00 at 12% over 12 months from 2025-12-01: on 2026-03-02 four instalments are overdue.
LOANS = ("loan_id,borrower_id,currency,principal,annual_rate,term,method,disbursed_on,first_due_on\n"
         "L1,B1,CNY,12000.00,12,12,equal-installment,2025-11-01,2025-12-01\n"
         "L2,B2,CNY,3000.00,12,6,equal-installment,2025-11-01,2025-12-01\n")


def load(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / "borrowers.csv").write_text(BORROWERS, encoding="utf-8")
    (tmp_path / "loans.csv").write_text(LOANS, encoding="utf-8")
    import_file(ctx, "borrowers", tmp_path / "borrowers.csv")
    import_file(ctx, "loans", tmp_path / "loans.csv")
    add_collectors(ctx, "C1")  # the daily run queues call tasks only for collectors who can take them


def at_local(ctx: Context, y: int, m: int, d: int, hh: int = 10) -> None:
    ctx.clock.set(datetime(y, m, d, hh, tzinfo=SH))  # type: ignore[attr-defined]


def queue(ctx: Context, borrower_id: str, loan_id: str | None, purpose: str = "collection",
          status: str = "pending", key: str = "") -> int:
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        return int(conn.execute(insert(ContactQueueItem).returning(ContactQueueItem.id), {
            "business_date": now.date(), "borrower_id": borrower_id, "loan_id": loan_id,
            "action_kind": "sms", "channel": "sms", "purpose": purpose, "not_before": now,
            "status": status, "idempotency_key": key or f"{borrower_id}|{loan_id}|{purpose}|{status}",
            "created_at": now, "updated_at": now}).scalar_one())


def statuses(ctx: Context) -> dict[int, str]:
    with ctx.db.read() as conn:
        return {i: s for i, s in conn.execute(select(ContactQueueItem.id, ContactQueueItem.status))}


def collection_attempts(ctx: Context, loan: str) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM contact_attempt WHERE purpose = 'collection' "
                                     "AND loan_id = :l"), {"l": loan}).scalar_one())


def pending_collection(ctx: Context, loan: str) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM contact_queue WHERE purpose = 'collection' "
                                     "AND loan_id = :l AND status IN ('pending', 'leased')"), {"l": loan}).scalar_one())


def audit_kinds(ctx: Context, subject: str) -> list[str]:
    with ctx.db.read() as conn:
        return list(conn.execute(select(AuditLog.kind).where(AuditLog.subject == subject)
                                 .order_by(AuditLog.seq)).scalars())


def permit(ctx: Context, purpose: str, channel: str = "call"):
    from parley.services.permits import PermitRequest, request_permit

    kw = {"text": "您好，这是关于您还款计划的提醒。", "template_id": "t"} if channel == "sms" else {}
    return request_permit(ctx, PermitRequest(borrower_id="B1", channel=channel, purpose=purpose, loan_id="L1",
                                             collector_id="C7", agency_id="A1", badge="B-007", **kw))


def propose_and_accept(ctx: Context, plan: str = "installment_plan/arrears", amount: str = "1500.00",
                       **kw: object) -> dict:
    a = ag.propose(ctx, "L1", plan, proposed_by="C7", amount=amount, **kw)  # type: ignore[arg-type]
    return ag.accept(ctx, a["id"], channel="call", accepted_by="C7", recording_ref="rec-001")


# --- the end-to-end guarantee ---------------------------------------------------------------------


def test_accepting_stops_collection_at_once_and_breaking_resumes_it_after_a_notice(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    mine = queue(ctx, "B1", "L1")
    leased = queue(ctx, "B1", "L1", status="leased")
    general = queue(ctx, "B1", None)
    service = queue(ctx, "B1", "L1", purpose="agreement_service")
    other = queue(ctx, "B2", "L2")
    assert permit(ctx, "collection").allowed  # before the agreement: one collection call made
    assert collection_attempts(ctx, "L1") == 1

    a = propose_and_accept(ctx)
    assert a["status"] == "active" and a["starts_on"] == "2026-03-02"
    assert a["cancelled_queue_items"] == 3
    assert statuses(ctx) == {mine: "cancelled", leased: "cancelled", general: "cancelled",
                             service: "pending", other: "pending"}
    denied = permit(ctx, "collection")
    assert not denied.allowed and "cn.agreement" in denied.decision.rule_ids("deny")
    assert not permit(ctx, "collection", "sms").allowed
    assert permit(ctx, "agreement_service", "sms").allowed

    # the daily plan and the worker: nothing about the debt is planned or sent while it runs
    from parley.services.daily_run import run_daily
    from parley.services.worker import work_once

    at_local(ctx, 2026, 3, 3)
    report = run_daily(ctx, date(2026, 3, 3))
    assert report.enforcement_off == 1  # L1; L2 (another borrower) is planned as usual
    work_once(ctx, "w1")
    assert pending_collection(ctx, "L1") == 0 and collection_attempts(ctx, "L1") == 1
    at_local(ctx, 2026, 3, 2)

    # days past due stop growing while the plan runs (a pause, not a re-age)
    with ctx.db.read() as conn:
        before = {r[0]: r[2] for r in days_past_due_all(ctx, conn, date(2026, 3, 2))}["L1"]
        during = {r[0]: r[2] for r in days_past_due_all(ctx, conn, date(2026, 3, 12))}["L1"]
    assert before == during > 0

    # the first instalment (2026-03-09) is not paid: still active on day 3 of grace…
    at_local(ctx, 2026, 3, 12)
    assert ag.review_agreements(ctx, date(2026, 3, 12))["broken"] == []
    assert not permit(ctx, "collection").allowed
    # …broken on day 4; a notice to the borrower is queued, and collection waits for it
    at_local(ctx, 2026, 3, 13)
    out = ag.review_agreements(ctx, date(2026, 3, 13))
    assert out["broken"] == [a["id"]]
    shown = ag.show(ctx, a["id"])
    assert shown["status"] == "broken" and "instalment 1" in shown["end_reason"]
    with ctx.db.read() as conn:
        notice = conn.execute(select(ContactQueueItem).where(
            ContactQueueItem.purpose == "agreement_service", ContactQueueItem.template_id == "agreement.broken"
        )).mappings().all()
        pause = conn.execute(select(DelinquencyPause.start_on, DelinquencyPause.end_on).where(
            DelinquencyPause.agreement_id == a["id"])).all()
    assert len(notice) == 1 and notice[0]["channel"] == "sms" and notice[0]["status"] == "pending"
    assert pause == [(date(2026, 3, 2), date(2026, 3, 13))]
    # until the borrower has been told, the broken plan still holds collection back…
    held = permit(ctx, "collection")
    assert not held.allowed and "cn.agreement" in held.decision.rule_ids("deny")
    run_daily(ctx, date(2026, 3, 13))
    assert pending_collection(ctx, "L1") == 0
    # …the worker sends the notice first; then collection resumes and is planned again
    sent = work_once(ctx, "w1")
    assert sent.sent == 1 and statuses(ctx)[notice[0]["id"]] == "sent"
    assert permit(ctx, "collection").allowed
    run_daily(ctx, date(2026, 3, 13))
    assert pending_collection(ctx, "L1") > 0
    # the review is idempotent
    assert ag.review_agreements(ctx, date(2026, 3, 13))["broken"] == []
    assert audit_kinds(ctx, a["id"]) == ["agreement.proposed", "agreement.accepted",
                                         "agreement.activated", "agreement.broken"]


def test_the_daily_run_reviews_agreements_before_planning(ctx: Context, tmp_path: Path) -> None:
    from parley.services.daily_run import run_daily

    load(ctx, tmp_path)
    a = propose_and_accept(ctx)
    at_local(ctx, 2026, 3, 20)
    report = run_daily(ctx, date(2026, 3, 20))
    assert ag.show(ctx, a["id"])["status"] == "broken"
    # broken, but still holding collection back until the borrower has been told (NOTICE_WAIT)
    assert report.enforcement_off == 1


# --- kept plans and waivers -----------------------------------------------------------------------


def test_a_kept_reduction_posts_its_waivers_and_leaves_nothing_overdue(ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    a = ag.propose(ctx, "L1", "reduction/arrears/standard", proposed_by="C7", amount="1500.00")
    assert not a["needs_approval"] and a["waived"] == "84.57"  # 20% of the overdue interest
    a = ag.accept(ctx, a["id"], channel="portal", accepted_by="B1")
    assert a["accepted_by"] == "B1" and a["acceptance_channel"] == "portal"
    for n, inst in enumerate(a["installments"], 1):
        at_local(ctx, *map(int, inst["due_on"].split("-")), hh=9)  # type: ignore[misc]
        post_payment(ctx, f"P{n}", "L1", ctx.clock.now(), int(inst["amount"].replace(".", "")))
    last = date.fromisoformat(a["installments"][-1]["due_on"])
    out = ag.review_agreements(ctx, last)
    assert out["kept"] == [a["id"]]
    shown = ag.show(ctx, a["id"])
    assert shown["status"] == "kept" and all(i["paid_off_on"] for i in shown["installments"])
    with ctx.db.read() as conn:
        waivers = conn.execute(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind == "waiver", LedgerEntry.loan_id == "L1")).scalar_one()
        bal = loan_balance(conn, "L1", last)
        later = conn.execute(select(func.sum(Installment.principal_due + Installment.interest_due)).where(
            Installment.loan_id == "L1", Installment.due_on > date(2026, 3, 2), Installment.due_on <= last)).scalar_one()
        off = conn.execute(select(Installment.number).where(
            Installment.loan_id == "L1", Installment.paid_off_on.is_not(None))).scalars().all()
        dpd = {r[0]: r[2] for r in days_past_due_all(ctx, conn, last)}["L1"]
    assert waivers == 1
    # the arrears quoted on 2026-03-02 are settled by payments plus the waiver; what is overdue
    # now is only the loan's own instalments that fell due during the plan (an arrears plan
    # does not cover them), and the pause kept them from ageing
    assert bal.overdue_total == later and sorted(off) == [1, 2, 3, 4]
    assert dpd == 0
    assert "agreement.kept" in audit_kinds(ctx, a["id"])


def test_payments_since_the_quote_count_and_a_reversal_stops_counting(ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    a = propose_and_accept(ctx)
    first = a["installments"][0]
    post_payment(ctx, "P1", "L1", ctx.clock.now(), 50_000)
    assert ag.apply_payments_to_agreements(ctx, date(2026, 3, 2)) == 1
    assert ag.show(ctx, a["id"])["installments"][0]["paid"] == "500.00"
    assert ag.quote(ctx, "L1", amount="1500.00")["debt"]["overdue"]["total"] == "3764.76"
    reverse_payment(ctx, "P1", "bounced")
    ag.apply_payments_to_agreements(ctx, date(2026, 3, 2))
    assert ag.show(ctx, a["id"])["installments"][0]["paid"] == "0.00"
    assert first["paid"] == "0.00"


# --- approval, codes, expiry, conflicts -------------------------------------------------------------


def _staff(ctx: Context, sid: str, role: str) -> None:
    with ctx.db.transaction() as conn:
        conn.execute(insert(StaffUser), {"id": sid, "username": sid, "display_name": sid, "role": role,
                                         "created_at": ctx.clock.now()})


def test_waivers_above_the_threshold_need_a_supervisor_who_is_not_the_proposer(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    _staff(ctx, "C7", "collector")
    _staff(ctx, "T1", "team_lead")
    a = ag.propose(ctx, "L1", "reduction/arrears/maximum", proposed_by="C7", amount="1500.00")
    assert a["needs_approval"] and any("principal" in r for r in a["approval_reasons"])
    with pytest.raises(Conflict, match="approval"):
        ag.accept(ctx, a["id"], channel="portal")
    with pytest.raises(Forbidden):
        ag.approve(ctx, a["id"], approved_by="C7")
    _staff(ctx, "C8", "collector")
    with pytest.raises(Forbidden):
        ag.approve(ctx, a["id"], approved_by="C8")
    assert ag.approve(ctx, a["id"], approved_by="T1")["status"] == "approved"
    done = ag.accept(ctx, a["id"], channel="portal")
    assert done["status"] == "active" and done["approved_by"] == "T1"
    assert audit_kinds(ctx, a["id"])[:2] == ["agreement.proposed", "agreement.approved"]


def test_a_one_time_code_is_stored_only_as_a_hash_and_wrong_codes_are_counted(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    a = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    issued = ag.issue_acceptance_code(ctx, a["id"])
    code = issued["code"]
    with ctx.db.read() as conn:
        stored = conn.execute(select(Agreement.otp_hash).where(Agreement.id == a["id"])).scalar_one()
    assert code not in stored and len(stored) == 64
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(InvalidInput) as e:
        ag.accept(ctx, a["id"], channel="otp", code=wrong)
    assert e.value.field == "code" and "4 attempts left" in e.value.message
    with ctx.db.read() as conn:
        assert conn.execute(select(Agreement.otp_attempts).where(Agreement.id == a["id"])).scalar_one() == 1
    ctx.clock.advance(timedelta(minutes=16))  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="expired"):
        ag.accept(ctx, a["id"], channel="otp", code=code)
    code = ag.issue_acceptance_code(ctx, a["id"])["code"]
    done = ag.accept(ctx, a["id"], channel="otp", code=code)
    assert done["status"] == "active" and done["acceptance_channel"] == "otp" and done["accepted_by"] == "B1"


def test_expired_already_accepted_and_superseded_proposals_fail_clearly(ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    old = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    with pytest.raises(Conflict, match=f"open agreement {old['id']}"):
        ag.propose(ctx, "L1", "installment_plan/whole_balance", proposed_by="C8", amount="1500.00")
    new = ag.propose(ctx, "L1", "installment_plan/whole_balance", proposed_by="C8", amount="1500.00",
                     supersedes=old["id"])
    assert new["supersedes"] == old["id"] and ag.show(ctx, old["id"])["status"] == "superseded"
    with pytest.raises(Conflict, match="superseded"):
        ag.accept(ctx, old["id"], channel="portal")
    ag.accept(ctx, new["id"], channel="call", accepted_by="C8", recording_ref="rec-9")
    with pytest.raises(Conflict, match="already accepted"):
        ag.accept(ctx, new["id"], channel="portal")
    with pytest.raises(Conflict, match="active"):
        ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00", supersedes=new["id"])
    ag.cancel(ctx, new["id"], by="T1", reason="borrower asked to renegotiate")
    late = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    ctx.clock.advance(timedelta(hours=73))  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match="expired"):
        ag.accept(ctx, late["id"], channel="portal")
    assert ag.show(ctx, late["id"])["status"] == "expired"  # recorded although the call failed


def test_bad_input_names_the_field_and_writes_nothing(ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    with pytest.raises(InvalidInput) as e:
        ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="200.00")
    assert e.value.field == "plan" and "minimum instalment under this policy is 300.00" in e.value.message
    with pytest.raises(InvalidInput) as e:
        ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00",
                   installments=[("2026-03-09", "1000.00"), ("2026-04-09", "1000.00")])
    assert e.value.field == "installments" and "not the agreed 4264.76" in e.value.message
    with pytest.raises(InvalidInput) as e:
        ag.quote(ctx, "L1", amount="12.345")
    assert e.value.field == "amount"
    with pytest.raises(NotFound):
        ag.quote(ctx, "NOPE")
    a = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    with pytest.raises(InvalidInput) as e:
        ag.accept(ctx, a["id"], channel="call", accepted_by="C7")
    assert e.value.field == "recording_ref"
    with pytest.raises(InvalidInput) as e:
        ag.accept(ctx, a["id"], channel="fax")
    assert e.value.field == "channel"
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Agreement)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(AgreementInstallment)).scalar_one() == 3


# --- receipts ---------------------------------------------------------------------------------------


def test_the_receipt_shows_the_terms_and_its_code_cannot_be_forged_or_altered(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    a = propose_and_accept(ctx)
    code = a["verification_code"]
    page = receipt_html(ctx, a["id"])
    assert "还款协议回执" in page and "4264.76" in page and code in page and "王伟" in page
    assert all(i["due_on"] in page for i in a["installments"])
    pdf = receipt_pdf(ctx, a["id"])
    assert pdf.startswith(b"%PDF") and b"STSong-Light" in pdf
    assert b"MSung-Light" in receipt_pdf(ctx, a["id"], lang="zh-Hant")
    ok = verify_code(ctx, code)
    assert ok["genuine"] and ok["agreement_id"] == a["id"] and ok["status"] == "active" and ok["active"]
    assert ok["total"] == "4264.76" and ok["installments"] == 3 and "王伟" not in json.dumps(ok, ensure_ascii=False)
    head, _, sig = code.rpartition(".")
    assert not verify_code(ctx, head + "." + ("A" if sig[0] != "A" else "B") + sig[1:])["genuine"]
    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer("not-our-key", salt="parley.agreement-receipt").dumps({"a": a["id"], "t": "x"})
    assert not verify_code(ctx, forged)["genuine"]
    assert not verify_code(ctx, "")["genuine"]
    with ctx.db.transaction() as conn:  # altering the stored terms is detected
        conn.execute(text("UPDATE agreement SET terms = :t WHERE id = :i"), {"t": "{}", "i": a["id"]})
    assert not verify_code(ctx, code)["genuine"]


def test_the_cli_quotes_proposes_accepts_and_shows(ctx: Context, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from parley.faces.cli import agreement as cli

    load(ctx, tmp_path)
    monkeypatch.setattr(cli, "make_context", lambda: ctx)
    r = CliRunner()
    out = r.invoke(cli.app, ["quote", "L1", "--amount", "200.00", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert "the minimum instalment under this policy is 300.00; 200.00 per month is below it" in out.output
    out = r.invoke(cli.app, ["propose", "L1", "--plan", "installment_plan/arrears", "--by", "C7", "--amount", "1500.00"])
    assert out.exit_code == 0, out.output
    aid = json.loads(out.stdout)["id"]
    out = r.invoke(cli.app, ["accept", aid, "--channel", "call", "--by", "C7"])
    assert out.exit_code == 2 and "recording_ref" in out.output
    pdf = tmp_path / "r.pdf"
    out = r.invoke(cli.app, ["accept", aid, "--channel", "call", "--by", "C7", "--recording", "rec-1",
                             "--receipt-pdf", str(pdf)])
    assert out.exit_code == 0, out.output and pdf.read_bytes().startswith(b"%PDF")
    out = r.invoke(cli.app, ["show", aid])
    assert json.loads(out.stdout)["status"] == "active"
    assert r.invoke(cli.app, ["verify", "nonsense"]).exit_code == 1


# --- races on PostgreSQL ----------------------------------------------------------------------------


def _threads(*fns) -> list[BaseException | object]:
    results: list[BaseException | object] = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int, fn) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return results


@pytest.mark.pg
def test_two_collectors_proposing_at_once_one_wins_and_the_other_is_told(pg_ctx: Context, tmp_path: Path) -> None:
    load(pg_ctx, tmp_path)
    for _ in range(3):
        results = _threads(*(lambda c=c: ag.propose(pg_ctx, "L1", "installment_plan/arrears",
                                                     proposed_by=c, amount="1500.00") for c in ("C1", "C2", "C3")))
        wins = [r for r in results if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, Conflict)]
        assert len(wins) == 1 and len(lost) == 2, results
        ag.cancel(pg_ctx, wins[0]["id"], by="T1", reason="next round")
    with pg_ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Agreement).where(
            Agreement.status == "proposed")).scalar_one() == 0


def _hold_borrower_then(ctx: Context, first, second) -> list[BaseException | object]:
    """Hold B1's lock, start `first`, then `second`, then release: they run in that order."""
    results: list[BaseException | object] = [None, None]
    release = threading.Event()
    locked = threading.Event()

    def blocker() -> None:
        with ctx.db.transaction() as conn:
            conn.execute(text("SELECT id FROM borrower WHERE id = 'B1' FOR UPDATE"))
            locked.set()
            release.wait(30)

    def run(i: int, fn) -> None:
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc

    b = threading.Thread(target=blocker)
    b.start()
    locked.wait(10)
    t1 = threading.Thread(target=run, args=(0, first))
    t1.start()
    time.sleep(0.4)
    t2 = threading.Thread(target=run, args=(1, second))
    t2.start()
    time.sleep(0.4)
    release.set()
    for t in (b, t1, t2):
        t.join(60)
    return results


@pytest.mark.pg
@pytest.mark.parametrize("payment_first", [True, False])
def test_a_payment_racing_an_acceptance_is_counted_once_in_either_order(
        pg_ctx: Context, tmp_path: Path, payment_first: bool) -> None:
    ctx = pg_ctx
    load(ctx, tmp_path)
    a = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    pay = lambda: post_payment(ctx, "P-race", "L1", datetime(2026, 3, 2, 1, 0, tzinfo=UTC), 70_000)  # noqa: E731
    acc = lambda: ag.accept(ctx, a["id"], channel="call", accepted_by="C7", recording_ref="rec-r")  # noqa: E731
    results = _hold_borrower_then(ctx, pay, acc) if payment_first else _hold_borrower_then(ctx, acc, pay)
    assert not any(isinstance(r, BaseException) for r in results), results
    ag.apply_payments_to_agreements(ctx, date(2026, 3, 2))
    shown = ag.show(ctx, a["id"])
    assert shown["status"] == "active"
    assert [i["paid"] for i in shown["installments"]] == ["700.00", "0.00", "0.00"]
    with ctx.db.read() as conn:
        entries = conn.execute(select(LedgerEntry.id).where(LedgerEntry.payment_id == "P-race")).scalars().all()
        basis = json.loads(conn.execute(select(Agreement.terms).where(Agreement.id == a["id"])).scalar_one())
    assert len(entries) == 1 and entries[0] > basis["ledger_basis"]
    # the order is visible in the record, and the state is the same either way
    assert ag.review_agreements(ctx, date(2026, 3, 2))["broken"] == []


def test_a_broken_plan_whose_notice_cannot_be_delivered_releases_collection_after_a_week(
        ctx: Context, tmp_path: Path) -> None:
    from parley.services.facts import NOTICE_WAIT

    load(ctx, tmp_path)
    a = propose_and_accept(ctx)
    at_local(ctx, 2026, 3, 13)
    assert ag.review_agreements(ctx, date(2026, 3, 13))["broken"] == [a["id"]]
    assert not permit(ctx, "collection").allowed  # no notice yet
    ctx.clock.advance(NOTICE_WAIT - timedelta(minutes=1))
    assert not permit(ctx, "collection").allowed
    ctx.clock.advance(timedelta(minutes=2))
    assert permit(ctx, "collection").allowed


class _CapturingSms:
    """A channel adapter that records what it would send (the SMS provider's side)."""

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, message):  # type: ignore[no-untyped-def]
        self.sent.append(message)
        return None


def test_the_acceptance_code_is_sent_by_sms_through_the_gate_and_never_logged(ctx: Context, tmp_path: Path) -> None:
    import re

    from parley.store.models.contacts import ContactAttempt

    load(ctx, tmp_path)
    a = ag.propose(ctx, "L1", "installment_plan/arrears", proposed_by="C7", amount="1500.00")
    sms = _CapturingSms()
    at_local(ctx, 2026, 3, 2, hh=23)  # 23:00 in Shanghai: not lawful, no code is issued
    with pytest.raises(Conflict, match="cn.hours"):
        ag.send_acceptance_code(ctx, a["id"], channels={"sms": sms})
    assert sms.sent == []
    at_local(ctx, 2026, 3, 3, hh=10)
    out = ag.send_acceptance_code(ctx, a["id"], channels={"sms": sms})
    (message,) = sms.sent
    assert message.to == "+8613800138000" and out["sent_to"].endswith("8000")
    code = re.search(r"\d{6}", message.body).group(0)
    with ctx.db.read() as conn:
        logged = conn.execute(select(ContactAttempt.content, ContactAttempt.purpose)
                              .where(ContactAttempt.template_id == "agreement.code")).one()
    assert code not in logged.content and "******" in logged.content and logged.purpose == "agreement_service"
    assert ag.accept(ctx, a["id"], channel="otp", code=code)["status"] == "active"
