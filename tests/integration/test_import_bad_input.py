"""Imports of files that are wrong in ways a parser trips over (bytes that are not UTF-8, a CSV
field past the reader's limit, control characters, a JSON key given twice, dates out of range):
each is an InvalidInput naming the row and field, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parley.errors import InvalidInput
from parley.services.imports import import_file
from tests.integration.loanbook_data import BORROWERS, LOANS, load_book, write_csv, write_jsonl
from tests.integration.test_imports import counts, orphan_installments

PAYMENT = {"payment_id": "P1", "loan_id": "L1", "paid_at": "2026-02-01T10:00:00+08:00", "amount": "10.00"}


def refused(ctx, kind: str, path: Path) -> InvalidInput:
    """Import `path`, which must be refused, and check it wrote nothing."""
    before = counts(ctx)
    with pytest.raises(InvalidInput) as err:
        import_file(ctx, kind, path)
    assert counts(ctx) == before
    return err.value


def write_ascii_jsonl(path: Path, rows: list[dict]) -> Path:
    """JSON Lines with every non-ASCII character escaped: how a control character or a lone
    surrogate gets into a valid JSON file."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    return path


def where(err: InvalidInput) -> list[tuple[str, str]]:
    return [(e.record, e.field) for e in getattr(err, "errors", [err])]


# --- payments at impossible times --------------------------------------------------------------


@pytest.mark.parametrize("paid_at", [
    "2030-01-01T10:00:00+08:00",  # the future (the test clock is 2026-03-02)
    "2026-03-02T02:06:00+00:00",  # six minutes ahead: more than clock skew
    "2025-12-31T23:59:59+08:00",  # the day before L1 was disbursed, in the business zone
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+08:00",  # before the year 1 in UTC: no datetime can hold it
    "9999-12-31T23:59:59-12:00",  # in the year 10000 in UTC
])
def test_a_payment_at_an_impossible_time_is_refused_naming_row_and_field(ctx, tmp_path, paid_at):
    load_book(ctx, tmp_path)
    rows = [PAYMENT, dict(PAYMENT, payment_id="P2", paid_at=paid_at)]
    err = refused(ctx, "payments", write_csv(tmp_path / "payments.csv", rows))
    assert where(err) == [("payments.csv row 2 (line 3)", "paid_at")], str(err)


def test_a_payment_on_the_disbursement_day_or_within_clock_skew_is_accepted(ctx, tmp_path):
    load_book(ctx, tmp_path)
    rows = [dict(PAYMENT, paid_at="2025-12-31T16:00:00+00:00"),  # midnight 1 January in Shanghai
            dict(PAYMENT, payment_id="P2", paid_at="2026-03-02T02:04:00+00:00")]  # four minutes ahead
    assert import_file(ctx, "payments", write_csv(tmp_path / "payments.csv", rows)).inserted == 2


# --- bytes that are not UTF-8 ------------------------------------------------------------------


def test_a_csv_file_that_is_not_utf8_is_refused_naming_byte_row_and_field(ctx, tmp_path):
    path = write_csv(tmp_path / "b.csv", [BORROWERS[1], dict(BORROWERS[0], name="王伟")])
    data = path.read_bytes()
    path.write_bytes(data.replace("王伟".encode(), "王伟".encode("gbk")))  # a GBK name
    err = refused(ctx, "borrowers", path)
    offset = data.index("王伟".encode())
    assert where(err) == [("b.csv row 2 (line 3)", "name")]
    assert f"not UTF-8 text at byte {offset}" in err.message


def test_a_json_lines_file_that_is_not_utf8_is_refused_naming_byte_row_and_field(ctx, tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [BORROWERS[1], dict(BORROWERS[0], name="X")])
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"name": "X"', b'"name": "\xff"'))
    offset = data.index(b'"name": "X"') + len('"name": "')
    err = refused(ctx, "borrowers", path)
    assert where(err) == [("b.jsonl row 2 (line 2)", "name")]
    assert f"not UTF-8 text at byte {offset}" in err.message


def test_a_utf16_file_is_refused_saying_so(ctx, tmp_path):
    path = write_csv(tmp_path / "b.csv", BORROWERS)
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    err = refused(ctx, "borrowers", path)
    assert "UTF-16" in err.message and err.record == "b.csv"


def test_a_truncated_utf8_sequence_at_the_end_is_refused(ctx, tmp_path):
    path = write_csv(tmp_path / "b.csv", BORROWERS)
    path.write_bytes(path.read_bytes().rstrip(b"\r\n") + "王".encode()[:2])
    err = refused(ctx, "borrowers", path)
    assert err.field == "jurisdiction" and "b.csv row 2" in err.record
    assert f"byte {path.stat().st_size - 2}" in err.message


def test_a_loans_file_read_in_byte_ranges_that_is_not_utf8_is_refused(ctx, tmp_path, monkeypatch):
    import parley.services.imports as imports
    import parley.services.loan_import as loan_import

    monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0)  # child processes, one line each
    monkeypatch.setattr(loan_import, "RANGE_BYTES", 1)
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    path = write_csv(tmp_path / "l.csv", [LOANS[0], dict(LOANS[1], product="X")])
    path.write_bytes(path.read_bytes().replace(b",X", b",\xc3("))
    err = refused(ctx, "loans", path)
    assert "not UTF-8 text" in err.message and where(err) == [("l.csv row 2 (line 3)", "product")]
    assert orphan_installments(ctx) == 0


# --- CSV the reader gives up on ----------------------------------------------------------------


