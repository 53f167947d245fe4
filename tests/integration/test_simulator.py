"""The simulator: deterministic for a seed, Parley never breaks a rule, and the naive run's
violations are found by the same judge (the pure gate on the true facts), not written in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from parley.adapters.clock import FixedClock
from parley.sim import engine
from parley.sim.engine import SimConfig, simulate
from parley.sim.judge import VIOLATION_KEYS
from parley.sim.report import html_report, write_html
from tests.conftest import make_ctx

SMALL = SimConfig(borrowers=150, days=8, seed=7)
REQUIRED = ("contacts", "right_party_contacts", "recovered", "agreements_made",
            "agreements_kept", "contacts_after_agreement", "contacts_outside_hours",
            "cap_breaches", "third_party_disclosures", "complaints")


def _simulate(db_url: str, config: SimConfig = SMALL) -> engine.SimResult:
    ctx = make_ctx(db_url, FixedClock(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)))
    try:
        return simulate(config, ctx)
    finally:
        ctx.db.dispose()


def test_the_summary_has_every_required_key_with_money_as_a_decimal_string(db_url: str) -> None:
    result = _simulate(db_url)
    assert set(result.summary) == {"parley", "naive"}
    for run in ("parley", "naive"):
        s = result.summary[run]
        for key in REQUIRED:
            assert key in s, (run, key)
        assert isinstance(s["recovered"], str)
        assert Decimal(s["recovered"]) >= 0
        assert s["contacts"] > 0


def test_parley_breaks_no_rule_while_the_naive_collector_breaks_several(db_url: str) -> None:
    result = _simulate(db_url)
    parley, naive = result.summary["parley"], result.summary["naive"]
    for key in VIOLATION_KEYS:
        assert parley[key] == 0, key
    assert parley["violations_by_rule"] == {}
    assert naive["contacts_after_agreement"] > 0
    assert naive["third_party_disclosures"] > 0
    assert sum(naive[k] for k in VIOLATION_KEYS) > 0


def test_the_naive_counts_come_from_the_judge(sqlite_template: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every contact of both runs goes through the judge once, and each counter is exactly
    the number of contacts the judge put in that category."""
    import shutil

    seen: dict[str, Counter[str]] = {"parley": Counter(), "naive": Counter()}
    judged = Counter[str]()
    real = engine.wrongs
    current: list[str] = []

    def spy(decision, pack):  # type: ignore[no-untyped-def]
        found = real(decision, pack)
        run = current[0]
        judged[run] += 1
        for k in found:
            seen[run][k] += 1
        return found

    original_attempt = engine.Run.attempt
    original_tick = engine.ParleyRun.tick_until

    def attempt(self, task, at, push):  # type: ignore[no-untyped-def]
        current[:] = [self.name]
        return original_attempt(self, task, at, push)

    def tick_until(self, at):  # type: ignore[no-untyped-def]  # the worker's messages
        current[:] = [self.name]
        return original_tick(self, at)

    monkeypatch.setattr(engine, "wrongs", spy)
    monkeypatch.setattr(engine.Run, "attempt", attempt)
    monkeypatch.setattr(engine.ParleyRun, "tick_until", tick_until)
    path = tmp_path / "p.db"
    shutil.copyfile(sqlite_template, path)
    result = _simulate(f"sqlite:///{path}")
    for run in ("parley", "naive"):
        s = result.summary[run]
        assert judged[run] == s["contacts"]
        for key in VIOLATION_KEYS:
            assert s[key] == seen[run][key], (run, key)
    assert sum(seen["naive"].values()) > 0
    assert sum(seen["parley"].values()) == 0


