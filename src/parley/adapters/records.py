"""Streaming readers for CSV and JSON Lines files: rows as dicts of strings, with row numbers.

JSON numbers are kept as their literal text (never parsed to float), so "amount": 1234.56 in a
JSON Lines file is exactly the string "1234.56" by the time it reaches `parse_minor`.
"""

from __future__ import annotations

import codecs
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
        except csv.Error as exc:
            raise InvalidInput(_csv_message(exc), record=f"{path.name} header") from None
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        check_header(path.name, header, required)
        try:
            for row, fields in csv_rows(reader, len(header)):
                if progress is not None and row % 1000 == 0:
                    progress(fh.buffer.tell())
                yield SourceRow(row, reader.line_num, dict(zip(header, fields, strict=True)))
        except RowError as exc:
            raise _invalid(path.name, exc) from None
        except UnicodeDecodeError:
            raise not_utf8(path) from None


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
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            row += 1
            if len(fields) != width:
                raise RowError(row, reader.line_num, f"expected {width} fields, found {len(fields)}")
            yield row, fields
    except csv.Error as exc:  # the row being read when the reader gave up is the next one
        raise RowError(row + 1, reader.line_num, _csv_message(exc)) from None


def _csv_message(exc: csv.Error) -> str:
    text = str(exc)
    if text.startswith("field larger than field limit"):
        return f"field too long: a field is longer than {csv.field_size_limit():,} characters"
    return f"not valid CSV: {text}"


JsonPath = tuple[str | int, ...]


class _Duplicated(dict[str, Any]):
    """An object that had ``key`` more than once (only ever seen while looking for it)."""

    key: str


class DuplicateKeyError(ValueError):
    """A JSON object gives a key twice; ``path`` leads to it (the first in document order)."""

    def __init__(self, path: JsonPath) -> None:
        super().__init__(f"the key {path[-1]!r} is given twice")
        self.path = path


def _first_duplicate(value: Any) -> JsonPath:
    stack: list[tuple[JsonPath, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Duplicated):
            return (*path, node.key)
        if isinstance(node, dict):
            items: list[tuple[str | int, Any]] = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        stack.extend(((*path, k), v) for k, v in reversed(items))  # first in document order
    raise AssertionError("a duplicate was seen but not found")  # pragma: no cover


def loads_unique(raw: bytes | str, **json_options: Any) -> Any:
    """``json.loads`` (with ``json_options``), except that an object giving a key twice raises
    DuplicateKeyError with the path to it. Python's ``json`` keeps the last of two equal keys,
    so a record could say two things and be read as one of them; I-JSON (RFC 7493) forbids it.
    The importers' JSON Lines and the API's bodies are read with it."""
    seen_duplicate = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_duplicate
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen_duplicate = True
        dup = _Duplicated(obj)
        keys: set[str] = set()
        for k, _ in items:
            if k in keys:
                dup.key = k
                break
            keys.add(k)
        return dup

    value = json.loads(raw, object_pairs_hook=pairs, **json_options)
    if seen_duplicate:
        raise DuplicateKeyError(_first_duplicate(value))
    return value


def json_rows(lines: Iterable[str], required: tuple[str, ...]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(row, line, object) for each non-blank JSON Lines line: numbers as their literal text,
    never floats; ``RowError`` for bad JSON, a non-object or a missing required field."""
    row = 0
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row += 1
        try:
            obj = loads_unique(line, parse_float=keep_literal, parse_int=keep_literal)
        except json.JSONDecodeError as exc:
            raise RowError(row, line_no, f"not valid JSON: {exc.msg}") from None
        except DuplicateKeyError as exc:
            key = str(exc.path[-1])
            key = key if key.isprintable() else ascii(key)  # a face must be able to print it
            raise RowError(row, line_no, str(exc), key) from None
        if not isinstance(obj, dict):
            raise RowError(row, line_no, "each line must be a JSON object")
        missing = [c for c in required if c not in obj]
        if missing:
            raise RowError(row, line_no, "missing required field", missing[0])
        yield row, line_no, obj


def not_utf8(path: Path) -> InvalidInput:
    """The error for a file that does not decode as UTF-8: the byte where it stops, and the
    row and field holding it when they can be told. Only called once decoding has failed, so
    it may read the file again."""
    offset, line = _first_bad_byte(path)
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return InvalidInput(f"the file is UTF-16 text, not UTF-8 (byte {offset}): save it as UTF-8",
                            record=path.name)
    message = f"the file is not UTF-8 text at byte {offset}: save it as UTF-8"
    try:
        where = _bad_text_row(path)
    except (ValueError, InvalidInput, csv.Error):  # a worse problem earlier: name the line only
        where = None
    if where is None:
        return InvalidInput(message, record=f"{path.name} line {line}")
    record, field = where
    return InvalidInput(message, record=record, field=field)


def _first_bad_byte(path: Path) -> tuple[int, int]:
    """(offset of the first byte that is not UTF-8, 1-based line it is on), for a file that
    does not decode; (size, lines) if it does after all."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with path.open("rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # the decoder holds back an unfinished sequence from the block before
                at = offset - (len(exc.object) - len(block)) + exc.start
                return at, line + _count_lines(path, offset, at)
            if not block:
                return offset, line
            line += block.count(b"\n")
            offset += len(block)


def _count_lines(path: Path, start: int, end: int) -> int:
    if end <= start:
        return 0
    with path.open("rb") as fh:
        fh.seek(start)
        return fh.read(end - start).count(b"\n")


def _bad_text_row(path: Path) -> tuple[str, str] | None:
    """(record, field) of the first value holding an undecodable byte, read as the importer
    reads (so rows and lines are numbered the same), the bytes kept as U+DC80..U+DCFF."""
    def bad(value: object) -> bool:
        return isinstance(value, str) and any("\udc80" <= c <= "\udcff" for c in value)

    name = path.name
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="" if path.suffix.lower() == ".csv" else None) as fh:
        if path.suffix.lower() == ".csv":
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if any(map(bad, header)):
                return f"{name} header", ""
            for row, fields in csv_rows(reader, len(header)):
                for column, value in zip(header, fields, strict=True):
                    if bad(value):
                        return f"{name} row {row} (line {reader.line_num})", column
            return None
        row = 0
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row += 1
            if bad(line):
                field = ""
                try:
                    obj = json.loads(line, parse_float=keep_literal, parse_int=keep_literal)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    field = next((k for k, v in obj.items()
                                  if bad(json.dumps(v, ensure_ascii=False)) and not bad(k)), "")
                return f"{name} row {row} (line {line_no})", field
    return None


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
        except UnicodeDecodeError:
            raise not_utf8(path) from None
