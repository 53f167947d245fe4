"""The loans import: loans and their generated schedules, streamed in chunks, in one transaction.

A million loans make about ten million instalments. Generating them is pure Python, so it runs
in child processes (one per core); writing them is the database's work, in this process, in the
import's one transaction. What must not sit between the two is per-row Python in this process.
An earlier design had this process read the rows and pickle them to the children, and receive
the schedules back as ten million pickled tuples: that shipping cost this process more than the
writing. So now:

- the children read byte ranges of the file themselves (`adapters.record_ranges`); nothing but
  two offsets goes out to them;
- each range comes back as one `LoanChunk`: flat lists of ids and hashes for the checks made
  here, and every loan and its schedule already encoded for the database's bulk path: COPY
  text for PostgreSQL; for SQLite the schedule as JSON, which `json_each` unpacks in C
  (`INSERT … SELECT … FROM json_each(?)`, no Python tuple per instalment in this process), and
  the loans as marshalled tuples for `executemany` (json_each re-reads a row's whole array for
  each of a loan's 17 columns, which made it the slower way for loans; marshal is not pickle:
  no code runs on loading, and both ends are the same Python);
- this process checks each chunk (borrowers exist, loans new or unchanged: one query each) and
  writes it, while the children parse the next ones. At most `AHEAD` chunks are in flight, so
  memory stays the same however long the file.

Files below `imports.PARALLEL_ABOVE_BYTES` are parsed here, in the same chunks, without children.
A CSV file with quote characters cannot be cut safely (a quoted field may span lines); this
process then reads it in order and sends the rows to the children, as before.

Row numbers in errors are those of the whole file: each chunk counts rows and lines from its
start, and chunks are taken in file order, adding what came before.
"""

from __future__ import annotations

import marshal
import multiprocessing
import sqlite3
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from parley.adapters.record_ranges import RangePlan, RangeReader, plan_ranges
from parley.adapters.records import RowError, SourceRow, read_records
from parley.errors import InvalidInput
from parley.services import imports
from parley.services.context import Context
from parley.services.imports import (
    ImportReport,
    _existing,
    _fast_loan,
    _LoanRec,
    _parse_loan_slowly,
    _unknown,
    dedupe,
)
from parley.store.db import bulk_copy_text, bulk_insert, db_datetime
from parley.store.models.loanbook import Borrower, Loan

PARSERS = 2  # child processes parsing while this one writes (the machine has two cores)
AHEAD = 2 * PARSERS  # chunks in flight: enough to keep both children busy, and memory bounded
RANGE_BYTES = 1 << 20  # about 10,000 loans per chunk

LOAN_COLUMNS = (
    "id",
    "borrower_id",
    "currency",
    "principal",
    "annual_rate",
    "term",
    "method",
    "day_count",
    "disbursed_on",
    "first_due_on",
    "product",
    "agency_id",
    "schedule_source",
    "status",
    "content_hash",
    "created_at",
    "oldest_unpaid_due_on",
)
# The paid_* caches start at their server defaults (0 / NULL): fewer columns, faster writes.
SCHEDULE_COLUMNS = ("loan_id", "number", "borrower_id", "due_on", "principal_due", "interest_due")


@dataclass(frozen=True)
class Encoding:
    """How a child encodes rows for this database: `copy` for PostgreSQL (COPY text), else
    SQLite's forms (see the module). `created_at` is the import's one timestamp, already in
    the form the database stores."""

    copy: bool
    created_at: str


