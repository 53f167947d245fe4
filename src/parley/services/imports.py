"""Importing the loan book: borrowers, loans (with generated schedules), instalments, payments.

One file is one transaction. Rows are parsed and checked as they stream in chunks; the chunk
is written only while no error has been seen; after the first error the rest of the file is
still checked (so one run reports up to `MAX_ERRORS` problems) and then everything rolls back.
Re-importing a record that is already there with the same content is a no-op; the same id
with different content is an error. References (a loan's borrower, a payment's loan) must
exist in the database or earlier in the same file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone
from sqlalchemy import ARRAY, Connection, String, bindparam, func, select

from parley.adapters.crypto import KeyRing, mask_phone
from parley.adapters.records import SourceRow, not_utf8, read_records
from parley.core.dates import DayCount
from parley.core.money import MoneyError, parse_minor, parse_rate
from parley.core.schedule import LoanTerms, RepaymentMethod, schedule_rows
from parley.core.text import ID, first_not_text, not_text_message
from parley.errors import InvalidInput, InvalidInputs
from parley.services.context import Context
from parley.services.payments import (
    PaymentRecord,
    paid_at_problem,
    post_payments,
    refresh_loan_cache,
)
from parley.store.db import bulk_insert, db_datetime
from parley.store.models.loanbook import Borrower, Installment, Loan, Payment

KINDS = ("borrowers", "loans", "installments", "payments")
REQUIRED = {
    "borrowers": ("borrower_id", "name", "phone"),
    "loans": (
        "loan_id",
        "borrower_id",
        "currency",
        "principal",
        "annual_rate",
        "term",
        "method",
        "disbursed_on",
        "first_due_on",
    ),
    "installments": ("loan_id", "number", "due_on", "principal_due", "interest_due"),
    "payments": ("payment_id", "loan_id", "paid_at", "amount"),
}
CHUNK = 5_000
MAX_ERRORS = 20
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_TYPES = ("mobile", "home", "work", "other")
RELATIONS = ("emergency_contact", "family", "employer", "friend", "other")
LANGUAGES = ("zh-Hans", "zh-Hant", "en")


@dataclass
class ImportReport:
    kind: str
    file: str
    rows: int = 0
    inserted: int = 0
    unchanged: int = 0
    installments: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "rows": self.rows,
            "inserted": self.inserted,
            "unchanged": self.unchanged,
            "installments": self.installments,
        }


class _Row:
    """Field access for one source row that raises InvalidInput naming file, row and field."""

    __slots__ = ("src", "where")

    def __init__(self, src: SourceRow, name: str) -> None:
        self.src = src
        self.where = src.where(name)

    def fail(self, name: str, message: str) -> InvalidInput:
        return InvalidInput(message, record=self.where, field=name)

    def text(self, name: str, *, required: bool = True, max_len: int = 200) -> str:
        raw = self.src.values.get(name)
        value = (
            "" if raw is None else str(raw).strip() if not isinstance(raw, (list, dict)) else None
        )
        if value is None:
            raise self.fail(name, "must be a string")
        if required and not value:
            raise self.fail(name, "is required")
        if len(value) > max_len:
            raise self.fail(name, f"is longer than {max_len} characters")
        return self.plain(name, value)

    def plain(self, name: str, value: str) -> str:
        """`value`, refused if it holds a character no text may hold (core.text.NOT_TEXT)."""
        if bad := first_not_text(value):
            raise self.fail(name, not_text_message(bad))
        return value

    def ident(self, name: str) -> str:
        value = self.text(name)
        if not ID.fullmatch(value):
            raise self.fail(
                name, f"{value!r} is not a valid id (letters, digits, . _ : -; at most 64)"
            )
        return value

    def day(self, name: str, *, required: bool = True) -> date | None:
        value = self.text(name, required=required, max_len=10)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.fail(name, f"{value!r} is not a date like 2026-03-31") from None

    def required_day(self, name: str) -> date:
        value = self.day(name)
        if value is None:  # day() raised already for a missing required value
            raise self.fail(name, "is required")
        return value

    def instant(self, name: str) -> datetime:
        value = self.text(name, max_len=40)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(name, f"{value!r} is not an ISO 8601 date-time") from None
        if parsed.tzinfo is None:
            raise self.fail(name, f"{value!r} needs a UTC offset, e.g. 2026-03-31T10:00:00+08:00")
        try:
            parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-12:00 is in the year 10000 in UTC
            raise self.fail(name, f"{value!r} is out of the range of dates that can be stored") from None
        return parsed

    def integer(
        self, name: str, lo: int, hi: int, *, required: bool = True, default: int = 0
    ) -> int:
        value = self.text(name, required=required, max_len=12)
        if not value:
            return default
        if not re.fullmatch(r"[+-]?\d+", value):
            raise self.fail(name, f"{value!r} is not a whole number")
        number = int(value)
        if not lo <= number <= hi:
            raise self.fail(name, f"{number} is outside {lo}..{hi}")
        return number

    def money(
        self, name: str, currency: str, *, required: bool = True, positive: bool = False
    ) -> int:
        value = self.text(name, required=required, max_len=24)
        if not value:
            return 0
        try:
            minor = parse_minor(value, currency)
        except MoneyError as exc:
            raise self.fail(name, str(exc)) from None
        if minor < 0 or (positive and minor == 0):
            raise self.fail(name, f"{value} must be {'positive' if positive else 'zero or more'}")
        return minor

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(name, required=default is None, max_len=40) or (default or "")
        if value not in allowed:
            raise self.fail(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value


def _digest(*parts: object) -> str:
    return hashlib.blake2b(
        "\x1f".join("" if p is None else str(p) for p in parts).encode(), digest_size=16
    ).hexdigest()


def known_jurisdictions() -> set[str]:
    from importlib import resources

    return {p.name.removesuffix(".yaml") for p in resources.files("parley.packs").iterdir()
            if p.name.endswith(".yaml")}


# --------------------------------------------------------------------------- borrowers


@dataclass
class _Phone:
    e164: str
    phone_type: str
    zones: str


@dataclass
class _BorrowerRec:
    id: str
    name: str
    language: str
    timezone: str | None
    jurisdiction: str
    id_number: str | None
    risk_score: int | None
    tags: str
    phones: list[_Phone]
    emails: list[str]
    address: dict[str, str] | None
    third_parties: list[dict[str, Any]]
    hash: str = ""
    where: str = ""


def _phone(r: _Row, name: str, raw: str) -> _Phone:
    phone_type, _, number = (
        raw.rpartition(":") if ":" in raw and not raw.startswith("+") else ("", "", raw)
    )
    number = number.strip()
    phone_type = phone_type.strip() or "mobile"
    if phone_type not in PHONE_TYPES:
        raise r.fail(name, f"phone type {phone_type!r} is not one of {', '.join(PHONE_TYPES)}")
    if not number.startswith("+"):
        raise r.fail(name, f"{number!r} is not in E.164 form (+ and country code)")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise r.fail(name, f"{number!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise r.fail(name, f"{number!r} is not a valid phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    zones = [z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown"]
    return _Phone(e164, phone_type, ",".join(zones))


def _list(r: _Row, name: str) -> list[Any]:
    raw = r.src.values.get(name)
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if isinstance(raw, str):
        return [p.strip() for p in raw.split(";") if p.strip()]
    raise r.fail(name, "must be a list or a ';'-separated string")


def parse_borrower(
    src: SourceRow, name: str, default_jurisdiction: str, jurisdictions: set[str]
) -> _BorrowerRec:
    r = _Row(src, name)
    bid = r.ident("borrower_id")
    full_name = r.text("name")
    phones = [
        _phone(
            r,
            "phone",
            f"{r.text('phone_type', required=False) or 'mobile'}:{r.text('phone', max_len=40)}",
        )
    ]
    for extra in _list(r, "phones"):
        phones.append(_phone(r, "phones", str(extra)))
    seen: set[str] = set()
    for p in phones:
        if p.e164 in seen:
            raise r.fail("phones", f"{p.e164} is listed twice")
        seen.add(p.e164)
    emails = [
        e
        for e in (
            [r.text("email", required=False, max_len=320)] + [str(x) for x in _list(r, "emails")]
        )
        if e
    ]
    for e in emails:
        if not _EMAIL.match(r.plain("email", e)):
            raise r.fail("email", f"{e!r} is not an e-mail address")
    language = r.choice("language", LANGUAGES, default="zh-Hans")
    tz = r.text("timezone", required=False, max_len=64) or None
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail("timezone", f"{tz!r} is not an IANA time zone") from None
    jurisdiction = r.text("jurisdiction", required=False, max_len=16) or default_jurisdiction
    if jurisdictions and jurisdiction not in jurisdictions:
        raise r.fail(
            "jurisdiction",
            f"{jurisdiction!r} has no rule pack (known: {', '.join(sorted(jurisdictions))})",
        )
    country = r.text("address_country", required=False, max_len=2).upper()
    address = None
    if country:
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise r.fail("address_country", f"{country!r} is not an ISO 3166 country code")
        address = {
            "country": country,
            "region": r.text("address_region", required=False, max_len=64),
            "city": r.text("address_city", required=False, max_len=100),
            "line": r.text("address_line", required=False, max_len=300),
            "postal_code": r.text("postal_code", required=False, max_len=20),
        }
    risk = r.integer("risk_score", 0, 1000, required=False, default=-1)
    tags = [t for t in (str(x).strip() for x in _list(r, "tags")) if t]
    for t in tags:
        if not re.fullmatch(r"[a-z0-9_\-]{1,40}", t):
            raise r.fail("tags", f"tag {t!r} must be lower-case letters, digits, _ or -")
    third = []
    raw_tp = r.src.values.get("third_parties")
    if isinstance(raw_tp, list):
        tp_items = raw_tp
    elif r.text("contact_name", required=False):
        tp_items = [
            {
                "name": r.text("contact_name"),
                "relation": r.text("contact_relation", required=False) or "emergency_contact",
                "phone": r.text("contact_phone", required=False, max_len=40),
            }
        ]
    else:
        tp_items = []
    for i, item in enumerate(tp_items):
        fname = f"third_parties[{i}]"
        if not isinstance(item, dict) or not str(item.get("name", "")).strip():
            raise r.fail(fname, "needs a name")
        relation = str(item.get("relation") or "emergency_contact")
        if relation not in RELATIONS:
            raise r.fail(f"{fname}.relation", f"{relation!r} is not one of {', '.join(RELATIONS)}")
        phone = _phone(r, f"{fname}.phone", str(item["phone"])) if item.get("phone") else None
        third.append({"name": r.plain(f"{fname}.name", str(item["name"]).strip()), "relation": relation,
                      "phone": phone})
    rec = _BorrowerRec(
        bid,
        full_name,
        language,
        tz,
        jurisdiction,
        r.text("id_number", required=False, max_len=40) or None,
        None if risk < 0 else risk,
        "," + ",".join(tags) + "," if tags else "",
        phones,
        emails,
        address,
        third,
    )
    rec.hash = _digest(
        bid,
        full_name,
        language,
        tz,
        jurisdiction,
        rec.id_number,
        rec.risk_score,
        rec.tags,
        [(p.e164, p.phone_type) for p in phones],
        emails,
        sorted(address.items()) if address else None,
        [(t["name"], t["relation"], t["phone"].e164 if t["phone"] else None) for t in third],
    )
    return rec


def _write_borrowers(
    conn: Connection, recs: list[_BorrowerRec], keys: KeyRing, now: datetime
) -> None:
    ts = db_datetime(conn, now)
    bulk_insert(
        conn,
        "borrower",
        (
            "id",
            "name",
            "preferred_language",
            "declared_timezone",
            "jurisdiction",
            "id_number_enc",
            "risk_score",
            "tags",
            "content_hash",
            "created_at",
            "audit_seq",
            "audit_head",
        ),
        (
            (
                b.id,
                b.name,
                b.language,
                b.timezone,
                b.jurisdiction,
                keys.encrypt(b.id_number, "borrower.id_number") if b.id_number else None,
                b.risk_score,
                b.tags,
                b.hash,
                ts,
                0,
                "",
            )
            for b in recs
        ),
    )
    bulk_insert(
        conn,
        "borrower_phone",
        (
            "borrower_id",
            "position",
            "phone_type",
            "e164_enc",
            "e164_index",
            "masked",
            "timezones",
            "is_valid",
        ),
        (
            (
                b.id,
                i,
                p.phone_type,
                keys.encrypt(p.e164, "phone.e164"),
                keys.blind_index(p.e164, "phone"),
                mask_phone(p.e164),
                p.zones,
                True,
            )
            for b in recs
            for i, p in enumerate(b.phones)
        ),
    )
    bulk_insert(
        conn,
        "borrower_email",
        ("borrower_id", "position", "address"),
        ((b.id, i, e) for b in recs for i, e in enumerate(b.emails)),
    )
    bulk_insert(
        conn,
        "borrower_address",
        ("borrower_id", "position", "country", "region", "city", "line_enc", "postal_code"),
        (
            (
                b.id,
                0,
                a["country"],
                a["region"],
                a["city"],
                keys.encrypt(a["line"], "address.line") if a["line"] else None,
                a["postal_code"],
            )
            for b in recs
            if (a := b.address)
        ),
    )
    bulk_insert(
        conn,
        "third_party",
        ("borrower_id", "name", "relation", "e164_enc", "e164_index", "masked", "timezones"),
        (
            (
                b.id,
                t["name"],
                t["relation"],
                keys.encrypt(t["phone"].e164, "phone.e164") if t["phone"] else None,
                keys.blind_index(t["phone"].e164, "phone") if t["phone"] else None,
                mask_phone(t["phone"].e164) if t["phone"] else "",
                t["phone"].zones if t["phone"] else "",
            )
            for b in recs
            for t in b.third_parties
        ),
    )


# --------------------------------------------------------------------------- loans


@dataclass
class _LoanRec:
    id: str
    borrower_id: str
    currency: str
    principal: int
    rate_text: str
    term: int
    method: str
    day_count: str
    disbursed_on: date
    first_due_on: date
    product: str
    agency_id: str | None
    schedule_source: str
    hash: str = ""
    schedule: list[tuple[Any, ...]] = field(default_factory=list)


_METHODS = {m.value: m for m in RepaymentMethod}
_DAY_COUNTS = {d.value: d for d in DayCount}
_rate = lru_cache(maxsize=4096)(parse_rate)


def _fast_loan(v: dict[str, Any]) -> _LoanRec | None:
    """The common case without per-field error plumbing; None sends the row to
    `_parse_loan_slowly`, which names the problem. Accepts exactly what that one accepts (a
    test checks it)."""
    try:
        loan_id, borrower_id = v["loan_id"].strip(), v["borrower_id"].strip()
        currency = v["currency"].strip().upper()
        principal = parse_minor(v["principal"], currency)
        rate_text = v["annual_rate"].strip()
        term_text = v["term"].strip()
        method = _METHODS.get(v["method"].strip())
        day_count = _DAY_COUNTS.get((v.get("day_count") or "").strip() or "30/360")
        disbursed = date.fromisoformat(v["disbursed_on"].strip())
        first_due = date.fromisoformat(v["first_due_on"].strip())
        product = (v.get("product") or "").strip()
        agency_id = (v.get("agency_id") or "").strip() or None
        source = (v.get("schedule") or "").strip() or "generated"
        if (
            not ID.fullmatch(loan_id) or not ID.fullmatch(borrower_id) or principal <= 0 or len(rate_text) > 16
            or not term_text.isdigit() or method is None or day_count is None or first_due <= disbursed
            or len(product) > 50 or (agency_id is not None and len(agency_id) > 64) or source not in ("generated", "imported")
            or len(v["disbursed_on"].strip()) > 10 or len(v["first_due_on"].strip()) > 10 or len(term_text) > 12
            or not product.isprintable() or (agency_id is not None and not agency_id.isprintable())
        ):
            return None
        term = int(term_text)
        rate = _rate(rate_text)
        if not 1 <= term <= 600 or rate > 10:
            return None
    except (KeyError, AttributeError, TypeError, ValueError, MoneyError):
        return None
    rec = _LoanRec(loan_id, borrower_id, currency, principal, rate_text, term, method.value, day_count.value, disbursed,
                   first_due, product, agency_id, source)
    rec.hash = _digest(loan_id, borrower_id, currency, principal, rate, term, method.value, day_count.value, disbursed,
                       first_due, product, agency_id, source)
    if source == "generated":
        try:
            dues, parts = schedule_rows(LoanTerms(principal, rate, term, method, day_count, first_due, disbursed))
        except (ValueError, OverflowError):  # a schedule past the year 9999: the careful parser names it
            return None
        # ISO strings: identical storage on SQLite, text COPY on PostgreSQL, no adapter cost.
        rec.schedule = [(loan_id, n, borrower_id, due.isoformat(), p, i) for n, (due, (p, i)) in enumerate(zip(dues, parts, strict=True), start=1)]
    return rec


def _parse_loan_slowly(src: SourceRow, name: str) -> _LoanRec:
    r = _Row(src, name)
    loan_id = r.ident("loan_id")
    borrower_id = r.ident("borrower_id")
    currency = r.text("currency", max_len=3).upper()
    try:
        parse_minor("0", currency)
    except MoneyError:
        raise r.fail("currency", f"{currency!r} is not a known ISO 4217 currency") from None
    principal = r.money("principal", currency, positive=True)
    rate_text = r.text("annual_rate", max_len=16)
    try:
        rate = parse_rate(rate_text)
    except MoneyError as exc:
        raise r.fail("annual_rate", str(exc)) from None
    if rate > 10:
        raise r.fail("annual_rate", f"{rate_text}% is not a plausible annual rate (over 1000%)")
    term = r.integer("term", 1, 600)
    method = r.choice("method", tuple(m.value for m in RepaymentMethod))
    day_count = r.choice("day_count", tuple(d.value for d in DayCount), default="30/360")
    disbursed = r.required_day("disbursed_on")
    first_due = r.required_day("first_due_on")
    if first_due <= disbursed:
        raise r.fail("first_due_on", f"{first_due} must be after disbursed_on {disbursed}")
    schedule_source = r.choice("schedule", ("generated", "imported"), default="generated")
    rec = _LoanRec(
        loan_id,
        borrower_id,
        currency,
        principal,
        rate_text,
        term,
        method,
        day_count,
        disbursed,
        first_due,
        r.text("product", required=False, max_len=50),
        r.text("agency_id", required=False, max_len=64) or None,
        schedule_source,
    )
    rec.hash = _digest(
        loan_id,
        borrower_id,
        currency,
        principal,
        rate,
        term,
        method,
        day_count,
        disbursed,
        first_due,
        rec.product,
        rec.agency_id,
        schedule_source,
    )
    if schedule_source == "generated":
        terms = LoanTerms(
            principal,
            rate,
            term,
            RepaymentMethod(method),
            DayCount(day_count),
            first_due,
            disbursed,
        )
        try:
            dues, parts = schedule_rows(terms)
        except (ValueError, OverflowError):  # date arithmetic past the year 9999
            raise r.fail("first_due_on", f"a {term}-instalment schedule from {first_due} would run past "
                         "the last date that can be stored") from None
        rec.schedule = [
            (loan_id, n, borrower_id, due.isoformat(), p, i)
            for n, (due, (p, i)) in enumerate(zip(dues, parts, strict=True), start=1)
        ]
    return rec


_INSTALLMENT_COLUMNS = ("loan_id", "number", "borrower_id", "due_on", "principal_due", "interest_due", "fee_due", "penalty_due")


# --------------------------------------------------------------------------- instalments (lender's own schedule)


@dataclass
class _InstallmentRec:
    loan_id: str
    number: int
    due_on: date
    principal_due: int
    interest_due: int
    fee_due: int
    penalty_due: int
    where: str


def parse_installment(
    src: SourceRow, name: str, currency_of: Callable[[str], str | None]
) -> _InstallmentRec:
    r = _Row(src, name)
    loan_id = r.ident("loan_id")
    currency = currency_of(loan_id)
    if currency is None:
        raise r.fail("loan_id", f"unknown loan {loan_id!r}")
    number = r.integer("number", 1, 600)
    due = r.required_day("due_on")
    return _InstallmentRec(
        loan_id,
        number,
        due,
        r.money("principal_due", currency),
        r.money("interest_due", currency),
        r.money("fee_due", currency, required=False),
        r.money("penalty_due", currency, required=False),
        r.where,
    )


# --------------------------------------------------------------------------- the driver


def import_file(
    ctx: Context, kind: str, path: Path, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Import one file of `kind`; all or nothing. Raises InvalidInput(s) naming row and field."""
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown import kind {kind!r}; use one of {', '.join(KINDS)}", field="kind"
        )
    if not path.is_file():
        raise InvalidInput("file not found", record=str(path))
    report = ImportReport(kind, path.name)
    errors: list[InvalidInput] = []
    now = ctx.clock.now()

    def chunks() -> Iterator[list[SourceRow]]:
        batch: list[SourceRow] = []
        for row in read_records(path, REQUIRED[kind], progress):
            batch.append(row)
            if len(batch) >= CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    with ctx.db.transaction() as conn:
        try:
            if kind == "loans":
                # A module of its own (parallel parsing, bulk encodings); it imports this one.
                from parley.services.loan_import import import_loans

                import_loans(ctx, conn, path, report, errors, progress)
            else:
                handler = {
                    "borrowers": _import_borrowers,
                    "installments": _import_installments,
                    "payments": _import_payments,
                }[kind]
                for batch in chunks():
                    report.rows += len(batch)
                    handler(ctx, conn, batch, path.name, report, errors, now)
                    if len(errors) >= MAX_ERRORS:
                        break
        except InvalidInput as exc:  # a file-level problem (header, bad line) stops reading
            errors.append(exc)
        except UnicodeDecodeError:  # a reader that did not say where (the loans' byte ranges)
            errors.append(not_utf8(path))
        except csv.Error as exc:  # likewise: a header the byte-range planner could not read
            errors.append(InvalidInput(f"not valid CSV: {exc}", record=f"{path.name} header"))
        if errors:
            conn.rollback()
            raise InvalidInputs(errors) if len(errors) > 1 else errors[0]
    return report


