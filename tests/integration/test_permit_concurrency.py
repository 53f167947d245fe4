"""Caps hold under concurrency: many workers, few borrowers, real PostgreSQL (invariant 4)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from parley.services.audit import verify_audit
from parley.services.context import Context
from parley.services.permits import request_permit
from tests.integration.test_permits import US_PHONE, call, seed_borrower

pytestmark = pytest.mark.pg

THREADS = 12
PER_THREAD = 30


def _hammer(ctx: Context, borrowers: list[str], seed: int, errors: list[BaseException],
            allowed: Counter[str], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    try:
        for _ in range(PER_THREAD):
            bid = rng.choice(borrowers)
            permit = request_permit(ctx, call(bid, collector_id=f"worker-{seed}"))
            if permit.allowed:
                with lock:
                    allowed[bid] += 1
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _run(ctx: Context, borrowers: list[str]) -> Counter[str]:
    errors: list[BaseException] = []
    allowed: Counter[str] = Counter()
    lock = threading.Lock()
    threads = [threading.Thread(target=_hammer, args=(ctx, borrowers, i, errors, allowed, lock))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return allowed


def test_concurrent_workers_never_push_a_cn_borrower_past_six_calls_a_day(
        pg_ctx: Context) -> None:
    borrowers = [f"CN{i}" for i in range(4)]
    for b in borrowers:
        seed_borrower(pg_ctx, b)
    allowed = _run(pg_ctx, borrowers)
    with pg_ctx.db.read() as conn:
        per_day = conn.execute(text(
            "SELECT borrower_id, (at AT TIME ZONE 'Asia/Shanghai')::date AS day, to_index, "
            "count(*) FROM contact_attempt GROUP BY 1, 2, 3")).all()
        decisions = conn.execute(text(
            "SELECT count(*) FROM audit_log WHERE kind = 'gate.decision'")).scalar_one()
    assert decisions == THREADS * PER_THREAD  # every request decided and logged
    violations = [r for r in per_day if r[3] > 6]
    assert violations == []
    assert {r[0]: r[3] for r in per_day} == {b: 6 for b in borrowers}  # the cap was reached
    assert allowed == Counter({b: 6 for b in borrowers})
    assert verify_audit(pg_ctx).ok


def test_concurrent_workers_never_exceed_seven_calls_in_seven_days_in_the_us(
        pg_ctx: Context) -> None:
    borrowers = [f"US{i}" for i in range(3)]
    for b in borrowers:
        seed_borrower(pg_ctx, b, jurisdiction="US", phone=US_PHONE, timezone="America/Chicago")
    pg_ctx.clock.advance(timedelta(hours=18))  # type: ignore[attr-defined] # 14:00 in Chicago
    _run(pg_ctx, borrowers)
    pg_ctx.clock.advance(timedelta(days=3))  # type: ignore[attr-defined] # still within 7 days
    _run(pg_ctx, borrowers)
    with pg_ctx.db.read() as conn:
        counts = dict(conn.execute(text(
            "SELECT borrower_id, count(*) FROM contact_attempt GROUP BY 1")).all())
    assert counts == {b: 7 for b in borrowers}


def test_a_hold_committed_while_a_permit_waits_for_the_lock_governs_that_permit(
        pg_ctx: Context) -> None:
    import time

    from parley.store.db import lock_borrower
    from parley.store.models.contacts import Hold

    seed_borrower(pg_ctx, "B1")
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(request_permit(pg_ctx, call("B1"))))
    with pg_ctx.db.transaction() as conn:
        assert lock_borrower(conn, "B1")
        conn.execute(Hold.__table__.insert(), {
            "borrower_id": "B1", "loan_id": None, "kind": "dispute",
            "started_at": pg_ctx.clock.now() - timedelta(seconds=1), "ended_at": None,
            "source": "borrower", "note": "", "complaint_id": None, "created_by": "test"})
        waiter.start()
        time.sleep(0.5)  # the permit's transaction is now blocked on the borrower lock
        assert waiter.is_alive()
    waiter.join(timeout=30)
    (permit,) = result
    assert not permit.allowed  # type: ignore[attr-defined]
    assert "cn.hold.dispute" in permit.decision.rule_ids("deny")  # type: ignore[attr-defined]
