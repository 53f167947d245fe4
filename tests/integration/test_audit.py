"""The audit log is append-only and tamper-evident: `parley audit verify` names what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from parley.faces.cli.audit import app as audit_cli
from parley.services.audit import append_for_borrower, audit_append, audit_key, verify_audit
from parley.services.context import Context
from parley.services.permits import place_hold, record_outcome, request_permit
from parley.store.models.contacts import AuditLog
from tests.integration.test_permits import call, seed_borrower


def _history(ctx: Context) -> list[tuple[int, str, int]]:
    """Five entries on B1's chain, two on B2's, and two on the system chain."""
    seed_borrower(ctx, "B1")
    seed_borrower(ctx, "B2")
    for _ in range(3):
        p = request_permit(ctx, call())
        ctx.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    record_outcome(ctx, p.attempt_id, "conversation")
    place_hold(ctx, "B1", "vulnerable")  # the newest entry: seq 5
    request_permit(ctx, call("B2"))
    request_permit(ctx, call("B2"))
    for i in range(2):
        with ctx.db.transaction() as conn:
            audit_append(conn, chain_key="_system", kind="pack.loaded", payload={"n": i},
                         at=ctx.clock.now(), key=audit_key(ctx))
    with ctx.db.read() as conn:
        rows = conn.execute(select(AuditLog.__table__.c.id, AuditLog.__table__.c.chain_key,
                                   AuditLog.__table__.c.seq)
                            .order_by(AuditLog.__table__.c.chain_key,
                                      AuditLog.__table__.c.seq)).all()
    return [tuple(r) for r in rows]


def _entry(rows: list[tuple[int, str, int]], chain: str, seq: int) -> int:
    return next(i for i, c, s in rows if c == chain and s == seq)


def _sql(ctx: Context, sql: str, **params: object) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_an_untouched_log_verifies(ctx: Context) -> None:
    rows = _history(ctx)
    report = verify_audit(ctx)
    assert report.ok, report.problems
    assert report.entries_checked == len(rows) == 9
    assert [s for _, c, s in rows if c == "_system"] == [1, 2]


def test_an_edited_payload_is_named(ctx: Context) -> None:
    rows = _history(ctx)
    victim = _entry(rows, "B1", 2)
    _sql(ctx, "UPDATE audit_log SET payload = replace(payload, '\"allow\"', '\"deny\"') "
              "WHERE id = :id", id=victim)
    report = verify_audit(ctx)
    assert not report.ok
    assert [(p.chain_key, p.seq, p.audit_id) for p in report.problems] == [("B1", 2, victim)]
    assert "edited" in report.problems[0].what


def test_an_edited_column_outside_the_payload_is_named(ctx: Context) -> None:
    rows = _history(ctx)
    victim = _entry(rows, "B2", 1)
    _sql(ctx, "UPDATE audit_log SET actor = 'nobody' WHERE id = :id", id=victim)
    report = verify_audit(ctx)
    assert [(p.chain_key, p.seq, p.audit_id) for p in report.problems] == [("B2", 1, victim)]


def test_a_deleted_middle_entry_is_named(ctx: Context) -> None:
    rows = _history(ctx)
    victim = _entry(rows, "B1", 3)
    _sql(ctx, "DELETE FROM decision_reason WHERE audit_id = :id", id=victim)
    _sql(ctx, "DELETE FROM audit_log WHERE id = :id", id=victim)
    report = verify_audit(ctx)
    assert not report.ok
    assert [(p.chain_key, p.seq) for p in report.problems] == [("B1", 3)]
    assert "deleted" in report.problems[0].what


def test_a_deleted_newest_entry_is_named(ctx: Context) -> None:
    rows = _history(ctx)
    victim = _entry(rows, "B1", 5)
    _sql(ctx, "DELETE FROM audit_log WHERE id = :id", id=victim)
    report = verify_audit(ctx)
    assert [(p.chain_key, p.seq) for p in report.problems] == [("B1", 5)]
    assert "newest" in report.problems[0].what


def test_a_rewound_borrower_head_does_not_hide_a_deleted_newest_entry(ctx: Context) -> None:
    rows = _history(ctx)
    victim = _entry(rows, "B1", 5)
    _sql(ctx, "DELETE FROM audit_log WHERE id = :id", id=victim)
    _sql(ctx, "UPDATE borrower SET audit_seq = 4 WHERE id = 'B1'")  # without the key, no hash
    report = verify_audit(ctx)
    assert [(p.chain_key, p.seq) for p in report.problems] == [("B1", 4)]
    assert "head mismatch" in report.problems[0].what


def test_decision_reasons_that_disagree_with_the_payload_are_named(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    from zoneinfo import ZoneInfo

    ctx.clock.set(datetime(2026, 3, 2, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")))  # type: ignore[attr-defined]
    denied = request_permit(ctx, call())
    assert not denied.allowed
    _sql(ctx, "DELETE FROM decision_reason WHERE audit_id = :id", id=denied.decision_id)
    report = verify_audit(ctx)
    assert [(p.chain_key, p.seq, p.audit_id) for p in report.problems] == [
        ("B1", 1, denied.decision_id)]
    assert "decision_reason" in report.problems[0].what


def test_the_cli_exits_1_naming_each_bad_entry_and_0_when_intact(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _history(ctx)
    monkeypatch.setenv("PARLEY_DATABASE_URL", ctx.db.url)
    monkeypatch.setenv("PARLEY_ENV", "test")
    runner = CliRunner()
    ok = runner.invoke(audit_cli, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "9 entries checked, intact" in ok.output
    victim = _entry(rows, "B2", 2)
    _sql(ctx, "UPDATE audit_log SET at = :at WHERE id = :id",
         at=datetime(2020, 1, 1, tzinfo=UTC), id=victim)
    bad = runner.invoke(audit_cli, ["verify"])
    assert bad.exit_code == 1
    assert f"BAD chain B2 seq 2 (id {victim})" in bad.output


def test_an_entry_about_a_borrower_is_on_their_chain_and_found_by_borrower(ctx: Context) -> None:
    """Services record what happens to a borrower through ``append_for_borrower``: on the
    borrower's chain, with ``borrower_id`` set (found by borrower, whichever service wrote it),
    'system' when nobody is named (the placements service's SYSTEM too)."""
    from parley.services import casework, placements
    from parley.services.auth import Actor
    from parley.store.db import lock_borrower

    seed_borrower(ctx, "B1")
    seed_borrower(ctx, "B2")
    casework.set_opt_outs(ctx, Actor("borrower", "B1", "borrower"), {"sms"})  # casework's path
    with ctx.db.transaction() as conn:
        lock_borrower(conn, "B1")
        append_for_borrower(ctx, conn, "B1", "test.noted", {"n": 1}, actor="", subject="L1")
        append_for_borrower(ctx, conn, "B1", "test.noted", {"n": 2}, actor="u-admin",
                            at=ctx.clock.now() - timedelta(hours=1))
    a = AuditLog.__table__.c
    with ctx.db.read() as conn:
        rows = conn.execute(select(a.chain_key, a.seq, a.kind, a.actor, a.subject)
                            .where(a.borrower_id == "B1").order_by(a.seq)).all()
    assert [tuple(r) for r in rows] == [
        ("B1", 1, "preferences.opt_out", "B1", ""),
        ("B1", 2, "test.noted", placements.SYSTEM, "L1"),
        ("B1", 3, "test.noted", "u-admin", ""),
    ]
    assert verify_audit(ctx).ok