def test_a_complaint_about_one_message_does_not_reach_back_to_the_message_sent_with_it(
        sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sends a borrower's SMS and e-mail in one pass, at one instant. A complaint
    about the SMS (and the complaint-investigation hold it brings) comes after both went
    out, so the e-mail is not a contact under a hold. Found at 100,000 × 90, where a lawful
    message's rare complaint made the judge count 14 such contacts against Parley; here
    every borrower complains about the day's first contact, so it happens every morning."""
    import shutil

    from sqlalchemy import text

    from parley.store.db import Database

    real = engine.bh.complains

    def first_contact_draws_a_complaint(dice, p, borrower_id, day, n, wrongs):  # type: ignore[no-untyped-def]
        return n == 0 or real(dice, p, borrower_id, day, n, wrongs)

    monkeypatch.setattr(engine.bh, "complains", first_contact_draws_a_complaint)
    path = tmp_path / "complain.db"
    shutil.copyfile(sqlite_template, path)
    result = _simulate(f"sqlite:///{path}", SimConfig(borrowers=150, days=4, seed=7))
    db = Database(f"sqlite:///{path}")
    try:
        with db.read() as conn:
            together = conn.execute(text(
                "SELECT COUNT(*) FROM hold h WHERE h.kind = 'complaint_investigation' AND "
                "(SELECT COUNT(*) FROM contact_attempt a WHERE a.borrower_id = h.borrower_id "
                "AND a.at = h.started_at AND a.channel IN ('sms', 'email')) >= 2")).scalar_one()
    finally:
        db.dispose()
    assert together > 0  # the case arose: a hold placed at the instant of two messages
    parley = result.summary["parley"]
    assert parley["complaints"] > 0
    for key in VIOLATION_KEYS:
        assert parley[key] == 0, key


def test_the_same_seed_gives_identical_json_across_processes(tmp_path: Path) -> None:
    """Run the CLI twice with different string-hash seeds: byte-identical output."""
    outputs = []
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PARLEY_VAR_DIR": str(tmp_path / hashseed)}
        proc = subprocess.run(
            [sys.executable, "-m", "parley.faces.cli.main", "simulate", "--borrowers", "120",
             "--days", "6", "--seed", "11", "--format", "json", "--no-report"],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    doc = json.loads(outputs[0])
    assert set(doc) == {"parley", "naive"}


# Each caught one of the two bugs below (and only that one): 600 × 4 the call order, on day 0;
# 300 × 10 the SMS due at a tick, on day 9.
@pytest.mark.parametrize("config", [SimConfig(borrowers=600, days=4, seed=5),
                                    SimConfig(borrowers=300, days=10, seed=5)])
def test_the_same_seed_gives_the_same_result_on_sqlite_and_postgresql(
        sqlite_template: Path, tmp_path: Path, pg_ctx, config: SimConfig) -> None:  # type: ignore[no-untyped-def]
    """One system, two databases, one world: nothing the simulation does may hang on how a
    database orders ties or compares an untyped parameter (the simulated collectors once took
    their calls in queue-id order, and the two databases number the daily run's rows
    differently; and SQLite saw an SMS due exactly at a worker's tick only at the next one)."""
    import shutil

    path = tmp_path / "same.db"
    shutil.copyfile(sqlite_template, path)
    on_sqlite = _simulate(f"sqlite:///{path}", config)
    on_pg = _simulate(pg_ctx.db.url, config)
    assert on_sqlite.summary == on_pg.summary
    assert on_sqlite.series == on_pg.series


def test_a_different_seed_gives_a_different_portfolio(sqlite_template: Path, tmp_path: Path) -> None:
    import shutil

    docs = []
    for seed in (1, 2):
        path = tmp_path / f"s{seed}.db"
        shutil.copyfile(sqlite_template, path)
        docs.append(_simulate(f"sqlite:///{path}", SimConfig(borrowers=80, days=5, seed=seed)).summary)
    assert docs[0] != docs[1]


def test_the_report_is_self_contained_html_with_the_four_charts(sqlite_template: Path,
                                                                tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "r.db"
    shutil.copyfile(sqlite_template, path)
    result = _simulate(f"sqlite:///{path}", SimConfig(borrowers=80, days=5, seed=3))
    page = html_report(result)
    assert page.count("<svg") == 4
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for title in ("Recovery curve by bucket", "Contacts per day by channel",
                  "Agreements over time", "Violations prevented, by rule"):
        assert title in page
    written = write_html(result, tmp_path / "reports")
    assert written.read_text(encoding="utf-8") == page


def test_the_simulator_refuses_a_database_that_is_not_empty(sqlite_template: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    from parley.errors import InvalidInput

    path = tmp_path / "twice.db"
    shutil.copyfile(sqlite_template, path)
    _simulate(f"sqlite:///{path}", SimConfig(borrowers=20, days=1, seed=1))
    with pytest.raises(InvalidInput) as err:
        _simulate(f"sqlite:///{path}", SimConfig(borrowers=20, days=1, seed=1))
    assert err.value.field == "database_url"


def test_the_portfolio_is_written_with_the_loan_books_days_past_due_cache(ctx) -> None:  # type: ignore[no-untyped-def]
    """The simulator writes the loan book itself (bulk), so it must leave the same caches the
    importer does: otherwise every unpaid loan reads as current and nothing is collected."""
    from datetime import date

    from sqlalchemy import select

    from parley.core.delinquency import days_past_due
    from parley.services.delinquency import days_past_due_all
    from parley.sim import portfolio
    from parley.store.models.loanbook import Installment

    book = portfolio.generate(60, seed=5, start=date(2026, 1, 1))
    with ctx.db.transaction() as conn:
        portfolio.write(conn, book, ctx.keyring, ctx.clock.now())
    as_of = date(2026, 4, 15)
    with ctx.db.read() as conn:
        got = {r.loan_id: r.days_past_due for r in days_past_due_all(ctx, conn, as_of)}
        oldest: dict[str, date] = {}
        for loan_id, due_on in conn.execute(select(Installment.loan_id, Installment.due_on)):
            if due_on < as_of:
                oldest[loan_id] = min(oldest.get(loan_id, due_on), due_on)
    assert any(got.values())
    assert got == {loan_id: days_past_due(oldest.get(loan_id), as_of) for loan_id in got}