def test_a_csv_field_longer_than_the_reader_allows_is_refused_naming_the_row(ctx, tmp_path):
    rows = [BORROWERS[1], dict(BORROWERS[0], address_line="x" * 200_000)]
    err = refused(ctx, "borrowers", write_csv(tmp_path / "b.csv", rows))
    assert where(err) == [("b.csv row 2 (line 3)", "")] and "field too long" in err.message


def test_a_csv_header_longer_than_the_reader_allows_is_refused(ctx, tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("borrower_id,name,phone," + "x" * 200_000 + "\nB1,X,+8613800138000,\n")
    err = refused(ctx, "borrowers", path)
    assert err.record == "b.csv header" and "field too long" in err.message


# --- characters text may not hold --------------------------------------------------------------


@pytest.mark.parametrize("name", ["王\x00伟", "Ann\x1bLee", "Ann\x7f", "\ud800x"])
def test_a_control_character_in_text_is_refused_naming_row_and_field(ctx, tmp_path, name):
    rows = [BORROWERS[1], dict(BORROWERS[0], name=name)]
    err = refused(ctx, "borrowers", write_ascii_jsonl(tmp_path / "b.jsonl", rows))
    assert where(err) == [("b.jsonl row 2 (line 2)", "name")]
    k = next(i for i, ch in enumerate(name) if not ch.isprintable())  # the one every face names
    assert f"found U+{ord(name[k]):04X} at position {k + 1}" in err.message


def test_control_characters_are_refused_in_csv_lists_and_nested_names_too(ctx, tmp_path):
    third = [{"name": "王\x00芳", "relation": "family"}]
    rows = [dict(BORROWERS[0], borrower_id="B7", email="a\x00b@example.cn"),
            dict(BORROWERS[1], third_parties=third),
            dict(BORROWERS[1], borrower_id="B8", emails=["c@example.com", "d\x00@example.com"])]
    err = refused(ctx, "borrowers", write_ascii_jsonl(tmp_path / "b.jsonl", rows))
    assert where(err) == [("b.jsonl row 1 (line 1)", "email"), ("b.jsonl row 2 (line 2)", "third_parties[0].name"),
                          ("b.jsonl row 3 (line 3)", "email")]
    csv_rows = [BORROWERS[1], dict(BORROWERS[0], address_line="1号\x00楼")]
    err = refused(ctx, "borrowers", write_csv(tmp_path / "b.csv", csv_rows))
    assert where(err) == [("b.csv row 2 (line 3)", "address_line")]


def test_tabs_and_line_breaks_in_free_text_are_kept(ctx, tmp_path):
    rows = [dict(BORROWERS[0], address_line="北京市\t朝阳区\r\n1号")]
    assert import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", rows)).inserted == 1


@pytest.mark.parametrize("change", [{"product": "cash\x00"}, {"agency_id": "A\x001"}])
def test_a_control_character_in_a_loan_is_refused_by_either_parser(ctx, tmp_path, monkeypatch, change):
    import parley.services.imports as imports

    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    for parallel in (False, True):
        monkeypatch.setattr(imports, "PARALLEL_ABOVE_BYTES", 0 if parallel else 4_000_000)
        err = refused(ctx, "loans", write_csv(tmp_path / "l.csv", [LOANS[0], dict(LOANS[1], **change)]))
        assert where(err) == [("l.csv row 2 (line 3)", next(iter(change)))], parallel


def test_a_control_character_in_a_looked_up_id_is_refused_not_sent_to_the_database(ctx, tmp_path):
    load_book(ctx, tmp_path)
    err = refused(ctx, "payments", write_csv(tmp_path / "p.csv", [PAYMENT, dict(PAYMENT, payment_id="P2", loan_id="L\x001")]))
    assert where(err) == [("p.csv row 2 (line 3)", "loan_id")]
    rows = [{"loan_id": "L\x001", "number": "1", "due_on": "2026-02-05", "principal_due": "1.00", "interest_due": "0"}]
    err = refused(ctx, "installments", write_csv(tmp_path / "i.csv", rows))
    assert where(err) == [("i.csv row 1 (line 2)", "loan_id")]


# --- JSON Lines ----------------------------------------------------------------------------------


def test_a_json_key_given_twice_is_refused_naming_row_and_key(ctx, tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [BORROWERS[1]])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"borrower_id": "B9", "name": "A", "phone": "+8613700137009", "name": "B"}\n')
    err = refused(ctx, "borrowers", path)
    assert where(err) == [("b.jsonl row 2 (line 2)", "name")] and "given twice" in err.message


def test_a_json_key_given_twice_inside_a_nested_object_is_refused_too(ctx, tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"borrower_id": "B9", "name": "A", "phone": "+8613700137009", '
                    '"third_parties": [{"name": "X", "relation": "family", "relation": "friend"}]}\n')
    err = refused(ctx, "borrowers", path)
    assert where(err) == [("b.jsonl row 1 (line 1)", "relation")]


# --- dates past what can be stored -------------------------------------------------------------


def test_a_loan_whose_schedule_runs_past_the_year_9999_is_refused(ctx, tmp_path):
    import_file(ctx, "borrowers", write_csv(tmp_path / "b.csv", BORROWERS))
    far = dict(LOANS[1], disbursed_on="9999-01-01", first_due_on="9999-02-01", term="24")
    err = refused(ctx, "loans", write_csv(tmp_path / "l.csv", [LOANS[0], far]))
    assert where(err) == [("l.csv row 2 (line 3)", "first_due_on")]
    assert orphan_installments(ctx) == 0