# Loans files larger than this are parsed by child processes (see services.loan_import).
PARALLEL_ABOVE_BYTES = 4_000_000


def _collect(
    errors: list[InvalidInput], parse: Callable[[SourceRow], Any], rows: Iterable[SourceRow]
) -> list[Any]:
    out = []
    for row in rows:
        try:
            out.append(parse(row))
        except InvalidInput as exc:
            errors.append(exc)
    return out


def _existing(conn: Connection, column: Any, hash_column: Any, ids: list[str]) -> dict[str, Any]:
    """{id: hash column} for the ids already stored in key ``column``."""
    return {k: v[0] for k, v in _stored(conn, column, ids, hash_column).items()}


def _stored(conn: Connection, column: Any, ids: list[str], *columns: Any) -> dict[str, tuple[Any, ...]]:
    """{id: (*columns)} for the ids already stored in key ``column``, in one look-up.

    On PostgreSQL the ids go in as one array joined to the table: the planner estimates an
    unnest at 100 rows and probes the primary key, where a long IN list on a table growing
    inside this very transaction makes it choose a sequential scan per chunk (quadratic).
    """
    if not ids:
        return {}
    if conn.dialect.name == "postgresql":
        keys = select(func.unnest(bindparam("ids", type_=ARRAY(String))).column_valued("k")).subquery()
        stmt = select(column, *columns).join(keys, keys.c.k == column)
        rows = conn.execute(stmt, {"ids": list(ids)}).all()
    else:  # SQLite: likewise one JSON array, probing the key per element (no 999-variable limit)
        each = func.json_each(bindparam("ids", type_=String)).table_valued("value").alias("k")
        stmt = select(column, *columns).join(each, each.c.value == column)
        rows = conn.execute(stmt, {"ids": json.dumps(list(ids))}).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _unknown(conn: Connection, column: Any, ids: list[str]) -> set[str]:
    """The ids not stored in `column` (a key). Asked this way round because the usual answer
    is "none": fetching every id that does exist cost more than the lookup itself."""
    if not ids:
        return set()
    if conn.dialect.name == "postgresql":
        keys = select(func.unnest(bindparam("ids", type_=ARRAY(String))).column_valued("k")).subquery()
        stmt = select(keys.c.k).where(~select(column).where(column == keys.c.k).exists())
        return set(conn.execute(stmt, {"ids": list(ids)}).scalars())
    each = func.json_each(bindparam("ids", type_=String)).table_valued("value").alias("k")
    stmt = select(each.c.value).where(~select(column).where(column == each.c.value).exists())
    return set(conn.execute(stmt, {"ids": json.dumps(list(ids))}).scalars())