@dataclass
class LoanChunk:
    """One slice of the file, parsed.

    Per good loan, in file order: `ids`, `borrower_ids`, `hashes`, where it was (`rows`,
    `lines`, counted from the chunk's start plus `row_base` / `line_base`), how many
    instalments it has, its loan row (`loans`: COPY lines; SQLite: `loan_rows`, a marshalled
    list of tuples) and its schedule (COPY text or JSON; "" for a loan whose lender sends
    the schedule). `errors` holds (row, line, field, message) for bad rows;
    `stop` a problem that ended reading (a malformed line). `row_count` / `line_count`: rows
    and physical lines the slice held; `end`: the byte offset reached, for progress (0: none).
    """

    ids: list[str] = field(default_factory=list)
    borrower_ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    loans: list[str] = field(default_factory=list)
    loan_rows: bytes = b""
    schedules: list[str] = field(default_factory=list)
    errors: list[tuple[int, int, str, str]] = field(default_factory=list)
    stop: tuple[int, int, str, str] | None = None
    row_count: int = 0
    line_count: int = 0
    end: int = 0
    row_base: int = 0
    line_base: int = 0

    def where(self, name: str, row: int, line: int) -> str:
        """As `SourceRow.where` says it, numbered in the whole file."""
        return f"{name} row {self.row_base + row} (line {self.line_base + line})"

    def error(self, name: str, row: int, line: int, fld: str, message: str) -> InvalidInput:
        return InvalidInput(message, record=self.where(name, row, line), field=fld)


# --------------------------------------------------------------------------- encoding (children)


@lru_cache(maxsize=4096)
def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _add(chunk: LoanChunk, tuples: list[tuple[Any, ...]], rec: _LoanRec, src: SourceRow, enc: Encoding) -> None:
    """Append one parsed loan, encoded. Ids, codes, dates and hashes are validated to plain
    characters ([A-Za-z0-9._:-], digits, ISO dates, hex), so only the free-text fields
    (rate text as given, product, agency) are escaped for COPY."""
    chunk.ids.append(rec.id)
    chunk.borrower_ids.append(rec.borrower_id)
    chunk.hashes.append(rec.hash)
    chunk.rows.append(src.row)
    chunk.lines.append(src.line)
    chunk.counts.append(len(rec.schedule))
    first_due = rec.first_due_on.isoformat()
    # the last column, the oldest unpaid due date: a generated schedule's first instalment
    # falls due on first_due_on; a lender's own schedule fills it in when it is imported
    if enc.copy:
        chunk.loans.append(
            "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tactive\t%s\t%s\t%s\n"  # noqa: UP031 (fastest here)
            % (rec.id, rec.borrower_id, rec.currency, rec.principal, _copy_text(rec.rate_text), rec.term,
               rec.method, rec.day_count, rec.disbursed_on.isoformat(), first_due, _copy_text(rec.product),
               "\\N" if rec.agency_id is None else _copy_text(rec.agency_id), rec.schedule_source, rec.hash,
               enc.created_at, first_due if rec.schedule else "\\N")
        )
        chunk.schedules.append("".join("%s\t%d\t%s\t%s\t%d\t%d\n" % row for row in rec.schedule))  # noqa: UP031
    else:
        tuples.append(
            (rec.id, rec.borrower_id, rec.currency, rec.principal, rec.rate_text, rec.term, rec.method,
             rec.day_count, rec.disbursed_on.isoformat(), first_due, rec.product, rec.agency_id,
             rec.schedule_source, "active", rec.hash, enc.created_at, first_due if rec.schedule else None)
        )
        chunk.schedules.append(",".join('["%s",%d,"%s","%s",%d,%d]' % row for row in rec.schedule))  # noqa: UP031


def _parse_into(chunk: LoanChunk, rows: Iterable[SourceRow], name: str, enc: Encoding) -> None:
    tuples: list[tuple[Any, ...]] = []
    try:
        for src in rows:
            try:
                rec = _fast_loan(src.values) or _parse_loan_slowly(src, name)
            except InvalidInput as exc:
                chunk.errors.append((src.row, src.line, exc.field, exc.message))
                continue
            _add(chunk, tuples, rec, src, enc)
    finally:  # also when a malformed line stops the range: the rows before it still count
        if tuples:
            chunk.loan_rows = marshal.dumps(tuples)


def chunk_from_rows(rows: list[SourceRow], name: str, enc: Encoding) -> LoanChunk:
    """Parse rows already read (numbered in the whole file)."""
    chunk = LoanChunk(row_count=len(rows))
    _parse_into(chunk, rows, name, enc)
    return chunk


