"""Imports: everything or nothing, every bad row named, re-imports change nothing."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from parley.errors import InvalidInput
from parley.services.imports import import_file
from parley.store.models.loanbook import (
    Borrower,
    BorrowerPhone,
    Installment,
    Loan,
    Payment,
    ThirdParty,
)
from tests.integration.loanbook_data import BORROWERS, LOANS, load_book, write_csv, write_jsonl


def counts(ctx):
    with ctx.db.read() as conn:
        return {m.__tablename__: conn.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Borrower, BorrowerPhone, ThirdParty, Loan, Installment, Payment)}


def test_a_clean_book_imports_with_generated_schedules(ctx, tmp_path):
    load_book(ctx, tmp_path)
    c = counts(ctx)
    assert c["borrower"] == 2 and c["loan"] == 2 and c["installment"] == 9 and c["third_party"] == 1
    with ctx.db.read() as conn:
        l1 = conn.execute(select(Installment.principal_due, Installment.interest_due).where(Installment.loan_id == "L1")
                          .order_by(Installment.number)).all()
        phone = conn.execute(select(BorrowerPhone).where(BorrowerPhone.borrower_id == "B1")).mappings().one()
    assert [tuple(r) for r in l1] == [(40000, 1200), (40000, 800), (40000, 400)]
    assert phone["masked"] == "+86138****8000" and phone["timezones"] == "Asia/Shanghai"
    assert ctx.keyring.decrypt(phone["e164_enc"], "phone.e164") == "+8613800138000"
    assert b"13800138000" not in phone["e164_enc"]


def test_reimporting_the_same_files_changes_nothing(ctx, tmp_path):
    load_book(ctx, tmp_path)
    before = counts(ctx)
    report = import_file(ctx, "loans", write_csv(tmp_path / "again.csv", LOANS))
    assert report.inserted == 0 and report.unchanged == 2
    assert counts(ctx) == before


def test_json_lines_numbers_are_read_as_exact_decimals(ctx, tmp_path):
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    rows = [dict(LOANS[0], principal=1200.10, term=3)]
    import_file(ctx, "loans", write_jsonl(tmp_path / "loans.jsonl", rows))
    with ctx.db.read() as conn:
        assert conn.execute(select(Loan.principal)).scalar_one() == 120010


BAD_LOANS = [
    ({"principal": "abc"}, "principal"),
    ({"principal": "-5.00"}, "principal"),
    ({"principal": "1.234"}, "principal"),
    ({"currency": "XXX"}, "currency"),
    ({"disbursed_on": "2026-13-01"}, "disbursed_on"),
    ({"first_due_on": "2025-12-01"}, "first_due_on"),
    ({"method": "balloon"}, "method"),
    ({"term": "0"}, "term"),
    ({"annual_rate": "x"}, "annual_rate"),
    ({"borrower_id": "NOPE"}, "borrower_id"),
]


@pytest.mark.parametrize(("change", "field"), BAD_LOANS)
def test_one_bad_loan_row_writes_nothing_and_names_row_and_field(ctx, tmp_path, change, field):
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    rows = [LOANS[0], dict(LOANS[1], **change)]
    before = counts(ctx)
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", write_csv(tmp_path / "loans.csv", rows))
    assert err.value.field == field
    assert "loans.csv row 2" in err.value.record
    assert counts(ctx) == before  # the good first row was not written either
    assert orphan_installments(ctx) == 0


def test_a_missing_column_is_named(ctx, tmp_path):
    rows = [{k: v for k, v in LOANS[0].items() if k != "annual_rate"}]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", write_csv(tmp_path / "loans.csv", rows))
    assert err.value.field == "annual_rate" and "header" in err.value.record


@pytest.mark.parametrize("phone", ["+86123", "13800138000", "+1 212 555", "call me"])
def test_an_invalid_phone_number_is_refused(ctx, tmp_path, phone):
    rows = [BORROWERS[1], dict(BORROWERS[0], phone=phone)]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "borrowers", write_csv(tmp_path / "borrowers.csv", rows))
    assert err.value.field == "phone" and "row 2" in err.value.record
    assert counts(ctx)["borrower"] == 0


def test_a_duplicate_id_with_different_content_is_refused(ctx, tmp_path):
    load_book(ctx, tmp_path)
    changed = [dict(LOANS[0], principal="999.00")]
    with pytest.raises(InvalidInput, match="already exists with different content"):
        import_file(ctx, "loans", write_csv(tmp_path / "changed.csv", changed))
    dup_in_file = [LOANS[0], dict(LOANS[0], term="6")]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", write_csv(tmp_path / "dup.csv", [dict(r, loan_id="L9") for r in dup_in_file]))
    assert "row 2" in err.value.record


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "child-processes"])
def test_a_changed_record_is_refused_in_the_same_words_whatever_the_import(ctx, tmp_path, monkeypatch, parallel):
    """Borrowers and payments go through `imports._dedupe`, loans through `loan_import` (in this
    process or in children): the one rule, `imports.dedupe`, words the refusal for all of them."""
    import parley.services.imports as imports

    if parallel:
        monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0)
    # the same id "X1" as a borrower, a loan and a payment, each imported, then sent changed:
    # once against what is stored (row 1) and once against an earlier row of the file (row 3)
    borrower = dict(BORROWERS[0], borrower_id="X1")
    loan = dict(LOANS[0], loan_id="X1", borrower_id="X1")
    payment = {"payment_id": "X1", "loan_id": "X1", "paid_at": "2026-02-01T10:00:00+08:00", "amount": "10.00"}
    changes = {"borrowers": (borrower, {"name": "王伟伟"}, "borrower_id"),
               "loans": (loan, {"principal": "999.00"}, "loan_id"),
               "payments": (payment, {"amount": "11.00"}, "payment_id")}
    refusals = {}
    for kind, (row, change, id_field) in changes.items():
        import_file(ctx, kind, write_csv(tmp_path / f"{kind}.csv", [row]))
        fresh = dict(row, **{id_field: "X2"})
        rows = [dict(row, **change), fresh, dict(fresh, **change)]
        with pytest.raises(InvalidInput) as err:
            import_file(ctx, kind, write_csv(tmp_path / "changed.csv", rows))
        refusals[kind] = [(e.message, e.record, e.field) for e in err.value.errors]
    for kind, what in (("borrowers", "borrower"), ("loans", "loan"), ("payments", "payment")):
        assert refusals[kind] == [
            (f"{what} 'X1' already exists with different content", "changed.csv row 1 (line 2)", f"{what}_id"),
            (f"{what} 'X2' already exists with different content", "changed.csv row 3 (line 4)", f"{what}_id"),
        ], kind


def test_dedupe_writes_new_ids_counts_unchanged_ones_and_refuses_changed_ones():
    from parley.services.imports import ImportReport, dedupe

    report, errors = ImportReport("loans", "f.csv"), []
    ids = ["A", "B", "C", "C", "D", "D", "E"]
    hashes = ["a", "b", "c", "c", "d", "d2", "e"]
    keep = dedupe(ids, hashes, {"A": "a", "B": "other"}, "loan", report, errors,
                  lambda k: f"f.csv row {k + 1}", skip={6})
    assert keep == [2, 4]  # C and D once each; E refused elsewhere (skip), so not written
    assert report.unchanged == 2  # A as stored, C again in the chunk
    assert [(e.message, e.record, e.field) for e in errors] == [
        ("loan 'B' already exists with different content", "f.csv row 2", "loan_id"),
        ("loan 'D' already exists with different content", "f.csv row 6", "loan_id"),
    ]


def test_a_payment_for_an_unknown_loan_is_refused(ctx, tmp_path):
    load_book(ctx, tmp_path)
    rows = [{"payment_id": "P1", "loan_id": "L1", "paid_at": "2026-02-01T10:00:00+08:00", "amount": "10.00"},
            {"payment_id": "P2", "loan_id": "L404", "paid_at": "2026-02-01T10:00:00+08:00", "amount": "10.00"}]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "payments", write_csv(tmp_path / "payments.csv", rows))
    assert err.value.field == "loan_id" and "row 2" in err.value.record
    assert counts(ctx)["payment"] == 0


def test_payment_times_need_an_offset(ctx, tmp_path):
    load_book(ctx, tmp_path)
    rows = [{"payment_id": "P1", "loan_id": "L1", "paid_at": "2026-02-01T10:00:00", "amount": "10.00"}]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "payments", write_csv(tmp_path / "payments.csv", rows))
    assert err.value.field == "paid_at"


def test_several_bad_rows_are_reported_together(ctx, tmp_path):
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    rows = [dict(LOANS[0], principal="x"), LOANS[1], dict(LOANS[1], loan_id="L3", term="abc")]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", write_csv(tmp_path / "loans.csv", rows))
    text = str(err.value)
    assert "row 1" in text and "row 3" in text and "principal" in text and "term" in text


def test_a_lenders_own_schedule_imports_as_is(ctx, tmp_path):
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    import_file(ctx, "loans", write_csv(tmp_path / "l.csv", [dict(LOANS[0], schedule="imported")]))
    rows = [{"loan_id": "L1", "number": str(n), "due_on": f"2026-0{n + 1}-05", "principal_due": "400.00", "interest_due": "7.77"}
            for n in (1, 2, 3)]
    rows[0]["fee_due"] = "3.00"  # a scheduled fee counts as owed

    import_file(ctx, "installments", write_csv(tmp_path / "i.csv", rows))
    import_file(ctx, "installments", write_csv(tmp_path / "i2.csv", rows))  # idempotent
    with ctx.db.read() as conn:
        got = conn.execute(select(Installment.due_on, Installment.interest_due).where(Installment.loan_id == "L1")
                           .order_by(Installment.number)).all()
    assert [tuple(r) for r in got] == [(date(2026, 2, 5), 777), (date(2026, 3, 5), 777), (date(2026, 4, 5), 777)]
    from parley.services.payments import loan_balance

    with ctx.db.read() as conn:
        assert loan_balance(conn, "L1", date(2026, 2, 5)).overdue_total == 40000 + 777 + 300
    with pytest.raises(InvalidInput, match="generated schedule"):
        import_file(ctx, "loans", write_csv(tmp_path / "l2.csv", [dict(LOANS[1], loan_id="L7")]))
        import_file(ctx, "installments", write_csv(tmp_path / "i3.csv", [dict(rows[0], loan_id="L7")]))


def test_unsupported_file_types_are_refused(ctx, tmp_path):
    path = tmp_path / "loans.xlsx"
    path.write_text("nope")
    with pytest.raises(InvalidInput, match="unsupported"):
        import_file(ctx, "loans", path)


@pytest.mark.parametrize("form", ["csv", "quoted.csv", "jsonl"])
def test_the_parallel_parsing_path_gives_the_same_book_and_the_same_errors(ctx, tmp_path, monkeypatch, form):
    """Child processes read byte ranges (CSV without quotes, JSON Lines) or rows this process
    read (CSV with quotes); either way the book and the errors, numbered in the whole file,
    are what the sequential path gives."""
    import parley.services.imports as imports
    import parley.services.loan_import as loan_import

    def write(path, rows):
        if form == "jsonl":
            return write_jsonl(path.with_suffix(".jsonl"), rows)
        if form == "quoted.csv":
            rows = [dict(r, product='cash, "retail"') for r in rows]
        return write_csv(path, rows)

    monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0)
    monkeypatch.setattr(imports, "CHUNK", 1)  # every row its own chunk, several in flight
    monkeypatch.setattr(loan_import, "RANGE_BYTES", 1)  # every line its own range
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    report = import_file(ctx, "loans", write(tmp_path / "l.csv", LOANS))
    assert report.inserted == 2 and report.installments == 9
    again = import_file(ctx, "loans", write(tmp_path / "l.csv", LOANS))
    assert again.inserted == 0 and again.unchanged == 2
    bad = [dict(LOANS[0], loan_id="L5"), dict(LOANS[1], loan_id="L6", term="x"), dict(LOANS[1], loan_id="L7", borrower_id="B9"),
           dict(LOANS[0], principal="1.00"), dict(LOANS[1], loan_id="L5")]
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", write(tmp_path / "bad.csv", bad))
    found = sorted((e.record, e.field) for e in err.value.errors)
    name = "bad.jsonl" if form == "jsonl" else "bad.csv"
    line = 0 if form == "jsonl" else 1  # the CSV header is line 1
    assert found == [(f"{name} row {r} (line {r + line})", f) for r, f in
                     [(2, "term"), (3, "borrower_id"), (4, "loan_id"), (5, "loan_id")]]
    assert counts(ctx)["loan"] == 2
    assert orphan_installments(ctx) == 0


def test_a_malformed_line_in_a_large_file_stops_it_after_naming_the_rows_before(ctx, tmp_path, monkeypatch):
    import parley.services.imports as imports
    import parley.services.loan_import as loan_import

    monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0)
    monkeypatch.setattr(loan_import, "RANGE_BYTES", 1)
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    path = write_csv(tmp_path / "l.csv", [LOANS[0], dict(LOANS[1], term="x"), LOANS[1]])
    head, tail = path.read_text().rsplit("\nL2,", 1)
    path.write_text(head + "\n\nL2,B2\nL2," + tail)  # after the bad row: a blank line, then a short one
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, "loans", path)
    assert [(e.record, e.field) for e in err.value.errors] == [("l.csv row 2 (line 3)", "term"), ("l.csv row 3 (line 5)", "")]
    assert counts(ctx)["loan"] == 0


def orphan_installments(ctx) -> int:
    """Instalments have no FK to loan (bulk-load speed); the import must never leave orphans."""
    from sqlalchemy import text

    with ctx.db.read() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM installment i LEFT JOIN loan l ON l.id = i.loan_id "
                                 "WHERE l.id IS NULL")).scalar_one()


def test_the_fast_loan_parser_accepts_exactly_what_the_careful_one_accepts():
    from parley.adapters.records import SourceRow
    from parley.services.imports import _fast_loan, _parse_loan_slowly

    variants = [{}, {"term": "07"}, {"term": "601"}, {"principal": "0.00"}, {"annual_rate": "1000.01"}, {"day_count": ""},
                {"day_count": "actual/365"}, {"method": " equal-principal "}, {"currency": "cny"}, {"schedule": "imported"},
                {"first_due_on": "2026-01-01"}, {"loan_id": "bad id"}, {"product": "x" * 51}, {"agency_id": "A1"}]
    for change in variants:
        values = dict(LOANS[0], **change)
        fast = _fast_loan(values)
        try:
            slow = _parse_loan_slowly(SourceRow(1, 2, values), "t.csv")
        except InvalidInput:
            slow = None
        if slow is None:
            assert fast is None, change
        elif fast is not None:
            assert fast.__dict__ == slow.__dict__, change


def test_a_large_file_reports_its_progress_in_bytes_as_it_streams(ctx, tmp_path):
    borrowers = [{"borrower_id": f"B{i}", "name": "x", "phone": f"+86138{i:08d}"} for i in range(2500)]
    path = write_csv(tmp_path / "borrowers.csv", borrowers)
    seen: list[int] = []
    import_file(ctx, "borrowers", path, progress=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen) and 0 < seen[-1] <= path.stat().st_size


def test_a_large_loans_file_read_in_ranges_reports_its_progress_in_bytes(ctx, tmp_path, monkeypatch):
    import parley.services.imports as imports
    import parley.services.loan_import as loan_import

    monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0)
    monkeypatch.setattr(loan_import, "RANGE_BYTES", 1)
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    path = write_csv(tmp_path / "l.csv", LOANS)
    seen: list[int] = []
    import_file(ctx, "loans", path, progress=seen.append)
    assert len(seen) == 2 and seen == sorted(seen) and seen[-1] == path.stat().st_size


def test_a_large_import_into_an_empty_table_puts_the_instalment_key_back(pg_ctx, tmp_path, monkeypatch):
    """PostgreSQL builds the instalment primary key after a large load into an empty table;
    the key must be there afterwards, the same, whether the import succeeded or failed."""
    from sqlalchemy import text

    import parley.services.loan_import as loan_import

    ctx = pg_ctx

    def key():
        with ctx.db.read() as conn:
            return conn.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                     "WHERE conrelid = 'installment'::regclass AND contype = 'p'")).all()

    before = key()
    assert len(before) == 1
    monkeypatch.setattr(loan_import, "DEFER_KEY_ABOVE_BYTES", 0)
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    with pytest.raises(InvalidInput):
        import_file(ctx, "loans", write_csv(tmp_path / "bad.csv", [LOANS[0], dict(LOANS[1], term="x")]))
    assert key() == before
    report = import_file(ctx, "loans", write_csv(tmp_path / "l.csv", LOANS))
    assert report.installments == 9 and key() == before
    assert counts(ctx)["installment"] == 9
