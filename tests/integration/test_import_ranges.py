"""Reading a file in byte ranges (as the parallel loans import does) must see exactly the rows,
row numbers, line numbers and errors that reading it in order sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.adapters.record_ranges import RangeReader, plan_ranges
from parley.adapters.records import RowError, read_records
from parley.errors import InvalidInput

REQUIRED = ("a", "b")


def in_ranges(path: Path, target: int) -> list[tuple[int, int, dict]]:
    """All rows, numbered in the whole file, the way loan_import adds up the ranges."""
    plan = plan_ranges(path, REQUIRED)
    assert plan is not None
    rows, row_base, line_base = [], 0, plan.lines_before
    for start, end in plan.ranges(path, target):
        reader = RangeReader(path, plan, REQUIRED, start, end)
        try:
            rows += [(row_base + r.row, line_base + r.line, r.values) for r in reader]
        except RowError as exc:
            raise InvalidInput(exc.message, record=f"{path.name} row {row_base + exc.row} (line {line_base + exc.line})",
                               field=exc.field) from None
        row_base += reader.rows
        line_base += reader.lines
    return rows


def in_order(path: Path) -> list[tuple[int, int, dict]]:
    return [(r.row, r.line, r.values) for r in read_records(path, REQUIRED)]


FILES = {
    "plain.csv": "a,b\n1,2\n3,4\n",
    "crlf-bom-blank.csv": "\ufeffa,b\r\n1,2\r\n\r\n3,4\r\n ,\r\n\r\n5,6",
    "lone-cr-in-data.csv": "a,b\n1,2\r3,4\n5,6\n",
    "utf8.csv": "a,b\n王伟,芳\n李,娜\n",
    "lines.jsonl": '\ufeff{"a": 1, "b": "x"}\n\n{"a": 2.50, "b": "王"}\r\n{"a": 3, "b": "y"}',
    "cr.jsonl": '{"a": 1, "b": "x"}\r{"a": 2, "b": "y"}\n',
}


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("target", [1, 7, 1 << 20])
def test_ranges_read_the_same_rows_as_the_sequential_reader(tmp_path, name, target):
    path = tmp_path / name
    path.write_bytes(FILES[name].encode("utf-8"))
    assert in_ranges(path, target) == in_order(path)


BAD = {
    "short.csv": "a,b\n1,2\n\n3\n5,6\n",
    "bad.jsonl": '{"a": 1, "b": 2}\n\n{"a": 1,\n',
    "not-object.jsonl": '{"a": 1, "b": 2}\n[1]\n',
    "missing.jsonl": '{"a": 1, "b": 2}\n{"a": 1}\n',
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("target", [1, 1 << 20])
def test_a_malformed_line_is_named_alike(tmp_path, name, target):
    path = tmp_path / name
    path.write_bytes(BAD[name].encode())
    with pytest.raises(InvalidInput) as seq:
        in_order(path)
    with pytest.raises(InvalidInput) as ranged:
        in_ranges(path, target)
    assert (ranged.value.record, ranged.value.field, ranged.value.message) == (seq.value.record, seq.value.field, seq.value.message)


def test_files_that_cannot_be_cut_are_left_to_the_sequential_reader(tmp_path):
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,b\n1,"two\nlines"\n')
    old_mac = tmp_path / "mac.csv"
    old_mac.write_text("a,b\r1,2\r", newline="")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert plan_ranges(quoted, REQUIRED) is None
    assert plan_ranges(old_mac, REQUIRED) is None
    assert plan_ranges(empty, REQUIRED) is None


def test_a_bad_header_is_named_as_the_sequential_reader_names_it(tmp_path):
    for text in ("a,c\n1,2\n", "a,b,a\n1,2,3\n"):
        path = tmp_path / "h.csv"
        path.write_text(text)
        with pytest.raises(InvalidInput) as seq:
            in_order(path)
        with pytest.raises(InvalidInput) as ranged:
            plan_ranges(path, REQUIRED)
        assert str(ranged.value) == str(seq.value)


def test_a_short_csv_row_is_named_by_data_row_and_file_line(tmp_path):
    """Both readers number rows through ``records.csv_rows``; this pins what that numbering is
    (blank lines are not rows), so a change to the shared helper cannot pass unnoticed."""
    path = tmp_path / "short.csv"
    path.write_bytes(BAD["short.csv"].encode())
    for read in (in_order, lambda p: in_ranges(p, 1)):
        with pytest.raises(InvalidInput) as err:
            read(path)
        assert err.value.record == "short.csv row 2 (line 4)"
        assert err.value.message == "expected 2 fields, found 1"
        assert err.value.field == ""  # the row as a whole, the same from both readers
