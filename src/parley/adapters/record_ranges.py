"""Cutting a CSV or JSON Lines file into byte ranges that separate processes read on their own.

Why: when one process reads a large file and ships the rows to parsing processes, pickling the
rows costs the reader about as much as reading them, and that reader is also the one writing to
the database. Handing out byte ranges instead costs nothing to ship; each parser reads its range.

A file is cut only at line ends that cannot fall inside a record. A JSON Lines record never
holds a raw line break (JSON escapes them), so any line end will do. A CSV field in quotes may
span lines, and only a reader going from the start can tell which line ends are inside quotes,
so a CSV file is cut only if it has no quote character at all; otherwise `plan_ranges` returns
None and the caller reads the file in order (`records.read_records`).

Rows and lines are counted from the start of each range; `RangeReader` reports how many of each
its range held, so the caller, taking the ranges in order, adds what came before. Row and line
numbers, blank lines, line ends and errors follow `records.read_records` exactly (a test
compares the two on awkward files).
"""

from __future__ import annotations

import csv
import io
import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from parley.adapters.records import (
    SourceRow,
    check_header,
    csv_rows,
    json_rows,
)


@dataclass(frozen=True)
class RangePlan:
    """How to read a file in pieces.

    fmt: "csv" or "jsonl".
    header: the CSV column names (empty for JSON Lines).
    lines_before: physical lines before the data (the CSV header line; 0 for JSON Lines).
    start: byte offset where the data begins.
    """

    fmt: str
    header: tuple[str, ...]
    lines_before: int
    start: int

    def ranges(self, path: Path, target_bytes: int) -> Iterator[tuple[int, int]]:
        """(start, end) byte offsets of about `target_bytes`, in file order, each ending just
        after a line end (or at the end of the file). Found as they are asked for, so a long
        file costs no memory here."""
        size = path.stat().st_size
        start = self.start
        if start >= size:
            return
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            while start < size:
                cut = min(start + max(target_bytes, 1), size)
                if cut < size:
                    newline = data.find(b"\n", cut - 1)
                    cut = size if newline == -1 else newline + 1
                yield start, cut
                start = cut


def plan_ranges(path: Path, required: tuple[str, ...]) -> RangePlan | None:
    """How to cut the file (see `RangePlan.ranges`), or None if it must be read in order.

    Checks the CSV header as `read_records` does (same errors), so a bad header is reported
    before any work is handed out.
    """
    fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    size = path.stat().st_size
    if fmt is None or size == 0:
        return None
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        header: tuple[str, ...] = ()
        start = lines_before = 0
        if fmt == "csv":
            if data.find(b'"') != -1:
                return None
            end_of_header = data.find(b"\n")
            start = size if end_of_header == -1 else end_of_header + 1
            text = data[:start].decode("utf-8-sig")
            if "\r" in text.rstrip("\r\n") or text.endswith("\r\r\n"):
                return None  # old Mac line ends: leave them to the sequential reader
            header = tuple(h.strip() for h in next(csv.reader([text.rstrip("\r\n")]), []))
            check_header(path.name, header, required)
            lines_before = 1
    return RangePlan(fmt, header, lines_before, start)


class RangeReader:
    """The records of one range, numbered from 1 within it; `rows` and `lines` hold how many
    records and physical lines the range had once iteration has finished."""

    def __init__(self, path: Path, plan: RangePlan, required: tuple[str, ...], start: int, end: int) -> None:
        self.path, self.plan, self.required, self.start, self.end = path, plan, required, start, end
        self.rows = 0
        self.lines = 0

    def _text(self) -> str:
        with self.path.open("rb") as fh:
            fh.seek(self.start)
            raw = fh.read(self.end - self.start)
        # a range starts after a line end, never inside a UTF-8 sequence; only the very first
        # range of a JSON Lines file can start with a byte-order mark
        return raw.decode("utf-8-sig" if self.start == 0 else "utf-8")

    def __iter__(self) -> Iterator[SourceRow]:
        if self.plan.fmt == "csv":
            return self._csv()
        return self._jsonl()

    def _csv(self) -> Iterator[SourceRow]:
        # newline="" as the sequential reader opens the file: \r\n, \n and \r all end a line
        reader = csv.reader(io.StringIO(self._text(), newline=""))
        header = self.plan.header
        row = 0
        for row, fields in csv_rows(reader, len(header)):  # RowError stops the range
            yield SourceRow(row, reader.line_num, dict(zip(header, fields, strict=True)))
        self.rows, self.lines = row, reader.line_num

    def _jsonl(self) -> Iterator[SourceRow]:
        lines = io.StringIO(self._text(), newline=None).readlines()  # universal newlines, like open()
        row = 0
        for row, line_no, obj in json_rows(lines, self.required):  # RowError stops the range
            yield SourceRow(row, line_no, obj)
        self.rows, self.lines = row, len(lines)