def dedupe(
    ids: Sequence[str],
    hashes: Sequence[str],
    stored: Mapping[str, str],
    what: str,
    report: ImportReport,
    errors: list[InvalidInput],
    where: Callable[[int], str],
    skip: Container[int] = (),
) -> list[int]:
    """The rule for a record whose id is already known, stored (`stored`: id -> content hash)
    or earlier in the same chunk: with the same content it is skipped and counted unchanged;
    with other content it is refused, naming the record (`where(position)`) and its id field
    (`<what>_id`). Returns the positions of the records to write, in order.

    Every import with one id per record goes through here (borrowers and payments via
    `_dedupe`, loans from `loan_import`), so they cannot drift apart. It takes parallel lists
    of ids and hashes, not records, because that is what the loans import already holds: its
    child processes send flat lists, and building an object per loan just to call this would
    be per-row work on the benchmarked path. `skip`: positions already refused for another
    reason (the loans' unknown borrowers), neither written nor remembered.
    """
    if len(ids) != len(hashes):
        raise ValueError("dedupe: one hash per id")
    fresh: list[int] = []
    in_chunk: dict[str, str] = {}
    for k, rid in enumerate(ids):  # not zip(ids, hashes): unpacking pairs cost a tenth more
        if skip and k in skip:
            continue
        known = stored.get(rid) or in_chunk.get(rid)
        if known is None:
            in_chunk[rid] = hashes[k]
            fresh.append(k)
        elif known == hashes[k]:
            report.unchanged += 1
        else:
            errors.append(InvalidInput(f"{what} {rid!r} already exists with different content",
                                       record=where(k), field=f"{what}_id"))
    return fresh


