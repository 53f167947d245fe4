"""The case shows the loan's agency placements (委外) and legal referrals, on the page and in the
API, under casework's access rules; managers (administrator, team lead, strategy manager) recall
a placement and close a referral from the case page, with the CSRF token, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.services import auth, casework
from parley.services.audit import verify_audit
from parley.services.auth import Actor
from parley.services.placements import place_loan, refer_to_legal
from parley.store.models.contacts import AuditLog
from tests.integration.web_data import PASSWORD, World, client, sign_in_staff

ADMIN = Actor("staff", "u-admin", "administrator", "Admin")
AGENT_A1 = Actor("staff", "u-agent", "agency_collector", "Agent", "A1", "A1-007")
AGENT_A2 = Actor("staff", "u-a2", "agency_collector", "A2 agent", "A2", "A2-001")
COLLECTOR = Actor("staff", "u-collector", "collector", "Collector", None, "C-1001")


def history(world: World) -> tuple[int, int]:
    """L1 (imported with agency A1) is placed with A2, then moved back to A1; L1 is referred
    to legal. Returns (the A2 placement id, the referral id)."""
    ctx = world.ctx
    moved = place_loan(ctx, "L1", "A2", by="u-admin", reason="A2 has the better record")
    ctx.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    back = place_loan(ctx, "L1", "A1", by="u-admin", reason="back to A1")
    assert back.ended is not None and back.ended.id == moved.placement.id  # type: ignore[union-attr]
    ctx.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    _, ref = refer_to_legal(ctx, "L1", "litigation", by="u-admin", reason="large balance")
    return moved.placement.id, ref.id  # type: ignore[union-attr]


def add_staff(world: World, username: str, role: str) -> str:
    sid, secret = auth.create_staff(world.ctx, username=username, password=PASSWORD, role=role,
                                    staff_id=f"u-{username}")
    world.staff[username] = sid
    if secret:
        world.totp[username] = secret
    return sid


def audit(world: World, kind: str) -> list[tuple[str, str]]:
    with world.ctx.db.read() as conn:
        return [(r.actor, r.subject) for r in conn.execute(
            select(AuditLog.actor, AuditLog.subject).where(AuditLog.kind == kind).order_by(AuditLog.seq))]


def agency_of(world: World, loan_id: str) -> str | None:
    with world.ctx.db.read() as conn:
        return conn.execute(text("SELECT agency_id FROM loan WHERE id = :l"), {"l": loan_id}).scalar_one()


# --- what the case shows -----------------------------------------------------------------------


def test_the_case_lists_every_placement_and_referral_for_in_house_staff(world: World) -> None:
    a2_placement, referral = history(world)
    case = casework.case_at_glance(world.ctx, COLLECTOR, "L1")
    assert [(p["agency_id"], p["active"]) for p in case["placements"]] == [("A1", True), ("A2", False)]
    ended = case["placements"][1]
    assert ended["id"] == a2_placement and ended["end_reason"] == "moved to agency A1"
    assert ended["reason"] == "A2 has the better record" and ended["ended_at"] is not None
    assert [(r["id"], r["queue"], r["status"], r["closed_at"]) for r in case["legal_referrals"]] == [
        (referral, "litigation", "open", None)]


def test_an_agency_collector_sees_only_its_own_agencys_placements(world: World) -> None:
    history(world)
    mine = casework.case_at_glance(world.ctx, AGENT_A1, "L1")
    assert [p["agency_id"] for p in mine["placements"]] == ["A1"]  # not the earlier A2 one
    assert len(mine["legal_referrals"]) == 1
    # A2 placed L1 once, but the loan is A1's now: to A2 the case does not exist
    with pytest.raises(NotFound, match="unknown loan 'L1'"):
        casework.case_at_glance(world.ctx, AGENT_A2, "L1")
    with pytest.raises(NotFound, match="unknown loan 'L1'"):
        casework.placements_and_referrals(world.ctx, AGENT_A2, "L1")


def test_the_case_page_shows_placements_and_referrals_and_the_actions_only_to_managers(
        web, world: World) -> None:
    a2_placement, referral = history(world)
    sign_in_staff(web, world, "admin")
    page = web.get("/cases/L1")
    assert page.status_code == 200
    assert f'data-placement="{a2_placement}"' in page.text and f'data-referral="{referral}"' in page.text
    assert "moved to agency A1" in page.text and "litigation" in page.text
    assert 'action="/cases/L1/placement/recall"' in page.text
    assert f'action="/cases/L1/legal-referrals/{referral}/close"' in page.text
    assert "委外记录" in page.text and "法务转交" in page.text  # zh-Hans by default

    agent = client(web.app)
    sign_in_staff(agent, world, "agent")
    seen = agent.get("/cases/L1")
    assert seen.status_code == 200 and f'data-placement="{a2_placement}"' not in seen.text
    assert f'data-referral="{referral}"' in seen.text
    assert "/placement/recall" not in seen.text and "/close" not in seen.text
    collector = client(web.app)
    sign_in_staff(collector, world, "collector")
    assert "/placement/recall" not in collector.get("/cases/L1").text


def test_the_api_returns_the_placements_and_referrals_with_the_loan(web, world: World) -> None:
    a2_placement, referral = history(world)
    api = client(web.app)
    full = api.get("/api/v1/loans/L1", headers={"X-API-Key": world.keys["lender"]}).json()
    assert [p["agency_id"] for p in full["placements"]] == ["A1", "A2"]
    assert full["placements"][1]["id"] == a2_placement and full["placements"][1]["ended_at"]
    assert full["legal_referrals"][0]["id"] == referral and full["legal_referrals"][0]["status"] == "open"
    scoped = api.get("/api/v1/loans/L1", headers={"X-API-Key": world.keys["agency-a1"]}).json()
    assert [p["agency_id"] for p in scoped["placements"]] == ["A1"]
    assert api.get("/api/v1/loans/L2", headers={"X-API-Key": world.keys["agency-a1"]}).status_code == 404
    plain = api.get("/api/v1/loans/L2", headers={"X-API-Key": world.keys["lender"]}).json()
    assert plain["placements"] == [] and plain["legal_referrals"] == []  # imported with A2, no history


def test_a_managers_key_recalls_a_placement_and_closes_a_referral_through_the_api(
        web, world: World) -> None:
    _, referral = history(world)
    api = client(web.app)
    lender = {"X-API-Key": world.keys["lender"]}
    agency = {"X-API-Key": world.keys["agency-a1"]}
    reason = {"reason": "the borrower agreed a plan"}
    assert api.post("/api/v1/loans/L1/placement/recall", json={}, headers=lender
                    ).json()["error"]["field"].endswith("reason")
    assert api.post("/api/v1/loans/L1/placement/recall", json=reason,
                    headers=agency).status_code == 403  # not a manager's key
    r = api.post("/api/v1/loans/L1/placement/recall", json=reason, headers=lender)
    assert r.status_code == 200, r.text
    assert r.json()["agency_id"] == "A1" and r.json()["placement"]["end_reason"].endswith(reason["reason"])
    assert api.post("/api/v1/loans/L1/placement/recall", json=reason,
                    headers=lender).status_code == 409  # no longer placed
    assert api.get("/api/v1/loans/L1", headers=agency).status_code == 404  # out of their sight
    url = f"/api/v1/loans/L1/legal-referrals/{referral}/close"
    assert api.post(f"/api/v1/loans/L2/legal-referrals/{referral}/close", json=reason,
                    headers=lender).status_code == 404  # another loan's referral
    closed = api.post(url, json=reason, headers=lender)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert api.post(url, json=reason, headers=lender).status_code == 409
    assert verify_audit(world.ctx).ok


# --- recalling a placement ---------------------------------------------------------------------


def test_only_managers_who_see_the_loan_may_recall_or_close(world: World) -> None:
    _, referral = history(world)
    ctx = world.ctx
    for who in (COLLECTOR, AGENT_A1, Actor("staff", "u-compliance", "compliance_officer"),
                Actor("staff", "u-auditor", "auditor")):
        with pytest.raises(Forbidden):
            casework.recall_case_placement(ctx, who, "L1", "no")
        with pytest.raises(Forbidden):
            casework.close_case_referral(ctx, who, "L1", referral, "no")
    # a manager's key scoped to agency A2 does not see L1: the same answer as a missing loan
    a2_lead = Actor("api", "k-a2", "team_lead", "A2 lead key", "A2")
    with pytest.raises(NotFound, match="unknown loan 'L1'"):
        casework.recall_case_placement(ctx, a2_lead, "L1", "taking it back")
    with pytest.raises(NotFound):
        casework.close_case_referral(ctx, a2_lead, "L1", referral, "done")
    # a referral of another loan answers like a missing one
    with pytest.raises(NotFound, match=f"unknown legal referral {referral}"):
        casework.close_case_referral(ctx, ADMIN, "L2", referral, "done")
    assert agency_of(world, "L1") == "A1"
    assert audit(world, "legal_referral.closed") == []


def test_a_team_lead_recalls_a_placement_from_the_case_page(web, world: World) -> None:
    history(world)
    lead = add_staff(world, "lead", "team_lead")
    csrf = sign_in_staff(web, world, "lead")
    assert web.post("/cases/L1/placement/recall", data={"reason": "x"}).status_code == 403  # no CSRF
    empty = web.post("/cases/L1/placement/recall", data={"reason": "  ", "csrf_token": csrf})
    assert empty.status_code == 422 and 'data-field="reason"' in empty.text
    assert agency_of(world, "L1") == "A1"

    agent = client(web.app)
    sign_in_staff(agent, world, "agent")
    assert agent.get("/cases/L1").status_code == 200
    r = web.post("/cases/L1/placement/recall", data={"reason": "complaint about A1", "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/cases/L1#placements"
    assert agency_of(world, "L1") is None
    assert agent.get("/cases/L1").status_code == 404  # the agency lost the case
    case = casework.case_at_glance(world.ctx, ADMIN, "L1")
    assert case["placements"][0]["ended_by"] == lead
    assert case["placements"][0]["end_reason"] == "recalled: complaint about A1"
    assert (lead, "L1") in audit(world, "placement.ended")
    again = web.post("/cases/L1/placement/recall", data={"reason": "again", "csrf_token": csrf})
    assert again.status_code == 409 and "not placed" in again.text
    assert verify_audit(world.ctx).ok


def test_collectors_and_other_agencies_cannot_recall_through_the_page(web, world: World) -> None:
    history(world)
    for who, loan, status in (("collector", "L1", 403), ("agent", "L1", 403), ("compliance", "L1", 403),
                              ("agent", "L2", 403)):
        c = client(web.app)
        csrf = sign_in_staff(c, world, who)
        r = c.post(f"/cases/{loan}/placement/recall", data={"reason": "mine now", "csrf_token": csrf})
        assert r.status_code == status, who
    assert agency_of(world, "L1") == "A1" and agency_of(world, "L2") == "A2"
    assert audit(world, "placement.ended") == [("u-admin", "L1")]  # only history()'s move


def test_a_placement_that_came_with_the_import_can_be_recalled(world: World) -> None:
    manager = Actor("staff", "u-sm", "strategy_manager", "Strategy")
    out = casework.recall_case_placement(world.ctx, manager, "L2", "bringing it in-house")
    assert out.agency_id == "A2" and out.placement is None
    assert agency_of(world, "L2") is None
    assert audit(world, "placement.ended") == [("u-sm", "L2")]
    with pytest.raises(InvalidInput) as err:
        casework.recall_case_placement(world.ctx, manager, "L1", "")
    assert err.value.field == "reason"


# --- closing a legal referral ------------------------------------------------------------------


def test_an_administrator_closes_a_referral_from_the_case_page(web, world: World) -> None:
    _, referral = history(world)
    csrf = sign_in_staff(web, world, "admin")
    path = f"/cases/L1/legal-referrals/{referral}/close"
    assert web.post(path, data={"reason": "settled"}).status_code == 403  # no CSRF
    empty = web.post(path, data={"csrf_token": csrf})
    assert empty.status_code == 422 and 'data-field="reason"' in empty.text
    assert web.post(f"/cases/L2/legal-referrals/{referral}/close",
                    data={"reason": "x", "csrf_token": csrf}).status_code == 404
    r = web.post(path, data={"reason": "settled in court", "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/cases/L1#legal"
    shown = casework.case_at_glance(world.ctx, ADMIN, "L1")["legal_referrals"][0]
    assert shown["status"] == "closed" and shown["closed_by"] == "u-admin"
    assert shown["close_reason"] == "settled in court"
    assert audit(world, "legal_referral.closed") == [("u-admin", "L1")]
    page = web.get("/cases/L1").text
    assert "settled in court" in page and path not in page  # no close button on a closed one
    assert web.post(path, data={"reason": "again", "csrf_token": csrf}).status_code == 409
    with pytest.raises(Conflict):
        casework.close_case_referral(world.ctx, ADMIN, "L1", referral, "again")


def test_a_collector_cannot_close_a_referral(web, world: World) -> None:
    _, referral = history(world)
    c = client(web.app)
    csrf = sign_in_staff(c, world, "collector")
    r = c.post(f"/cases/L1/legal-referrals/{referral}/close", data={"reason": "x", "csrf_token": csrf})
    assert r.status_code == 403
    assert casework.case_at_glance(world.ctx, ADMIN, "L1")["legal_referrals"][0]["status"] == "open"


# --- how many reads a case costs -----------------------------------------------------------------


class Reads:
    """Counts, while installed, read and write transactions on ``ctx.db`` and loan access checks
    (casework's ``_load_loan``), so a test can state what one request costs."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = self.writes = self.checks = 0
        db, load = world.ctx.db, casework._load_loan
        read, write = db.read, db.transaction

        def counted_read():  # type: ignore[no-untyped-def]
            self.reads += 1
            return read()

        def counted_write():  # type: ignore[no-untyped-def]
            self.writes += 1
            return write()

        def counted_load(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.checks += 1
            return load(*args, **kwargs)

        monkeypatch.setattr(db, "read", counted_read)
        monkeypatch.setattr(db, "transaction", counted_write)
        monkeypatch.setattr(casework, "_load_loan", counted_load)

    def reset(self) -> tuple[int, int, int]:
        """(reads, writes, access checks) since the last reset."""
        out = (self.reads, self.writes, self.checks)
        self.reads = self.writes = self.checks = 0
        return out


def test_the_case_and_the_api_loan_read_everything_in_one_transaction_after_one_check(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    history(world)
    count = Reads(world, monkeypatch)
    case = casework.case_at_glance(world.ctx, ADMIN, "L1")
    assert count.reset() == (1, 0, 1)
    assert len(case["placements"]) == 2 and len(case["legal_referrals"]) == 1
    loan = casework.loan_view(world.ctx, ADMIN, "L1")
    assert count.reset() == (1, 0, 1)
    assert loan["placements"] == case["placements"]
    assert loan["legal_referrals"] == case["legal_referrals"]
    assert casework.placements_and_referrals(world.ctx, AGENT_A1, "L1")["placements"] == [
        case["placements"][0]]  # the agency's own placement only
    assert count.reset() == (1, 0, 1)
    with pytest.raises(NotFound, match="unknown loan 'L1'"):
        casework.case_at_glance(world.ctx, AGENT_A2, "L1")
    assert count.reset() == (1, 0, 1)


def test_closing_a_referral_reads_and_closes_only_that_one_of_the_loans_referrals(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from parley.services.placements import close_referral

    ctx = world.ctx
    _, first = history(world)
    close_referral(ctx, first, by="u-admin", reason="withdrawn")
    _, second = refer_to_legal(ctx, "L1", "litigation", by="u-admin", reason="referred again")
    _, other = refer_to_legal(ctx, "L2", "litigation", by="u-admin", reason="another loan")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "legal_referral" in statement:
            statements.append(" ".join(statement.split()))

    event.listen(ctx.db.engine, "before_cursor_execute", seen)
    try:
        count = Reads(world, monkeypatch)
        # a referral of another loan: refused before anything is written, naming the record
        with pytest.raises(NotFound) as refused:
            casework.close_case_referral(ctx, ADMIN, "L1", other.id, "done")
        assert str(refused.value) == f"unknown legal referral {other.id}"
        assert count.reset() == (1, 0, 1)
        closed = casework.close_case_referral(ctx, ADMIN, "L1", second.id, "settled")
        assert count.reset() == (1, 1, 1)  # one read (check + that referral), one write
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", seen)
    # every read of legal_referral picks one row by id; none lists the loan's referrals
    reads = [s for s in statements if s.startswith("SELECT")]
    assert reads and all("legal_referral.id =" in s for s in reads), reads

    assert (closed.id, closed.status, closed.close_reason) == (second.id, "closed", "settled")
    by_id = {r["id"]: r for r in casework.placements_and_referrals(ctx, ADMIN, "L1")["legal_referrals"]}
    assert by_id[first]["close_reason"] == "withdrawn"  # the earlier one untouched
    assert [r["status"] for r in
            casework.placements_and_referrals(ctx, ADMIN, "L2")["legal_referrals"]] == ["open"]
    assert audit(world, "legal_referral.closed") == [("u-admin", "L1"), ("u-admin", "L1")]
    assert verify_audit(ctx).ok