def chunk_from_range(path: Path, plan: RangePlan, start: int, end: int, enc: Encoding) -> LoanChunk:
    """Read and parse bytes start..end of the file (in a child process)."""
    reader = RangeReader(path, plan, imports.REQUIRED["loans"], start, end)
    chunk = LoanChunk(end=end)
    try:
        _parse_into(chunk, reader, path.name, enc)
    except RowError as exc:  # a malformed line: the chunk stops there
        chunk.stop = (exc.row, exc.line, exc.field, exc.message)
    chunk.row_count, chunk.line_count = reader.rows, reader.lines
    return chunk


# --------------------------------------------------------------------------- the chunks, in order


def _batches(rows: Iterator[SourceRow]) -> Iterator[list[SourceRow]]:
    batch: list[SourceRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= imports.CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _chunks(path: Path, enc: Encoding, progress: Any) -> Generator[LoanChunk, None, None]:
    """The file's chunks in order, parsed here (small files) or by child processes."""
    required = imports.REQUIRED["loans"]
    if path.stat().st_size <= imports.PARALLEL_ABOVE_BYTES:
        for batch in _batches(read_records(path, required, progress)):
            yield chunk_from_rows(batch, path.name, enc)
        return
    plan = plan_ranges(path, required)
    # fork: the children need nothing but the code; the open database connection they inherit
    # is never touched (they leave by os._exit, which sends nothing on its socket)
    pool = ProcessPoolExecutor(max_workers=PARSERS, mp_context=multiprocessing.get_context("fork"))
    try:
        if plan is None:
            jobs: Iterator[Future[LoanChunk]] = (
                pool.submit(chunk_from_rows, batch, path.name, enc)
                for batch in _batches(read_records(path, required, progress))
            )
            yield from _in_order(jobs)
            return
        row_base, line_base = 0, plan.lines_before
        for chunk in _in_order(pool.submit(chunk_from_range, path, plan, s, e, enc) for s, e in plan.ranges(path, RANGE_BYTES)):
            chunk.row_base, chunk.line_base = row_base, line_base
            row_base += chunk.row_count
            line_base += chunk.line_count
            yield chunk
            if progress is not None:
                progress(chunk.end)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(jobs: Iterator[Future[LoanChunk]]) -> Iterator[LoanChunk]:
    """Results in submission order with at most AHEAD submitted and not yet taken. A problem
    reading the file (raised by `jobs`) comes after the chunks before it, as it would in order."""
    pending: deque[Future[LoanChunk]] = deque()
    stop: InvalidInput | None = None
    try:
        for job in jobs:
            pending.append(job)
            if len(pending) >= AHEAD:
                yield pending.popleft().result()
    except InvalidInput as exc:
        stop = exc
    while pending:
        yield pending.popleft().result()
    if stop is not None:
        raise stop


# --------------------------------------------------------------------------- checks and writes (this process)


def import_loans(
    ctx: Context,
    conn: Connection,
    path: Path,
    report: ImportReport,
    errors: list[InvalidInput],
    progress: Any = None,
) -> None:
    """Check and write the loans file chunk by chunk; stop collecting at `imports.MAX_ERRORS`.
    Writes happen only while no error has been seen (the caller rolls back if any was)."""
    enc = Encoding(conn.dialect.name == "postgresql", str(db_datetime(conn, ctx.clock.now())))
    with _key_built_at_the_end(conn, path), closing(_chunks(path, enc, progress)) as chunks:
        for chunk in chunks:
            report.rows += chunk.row_count
            _check_and_write(conn, chunk, path.name, report, errors)
            if chunk.stop is not None:
                errors.append(chunk.error(path.name, *chunk.stop))
                return
            if len(errors) >= imports.MAX_ERRORS:
                return


DEFER_KEY_ABOVE_BYTES = 50_000_000  # about half a million loans


@contextmanager
def _key_built_at_the_end(conn: Connection, path: Path) -> Iterator[None]:
    """PostgreSQL, a large file into an empty `installment` table: drop its primary key for the
    load and add it back, the same constraint under the same name, before the transaction ends.

    Why: maintaining the key row by row was a third of the server's work in a COPY of millions
    of instalments; building it once from a sort costs about a third of that. Only when the
    table is empty, where nothing is lost by rebuilding; the ALTER holds an exclusive lock on
    the table until commit, which no reader of an empty table is waiting for. Duplicates cannot
    arise (loans are checked for duplicates before their schedules are written), and if the
    key could not be added back the whole import would fail and roll back, key included.
    """
    if conn.dialect.name != "postgresql" or path.stat().st_size <= DEFER_KEY_ABOVE_BYTES:
        yield
        return
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM installment)")).scalar():
        yield
        return
    key = conn.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conrelid = 'installment'::regclass AND contype = 'p'")).one_or_none()
    if key is None:
        yield
        return
    name, definition = key
    conn.execute(text(f'ALTER TABLE installment DROP CONSTRAINT "{name}"'))
    yield
    conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))  # sort in memory, not on disk
    conn.execute(text(f'ALTER TABLE installment ADD CONSTRAINT "{name}" {definition}'))


