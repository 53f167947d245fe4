"""Payments posted once, reversals by reversing entries, balances reproducible, days past due
set-based and equal to the pure definition, pauses, and the bucket history."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from parley.core.delinquency import Pause, days_past_due
from parley.errors import Conflict, InvalidInput
from parley.services.delinquency import (
    add_pause,
    borrower_days_past_due,
    days_past_due_all,
    dpd_sql,
    snapshot,
)
from parley.services.imports import import_file
from parley.services.payments import (
    loan_balance,
    post_payment,
    rebuild_installment_cache,
    reverse_payment,
)
from parley.store.models.loanbook import (
    BucketChange,
    Installment,
    LedgerEntry,
    LedgerPosting,
    LoanDelinquency,
)
from tests.integration.loanbook_data import load_book, write_csv

T = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)


def dpd(ctx, as_of):
    with ctx.db.read() as conn:
        return {r.loan_id: (r.days_past_due, r.bucket) for r in days_past_due_all(ctx, conn, as_of)}


def test_a_payment_is_posted_exactly_once(ctx, tmp_path):
    load_book(ctx, tmp_path)
    first = post_payment(ctx, "P1", "L1", T, 50000)
    again = post_payment(ctx, "P1", "L1", T, 50000)
    assert not first.already_posted and again.already_posted
    with pytest.raises(Conflict):
        post_payment(ctx, "P1", "L1", T, 40000)
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == 1
        bal = loan_balance(conn, "L1", date(2026, 2, 10))
    # instalment 1: 1200 interest + 40000 principal due; 50000 pays it and prepays 8800 of #2 (interest first)
    assert bal.overdue_total == 0 and bal.paid_total == 50000
    assert [x.component.value for x in first.allocation.lines] == ["interest", "principal", "interest", "principal"]


def test_overpayment_is_held_as_credit_and_reversal_restores_everything(ctx, tmp_path):
    load_book(ctx, tmp_path)
    posted = post_payment(ctx, "P1", "L1", T, 200000)
    assert posted.allocation.credit == 200000 - 122400
    with ctx.db.read() as conn:
        assert loan_balance(conn, "L1", date(2026, 2, 10)).credit == 200000 - 122400
        paid_before = dict(conn.execute(select(Installment.number, Installment.paid_off_on).where(Installment.loan_id == "L1")).all())
    assert all(v == date(2026, 2, 10) for v in paid_before.values())
    reverse_payment(ctx, "P1", "cheque bounced")
    with pytest.raises(Conflict, match="already reversed"):
        reverse_payment(ctx, "P1", "again")
    with ctx.db.read() as conn:
        bal = loan_balance(conn, "L1", date(2026, 5, 1))
        cache = conn.execute(select(Installment.number, Installment.paid_principal, Installment.paid_interest,
                                    Installment.paid_off_on).where(Installment.loan_id == "L1")).all()
        n_entries = conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
        net = conn.execute(select(func.sum(LedgerPosting.amount))).scalar_one()
    assert bal.credit == 0 and bal.paid_total == 0 and bal.overdue_total == 122400
    assert all(r.paid_principal == 0 and r.paid_interest == 0 and r.paid_off_on is None for r in cache)
    assert n_entries == 2 and net == 0  # the original stays; the reversal cancels it


def test_past_balances_can_be_reproduced(ctx, tmp_path):
    load_book(ctx, tmp_path)
    ctx.clock.set(T)
    post_payment(ctx, "P1", "L1", T, 41200)
    ctx.clock.advance(timedelta(days=30))
    post_payment(ctx, "P2", "L1", T + timedelta(days=30), 40800)
    with ctx.db.read() as conn:
        before_second = loan_balance(conn, "L1", date(2026, 3, 1))
        later = loan_balance(conn, "L1", date(2026, 3, 15))
        as_known_then = loan_balance(conn, "L1", date(2026, 3, 15), known_at=T + timedelta(days=1))
    assert before_second.overdue_total == 40800  # instalment 2 due 1 March, not yet paid
    assert later.overdue_total == 0
    assert as_known_then.overdue_total == 40800  # the second payment was not yet recorded then


def test_bad_payment_input_is_refused(ctx, tmp_path):
    load_book(ctx, tmp_path)
    with pytest.raises(InvalidInput):
        post_payment(ctx, "P1", "L1", T.replace(tzinfo=None), 100)
    with pytest.raises(InvalidInput):
        post_payment(ctx, "P1", "L1", T, 0)
    with pytest.raises(InvalidInput):
        reverse_payment(ctx, "P1", " ")


def payments_written(ctx) -> tuple[int, int]:
    from parley.store.models.loanbook import Payment

    with ctx.db.read() as conn:
        return (conn.execute(select(func.count()).select_from(Payment)).scalar_one(),
                conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one())


@pytest.mark.parametrize("paid_at", [
    datetime(2030, 1, 1, tzinfo=UTC),  # the future: the test clock is 2026-03-02T02:00Z
    datetime(2026, 3, 2, 2, 6, tzinfo=UTC),  # six minutes ahead: more than clock skew
    datetime(2025, 12, 31, 15, 59, tzinfo=UTC),  # 23:59 on 31 December in Shanghai; L1 paid out 1 January
    datetime(1, 1, 1, tzinfo=UTC),
    datetime.fromisoformat("0001-01-01T00:00:00+08:00"),  # before the year 1 in UTC
    datetime.fromisoformat("9999-12-31T23:59:59-12:00"),  # in the year 10000 in UTC
])
def test_a_payment_at_an_impossible_time_is_refused_naming_paid_at(ctx, tmp_path, paid_at):
    load_book(ctx, tmp_path)
    with pytest.raises(InvalidInput) as err:
        post_payment(ctx, "P1", "L1", paid_at, 100)
    assert err.value.field == "paid_at"
    assert payments_written(ctx) == (0, 0)


def test_a_payment_on_the_disbursement_day_or_within_clock_skew_is_posted(ctx, tmp_path):
    load_book(ctx, tmp_path)
    assert post_payment(ctx, "P1", "L1", datetime(2025, 12, 31, 16, 0, tzinfo=UTC), 100).paid_on == date(2026, 1, 1)
    post_payment(ctx, "P2", "L1", ctx.clock.now() + timedelta(minutes=4), 100)
    assert payments_written(ctx) == (2, 2)


@pytest.mark.parametrize("payment_id", ["", " ", "P 1", "P1\n", "-P1", "P" * 65, "P\x001"])
def test_a_payment_id_outside_the_id_rule_is_refused_naming_it(ctx, tmp_path, payment_id):
    load_book(ctx, tmp_path)
    with pytest.raises(InvalidInput) as err:
        post_payment(ctx, payment_id, "L1", T, 100)
    assert err.value.field == "payment_id"
    assert payments_written(ctx) == (0, 0)


def test_days_past_due_counts_the_oldest_unpaid_instalment(ctx, tmp_path):
    load_book(ctx, tmp_path)
    assert dpd(ctx, date(2026, 2, 1)) == {"L1": (0, "M0"), "L2": (0, "M0")}
    assert dpd(ctx, date(2026, 2, 2))["L1"] == (1, "M1")
    assert dpd(ctx, date(2026, 3, 4))["L1"] == (31, "M2")
    ctx.clock.set(datetime(2026, 3, 4, 2, tzinfo=UTC))  # a payment is never recorded before it is made
    post_payment(ctx, "P1", "L1", datetime(2026, 3, 4, 2, tzinfo=UTC), 41200)  # pays instalment 1 only
    assert dpd(ctx, date(2026, 3, 4))["L1"] == (3, "M1")  # now counted from 1 March
    assert dpd(ctx, date(2026, 3, 3))["L1"] == (30, "M1")  # before the payment, as it was


def test_a_backdated_pause_subtracts_its_days_and_pauses_cannot_overlap(ctx, tmp_path):
    load_book(ctx, tmp_path)
    add_pause(ctx, "L1", date(2026, 2, 5), date(2026, 2, 15), reason="hardship call")
    assert dpd(ctx, date(2026, 2, 20))["L1"] == (19 - 10, "M1")
    with pytest.raises(Conflict):
        add_pause(ctx, "L1", date(2026, 2, 14), date(2026, 2, 16))
    with pytest.raises(InvalidInput):
        add_pause(ctx, "L1", date(2026, 2, 20), date(2026, 2, 20))
    with pytest.raises(InvalidInput):
        add_pause(ctx, "L1", date(2025, 12, 1), date(2025, 12, 5))


def test_grace_days_keep_loans_current(db_url, tmp_path):
    from tests.conftest import make_ctx

    ctx = make_ctx(db_url, grace_days=3)
    load_book(ctx, tmp_path)
    assert dpd(ctx, date(2026, 2, 4))["L1"] == (0, "M0")
    assert dpd(ctx, date(2026, 2, 5))["L1"] == (4, "M1")
    ctx.db.dispose()


def test_the_daily_snapshot_keeps_the_history_of_bucket_changes(ctx, tmp_path):
    load_book(ctx, tmp_path)
    for day in (date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 2), date(2026, 3, 4)):
        snapshot(ctx, day)
    with ctx.db.read() as conn:
        hist = conn.execute(select(BucketChange.loan_id, BucketChange.changed_on, BucketChange.from_bucket, BucketChange.to_bucket)
                            .order_by(BucketChange.loan_id, BucketChange.changed_on)).all()
        current = conn.execute(select(LoanDelinquency.loan_id, LoanDelinquency.bucket, LoanDelinquency.bucket_since)).all()
    assert [tuple(h) for h in hist if h.loan_id == "L1"] == [("L1", date(2026, 2, 2), "M0", "M1"), ("L1", date(2026, 3, 4), "M1", "M2")]
    assert ("L1", "M2", date(2026, 3, 4)) in [tuple(c) for c in current]
    snapshot(ctx, date(2026, 2, 10))  # an older date does not rewrite the present
    with ctx.db.read() as conn:
        assert conn.execute(select(LoanDelinquency.bucket).where(LoanDelinquency.loan_id == "L1")).scalar_one() == "M2"
        per_borrower = {r.borrower_id: r.days_past_due for r in borrower_days_past_due(ctx, conn, date(2026, 3, 4))}
    assert per_borrower["B1"] == 31


def test_set_based_days_past_due_equals_the_pure_definition(ctx, tmp_path):
    """Random loans, payments and pauses: SQL and `core.delinquency.days_past_due` agree."""
    rng = random.Random(7)
    borrowers = [{"borrower_id": f"B{i}", "name": "x", "phone": f"+86138{i:08d}"} for i in range(30)]
    loans = []
    for i in range(60):
        d = date(2025, 1, 1) + timedelta(days=rng.randrange(300))
        loans.append({"loan_id": f"L{i}", "borrower_id": f"B{i % 30}", "currency": "CNY", "principal": f"{rng.randrange(100, 9000)}.00",
                      "annual_rate": str(rng.choice([0, 7.2, 18])), "term": str(rng.choice([1, 3, 6, 12])),
                      "method": rng.choice(["equal-installment", "equal-principal", "interest-only"]),
                      "disbursed_on": d.isoformat(), "first_due_on": (d + timedelta(days=rng.randrange(10, 40))).isoformat()})
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", borrowers))
    import_file(ctx, "loans", write_csv(tmp_path / "l.csv", loans))
    pauses: dict[str, list[Pause]] = {}
    for i in range(0, 60, 3):
        start = date.fromisoformat(loans[i]["disbursed_on"]) + timedelta(days=rng.randrange(200))
        p = Pause(start, start + timedelta(days=rng.randrange(1, 40)))
        add_pause(ctx, f"L{i}", p.start_on, p.end_on)
        pauses[f"L{i}"] = [p]
    for k in range(80):
        at = datetime(2025, 2, 1, tzinfo=UTC) + timedelta(days=rng.randrange(400), hours=rng.randrange(24))
        n = rng.randrange(60)
        at = max(at, datetime.fromisoformat(loans[n]["disbursed_on"] + "T00:00:00+08:00"))  # none before the loan
        ctx.clock.set(max(ctx.clock.now(), at))
        post_payment(ctx, f"P{k}", f"L{n}", at, rng.randrange(100, 300000))
    for as_of in (date(2025, 6, 30), date(2025, 12, 31), date(2026, 2, 28), date(2026, 3, 1)):
        got = dpd(ctx, as_of)
        with ctx.db.read() as conn:
            rows = conn.execute(select(Installment.loan_id, Installment.due_on, Installment.paid_off_on)).all()
        oldest: dict[str, date] = {}
        for r in rows:
            if r.due_on < as_of and (r.paid_off_on is None or r.paid_off_on > as_of):
                oldest[r.loan_id] = min(oldest.get(r.loan_id, r.due_on), r.due_on)
        for loan_id, (days, _bucket) in got.items():
            assert days == days_past_due(oldest.get(loan_id), as_of, pauses.get(loan_id, ())), (loan_id, as_of)
        # the daily run's cut: exactly the overdue loans, with the same days and buckets
        with ctx.db.read() as conn:
            overdue = conn.execute(text(dpd_sql(conn, ctx.buckets, overdue_only=True)),
                                   {"as_of": as_of, "grace": ctx.settings.grace_days}).all()
        assert {r.loan_id: (r.days_past_due, r.bucket) for r in overdue} == {
            k: v for k, v in got.items() if v[0] > 0}
        assert any(v[0] > 0 for v in got.values()) and any(v[0] == 0 for v in got.values())


def test_the_paid_caches_equal_the_ledger(ctx, tmp_path):
    load_book(ctx, tmp_path)
    for k, amount in enumerate((30000, 20000, 90000)):
        post_payment(ctx, f"P{k}", "L1", T + timedelta(days=k), amount)
    reverse_payment(ctx, "P1", "duplicate")
    with ctx.db.read() as conn:
        expected = rebuild_installment_cache(conn, "L1")
        cache = {r.number: {"paid_principal": r.paid_principal, "paid_interest": r.paid_interest, "paid_fee": r.paid_fee,
                            "paid_penalty": r.paid_penalty}
                 for r in conn.execute(select(Installment).where(Installment.loan_id == "L1"))}
    assert {n: cache[n] for n in expected} == expected


def test_resuming_ends_a_pause_early_so_days_count_again(ctx, tmp_path):
    from parley.services.delinquency import resume

    load_book(ctx, tmp_path)
    add_pause(ctx, "L1", date(2026, 2, 5), date(2026, 3, 5))
    resume(ctx, "L1", date(2026, 2, 15))
    assert dpd(ctx, date(2026, 2, 20))["L1"] == (19 - 10, "M1")
    with pytest.raises(Conflict):
        resume(ctx, "L1", date(2026, 2, 25))  # nothing covers that day any more