def _dedupe(
    recs: list[Any],
    existing: dict[str, str],
    errors: list[InvalidInput],
    what: str,
    report: ImportReport,
) -> list[Any]:
    """`dedupe` for parsed records carrying `id`, `hash` and `where`: the records to write."""
    keep = dedupe([r.id for r in recs], [r.hash for r in recs], existing, what, report, errors,
                  lambda k: str(recs[k].where))
    return [recs[k] for k in keep]


def _import_borrowers(
    ctx: Context,
    conn: Connection,
    batch: list[SourceRow],
    name: str,
    report: ImportReport,
    errors: list[InvalidInput],
    now: datetime,
) -> None:
    jurisdictions = known_jurisdictions()
    recs = []
    for row in batch:
        try:
            rec = parse_borrower(row, name, ctx.settings.default_jurisdiction, jurisdictions)
            rec.where = row.where(name)
            recs.append(rec)
        except InvalidInput as exc:
            errors.append(exc)
    existing = _existing(conn, Borrower.id, Borrower.content_hash, [r.id for r in recs])
    fresh = _dedupe(recs, existing, errors, "borrower", report)
    if not errors and fresh:
        _write_borrowers(conn, fresh, ctx.keyring, now)
        report.inserted += len(fresh)


def _import_installments(
    ctx: Context,
    conn: Connection,
    batch: list[SourceRow],
    name: str,
    report: ImportReport,
    errors: list[InvalidInput],
    now: datetime,
) -> None:
    loan_ids = _lookup_ids(batch, "loan_id")
    loans: dict[str, tuple[str, str, str, int]] = {}
    for i in range(0, len(loan_ids), 900):
        stmt = select(
            Loan.id, Loan.currency, Loan.schedule_source, Loan.borrower_id, Loan.term
        ).where(Loan.id.in_(bindparam("ids", expanding=True)))
        for lid, cur, src, bid, term in conn.execute(stmt, {"ids": loan_ids[i : i + 900]}):
            loans[lid] = (cur, src, bid, term)
    recs: list[_InstallmentRec] = _collect(
        errors,
        lambda row: parse_installment(row, name, lambda lid: loans.get(lid, (None,))[0]),
        batch,
    )
    existing: dict[tuple[str, int], tuple[date, int, int]] = {}
    for i in range(0, len(loan_ids), 900):
        stmt = select(
            Installment.loan_id,
            Installment.number,
            Installment.due_on,
            Installment.principal_due,
            Installment.interest_due,
        ).where(Installment.loan_id.in_(bindparam("ids", expanding=True)))
        for lid, num, due, p, it in conn.execute(stmt, {"ids": loan_ids[i : i + 900]}):
            existing[(lid, num)] = (due, p, it)
    fresh = []
    for rec in recs:
        cur, source, bid, term = loans[rec.loan_id]
        if source != "imported":
            errors.append(
                InvalidInput(
                    f"loan {rec.loan_id!r} has a generated schedule; import it with schedule=imported",
                    record=rec.where,
                    field="loan_id",
                )
            )
            continue
        if rec.number > term:
            errors.append(
                InvalidInput(
                    f"instalment {rec.number} is beyond the loan's term of {term}",
                    record=rec.where,
                    field="number",
                )
            )
            continue
        key = (rec.loan_id, rec.number)
        content = (rec.due_on, rec.principal_due, rec.interest_due)
        if key in existing:
            if existing[key] == content:
                report.unchanged += 1
            else:
                errors.append(
                    InvalidInput(
                        f"instalment {rec.number} of loan {rec.loan_id!r} already exists with different content",
                        record=rec.where,
                        field="number",
                    )
                )
            continue
        existing[key] = content
        fresh.append(
            (
                rec.loan_id,
                rec.number,
                bid,
                rec.due_on,
                rec.principal_due,
                rec.interest_due,
                rec.fee_due,
                rec.penalty_due,
            )
        )
    if not errors and fresh:
        bulk_insert(conn, "installment", _INSTALLMENT_COLUMNS, fresh)
        refresh_loan_cache(conn, sorted({row[0] for row in fresh}))
        report.inserted += len(fresh)
        report.installments += len(fresh)


