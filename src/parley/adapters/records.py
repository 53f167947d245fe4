"""Streaming readers for CSV and JSON Lines files: rows as dicts of strings, with row numbers.

JSON numbers are kept as their literal text (never parsed to float), so "amount": 1234.56 in a
JSON Lines file is exactly the string "1234.56" by the time it reaches `parse_minor`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parley.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One record from a file: `row` is 1-based among data records, `line` the file line."""

    row: int
    line: int
    values: dict[str, Any]

    def where(self, name: str) -> str:
        return f"{name} row {self.row} (line {self.line})"


def keep_literal(text: str) -> str:
    """json.loads hook: numbers stay their literal text, so amounts never pass through float."""
    return text


def check_header(name: str, header: Sequence[str], required: tuple[str, ...]) -> None:
    """Every required column present, none twice; InvalidInput names the first missing one."""
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidInput(
            f"missing required column(s): {', '.join(missing)}",
            record=f"{name} header",
            field=missing[0],
        )
    if len(set(header)) != len(header):
        raise InvalidInput("duplicate column names in header", record=f"{name} header")


def read_records(
    path: Path, required: tuple[str, ...], progress: Callable[[int], None] | None = None
) -> Iterator[SourceRow]:
    """Yield the file's records in order; bad headers or lines raise InvalidInput naming them."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path, required, progress)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path, required, progress)
    else:
        raise InvalidInput("unsupported file type: use .csv or .jsonl", record=path.name)


def _read_csv(
    path: Path, required: tuple[str, ...], progress: Callable[[int], None] | None
) -> Iterator[SourceRow]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InvalidInput("the file is empty (no header row)", record=path.name) from None
        check_header(path.name, header, required)
        try:
            for row, fields in csv_rows(reader, len(header)):
                if progress is not None and row % 1000 == 0:
                    progress(fh.buffer.tell())
                yield SourceRow(row, reader.line_num, dict(zip(header, fields, strict=True)))
        except RowError as exc:
            raise _invalid(path.name, exc) from None


class RowError(ValueError):
    """A bad data row: ``row`` counts data rows from 1 (blank lines are not rows), ``line`` the
    file's lines; ``field`` when one field is to blame ("" = the row as a whole, as
    ``InvalidInput`` has it)."""

    def __init__(self, row: int, line: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.row, self.line, self.message, self.field = row, line, message, field


def csv_rows(reader: Any, width: int) -> Iterator[tuple[int, list[str]]]:
    """The data rows a ``csv.reader`` gives after the header, numbered from 1; a row of another
    width than the header's raises ``RowError``. Both readers — the sequential one here and the
    byte-range one — number and check rows here and in ``json_rows``, so their errors agree."""
    row = 0
    for fields in reader:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        row += 1
        if len(fields) != width:
            raise RowError(row, reader.line_num, f"expected {width} fields, found {len(fields)}")
        yield row, fields


def json_rows(lines: Iterable[str], required: tuple[str, ...]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(row, line, object) for each non-blank JSON Lines line: numbers as their literal text,
    never floats; ``RowError`` for bad JSON, a non-object or a missing required field."""
    row = 0
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row += 1
        try:
            obj = json.loads(line, parse_float=keep_literal, parse_int=keep_literal)
        except json.JSONDecodeError as exc:
            raise RowError(row, line_no, f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise RowError(row, line_no, "each line must be a JSON object")
        missing = [c for c in required if c not in obj]
        if missing:
            raise RowError(row, line_no, "missing required field", missing[0])
        yield row, line_no, obj


def _invalid(name: str, exc: RowError) -> InvalidInput:
    return InvalidInput(exc.message, record=f"{name} row {exc.row} (line {exc.line})", field=exc.field)


def _read_jsonl(
    path: Path, required: tuple[str, ...], progress: Callable[[int], None] | None
) -> Iterator[SourceRow]:
    with path.open("r", encoding="utf-8-sig") as fh:
        try:
            for row, line_no, obj in json_rows(fh, required):
                if progress is not None and row % 1000 == 0:
                    progress(fh.buffer.tell())
                yield SourceRow(row, line_no, obj)
        except RowError as exc:
            raise _invalid(path.name, exc) from None
