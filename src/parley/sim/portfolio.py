"""A synthetic loan book with a realistic spread, deterministic for a seed, and its
set-based write into Parley's tables (the same rows `parley import` writes).

Most borrowers live in China on +86 mobiles; some live abroad with a declared zone, some have
only US numbers (the zone comes from the area code), some have numbers in several zones
(Alaska, Australia, or a Chinese and a US number), so the gate must find an hour lawful in all
of them. Everyone has one to three numbers (some wrong) and one or two emergency contacts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from parley.adapters.crypto import KeyRing, mask_phone
from parley.adapters.zones import candidate_zones, zones_for_phones
from parley.core.dates import DayCount
from parley.core.money import parse_rate
from parley.core.schedule import LoanTerms, RepaymentMethod, schedule_rows
from parley.sim.behaviour import Dice, Profile, draw_profile
from parley.store.db import bulk_insert, db_datetime

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红"
EN_FIRST = ("Alex", "Sam", "Jamie", "Chris", "Taylor", "Jordan", "Morgan", "Casey", "Lee", "Kai")
EN_LAST = ("Chen", "Wong", "Smith", "Lin", "Brown", "Ng", "Patel", "Tan", "Garcia", "Lam")
CN_PREFIXES = ("138", "139", "150", "186", "135", "187", "158", "133")
US_AREAS = ("212", "415", "312", "808", "907", "206", "305", "713")  # NY, SF, CHI, HI, AK (2 zones)…
ABROAD_ZONES = ("Europe/London", "America/Los_Angeles", "Asia/Singapore", "Australia/Sydney",
                "Asia/Tokyo", "America/Toronto")
RELATIONS = ("emergency_contact", "family", "friend", "employer")
CURRENCY = "CNY"
JURISDICTION = "CN"


@dataclass(frozen=True, slots=True)
class SimPhone:
    """A number on file. valid: the truth (False = out of service or someone else's);
    the system only learns it by calling. zones: candidate zones from the number alone."""

    number: str
    phone_type: str
    valid: bool
    zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimThirdParty:
    """An emergency contact, family member, friend or employer; ``index`` is 1-based."""

    index: int
    name: str
    relation: str
    number: str
    zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimBorrower:
    """One borrower. declared_timezone / country: None = not known. candidate_zones: what the
    gate will use (declared, else address, else phones); empty = unknown (fails closed)."""

    id: str
    name: str
    language: str
    jurisdiction: str
    declared_timezone: str | None
    country: str | None
    phones: tuple[SimPhone, ...]
    third_parties: tuple[SimThirdParty, ...]
    candidate_zones: tuple[str, ...]
    risk_score: int
    profile: Profile
    where: str  # cn, abroad, us, multi: for the report's breakdown
    email: str | None = None  # None = no e-mail address on file


@dataclass(frozen=True, slots=True)
class SimInstalment:
    number: int
    due_on: date
    principal: int
    interest: int

    @property
    def amount(self) -> int:
        return self.principal + self.interest


@dataclass(frozen=True, slots=True)
class SimLoan:
    id: str
    borrower_id: str
    principal: int
    rate_text: str
    term: int
    method: str
    day_count: str
    disbursed_on: date
    first_due_on: date
    product: str
    schedule: tuple[SimInstalment, ...]


@dataclass(frozen=True, slots=True)
class Portfolio:
    """The book as of ``start`` (the first simulated day). Loans are one per borrower,
    in the same order as borrowers."""

    seed: int
    start: date
    borrowers: tuple[SimBorrower, ...]
    loans: tuple[SimLoan, ...]


def _cn_mobile(rng: random.Random) -> str:
    return f"+86{rng.choice(CN_PREFIXES)}{rng.randrange(10**8):08d}"


def _us_number(rng: random.Random) -> str:
    return f"+1{rng.choice(US_AREAS)}{rng.randrange(2, 10)}{rng.randrange(10**6):06d}"


def _au_mobile(rng: random.Random) -> str:
    return f"+614{rng.choice('013')}{rng.randrange(10**7):07d}"


def _satellite(rng: random.Random) -> str:
    """An Iridium number: valid, but says nothing about where its holder is."""
    return f"+8816{rng.randrange(10**8):08d}"


def _name(rng: random.Random, language: str) -> str:
    if language == "en":
        return f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def generate(borrowers: int, seed: int, start: date) -> Portfolio:
    """``borrowers`` borrowers with one loan each, disbursed 1–150 days before ``start``."""
    if borrowers < 1:
        raise ValueError("at least one borrower")
    # One stream per concern, so adding a field to one does not shift the others.
    people = random.Random(f"{seed}/people")
    phones_rng = random.Random(f"{seed}/phones")
    loans_rng = random.Random(f"{seed}/loans")
    dice = Dice(seed)
    out_b: list[SimBorrower] = []
    out_l: list[SimLoan] = []
    zone_cache: dict[str, tuple[str, ...]] = {}

    def zones_of(number: str) -> tuple[str, ...]:
        key = number[:6]  # the zone depends on country and area code only
        if key not in zone_cache:
            zone_cache[key] = zones_for_phones([number])
        return zone_cache[key]

    for i in range(borrowers):
        bid = f"B{i:07d}"
        language = people.choices(("zh-Hans", "zh-Hant", "en"), (75, 10, 15))[0]
        where = people.choices(("cn", "abroad", "us", "multi"), (86, 6, 4, 4))[0]
        declared: str | None = None
        country: str | None = None
        numbers: list[str]
        if where == "cn":
            country = "CN"
            numbers = [_cn_mobile(phones_rng) for _ in range(people.choice((1, 1, 2, 2, 3)))]
        elif where == "abroad":
            declared = people.choice(ABROAD_ZONES)
            numbers = [_cn_mobile(phones_rng)]
        elif where == "us":
            numbers = [_us_number(phones_rng) for _ in range(people.choice((1, 2)))]
        else:
            kind = people.choice(("cn+us", "cn+us", "au", "ak", "au", "unknown"))
            if kind == "cn+us":
                numbers = [_cn_mobile(phones_rng), _us_number(phones_rng)]
            elif kind == "au":
                numbers = [_au_mobile(phones_rng)]
            elif kind == "unknown":  # location unknown: the gate fails closed on every hour
                numbers = [_satellite(phones_rng)]
            else:
                numbers = [f"+1907{phones_rng.randrange(2, 10)}{phones_rng.randrange(10**6):06d}"]
        numbers = list(dict.fromkeys(numbers))
        loan_id = f"L{i:08d}"
        term = loans_rng.choice((3, 6, 6, 9, 12, 12, 12, 24))
        profile = draw_profile(dice, bid, term)
        wrong_extra = people.random() < 0.12
        phones = tuple(
            SimPhone(
                n, "mobile" if k == 0 else people.choice(("mobile", "home", "work")),
                valid=(profile.kind.value != "unreachable") and not (wrong_extra and k == len(numbers) - 1 and k > 0),
                zones=zones_of(n))
            for k, n in enumerate(numbers))
        tps = tuple(
            SimThirdParty(k + 1, _name(people, language), people.choice(RELATIONS),
                          (num := _cn_mobile(phones_rng)), zones_of(num))
            for k in range(people.choice((1, 1, 2))))
        zones = candidate_zones(declared, country, None, numbers)
        email = (f"{bid.lower()}@example.{'com' if language == 'en' else 'cn'}"
                 if people.random() < 0.5 else None)
        out_b.append(SimBorrower(
            bid, _name(people, language), language, JURISDICTION, declared, country, phones, tps,
            zones, people.randrange(300, 850), profile, where, email))

        principal = loans_rng.choice((500, 1000, 2000, 3000, 5000, 8000, 10000, 20000, 50000)) * 100
        principal += loans_rng.randrange(0, 100) * 100
        rate_text = loans_rng.choice(("7.2", "9.4822", "12", "15.4", "18.25", "23.99", "24"))
        method = loans_rng.choice(("equal-installment", "equal-installment", "equal-principal",
                                   "interest-only"))
        disbursed = start - timedelta(days=loans_rng.randint(1, 150))
        first_due = disbursed + timedelta(days=30)
        terms = LoanTerms(principal, parse_rate(rate_text) if rate_text else Fraction(0), term,
                          RepaymentMethod(method), DayCount.THIRTY_360, first_due, disbursed)
        dues, parts = schedule_rows(terms)
        schedule = tuple(SimInstalment(n, d, p, r) for n, (d, (p, r)) in
                         enumerate(zip(dues, parts, strict=True), start=1))
        out_l.append(SimLoan(loan_id, bid, principal, rate_text, term, method, "30/360", disbursed,
                             first_due, loans_rng.choice(("cash", "consumer", "sme")), schedule))
    return Portfolio(seed, start, tuple(out_b), tuple(out_l))


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def write(conn: Connection, portfolio: Portfolio, keys: KeyRing, now: datetime,
          progress: Callable[[int], None] | None = None) -> None:
    """Write borrowers, numbers, addresses, third parties, loans and schedules (bulk, one
    transaction: the caller's). The rows are those `parley import` would write."""
    ts = db_datetime(conn, now)
    bs = portfolio.borrowers
    bulk_insert(conn, "borrower",
                ("id", "name", "preferred_language", "declared_timezone", "jurisdiction",
                 "risk_score", "tags", "content_hash", "created_at", "audit_seq", "audit_head"),
                ((b.id, b.name, b.language, b.declared_timezone, b.jurisdiction, b.risk_score, "",
                  _digest(b.id, b.name, b.language), ts, 0, "") for b in bs))
    bulk_insert(conn, "borrower_phone",
                ("borrower_id", "position", "phone_type", "e164_enc", "e164_index", "masked",
                 "timezones", "is_valid"),
                ((b.id, k, p.phone_type, keys.encrypt(p.number, "phone.e164"),
                  keys.blind_index(p.number, "phone"), mask_phone(p.number), ",".join(p.zones),
                  True) for b in bs for k, p in enumerate(b.phones)))
    bulk_insert(conn, "borrower_email", ("borrower_id", "position", "address"),
                ((b.id, 0, b.email) for b in bs if b.email))
    bulk_insert(conn, "borrower_address",
                ("borrower_id", "position", "country", "region", "city", "postal_code"),
                ((b.id, 0, b.country, "", "", "") for b in bs if b.country))
    bulk_insert(conn, "third_party",
                ("borrower_id", "name", "relation", "e164_enc", "e164_index", "masked",
                 "timezones"),
                ((b.id, t.name, t.relation, keys.encrypt(t.number, "phone.e164"),
                  keys.blind_index(t.number, "phone"), mask_phone(t.number), ",".join(t.zones))
                 for b in bs for t in b.third_parties))
    if progress:
        progress(len(bs) // 2)
    ls = portfolio.loans
    bulk_insert(conn, "loan",
                ("id", "borrower_id", "currency", "principal", "annual_rate", "term", "method",
                 "day_count", "disbursed_on", "first_due_on", "product", "schedule_source",
                 "status", "content_hash", "created_at", "oldest_unpaid_due_on"),
                # oldest_unpaid_due_on: the days-past-due cache, as the importer fills it (the
                # first instalment of a fresh schedule; payments refresh it).
                ((x.id, x.borrower_id, CURRENCY, x.principal, x.rate_text, x.term, x.method,
                  x.day_count, x.disbursed_on, x.first_due_on, x.product, "generated", "active",
                  _digest(x.id, x.principal, x.rate_text, x.term, x.method, x.disbursed_on), ts,
                  x.schedule[0].due_on) for x in ls))
    bulk_insert(conn, "installment",
                ("loan_id", "number", "borrower_id", "due_on", "principal_due", "interest_due"),
                ((x.id, s.number, x.borrower_id, s.due_on, s.principal, s.interest)
                 for x in ls for s in x.schedule))
    if progress:
        progress(len(bs) - len(bs) // 2)


def local_instant(day: date, hour: int, minute: int, zone: str) -> datetime:
    """``day`` at hour:minute in ``zone``, as a UTC instant."""
    return datetime.combine(day, time(hour, minute), ZoneInfo(zone)).astimezone(UTC)
