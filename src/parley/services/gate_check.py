"""`parley gate check`: decide one scenario (a JSON document) without a database.

Parses the scenario format of docs/gate.md into core values, loads the pack, screens the
text, calls ``parley.core.gate.decide`` and returns the decision as JSON-ready data. Every
malformed field raises ``InvalidInput`` with ``field`` set to its JSON path (``request.at``,
``history[2].result``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from parley.adapters.zones import candidate_zones
from parley.core.content import ContentScreening
from parley.core.gate import (
    LANGS,
    AgreementFact,
    BorrowerFacts,
    BusinessCalendar,
    CallResult,
    Channel,
    Collector,
    ContactRecord,
    ContactRequest,
    DebtStanding,
    Facts,
    Hold,
    HoldKind,
    LocalWindow,
    OptOut,
    PackError,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
    RulePack,
    build_pack,
    decide,
)
from parley.errors import InvalidInput

RECORD = "scenario"
PERSON_FLAGS = frozenset({"refused", "requested_contact"})
AGREEMENT_STATUSES = frozenset({"active", "broken", "completed", "cancelled", "proposed"})


# --- packs ---------------------------------------------------------------------------------


class UnknownPack(InvalidInput):
    """There is no rule pack by this id. A pack that exists but is broken (bad YAML shape, a bad
    rule, a missing parent, a cycle) raises a plain InvalidInput instead, so a caller that can
    go on without a pack (a complaint placing its hold anyway) catches only this and a broken
    pack still stops it. A subclass, so callers catching InvalidInput see no change."""


# A pack id is a jurisdiction code ("CN", "US-MA"): anything else cannot name a file in packs/
# (and a path separator, a dot, a NUL or a 100,000-character id must not reach the file system).
PACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def _read_pack_doc(pack_id: str) -> dict[str, Any]:
    if not isinstance(pack_id, str) or not PACK_ID.fullmatch(pack_id):
        shown = pack_id if not isinstance(pack_id, str) or len(pack_id) <= 40 else pack_id[:40] + "…"
        raise UnknownPack(f"invalid pack id {shown!r}: letters, digits, '-' and '_', at most 32",
                          record=RECORD, field="pack")
    res = resources.files("parley").joinpath("packs", f"{pack_id}.yaml")
    if not res.is_file():
        raise UnknownPack(f"no rule pack {pack_id!r}", record=RECORD, field="pack")
    doc = yaml.safe_load(res.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise InvalidInput(f"pack {pack_id!r} is not a mapping", record=f"pack {pack_id}")
    return doc


@lru_cache(maxsize=32)
def load_pack(pack_id: str) -> RulePack:
    """The composed, validated pack ``pack_id`` from parley/packs/<id>.yaml (parents first).
    UnknownPack when there is no pack ``pack_id``; InvalidInput when it is broken."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = pack_id
    child = pack_id
    while current is not None:
        if current in seen:
            raise InvalidInput(f"pack inheritance cycle at {current!r}", record=f"pack {pack_id}")
        seen.add(current)
        try:
            doc = _read_pack_doc(current)
        except UnknownPack as exc:
            if not chain:
                raise
            # a parent that does not exist makes the pack naming it broken, not unknown
            raise InvalidInput(f"extends unknown pack {current!r}", record=f"pack {child}",
                               field="extends") from exc
        chain.append(doc)
        ext = doc.get("extends")
        child, current = current, ext if isinstance(ext, str) else None
    pack: RulePack | None = None
    try:
        for doc in reversed(chain):
            pack = build_pack(doc, pack)
    except PackError as exc:
        raise InvalidInput(exc.message, record=f"pack {exc.pack}", field=exc.field) from exc
    assert pack is not None  # chain is never empty  # noqa: S101
    return pack


@lru_cache(maxsize=64)
def pack_or_default(jurisdiction: str, default_jurisdiction: str) -> RulePack:
    """The jurisdiction's pack, or the default jurisdiction's when it has none (planning: the
    daily run's hours, a visit's staffing). A broken pack still raises; the gate itself never
    falls back (``facts.pack_for``: an unknown jurisdiction fails closed)."""
    try:
        return load_pack(jurisdiction)
    except UnknownPack:
        return load_pack(default_jurisdiction)


def available_packs() -> tuple[str, ...]:
    folder = resources.files("parley").joinpath("packs")
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


# --- field parsers: each names the JSON path it reads ----------------------------------------


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, record=RECORD, field=field)


def _obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(field, "expected an object")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(field, "expected a list")
    return value