def _lookup_ids(batch: list[SourceRow], name: str) -> list[str]:
    """The distinct values of column `name` that could be ids, to look up before the rows are
    parsed. Anything else cannot be stored (the row is refused when parsed) and would not even
    reach the database as a parameter: PostgreSQL text cannot hold NUL."""
    return sorted({v for r in batch if ID.fullmatch(v := str(r.values.get(name, "")).strip())})


def _import_payments(
    ctx: Context,
    conn: Connection,
    batch: list[SourceRow],
    name: str,
    report: ImportReport,
    errors: list[InvalidInput],
    now: datetime,
) -> None:
    loan_ids = _lookup_ids(batch, "loan_id")
    # id -> (currency, disbursed_on), one look-up per chunk
    loans = _stored(conn, Loan.id, loan_ids, Loan.currency, Loan.disbursed_on)
    recs: list[PaymentRecord] = []
    for row in batch:
        r = _Row(row, name)
        try:
            pid = (
                r.ident("payment_id")
                if len(r.text("payment_id", max_len=100)) <= 64
                else r.text("payment_id", max_len=100)
            )
            loan_id = r.ident("loan_id")
            if loan_id not in loans:
                raise r.fail("loan_id", f"unknown loan {loan_id!r}")
            currency, disbursed_on = loans[loan_id]
            given = r.text("currency", required=False, max_len=3).upper()
            if given and given != currency:
                raise r.fail("currency", f"{given} does not match the loan's currency {currency}")
            paid_at = r.instant("paid_at")
            problem = paid_at_problem(paid_at, now, disbursed_on, ctx.business_zone)
            if problem:
                raise r.fail("paid_at", problem)
            amount = r.money("amount", currency, positive=True)
            rec = PaymentRecord(
                pid, loan_id, paid_at, amount, currency, source="import", where=r.where
            )
            recs.append(rec)
        except InvalidInput as exc:
            errors.append(exc)
    existing = _existing(conn, Payment.id, Payment.content_hash, [p.id for p in recs])
    fresh = _dedupe(recs, existing, errors, "payment", report)
    if not errors and fresh:
        post_payments(ctx, conn, fresh, now)
        report.inserted += len(fresh)
