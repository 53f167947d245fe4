"""The documented command forms, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.loanbook_data import BORROWERS, LOANS, write_csv


def parley(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARLEY_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.run([sys.executable, "-m", "parley.faces.cli.main", *args], capture_output=True, text=True, env=env, timeout=120)


def test_schedule_quote_prints_the_documented_json(tmp_path):
    out = parley("schedule", "quote", "--principal", "100.00", "--annual-rate", "9.4822", "--terms", "6", "--method",
                 "equal-installment", "--first-due", "2024-02-01", "--day-count", "30/360", "--format", "json", db=tmp_path / "p.db")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["installments"]
    assert [set(r) for r in rows] == [{"number", "due_date", "payment", "principal", "interest", "balance"}] * 6
    assert rows[0]["payment"] == "17.13" and rows[-1]["balance"] == "0.00"
    assert sum(int(r["principal"].replace(".", "")) for r in rows) == 10000


def test_import_then_delinquency_as_json(tmp_path):
    db = tmp_path / "p.db"
    assert parley("import", "borrowers", str(write_csv(tmp_path / "b.csv", BORROWERS)), db=db).returncode == 0
    assert parley("import", "loans", str(write_csv(tmp_path / "l.csv", LOANS)), db=db).returncode == 0
    out = parley("delinquency", "--as-of", "2026-03-31", "--format", "json", db=db)
    assert out.returncode == 0, out.stderr
    loans = {x["loan_id"]: x for x in json.loads(out.stdout)["loans"]}
    assert loans["L1"]["days_past_due"] == 58 and loans["L1"]["bucket"] == "M2"
    table = parley("delinquency", "--as-of", "2026-03-31", "--format", "table", db=db)
    assert table.returncode == 0 and "L1" in table.stdout


def test_a_bad_import_exits_2_naming_file_row_and_field_and_writes_nothing(tmp_path):
    db = tmp_path / "p.db"
    parley("import", "borrowers", str(write_csv(tmp_path / "b.csv", BORROWERS)), db=db)
    bad = write_csv(tmp_path / "loans.csv", [LOANS[0], dict(LOANS[1], principal="12,5")])
    out = parley("import", "loans", str(bad), db=db)
    assert out.returncode == 2
    assert "loans.csv row 2" in out.stderr and "principal" in out.stderr
    check = parley("delinquency", "--as-of", "2026-03-31", "--format", "json", db=db)
    assert json.loads(check.stdout)["loans"] == []


def test_bad_quote_arguments_exit_2_naming_the_option(tmp_path):
    out = parley("schedule", "quote", "--principal", "abc", "--annual-rate", "5", "--terms", "6", "--first-due", "2024-02-01",
                 db=tmp_path / "p.db")
    assert out.returncode == 2 and "principal" in out.stderr


def test_a_bad_payment_exits_2_naming_the_field_and_writes_nothing(tmp_path):
    import sqlite3

    db = tmp_path / "p.db"
    assert parley("import", "borrowers", str(write_csv(tmp_path / "b.csv", BORROWERS)), db=db).returncode == 0
    assert parley("import", "loans", str(write_csv(tmp_path / "l.csv", LOANS)), db=db).returncode == 0
    for args, paid_at, field in [(("P1", "L1", "abc"), "2026-02-01T10:00:00+08:00", "amount"),
                                 (("P1", "L1", "1.234"), "2026-02-01T10:00:00+08:00", "amount"),
                                 (("", "L1", "1.00"), "2026-02-01T10:00:00+08:00", "payment_id"),
                                 (("P 1", "L1", "1.00"), "2026-02-01T10:00:00+08:00", "payment_id"),
                                 (("P1", "L1", "1.00"), "2999-01-01T10:00:00+08:00", "paid_at"),
                                 (("P1", "L1", "1.00"), "2025-12-31T10:00:00+08:00", "paid_at"),
                                 (("P1", "L1", "1.00"), "9999-12-31T23:59:59-12:00", "paid_at")]:
        out = parley("payment", "post", *args, "--paid-at", paid_at, db=db)
        assert out.returncode == 2, (args, paid_at, out.stderr)
        assert field in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payment").fetchone() == (0,)
    ok = parley("payment", "post", "P1", "L1", "1.00", "--paid-at", "2026-02-01T10:00:00+08:00", db=db)
    assert ok.returncode == 0 and json.loads(ok.stdout)["already_posted"] is False


def test_an_import_that_is_not_utf8_exits_2_naming_the_byte_row_and_field(tmp_path):
    db = tmp_path / "p.db"
    path = write_csv(tmp_path / "b.csv", [BORROWERS[1], BORROWERS[0]])
    path.write_bytes(path.read_bytes().replace("王伟".encode(), "王伟".encode("gbk")))
    out = parley("import", "borrowers", str(path), db=db)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "not UTF-8 text at byte" in out.stderr and "b.csv row 2 (line 3)" in out.stderr and "name" in out.stderr