def _str(value: Any, field: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, "expected a non-empty string")
    return value.strip()


def _req_str(value: Any, field: str) -> str:
    s = _str(value, field)
    assert s is not None  # noqa: S101
    return s


# Instants a scenario may name: local years in this range stay representable in UTC, in every
# candidate zone and across the pack's search horizon (a year-9999 instant overflowed datetime).
MIN_YEAR, MAX_YEAR = 1970, 9000


def _instant(value: Any, field: str, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(field, "expected an ISO 8601 date-time with offset")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(field, f"not an ISO 8601 date-time: {value!r}") from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise _bad(field, f"date-time must carry a UTC offset: {value!r}")
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise _bad(field, f"date-time must be in the years {MIN_YEAR} to {MAX_YEAR}: {value!r}")
    return dt


def _req_instant(value: Any, field: str) -> datetime:
    dt = _instant(value, field)
    assert dt is not None  # noqa: S101
    return dt


def _date(value: Any, field: str, *, optional: bool = False) -> date | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(field, "expected a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise _bad(field, f"not a date YYYY-MM-DD: {value!r}") from exc


def _enum(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except (ValueError, TypeError) as exc:
        choices = ", ".join(m.value for m in enum)
        raise _bad(field, f"{value!r} is not one of: {choices}") from exc


def _local_time(value: Any, field: str) -> Any:
    from datetime import time as _time

    if isinstance(value, str):
        try:
            hh, mm = value.split(":")
            return _time(int(hh), int(mm))
        except ValueError:
            pass
    raise _bad(field, f"expected a local time HH:MM, got {value!r}")


def _zones(block: Mapping[str, Any], path: str, phones: list[str]) -> tuple[str, ...]:
    tz = _str(block.get("timezone"), f"{path}.timezone", optional=True)
    if tz is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long
            raise _bad(f"{path}.timezone", f"unknown IANA time zone {tz[:64]!r}") from exc
    addr = block.get("address")
    country = region = None
    if addr is not None:
        a = _obj(addr, f"{path}.address")
        country = _str(a.get("country"), f"{path}.address.country", optional=True)
        region = _str(a.get("region"), f"{path}.address.region", optional=True)
    return candidate_zones(tz, country, region, phones)


def _phones(value: Any, field: str) -> list[tuple[str, bool]]:
    out = []
    for i, p in enumerate(_list(value, field)):
        if isinstance(p, Mapping):
            num = _req_str(p.get("number"), f"{field}[{i}].number")
            valid = p.get("valid", True)
            if not isinstance(valid, bool):
                raise _bad(f"{field}[{i}].valid", "expected true or false")
            out.append((num, valid))
        else:
            out.append((_req_str(p, f"{field}[{i}]"), True))
    return out


def _holds(value: Any, field: str) -> tuple[tuple[Hold, ...], set[str]]:
    """``flags``: hold kinds as strings or {kind, debt?, since?}; plus person flags."""
    holds: list[Hold] = []
    other: set[str] = set()
    for i, f in enumerate(_list(value, field)):
        path = f"{field}[{i}]"
        if isinstance(f, str):
            if f in PERSON_FLAGS:
                other.add(f)
                continue
            holds.append(Hold(_enum(HoldKind, f, path)))
        else:
            o = _obj(f, path)
            holds.append(Hold(
                _enum(HoldKind, o.get("kind"), f"{path}.kind"),
                _str(o.get("debt"), f"{path}.debt", optional=True),
                _instant(o.get("since"), f"{path}.since", optional=True),
            ))
    return tuple(holds), other


def _opt_outs(value: Any, field: str) -> tuple[OptOut, ...]:
    out = []
    for i, o in enumerate(_list(value, field)):
        path = f"{field}[{i}]"
        if isinstance(o, str):
            out.append(OptOut(_enum(Channel, o, path)))
        else:
            m = _obj(o, path)
            out.append(OptOut(_enum(Channel, m.get("channel"), f"{path}.channel"),
                              _str(m.get("to"), f"{path}.to", optional=True),
                              _instant(m.get("since"), f"{path}.since", optional=True)))
    return tuple(out)


def _calendar(value: Any, field: str) -> BusinessCalendar | None:
    if value is None:
        return None
    c = _obj(value, field)
    years = []
    for i, y in enumerate(_list(c.get("years"), f"{field}.years")):
        if isinstance(y, bool) or not isinstance(y, int):
            raise _bad(f"{field}.years[{i}]", "expected a year")
        years.append(y)

    def dates(key: str) -> frozenset[date]:
        return frozenset(d for i, v in enumerate(_list(c.get(key), f"{field}.{key}"))
                         if (d := _date(v, f"{field}.{key}[{i}]")) is not None)

    return BusinessCalendar(frozenset(years), dates("holidays"), dates("workdays"))


def parse_scenario(doc: Any) -> tuple[RulePack, ContactRequest, Facts, str | None]:
    """The pack, request and facts of a scenario (content screening still to do), and the
    request text. Raises InvalidInput naming the JSON path of the first bad field."""
    d = _obj(doc, "$")
    pack = load_pack(_req_str(d.get("pack"), "pack"))

    p = _obj(d.get("person"), "person")
    role = _enum(Role, p.get("role", "borrower"), "person.role")
    pid = _str(p.get("id"), "person.id", optional=True) or (
        "borrower" if role is Role.BORROWER else "third_party")
    phones = _phones(p.get("phones"), "person.phones")
    emails = [_req_str(e, f"person.emails[{i}]") for i, e in enumerate(
        _list(p.get("emails"), "person.emails"))]
    zones = _zones(p, "person", [n for n, _ in phones])
    holds, pflags = _holds(p.get("flags"), "person.flags")
    windows = []
    for i, w in enumerate(_list(p.get("inconvenient_times"), "person.inconvenient_times")):
        o = _obj(w, f"person.inconvenient_times[{i}]")
        windows.append(LocalWindow(_local_time(o.get("from"), f"person.inconvenient_times[{i}].from"),
                                   _local_time(o.get("to"), f"person.inconvenient_times[{i}].to")))
    person = PersonFacts(
        id=pid, role=role, candidate_zones=zones, holds=holds,
        opt_outs=_opt_outs(p.get("opt_outs"), "person.opt_outs"),
        inconvenient_times=tuple(windows),
        refused=p.get("refused") is True or "refused" in pflags,
        requested_contact=p.get("requested_contact") is True or "requested_contact" in pflags,
    )

    borrower: BorrowerFacts | None
    if role is Role.BORROWER:
        borrower = BorrowerFacts(pid, tuple(PhoneFact(n, v) for n, v in phones), zones, holds)
        if "borrower" in d:
            raise _bad("borrower", "only for third-party scenarios (person.role third_party)")
    elif d.get("borrower") is not None:
        b = _obj(d.get("borrower"), "borrower")
        bphones = _phones(b.get("phones"), "borrower.phones")
        bholds, _ = _holds(b.get("flags"), "borrower.flags")
        borrower = BorrowerFacts(
            _str(b.get("id"), "borrower.id", optional=True) or "borrower",
            tuple(PhoneFact(n, v) for n, v in bphones),
            _zones(b, "borrower", [n for n, v in bphones]), bholds)
    else:
        borrower = None

    debts: set[str] = set()
    # Standing is all or nothing: a debt given without it when another has it is a mistake.
    debt_items = _list(d.get("debts"), "debts")
    with_standing = any(isinstance(x, Mapping) and "oldest_unpaid_due_on" in x for x in debt_items)
    standings: list[DebtStanding] = []
    for i, item in enumerate(debt_items):
        if isinstance(item, Mapping):
            ref = _req_str(item.get("id"), f"debts[{i}].id")
        else:
            ref = _req_str(item, f"debts[{i}]")
        debts.add(ref)
        if with_standing:
            if not isinstance(item, Mapping) or "oldest_unpaid_due_on" not in item:
                raise _bad(f"debts[{i}].oldest_unpaid_due_on",
                           "another debt states it, so every debt must (null = nothing unpaid)")
            standings.append(DebtStanding(ref, _date(item["oldest_unpaid_due_on"],
                                                     f"debts[{i}].oldest_unpaid_due_on",
                                                     optional=True)))

    def debt_ref(value: Any, field: str) -> str | None:
        ref = _str(value, field, optional=True)
        if ref is not None and debts and ref not in debts:
            raise _bad(field, f"unknown debt {ref!r} (not in debts)")
        return ref

    history: list[ContactRecord] = []
    for i, h in enumerate(_list(d.get("history"), "history")):
        path = f"history[{i}]"
        o = _obj(h, path)
        debt_val = o.get("debt")
        others: tuple[str, ...] = ()
        if isinstance(debt_val, list):
            refs = [debt_ref(v, f"{path}.debt[{k}]") for k, v in enumerate(debt_val)]
            named = [r for r in refs if r is not None]
            first = named[0] if named else None
            others = tuple(named[1:])
        else:
            first = debt_ref(debt_val, f"{path}.debt")
        hperson = _str(o.get("person"), f"{path}.person", optional=True)
        if hperson is None:
            hperson = pid
        if "role" in o:
            hrole = _enum(Role, o.get("role"), f"{path}.role")
        elif hperson == pid:
            hrole = role
        elif borrower is not None and hperson == borrower.id:
            hrole = Role.BORROWER
        else:
            hrole = Role.THIRD_PARTY
        result = o.get("result")
        initiated = o.get("initiated_by", "collector")
        if initiated not in ("collector", "consumer"):
            raise _bad(f"{path}.initiated_by", "expected 'collector' or 'consumer'")
        history.append(ContactRecord(
            at=_req_instant(o.get("at"), f"{path}.at"),
            channel=_enum(Channel, o.get("channel"), f"{path}.channel"),
            person_id=hperson, role=hrole,
            to=_str(o.get("to"), f"{path}.to", optional=True) or "",
            debt_id=first,
            result=None if result is None else _enum(CallResult, result, f"{path}.result"),
            purpose=_enum(Purpose, o.get("purpose", "collection"), f"{path}.purpose"),
            initiated_by=initiated,
            consent_until=_instant(o.get("consent_until"), f"{path}.consent_until",
                                   optional=True),
            other_debt_ids=others,
        ))
    history.sort(key=lambda r: r.at)  # stable: same-instant items keep their file order

    agreements = []
    for i, a in enumerate(_list(d.get("agreements"), "agreements")):
        path = f"agreements[{i}]"
        o = _obj(a, path)
        status = _req_str(o.get("status"), f"{path}.status")
        if status not in AGREEMENT_STATUSES:
            raise _bad(f"{path}.status", f"{status!r} is not one of: "
                                         f"{', '.join(sorted(AGREEMENT_STATUSES))}")
        starts = _date(o.get("starts_on"), f"{path}.starts_on")
        assert starts is not None  # noqa: S101
        agreements.append(AgreementFact(
            _req_str(debt_ref(o.get("debt"), f"{path}.debt"), f"{path}.debt"),
            status, starts, _date(o.get("ends_on"), f"{path}.ends_on", optional=True)))

    r = _obj(d.get("request"), "request")
    at = _req_instant(r.get("at"), "request.at")
    channel = _enum(Channel, r.get("channel"), "request.channel")
    to = _req_str(r.get("to"), "request.to")
    if channel is Channel.CALL or channel is Channel.SMS:
        known = [n for n, _ in phones]
        if known and to not in known:
            raise _bad("request.to", f"{to!r} is not one of person.phones")
    elif channel is Channel.EMAIL and emails and to not in emails:
        raise _bad("request.to", f"{to!r} is not one of person.emails")
    text = r.get("text")
    if text is not None and not isinstance(text, str):
        raise _bad("request.text", "expected a string")
    collectors = []
    for i, c in enumerate(_list(r.get("collectors"), "request.collectors")):
        o = _obj(c, f"request.collectors[{i}]")
        collectors.append(Collector(
            _req_str(o.get("id"), f"request.collectors[{i}].id"),
            _str(o.get("name"), f"request.collectors[{i}].name", optional=True) or "",
            _str(o.get("badge"), f"request.collectors[{i}].badge", optional=True) or ""))
    request = ContactRequest(
        at=at, channel=channel, person_id=pid, role=role, to=to,
        purpose=_enum(Purpose, r.get("purpose", "collection"), "request.purpose"),
        debt_id=debt_ref(r.get("debt"), "request.debt"),
        text=text, collectors=tuple(collectors))
    facts = Facts(person=person, borrower=borrower, history=tuple(history),
                  agreements=tuple(agreements),
                  calendar=_calendar(d.get("calendar"), "calendar"),
                  debts=tuple(standings) if with_standing else None)
    return pack, request, facts, text


def check_scenario(doc: Any, screen: Callable[[str], ContentScreening] | None,
                   lang: str = "en") -> dict[str, Any]:
    """Decide a scenario; returns the decision JSON (docs/gate.md).

    screen: the content screener (text -> ContentScreening); None = no screener, so a request
    with text is denied as unscreened and one without text is clean.
    """
    if lang not in LANGS:
        raise InvalidInput(f"unknown language {lang!r}; one of {', '.join(LANGS)}",
                           record="options", field="lang")
    pack, request, facts, text = parse_scenario(doc)
    if text is not None and screen is not None:
        from dataclasses import replace

        facts = replace(facts, content=screen(text))
    return decide(request, facts, pack).to_json(lang)
