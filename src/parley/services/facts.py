"""Loading what the gate knows about a borrower (or a third party) from the store.

The shell half of "load facts → decide → record": everything here reads the caller's
connection, inside the transaction that holds the borrower lock, so the facts are exactly
what the decision saw. Phone numbers never leave their blind index: a request's ``to``, the
history's ``to``, opt-outs and phone validity all use ``borrower_phone.e164_index`` (e-mail
addresses as stored; visits an ``address:<id>`` key), so the gate never decrypts.

Person ids: the borrower is its own id; a third party is ``tp:<third_party.id>``.

The facts also serialise to compact JSON (``facts_json``/``facts_from_json``), stored with
each decision in the audit log so a decision can be replayed (``replay_decision``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)

from parley.adapters.zones import candidate_zones, zones_for_address
from parley.core.content import ContentHit, ContentScreening
from parley.core.gate import (
    LANGS,
    AgreementFact,
    BorrowerFacts,
    BusinessCalendar,
    Channel,
    Collector,
    ContactRecord,
    ContactRequest,
    DebtStanding,
    Decision,
    Facts,
    Finding,
    Hold,
    LocalWindow,
    OptOut,
    PersonFacts,
    PhoneFact,
    Role,
    RulePack,
    decide,
)
from parley.errors import NotFound
from parley.services.calendar import cached_calendar
from parley.services.gate_check import load_pack
from parley.store.hot import Hot
from parley.store.models.agreements import Agreement
from parley.store.models.base import table_of
from parley.store.models.contacts import ContactAttempt, ContactPreference
from parley.store.models.contacts import Hold as HoldRow
from parley.store.models.contacts import OptOut as OptOutRow
from parley.store.models.loanbook import Borrower, BorrowerAddress, BorrowerPhone, Loan, ThirdParty
from parley.store.types import UTCDateTime

# An opt-out row with this channel means "no contact at all" (a third party's refusal, or a
# borrower's request covering every channel).
OPT_OUT_ALL = "all"
ACTIVE_AGREEMENT = ("accepted", "active")
# A broken plan keeps binding collection until the borrower has been told it is broken (an
# agreement_service contact after the break): collection never resumes unannounced. If no
# notice can be delivered within NOTICE_WAIT, collection resumes anyway (the desk sees why).
NOTICE_WAIT = timedelta(days=7)
MAY_BIND = (*ACTIVE_AGREEMENT, "broken")
# The same condition in SQL, for the daily run (params: :notice_cutoff, driver-ready UTC).
BINDING_AGREEMENT_SQL = (
    "(a.status IN ('accepted', 'active') OR (a.status = 'broken' AND a.ended_at > :notice_cutoff "
    "AND NOT EXISTS (SELECT 1 FROM contact_attempt n WHERE n.borrower_id = a.borrower_id "
    "AND n.purpose = 'agreement_service' AND n.at >= a.ended_at)))"
)
CALENDAR_KINDS = frozenset({"no_contact_on_non_working_days", "flag_non_working_day_calls_at_least"})
MIN_LOOKBACK_DAYS = 9  # the Reg F consent window scan looks back 9 days

_b = table_of(Borrower)
_ph = table_of(BorrowerPhone)
_ad = table_of(BorrowerAddress)
_tp = table_of(ThirdParty)
_h = table_of(HoldRow)
_o = table_of(OptOutRow)
_p = table_of(ContactPreference)
_a = table_of(Agreement)
_ca = table_of(ContactAttempt)
_l = table_of(Loan)

# Hot statements (parley.store.hot): the permit path runs them for every contact.
# The lock statement also says which of the usually empty tables have rows for this borrower,
# so the common permit reads only those (fewer round trips inside the locked transaction).
# It has no IN list and an inline separator: no "post-compile" parameter to render again on
# every execution.
SQL_BORROWER = Hot(select(
    _b.c.id, _b.c.jurisdiction, _b.c.declared_timezone, _b.c.audit_seq, _b.c.audit_head,
    exists().where(_h.c.borrower_id == _b.c.id, _h.c.ended_at.is_(None)).label("has_holds"),
    exists().where(_o.c.borrower_id == _b.c.id, _o.c.revoked_at.is_(None)).label("has_opt_outs"),
    exists().where(_p.c.borrower_id == _b.c.id, _p.c.revoked_at.is_(None)).label("has_prefs"),
    exists().where(_a.c.borrower_id == _b.c.id, or_(*(_a.c.status == s for s in MAY_BIND)))
    .label("has_agreements"),
    # The phones, packed as 'position|id|valid|index|masked|zones;...' (no field holds | or ;).
    select(func.aggregate_strings(
        cast(_ph.c.position, String) + "|" + cast(_ph.c.id, String) + "|"
        + case((_ph.c.is_valid, "1"), else_="0") + "|" + _ph.c.e164_index + "|"
        + _ph.c.masked + "|" + _ph.c.timezones,
        literal_column("';'")))  # type: ignore[arg-type]  # a str is rendered per execution
    .where(_ph.c.borrower_id == _b.c.id).scalar_subquery().label("phones"),
).where(_b.c.id == bindparam("bid")))
# PostgreSQL: the lock reads the borrower's own columns only. Anything else read in the same
# statement would come from the snapshot taken before waiting for the lock (READ COMMITTED
# re-checks only the locked row), so the facts are read by the next statement.
SQL_BORROWER_LOCK = Hot(select(_b.c.id, _b.c.jurisdiction, _b.c.declared_timezone, _b.c.audit_seq,
                        _b.c.audit_head).where(_b.c.id == bindparam("bid")).with_for_update())
# PostgreSQL, after the lock: the flags, the phones and the history window in one round trip.
SQL_FACTS_PG = Hot(text("""
SELECT
  EXISTS (SELECT 1 FROM hold WHERE borrower_id = :bid AND ended_at IS NULL),
  EXISTS (SELECT 1 FROM opt_out WHERE borrower_id = :bid AND revoked_at IS NULL),
  EXISTS (SELECT 1 FROM contact_preference WHERE borrower_id = :bid AND revoked_at IS NULL),
  EXISTS (SELECT 1 FROM agreement WHERE borrower_id = :bid AND status IN ('accepted', 'active', 'broken')),
  (SELECT string_agg(position::text || '|' || id::text || '|'
                     || CASE WHEN is_valid THEN '1' ELSE '0' END || '|' || e164_index || '|'
                     || masked || '|' || timezones, ';')
     FROM borrower_phone WHERE borrower_id = :bid),
  (SELECT json_agg(json_build_array(
            id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), channel,
            person_role, third_party_id, to_index, loan_id, result, purpose, initiated_by,
            to_char(consent_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'))
          ORDER BY at, id)
     FROM contact_attempt WHERE borrower_id = :bid AND at >= :since),
  (SELECT json_agg(json_build_array(id, oldest_unpaid_due_on) ORDER BY id)
     FROM loan WHERE borrower_id = :bid)
"""))
SQL_PHONES = Hot(select(_ph.c.e164_index, _ph.c.is_valid, _ph.c.timezones, _ph.c.masked)
                 .where(_ph.c.borrower_id == bindparam("bid")).order_by(_ph.c.position, _ph.c.id))
SQL_ADDRESS = Hot(select(_ad.c.id, _ad.c.country, _ad.c.region, _ad.c.city)
                  .where(_ad.c.borrower_id == bindparam("bid")).order_by(_ad.c.position, _ad.c.id))
SQL_THIRD = Hot(select(_tp.c.id, _tp.c.e164_index, _tp.c.masked, _tp.c.timezones).where(
    _tp.c.id == bindparam("tpid"), _tp.c.borrower_id == bindparam("bid")))
# Where each debt stands (the loan row's cache, kept by every payment in its transaction).
SQL_DEBTS = Hot(select(_l.c.id, _l.c.oldest_unpaid_due_on)
                .where(_l.c.borrower_id == bindparam("bid")).order_by(_l.c.id))
SQL_HOLDS = Hot(select(_h.c.kind, _h.c.loan_id, _h.c.started_at).where(
    _h.c.borrower_id == bindparam("bid"), _h.c.ended_at.is_(None)))
SQL_OPT_OUTS = Hot(select(_o.c.channel, _o.c.address_index, _o.c.third_party_id, _o.c.created_at).where(
    _o.c.borrower_id == bindparam("bid"), _o.c.revoked_at.is_(None)))
SQL_PREFS = Hot(select(_p.c.kind, _p.c.params).where(
    _p.c.borrower_id == bindparam("bid"), _p.c.revoked_at.is_(None)))
_notice = ContactAttempt.__table__.alias("notice")
SQL_AGREEMENTS = Hot(select(_a.c.loan_id, _a.c.status, _a.c.starts_on, _a.c.ends_on).where(
    _a.c.borrower_id == bindparam("bid"),
    or_(*(_a.c.status == s for s in ACTIVE_AGREEMENT),
        and_(_a.c.status == "broken", _a.c.ended_at > bindparam("notice_cutoff", type_=UTCDateTime()),
             ~exists().where(_notice.c.borrower_id == _a.c.borrower_id,
                             _notice.c.purpose == "agreement_service", _notice.c.at >= _a.c.ended_at)))))
_HISTORY_COLS = (_ca.c.id, _ca.c.at, _ca.c.channel, _ca.c.person_role, _ca.c.third_party_id,
                 _ca.c.to_index, _ca.c.loan_id, _ca.c.result, _ca.c.purpose, _ca.c.initiated_by,
                 _ca.c.consent_until)
# Index-friendly: (borrower_id, at) range on ix_contact_attempt_borrower_at.
SQL_HISTORY = Hot(select(*_HISTORY_COLS)
                   .where(_ca.c.borrower_id == bindparam("bid"), _ca.c.at >= bindparam("since"))
                   .order_by(_ca.c.at, _ca.c.id))
# A third party's own contacts are few and count for ever (contacted at most once, refusal).
SQL_HISTORY_THIRD = Hot(select(*_HISTORY_COLS)
                         .where(_ca.c.borrower_id == bindparam("bid"),
                                _ca.c.third_party_id == bindparam("tpid"))
                         .order_by(_ca.c.at, _ca.c.id))


def person_id_of(borrower_id: str, third_party_id: int | None) -> str:
    return borrower_id if third_party_id is None else f"tp:{third_party_id}"


def third_party_of(person_id: str) -> int | None:
    if person_id.startswith("tp:"):
        return int(person_id[3:])
    return None


@lru_cache(maxsize=1)
def screener() -> Any:
    """The packaged content screener, built once per process (its automaton is costly)."""
    from parley.screening import default_screener

    return default_screener()


_pack_traits: dict[tuple[str, str], tuple[int, bool]] = {}


def _traits(pack: RulePack) -> tuple[int, bool]:
    key = (pack.id, pack.version)
    got = _pack_traits.get(key)
    if got is None:
        longest = max((int(r.params.get("days", 1)) for r in pack.rules), default=1)
        got = (max(MIN_LOOKBACK_DAYS, longest + 2),
               any(r.kind in CALENDAR_KINDS for r in pack.rules))
        _pack_traits[key] = got
    return got


def lookback_days(pack: RulePack) -> int:
    """How many days of history the pack's rules can look at (+2 for zone offsets)."""
    return _traits(pack)[0]


def needs_calendar(pack: RulePack) -> bool:
    """Whether any rule of the pack reads the business calendar."""
    return _traits(pack)[1]


def split_zones(text: str | None) -> tuple[str, ...]:
    return tuple(z for z in (text or "").split(",") if z)


@dataclass(frozen=True, slots=True)
class BorrowerRow:
    """The borrower columns the permit path needs (read under the lock), and whether it has
    any active hold, opt-out, preference or agreement (False = that table need not be read)."""

    id: str
    jurisdiction: str
    declared_timezone: str | None
    audit_seq: int
    audit_head: str
    has_holds: bool = True
    has_opt_outs: bool = True
    has_prefs: bool = True
    has_agreements: bool = True
    # (blind index, valid, timezones, masked) in position order; None = not read yet (then
    # the has_* flags are not known either and are read with the facts).
    phones: tuple[tuple[str, bool, str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class Contactable:
    """What the store knows about the person's addresses, for resolving ``to``.

    phones: (blind index, valid, masked) of the person's numbers in order.
    address: (key, masked) of the first postal address (or the third party); None = not read.
    E-mail addresses are read by the permit only when it sends an e-mail.
    """

    phones: tuple[tuple[str, bool, str], ...]
    address: tuple[str, str] | None


def read_borrower(conn: Connection, borrower_id: str, *, lock: bool) -> BorrowerRow:
    """The borrower row, locked for the rest of the transaction when ``lock`` (FOR UPDATE on
    PostgreSQL; the IMMEDIATE transaction already holds SQLite's write lock)."""
    if lock and conn.dialect.name == "postgresql":
        row = SQL_BORROWER_LOCK.first(conn, {"bid": borrower_id})
        if row is None:
            raise NotFound(f"no borrower {borrower_id!r}")
        return BorrowerRow(row[0], row[1], row[2], int(row[3] or 0), row[4] or "")
    full: Any = SQL_BORROWER.first(conn, {"bid": borrower_id})
    if full is None:
        raise NotFound(f"no borrower {borrower_id!r}")
    row = full
    return BorrowerRow(row[0], row[1], row[2], int(row[3] or 0), row[4] or "", bool(row[5]),
                       bool(row[6]), bool(row[7]), bool(row[8]), _unpack_phones(row[9]))


def _unpack_phones(packed: str | None) -> tuple[tuple[str, bool, str, str], ...]:
    if not packed:
        return ()
    items = []
    for part in packed.split(";"):
        pos, pid, valid, index, masked, zones = part.split("|", 5)
        items.append(((int(pos), int(pid)), (index, valid == "1", zones, masked)))
    items.sort(key=lambda x: x[0])
    return tuple(v for _, v in items)


def pack_for(ctx: Any, borrower: BorrowerRow) -> RulePack:
    return load_pack(borrower.jurisdiction or ctx.settings.default_jurisdiction)


def load_facts(conn: Connection, ctx: Any, borrower_id: str, request_core: ContactRequest,
               now: datetime) -> Facts:
    """The facts for ``request_core`` (person = the borrower, or ``tp:<id>``) at ``now``."""
    borrower = read_borrower(conn, borrower_id, lock=False)
    facts, _ = gather(conn, ctx, borrower, pack_for(ctx, borrower), request_core.role,
                      third_party_of(request_core.person_id), request_core.text, now)
    return facts


def gather(conn: Connection, ctx: Any, borrower: BorrowerRow, pack: RulePack, role: Role,
           third_party_id: int | None, text: str | None, now: datetime
           ) -> tuple[Facts, Contactable]:
    """Facts plus the person's addresses (one read of each table, no decryption)."""
    bid = borrower.id
    since = now - timedelta(days=lookback_days(pack))
    phones = borrower.phones
    hist_rows: list[Any] | None = None
    debts: tuple[DebtStanding, ...] | None = None
    if phones is None and conn.dialect.name == "postgresql":
        f = SQL_FACTS_PG.one(conn, {"bid": bid, "since": since})
        borrower = replace(borrower, has_holds=bool(f[0]), has_opt_outs=bool(f[1]),
                           has_prefs=bool(f[2]), has_agreements=bool(f[3]),
                           phones=_unpack_phones(f[4]))
        phones = borrower.phones
        hist_rows = [_history_from_json(r) for r in (f[5] or ())]
        debts = tuple(DebtStanding(i, None if d is None else date.fromisoformat(d))
                      for i, d in (f[6] or ()))
    elif phones is None:
        phones = tuple((r[0], bool(r[1]), r[2] or "", r[3])
                       for r in SQL_PHONES.rows(conn, {"bid": bid}))
    assert phones is not None  # noqa: S101
    b_zones: tuple[str, ...]
    address_rows: list[Any] = []
    if borrower.declared_timezone:
        b_zones = candidate_zones(borrower.declared_timezone, None, None, ())
    else:
        b_zones = ()
    if not b_zones:
        address_rows = SQL_ADDRESS.rows(conn, {"bid": bid})
        for ad in address_rows[:1]:
            b_zones = zones_for_address(ad[1], ad[2])
    if not b_zones:
        seen: list[str] = []
        for ph in phones:
            for z in split_zones(ph[2]):
                if z not in seen:
                    seen.append(z)
        b_zones = tuple(seen)

    holds: tuple[Hold, ...] = ()
    if borrower.has_holds:
        holds = tuple(Hold(kind, loan_id, started_at)
                      for kind, loan_id, started_at in SQL_HOLDS.rows(conn, {"bid": bid}))
    opt_rows = SQL_OPT_OUTS.rows(conn, {"bid": bid}) if borrower.has_opt_outs else []
    agreements: tuple[AgreementFact, ...] = ()
    if borrower.has_agreements:
        agreements = tuple(
            # Active from acceptance: an accepted plan with a later first date already binds;
            # a broken one still binds until its notice went out (see NOTICE_WAIT).
            AgreementFact(loan_id, "active", date.min, None if st == "broken" else ends_on)
            for loan_id, st, _starts_on, ends_on in SQL_AGREEMENTS.rows(
                conn, {"bid": bid, "notice_cutoff": now - NOTICE_WAIT}))
    if hist_rows is None:
        hist_rows = SQL_HISTORY.rows(conn, {"bid": bid, "since": since})
    if debts is None:
        debts = tuple(DebtStanding(i, d) for i, d in SQL_DEBTS.rows(conn, {"bid": bid}))

    if role is Role.THIRD_PARTY:
        if third_party_id is None:
            raise NotFound("third party not given")
        tp = SQL_THIRD.first(conn, {"tpid": third_party_id, "bid": bid})
        if tp is None:
            raise NotFound(f"no third party {third_party_id} of borrower {bid!r}")
        known = {r[0] for r in hist_rows}
        extra = [r for r in SQL_HISTORY_THIRD.rows(conn, {"bid": bid, "tpid": third_party_id})
                 if r[0] not in known]
        if extra:
            hist_rows = sorted([*hist_rows, *extra], key=lambda r: (r[1], r[0]))
        mine = [r for r in opt_rows if r[2] == third_party_id]
        person = PersonFacts(
            id=person_id_of(bid, third_party_id), role=Role.THIRD_PARTY,
            candidate_zones=split_zones(tp[3]),
            opt_outs=_opt_outs(mine),
            refused=any(r[0] == OPT_OUT_ALL for r in mine),
        )
        contactable = Contactable(((tp[1], True, tp[2]),) if tp[1] else (),
                                  (f"third_party:{tp[0]}", tp[2] or f"third party {tp[0]}"))
    else:
        windows = []
        if borrower.has_prefs:
            for kind, params in SQL_PREFS.rows(conn, {"bid": bid}):
                if kind == "inconvenient_window":
                    windows.append(_window(params))
        mine = [r for r in opt_rows if r[2] is None]
        person = PersonFacts(id=bid, role=Role.BORROWER, candidate_zones=b_zones, holds=holds,
                             opt_outs=_opt_outs(mine), inconvenient_times=tuple(windows))
        contactable = Contactable(tuple((p[0], bool(p[1]), p[3]) for p in phones), None)
        if address_rows:
            ad = address_rows[0]
            contactable = Contactable(contactable.phones,
                                      (f"address:{ad[0]}", " ".join(x for x in (ad[3], ad[2],
                                                                              ad[1]) if x)))
    b_facts = BorrowerFacts(bid, tuple(PhoneFact(p[0], bool(p[1])) for p in phones), b_zones,
                            holds)
    calendar: BusinessCalendar | None = None
    if needs_calendar(pack):
        y = now.year
        calendar = cached_calendar(conn, borrower.jurisdiction, (y - 1, y, y + 1))
    content: ContentScreening | None = None
    if text is not None:
        content = screener().screen(text, third_party=role is Role.THIRD_PARTY)
    facts = Facts(person=person, borrower=b_facts, history=tuple(_record(bid, r) for r in hist_rows),
                  agreements=agreements, calendar=calendar, content=content, debts=debts)
    return facts, contactable


def _utc(text_value: str | None) -> datetime | None:
    return None if text_value is None else datetime.fromisoformat(text_value).replace(tzinfo=UTC)


def _history_from_json(r: list[Any]) -> tuple[Any, ...]:
    """A history row from SQL_FACTS_PG's JSON, shaped like a SQL_HISTORY row."""
    return (r[0], _utc(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], _utc(r[10]))


def _opt_outs(rows: list[Any]) -> tuple[OptOut, ...]:
    out: list[OptOut] = []
    for channel, index, _tp, since in rows:
        if channel == OPT_OUT_ALL:
            out.extend(OptOut(c, None, since) for c in Channel)
        else:
            out.append(OptOut(Channel(channel), index or None, since))
    return tuple(out)


def _window(params: str) -> LocalWindow:
    p = json.loads(params or "{}")
    h1, m1 = (int(x) for x in str(p["from"]).split(":"))
    h2, m2 = (int(x) for x in str(p["to"]).split(":"))
    return LocalWindow(time(h1, m1), time(h2, m2))


def _record(bid: str, r: Any) -> ContactRecord:
    _id, at, channel, role, tpid, to, loan_id, result, purpose, initiated_by, consent = r
    return ContactRecord(
        at=at, channel=channel, person_id=person_id_of(bid, tpid),
        role=Role.THIRD_PARTY if role == "third_party" else Role.BORROWER,
        to=to or "", debt_id=loan_id, result=result, purpose=purpose,
        initiated_by="consumer" if initiated_by == "consumer" else "collector",
        consent_until=consent)


# --- JSON form for the audit log and replay -------------------------------------------------


def _t(v: datetime | None) -> str | None:
    return None if v is None else v.astimezone(UTC).isoformat()


def _pt(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


def request_json(r: ContactRequest) -> dict[str, Any]:
    return {"at": _t(r.at), "channel": str(r.channel), "person_id": r.person_id,
            "role": str(r.role), "to": r.to, "purpose": str(r.purpose), "debt_id": r.debt_id,
            "text": r.text, "collectors": [[c.id, c.name, c.badge] for c in r.collectors]}


def request_from_json(d: dict[str, Any]) -> ContactRequest:
    return ContactRequest(at=_pt(d["at"]), channel=d["channel"],  # type: ignore[arg-type]
                          person_id=d["person_id"], role=d["role"], to=d["to"],
                          purpose=d["purpose"], debt_id=d["debt_id"], text=d["text"],
                          collectors=tuple(Collector(*c) for c in d["collectors"]))


def _holds_json(holds: tuple[Hold, ...]) -> list[list[Any]]:
    return [[str(h.kind), h.debt_id, _t(h.since)] for h in holds]


def _holds_from(items: list[list[Any]]) -> tuple[Hold, ...]:
    return tuple(Hold(k, d, _pt(s)) for k, d, s in items)


def facts_json(f: Facts) -> dict[str, Any]:
    """The facts as compact JSON (lists, not objects, for the per-contact history)."""
    p = f.person
    out: dict[str, Any] = {
        "person": {"id": p.id, "role": str(p.role), "zones": list(p.candidate_zones),
                   "holds": _holds_json(p.holds),
                   "opt_outs": [[str(o.channel), o.to, _t(o.since)] for o in p.opt_outs],
                   "windows": [[w.start.strftime("%H:%M"), w.end.strftime("%H:%M")]
                               for w in p.inconvenient_times],
                   "refused": p.refused, "requested_contact": p.requested_contact},
        "borrower": None,
        "history": [[_t(r.at), str(r.channel), r.person_id, str(r.role), r.to, r.debt_id,
                     None if r.result is None else str(r.result), str(r.purpose),
                     r.initiated_by, _t(r.consent_until)] for r in f.history],
        "agreements": [[a.debt_id, a.status, a.starts_on.isoformat(),
                        None if a.ends_on is None else a.ends_on.isoformat()]
                       for a in f.agreements],
        "calendar": None,
        "content": None,
        "debts": None if f.debts is None else [
            [s.debt_id, None if s.oldest_unpaid_due_on is None else s.oldest_unpaid_due_on.isoformat()]
            for s in f.debts],
    }
    if f.borrower is not None:
        b = f.borrower
        out["borrower"] = {"id": b.id, "phones": [[ph.number, ph.valid] for ph in b.phones],
                           "zones": list(b.candidate_zones), "holds": _holds_json(b.holds)}
    if f.calendar is not None:
        c = f.calendar
        out["calendar"] = {"years": sorted(c.years),
                           "holidays": sorted(d.isoformat() for d in c.holidays),
                           "workdays": sorted(d.isoformat() for d in c.workdays)}
    if f.content is not None:
        out["content"] = {"lexicon_version": f.content.lexicon_version,
                          "hits": [[h.category, h.term, h.matched] for h in f.content.hits]}
    return out


def facts_from_json(d: dict[str, Any]) -> Facts:
    p = d["person"]
    person = PersonFacts(
        id=p["id"], role=p["role"], candidate_zones=tuple(p["zones"]),
        holds=_holds_from(p["holds"]),
        # decisions logged before opt-outs carried their date have two items
        opt_outs=tuple(OptOut(o[0], o[1], _pt(o[2]) if len(o) > 2 else None)
                       for o in p["opt_outs"]),
        inconvenient_times=tuple(LocalWindow(time.fromisoformat(a), time.fromisoformat(b))
                                 for a, b in p["windows"]),
        refused=p["refused"], requested_contact=p["requested_contact"])
    borrower = None
    if d.get("borrower") is not None:
        b = d["borrower"]
        borrower = BorrowerFacts(b["id"], tuple(PhoneFact(n, v) for n, v in b["phones"]),
                                 tuple(b["zones"]), _holds_from(b["holds"]))
    history = tuple(
        ContactRecord(at=_pt(at), channel=ch, person_id=pid, role=role,  # type: ignore[arg-type]
                      to=to, debt_id=debt, result=res, purpose=purpose, initiated_by=ini,
                      consent_until=_pt(cu))
        for at, ch, pid, role, to, debt, res, purpose, ini, cu in d["history"])
    agreements = tuple(AgreementFact(debt, st, date.fromisoformat(s),
                                     None if e is None else date.fromisoformat(e))
                       for debt, st, s, e in d["agreements"])
    calendar = None
    if d.get("calendar") is not None:
        c = d["calendar"]
        calendar = BusinessCalendar(frozenset(c["years"]),
                                    frozenset(date.fromisoformat(x) for x in c["holidays"]),
                                    frozenset(date.fromisoformat(x) for x in c["workdays"]))
    content = None
    if d.get("content") is not None:
        c = d["content"]
        content = ContentScreening(c["lexicon_version"],
                                   tuple(ContentHit(cat, term, m) for cat, term, m in c["hits"]))
    debts = None
    if d.get("debts") is not None:  # decisions logged before debts were recorded have none
        debts = tuple(DebtStanding(i, None if o is None else date.fromisoformat(o))
                      for i, o in d["debts"])
    return Facts(person=person, borrower=borrower, history=history, agreements=agreements,
                 calendar=calendar, content=content, debts=debts)


def compact_decision(d: Decision) -> dict[str, Any]:
    """The decision as stored: outcome, pack, times and every finding's rule, effect and
    runtime params (texts are the pack's, so they are not repeated per decision)."""
    full = d.to_json("en")
    return {
        "decision": full["decision"],
        "pack": full["pack"],
        "decided_at": _t(d.decided_at),
        "next_allowed_at": _t(d.next_allowed_at),
        "reasons": [{"rule": r["rule"], "effect": r["effect"], "params": r["params"]}
                    for r in full["reasons"]],
    }


def stored_decision(payload: dict[str, Any]) -> Decision:
    """The decision as it was stored, rebuilt without deciding again: for a permit whose pack
    has since changed version (replaying it under the new rules would be another decision).
    Texts and citations come from the current pack where the rule still exists, the rule id
    otherwise."""
    stored = payload["decision"]
    pack_id, version = payload["pack"]["id"], payload["pack"]["version"]
    rules = {r.id: r for r in load_pack(pack_id).rules}
    findings = []
    for r in stored["reasons"]:
        rule = rules.get(r["rule"])
        findings.append(Finding(
            r["rule"], rule.citation_text if rule is not None else "", r["effect"],
            rule.texts[r["effect"]] if rule is not None else {lang: r["rule"] for lang in LANGS},
            r["params"] or {}, rule.provisional if rule is not None else False))
    reasons = tuple(findings)
    return Decision(stored["decision"] == "allow", reasons, _pt(stored["next_allowed_at"]),
                    tuple(f for f in reasons if f.effect == "advise"), pack_id, version,
                    _pt(stored["decided_at"]) or datetime.min.replace(tzinfo=UTC))


def replay_decision(payload: dict[str, Any]) -> tuple[Decision, dict[str, Any]]:
    """Decide again from a stored gate payload's inputs; returns the decision and its compact
    form (compare with ``payload['decision']``). The pack must still be at the stored version."""
    pack = load_pack(payload["pack"]["id"])
    if pack.version != payload["pack"]["version"]:
        raise ValueError(f"pack {pack.id} is at {pack.version}, the decision used "
                         f"{payload['pack']['version']}")
    decision = decide(request_from_json(payload["request"]), facts_from_json(payload["facts"]),
                      pack)
    return decision, compact_decision(decision)


__all__ = [
    "OPT_OUT_ALL",
    "BorrowerRow",
    "Contactable",
    "compact_decision",
    "facts_from_json",
    "facts_json",
    "gather",
    "load_facts",
    "person_id_of",
    "read_borrower",
    "replay_decision",
    "request_from_json",
    "stored_decision",
    "request_json",
    "third_party_of",
]