def _check_and_write(
    conn: Connection, chunk: LoanChunk, name: str, report: ImportReport, errors: list[InvalidInput]
) -> None:
    """Bad rows, unknown borrowers, and loans stored (or earlier in the file) with other
    content are errors; the same content again is a no-op (the rule is `imports.dedupe`'s);
    the rest is written."""
    for row, line, fld, message in chunk.errors:
        errors.append(chunk.error(name, row, line, fld, message))
    unknown = _unknown(conn, Borrower.id, sorted(set(chunk.borrower_ids)))
    refused: set[int] = set()
    if unknown:  # rare: the usual chunk skips this loop altogether
        for k, borrower_id in enumerate(chunk.borrower_ids):
            if borrower_id in unknown:
                refused.add(k)
                errors.append(chunk.error(name, chunk.rows[k], chunk.lines[k], "borrower_id",
                                          f"unknown borrower {borrower_id!r}"))
    stored = _existing(conn, Loan.id, Loan.content_hash, chunk.ids)
    fresh = dedupe(chunk.ids, chunk.hashes, stored, "loan", report, errors,
                   lambda k: chunk.where(name, chunk.rows[k], chunk.lines[k]), refused)
    if errors or not fresh:
        return
    everything = len(fresh) == len(chunk.ids)
    schedules = [s for s in (chunk.schedules if everything else (chunk.schedules[k] for k in fresh)) if s]
    if conn.dialect.name == "postgresql":
        bulk_copy_text(conn, "loan", LOAN_COLUMNS, "".join(chunk.loans if everything else (chunk.loans[k] for k in fresh)))
        if schedules:
            bulk_copy_text(conn, "installment", SCHEDULE_COLUMNS, "".join(schedules))
    else:
        rows = marshal.loads(chunk.loan_rows)
        bulk_insert(conn, "loan", LOAN_COLUMNS, rows if everything else [rows[k] for k in fresh])
        if schedules:
            _insert_json(conn, "installment", SCHEDULE_COLUMNS, schedules)
    report.inserted += len(fresh)
    report.installments += sum(chunk.counts[k] for k in fresh)


# `value->>N` (SQLite 3.38+) is a third faster than json_extract, which older SQLite still has.
# Only the schedule goes this way; its text is made of ids, ISO dates and integers only.
_PICK = "value->>{}" if sqlite3.sqlite_version_info >= (3, 38) else "json_extract(value, '$[{}]')"


def _insert_json(conn: Connection, table: str, columns: tuple[str, ...], rows: list[str]) -> None:
    """SQLite: insert rows given as JSON arrays (one per row, in column order), in one statement."""
    picks = ", ".join(_PICK.format(i) for i in range(len(columns)))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picks} FROM json_each(?)"
    conn.exec_driver_sql(sql, ("[" + ",".join(rows) + "]",))
