"""The permit: every contact decided at send time, in the transaction that records it.

``request_permit`` is the gate's imperative shell (brief, invariants 2-7):

    lock the borrower → load the facts → decide at ``ctx.clock.now()`` → append the decision
    to the borrower's audit chain (+ decision_reason rows) → when allowed, record the attempt

all in one transaction, so concurrent workers are serialised per borrower and a cap counted
from the history can never be exceeded: the attempt that would exceed it sees the attempts
committed before it. Outcomes come later (``record_outcome``) against the same attempt.

``check_contact`` asks "may I contact now?" without recording an attempt (logged as a
preview). Holds and opt-outs are changed through ``place_hold``/``end_hold``/``add_opt_out``,
each audited on the borrower's chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

import phonenumbers
from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.exc import IntegrityError

from parley.adapters.crypto import mask_phone
from parley.core.gate import (
    CallResult,
    Channel,
    Collector,
    ContactRequest,
    Decision,
    HoldKind,
    Purpose,
    Role,
    decide,
)
from parley.errors import Conflict, InvalidInput, NotFound
from parley.services.audit import append_at_head, audit_key, prepare_entry, write_at_head
from parley.services.facts import (
    OPT_OUT_ALL,
    SQL_ADDRESS,
    SQL_THIRD,
    BorrowerRow,
    Contactable,
    compact_decision,
    facts_json,
    gather,
    pack_for,
    person_id_of,
    read_borrower,
    replay_decision,
    request_json,
    stored_decision,
)
from parley.services.gate_check import check_scenario, load_pack
from parley.store.hot import Hot
from parley.store.models.base import table_of
from parley.store.models.contacts import AuditLog, ContactAttempt, DecisionReason
from parley.store.models.contacts import Hold as HoldRow
from parley.store.models.contacts import OptOut as OptOutRow
from parley.store.models.loanbook import BorrowerEmail, BorrowerPhone

T = TypeVar("T")
RECORD = "permit"
INITIATORS = ("collector", "consumer", "system")

_ca = table_of(ContactAttempt)
_dr = table_of(DecisionReason)
_al = table_of(AuditLog)
_em = table_of(BorrowerEmail)
_ph = table_of(BorrowerPhone)
_h = table_of(HoldRow)
_o = table_of(OptOutRow)

# Hot statements (parley.store.hot): every permit and every outcome runs them.
SQL_BY_KEY = Hot(select(_ca.c.id, _ca.c.borrower_id, _ca.c.decision_id, _ca.c.to_masked).where(
    _ca.c.idempotency_key == bindparam("key")))
SQL_PAYLOAD = Hot(select(_al.c.payload).where(_al.c.id == bindparam("id")))
SQL_EMAILS = Hot(select(_em.c.address).where(_em.c.borrower_id == bindparam("bid"))
                 .order_by(_em.c.position, _em.c.id))
SQL_ATTEMPT_INSERT = Hot(_ca.insert().returning(_ca.c.id))
SQL_REASON_INSERT = Hot(_dr.insert())


class _AttemptRow(NamedTuple):
    """What record_outcome reads of an attempt (SQL_OUTCOME_ATTEMPT selects these columns)."""

    borrower_id: str
    result: str | None
    person_role: str
    third_party_id: int | None
    channel: str
    to_index: str
    loan_id: str | None


# record_outcome: the attempt, and setting its outcome once (the SET columns are parameters).
SQL_OUTCOME_ATTEMPT = Hot(select(*(_ca.c[f] for f in _AttemptRow._fields))
                          .where(_ca.c.id == bindparam("aid")))
SQL_OUTCOME_SET = Hot(_ca.update().where(_ca.c.id == bindparam("aid"), _ca.c.result.is_(None)))


@dataclass(frozen=True, slots=True)
class PermitRequest:
    """A contact someone wants to make now.

    borrower_id: whose debt. channel: call, sms, email, visit, interview. purpose:
        collection, agreement_service, location. loan_id: the debt (None = the borrower in
        general, which counts against every debt).
    to: E.164 number, e-mail or ``address:<id>``; empty = the person's first valid number
        (call/sms), first e-mail (email) or first address (visit/interview).
    third_party_id: contact a third party of the borrower instead (None = the borrower).
    text / template_id: the message (text is screened); None = none.
    collector_id / agency_id / badge: who contacts (identified on the record).
    collectors: (id, name, badge) of everyone attending a visit; empty for remote channels.
    queue_item_id: the queue item this drains. idempotency_key: a retry with the same key
        returns the first permit and records nothing new; the key with a different request is
        a Conflict. initiated_by: collector, consumer or system. consent_until: Reg F prior
        consent given for calls until then.
    """

    borrower_id: str
    channel: str
    purpose: str
    loan_id: str | None = None
    to: str = ""
    third_party_id: int | None = None
    text: str | None = None
    template_id: str | None = None
    collector_id: str | None = None
    agency_id: str | None = None
    badge: str | None = None
    collectors: tuple[tuple[str, str, str], ...] = ()
    queue_item_id: int | None = None
    idempotency_key: str | None = None
    initiated_by: str = "collector"
    consent_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    """The gate's answer, on the record.

    decision: the core decision (reasons, next_allowed_at, flags). decision_id: its
    audit_log id. attempt_id: the contact_attempt recorded (None when denied or a preview).
    to_masked: who is contacted, safe to show. repeated: True when an idempotency key
    returned an earlier permit (nothing new recorded).
    """

    allowed: bool
    decision: Decision
    decision_id: int
    attempt_id: int | None
    to_masked: str
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class OutcomeRecorded:
    attempt_id: int
    result: str
    audit_id: int


# --- validation and addressing ---------------------------------------------------------------


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, record=RECORD, field=field)


def _enum(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except (ValueError, TypeError) as exc:
        raise _bad(field, f"{value!r} is not one of: {', '.join(m.value for m in enum)}") from exc


def _validate(req: PermitRequest) -> tuple[Channel, Purpose, Role]:
    if not isinstance(req.borrower_id, str) or not req.borrower_id:
        raise _bad("borrower_id", "required")
    channel = _enum(Channel, req.channel, "channel")
    purpose = _enum(Purpose, req.purpose, "purpose")
    if req.initiated_by not in INITIATORS:
        raise _bad("initiated_by", f"one of {', '.join(INITIATORS)}")
    if req.third_party_id is not None and (isinstance(req.third_party_id, bool)
                                           or not isinstance(req.third_party_id, int)):
        raise _bad("third_party_id", "expected an integer")
    if req.text is not None and not isinstance(req.text, str):
        raise _bad("text", "expected a string")
    if channel in (Channel.SMS, Channel.EMAIL) and not (req.text or "").strip() \
            and not req.template_id:
        # A message with nothing in it would go on the record with no content and unscreened.
        raise _bad("text", f"a message by {channel} needs non-blank text or a template_id")
    for i, c in enumerate(req.collectors):
        if len(c) != 3 or not all(isinstance(x, str) for x in c) or not c[0]:
            raise _bad(f"collectors[{i}]", "expected (id, name, badge)")
    if req.consent_until is not None and req.consent_until.tzinfo is None:
        raise _bad("consent_until", "must be timezone-aware")
    return channel, purpose, Role.BORROWER if req.third_party_id is None else Role.THIRD_PARTY


@lru_cache(maxsize=4096)
def _e164(value: str) -> str:
    # Cached: parsing a number is a tenth of a permit, and the same numbers are dialled daily.
    try:
        num = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException as exc:
        raise _bad("to", f"not an E.164 phone number: {value!r}") from exc
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


def _address_to(conn: Connection, ctx: Any, req: PermitRequest, channel: Channel, role: Role,
                contactable: Contactable, bid: str) -> tuple[str, str]:
    """(to_index, to_masked) for the request: the blind index of a phone, an e-mail address,
    or an address key. Raises InvalidInput when the person has no such address."""
    if channel in (Channel.CALL, Channel.SMS):
        if req.to:
            idx = ctx.keyring.blind_index(_e164(req.to), "phone")
            for p_idx, _valid, masked in contactable.phones:
                if p_idx == idx:
                    return idx, masked
            raise _bad("to", "not one of the person's phone numbers")
        for p_idx, valid, masked in contactable.phones:
            if valid:
                return p_idx, masked
        raise _bad("to", "the person has no valid phone number")
    if channel is Channel.EMAIL:
        if role is Role.THIRD_PARTY:
            raise _bad("to", "no e-mail address is kept for third parties")
        emails = [e for (e,) in SQL_EMAILS.rows(conn, {"bid": bid})]
        if req.to:
            want = req.to.strip().lower()
            for e in emails:
                if e.lower() == want:
                    return want, mask_email(e)
            raise _bad("to", "not one of the borrower's e-mail addresses")
        if not emails:
            raise _bad("to", "the borrower has no e-mail address")
        return emails[0].lower(), mask_email(emails[0])
    # visit / interview: an address key
    if req.to:
        return req.to.strip(), req.to.strip()
    if contactable.address is None and role is Role.BORROWER:
        rows = SQL_ADDRESS.rows(conn, {"bid": bid})
        if rows:
            ad = rows[0]
            return f"address:{ad[0]}", " ".join(x for x in (ad[3], ad[2], ad[1]) if x)
    if contactable.address is not None:
        return contactable.address
    raise _bad("to", "the borrower has no address on file")


# --- the permit ------------------------------------------------------------------------------


def request_permit(ctx: Any, req: PermitRequest, *, conn: Connection | None = None) -> Permit:
    """Decide ``req`` now and, when allowed, record the attempt — one transaction (the
    caller's ``conn`` if given: a write transaction from ``Database.transaction()``, which the
    borrower lock then spans). Raises NotFound (borrower/third party), InvalidInput (bad
    field or no address), Conflict (idempotency key used for another borrower or request)."""
    return _run(ctx, conn, lambda c: _decide_and_record(c, ctx, req, preview=False))


def check_contact(ctx: Any, req: PermitRequest, *, conn: Connection | None = None) -> Permit:
    """"May I contact now?": the same decision, logged as ``gate.preview``; no attempt."""
    return _run(ctx, conn, lambda c: _decide_and_record(c, ctx, req, preview=True))


def _decide_and_record(conn: Connection, ctx: Any, req: PermitRequest, *, preview: bool) -> Permit:
    channel, purpose, role = _validate(req)
    borrower = read_borrower(conn, req.borrower_id, lock=True)
    if req.idempotency_key and not preview:
        seen = SQL_BY_KEY.first(conn, {"key": req.idempotency_key})
        if seen is not None:
            return _repeat(conn, ctx, req, seen, channel, purpose)
    now = ctx.clock.now()
    pack = pack_for(ctx, borrower)
    facts, contactable = gather(conn, ctx, borrower, pack, role, req.third_party_id, req.text,
                                now)
    to_index, to_masked = _address_to(conn, ctx, req, channel, role, contactable, borrower.id)
    collectors = tuple(Collector(*c) for c in req.collectors)
    request = ContactRequest(at=now, channel=channel,
                             person_id=person_id_of(borrower.id, req.third_party_id), role=role,
                             to=to_index, purpose=purpose, debt_id=req.loan_id, text=req.text,
                             collectors=collectors)
    decision = decide(request, facts, pack)
    record = decision.allowed and not preview
    entry, reasons = _decision_entry(ctx, borrower, req, request, facts, decision, to_masked,
                                     preview=preview)
    attempt = _attempt_values(req, borrower.id, request, to_masked) if record else None
    if conn.dialect.name == "postgresql":
        audit_id, attempt_id = _write_pg(conn, borrower.id, entry, reasons, attempt)
        return Permit(decision.allowed, decision, audit_id, attempt_id, to_masked)
    audit_id = write_at_head(conn, entry)
    if reasons:
        SQL_REASON_INSERT.run_many(conn, [{**r, "audit_id": audit_id} for r in reasons])
    attempt_id = None
    if attempt is not None:
        attempt["decision_id"] = audit_id
        attempt_id = _insert_attempt(conn, req, attempt)
    return Permit(decision.allowed, decision, audit_id, attempt_id, to_masked)


_AUDIT_COLS = ("chain_key", "seq", "at", "kind", "actor", "borrower_id", "subject", "outcome",
               "rules", "payload", "prev_hash", "hash")
_REASON_COLS = ("borrower_id", "at", "rule_id", "effect", "channel", "collector_id")
_ATTEMPT_COLS = ("borrower_id", "loan_id", "person_role", "third_party_id", "channel", "to_index",
                 "to_masked", "purpose", "direction", "initiated_by", "at", "collector_id",
                 "agency_id", "badge", "template_id", "content", "consent_until", "result",
                 "result_at", "recording_ref", "notes", "queue_item_id", "idempotency_key")
_pg_sql: dict[tuple[int, bool], Hot] = {}


def _pg_statement(n_reasons: int, with_attempt: bool) -> Hot:
    """One statement for the whole write on PostgreSQL (data-modifying CTEs): the audit entry,
    the chain head, the decision_reason rows and the attempt, in a single round trip."""
    key = (n_reasons, with_attempt)
    stmt = _pg_sql.get(key)
    if stmt is not None:
        return stmt
    parts = [
        f"a AS (INSERT INTO audit_log ({', '.join(_AUDIT_COLS)}) VALUES "
        f"({', '.join(':a_' + c for c in _AUDIT_COLS)}) RETURNING id)",
        "h AS (UPDATE borrower SET audit_seq = :a_seq, audit_head = :a_hash WHERE id = :bid)",
    ]
    for i in range(n_reasons):
        parts.append(
            f"r{i} AS (INSERT INTO decision_reason (audit_id, {', '.join(_REASON_COLS)}) "
            f"SELECT a.id, {', '.join(f':r{i}_' + c for c in _REASON_COLS)} FROM a)")
    tail = "SELECT (SELECT id FROM a), NULL::integer"
    if with_attempt:
        parts.append(
            f"c AS (INSERT INTO contact_attempt (decision_id, {', '.join(_ATTEMPT_COLS)}) "
            f"SELECT a.id, {', '.join(':c_' + c for c in _ATTEMPT_COLS)} FROM a RETURNING id)")
        tail = "SELECT (SELECT id FROM a), (SELECT id FROM c)"
    stmt = Hot(text("WITH " + ",\n".join(parts) + "\n" + tail))
    _pg_sql[key] = stmt
    return stmt


def _write_pg(conn: Connection, bid: str, entry: dict[str, Any], reasons: list[dict[str, Any]],
              attempt: dict[str, Any] | None) -> tuple[int, int | None]:
    params: dict[str, Any] = {"bid": bid}
    params.update({"a_" + k: v for k, v in entry.items()})
    for i, r in enumerate(reasons):
        params.update({f"r{i}_{k}": v for k, v in r.items()})
    if attempt is not None:
        params.update({"c_" + k: attempt[k] for k in _ATTEMPT_COLS})
    try:
        row = _pg_statement(len(reasons), attempt is not None).one(conn, params)
    except IntegrityError as exc:
        if attempt is not None and attempt.get("idempotency_key"):
            raise Conflict(f"idempotency key {attempt['idempotency_key']!r} is already in use"
                           ) from exc
        raise
    return int(row[0]), None if row[1] is None else int(row[1])


def _repeat(conn: Connection, ctx: Any, req: PermitRequest, seen: Any, channel: Channel,
            purpose: Purpose) -> Permit:
    """The permit an idempotency key already holds, when ``req`` is the request it was given
    for. Another request under the same key is a Conflict: returning the old permit would
    let an unscreened message, another channel or another person ride on it."""
    attempt_id, bid, decision_id, to_masked = seen
    if bid != req.borrower_id:
        raise Conflict(f"idempotency key {req.idempotency_key!r} was used for another borrower")
    payload = json.loads(SQL_PAYLOAD.one(conn, {"id": decision_id})[0])
    differs = _differences(ctx, req, channel, purpose, payload)
    if differs:
        raise Conflict(f"idempotency key {req.idempotency_key!r} was used for another request "
                       f"(different {', '.join(differs)}); a new contact needs a new key")
    # Under the pack version that made it, the same decision again; a pack since upgraded
    # would decide anew, so the stored decision is rebuilt instead (the worker and the notice
    # path ask the gate afresh before they send in any case).
    if load_pack(payload["pack"]["id"]).version == payload["pack"]["version"]:
        decision, _ = replay_decision(payload)
    else:
        decision = stored_decision(payload)
    return Permit(decision.allowed, decision, int(decision_id), int(attempt_id), to_masked,
                  repeated=True)


def _differences(ctx: Any, req: PermitRequest, channel: Channel, purpose: Purpose,
                 payload: dict[str, Any]) -> list[str]:
    """The fields in which ``req`` is not the request decided in ``payload`` (its gate.decision
    entry), in PermitRequest's words; empty = the same request."""
    asked, context = payload["request"], payload["context"]
    differs = [name for name, was, now in (
        ("channel", asked["channel"], str(channel)),
        ("purpose", asked["purpose"], str(purpose)),
        ("loan_id", context["loan_id"], req.loan_id),
        ("third_party_id", context["third_party_id"], req.third_party_id),
        # who contacts is on the record: another collector's permit is not theirs to use
        ("collector_id", context["collector_id"], req.collector_id),
        ("agency_id", context["agency_id"], req.agency_id),
        ("badge", context["badge"], req.badge),
    ) if was != now]
    # ``to`` as asked: the same explicit address, or both the person's default. (A decision
    # from before ``to_given`` was kept can only be held to an explicit address.)
    given = context.get("to_given")
    if req.to:
        if given is False or _asked_index(ctx, channel, req.to) != asked["to"]:
            differs.append("to")
    elif given:
        differs.append("to")
    # The worker composes a queue item's message again when it retries (today's amount and
    # days overdue): the same item and template is the same message, and the worker screens
    # the new text with check_contact before it sends it.
    rerendered = (req.queue_item_id is not None and req.template_id is not None
                  and context["queue_item_id"] == req.queue_item_id)
    if (asked["text"] or "") != (req.text or "") and not rerendered:
        differs.append("text")
    if context["template_id"] != req.template_id:
        differs.append("template_id")
    return differs


def _asked_index(ctx: Any, channel: Channel, to: str) -> str:
    """The index ``_address_to`` gives an explicit ``to`` (what the decision's request keeps)."""
    if channel in (Channel.CALL, Channel.SMS):
        return str(ctx.keyring.blind_index(_e164(to), "phone"))
    if channel is Channel.EMAIL:
        return to.strip().lower()
    return to.strip()


def _decision_entry(ctx: Any, borrower: BorrowerRow, req: PermitRequest,
                    request: ContactRequest, facts: Any, decision: Decision, to_masked: str,
                    *, preview: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The audit_log row of the decision and its decision_reason rows (without audit_id)."""
    findings = [f for f in decision.reasons if f.effect in ("deny", "advise")]
    payload = {
        "request": request_json(request),
        "context": {"loan_id": req.loan_id, "third_party_id": req.third_party_id,
                    "to_masked": to_masked, "to_given": bool(req.to),
                    "collector_id": req.collector_id,
                    "agency_id": req.agency_id, "badge": req.badge,
                    "template_id": req.template_id, "queue_item_id": req.queue_item_id,
                    "idempotency_key": req.idempotency_key, "initiated_by": req.initiated_by},
        "facts": facts_json(facts),
        "decision": compact_decision(decision),
        "pack": {"id": decision.pack_id, "version": decision.pack_version},
    }
    entry = prepare_entry(
        chain_key=borrower.id, head_seq=borrower.audit_seq, head_hash=borrower.audit_head,
        kind="gate.preview" if preview else "gate.decision", payload=payload,
        at=request.at, actor=req.collector_id or req.initiated_by, borrower_id=borrower.id,
        subject=req.loan_id or "", outcome=decision.outcome,
        rules=[f.rule_id for f in findings], key=_key(ctx))
    reasons = [{"borrower_id": borrower.id, "at": request.at, "rule_id": f.rule_id,
                "effect": f.effect, "channel": str(request.channel),
                "collector_id": req.collector_id} for f in findings]
    return entry, reasons


def _key(ctx: Any) -> bytes:
    return audit_key(ctx)


def _attempt_values(req: PermitRequest, bid: str, request: ContactRequest,
                    to_masked: str) -> dict[str, Any]:
    notes = ""
    if request.collectors:
        notes = "attended by: " + "; ".join(f"{c.id} {c.name} ({c.badge})".strip()
                                            for c in request.collectors)
    return {
        "borrower_id": bid, "loan_id": req.loan_id, "person_role": str(request.role),
        "third_party_id": req.third_party_id, "channel": str(request.channel),
        "to_index": request.to, "to_masked": to_masked, "purpose": str(request.purpose),
        "direction": "inbound" if req.initiated_by == "consumer" else "outbound",
        "initiated_by": req.initiated_by, "at": request.at,
        "collector_id": req.collector_id, "agency_id": req.agency_id,
        "badge": req.badge or (request.collectors[0].badge if request.collectors else None),
        "template_id": req.template_id, "content": req.text or "",
        "consent_until": req.consent_until, "result": None, "result_at": None,
        "recording_ref": None, "notes": notes, "queue_item_id": req.queue_item_id,
        "decision_id": None, "idempotency_key": req.idempotency_key,
    }


def _insert_attempt(conn: Connection, req: PermitRequest, values: dict[str, Any]) -> int:
    try:
        return int(SQL_ATTEMPT_INSERT.one(conn, values)[0])
    except IntegrityError as exc:
        # Only another borrower's permit can hold the key (ours was checked under the lock);
        # the whole permit rolls back with this error.
        raise Conflict(f"idempotency key {req.idempotency_key!r} is already in use") from exc


def _run(ctx: Any, conn: Connection | None, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in the caller's transaction, or in a new one (retried on deadlock)."""
    if conn is not None:
        return work(conn)
    return ctx.db.run(work)  # type: ignore[no-any-return]


# --- outcomes --------------------------------------------------------------------------------


def record_outcome(ctx: Any, attempt_id: int, result: str, *, recording_ref: str | None = None,
                   notes: str = "", consent_until: datetime | None = None,
                   by: str | None = None, conn: Connection | None = None) -> OutcomeRecorded:
    """Set the outcome of an attempt, once (a second time raises Conflict), on the record.

    A third party's ``refused`` records a refusal (an opt-out of every channel) so the gate
    never contacts them again; the borrower's ``wrong_party`` marks that number invalid.
    """
    res = _enum(CallResult, result, "result")
    if consent_until is not None and consent_until.tzinfo is None:
        raise _bad("consent_until", "must be timezone-aware")

    def work(conn: Connection) -> OutcomeRecorded:
        row = SQL_OUTCOME_ATTEMPT.first(conn, {"aid": attempt_id})
        if row is None:
            raise NotFound(f"no contact attempt {attempt_id}")
        att = _AttemptRow(*row)
        borrower = read_borrower(conn, att.borrower_id, lock=True)
        if conn.dialect.name == "postgresql":
            # Read again under the borrower's lock (SQLite's IMMEDIATE transaction has held
            # the write lock from its start, so the first read was already under it).
            att = _AttemptRow(*SQL_OUTCOME_ATTEMPT.one(conn, {"aid": attempt_id}))
        if att.result is not None:
            raise Conflict(f"contact attempt {attempt_id} already has outcome {att.result!r}")
        now = ctx.clock.now()
        values: dict[str, Any] = {"result": str(res), "result_at": now,
                                  "recording_ref": recording_ref, "notes": notes}
        if consent_until is not None:
            values["consent_until"] = consent_until
        if SQL_OUTCOME_SET.run(conn, {"aid": attempt_id, **values}) != 1:
            raise Conflict(f"contact attempt {attempt_id} already has an outcome")
        effects: list[str] = []
        if res is CallResult.REFUSED and att.person_role == "third_party":
            conn.execute(_o.insert(), {"borrower_id": borrower.id,
                                       "third_party_id": att.third_party_id,
                                       "channel": OPT_OUT_ALL, "address_index": None,
                                       "created_at": now, "revoked_at": None})
            effects.append("third_party_refused")
        if (res is CallResult.WRONG_PARTY and att.person_role == "borrower"
                and att.channel in ("call", "sms") and att.to_index):
            conn.execute(_ph.update().where(_ph.c.borrower_id == borrower.id,
                                            _ph.c.e164_index == att.to_index)
                         .values(is_valid=False))
            effects.append("phone_marked_invalid")
        payload = {"attempt_id": attempt_id, "result": str(res), "recording_ref": recording_ref,
                   "notes": notes, "consent_until": consent_until, "effects": effects,
                   "channel": att.channel, "person_role": att.person_role,
                   "third_party_id": att.third_party_id}
        audit_id, _, _ = append_at_head(
            conn, chain_key=borrower.id, head_seq=borrower.audit_seq,
            head_hash=borrower.audit_head, kind="contact.outcome", payload=payload, at=now,
            actor=by or "system", borrower_id=borrower.id, subject=att.loan_id or "",
            outcome=str(res), key=_key(ctx))
        return OutcomeRecorded(attempt_id, str(res), audit_id)

    return _run(ctx, conn, work)


# --- contacts the person started -------------------------------------------------------------

INBOUND_CHANNELS = (Channel.CALL, Channel.SMS, Channel.EMAIL)


@dataclass(frozen=True, slots=True)
class InboundRecorded:
    attempt_id: int
    audit_id: int
    to_masked: str


def record_inbound(ctx: Any, borrower_id: str, channel: str, *, sender: str | None = None,
                   loan_id: str | None = None, third_party_id: int | None = None,
                   spoke: bool = False, notes: str = "", by: str = "system",
                   conn: Connection | None = None) -> InboundRecorded:
    """Put on the record a contact the person started: a call they made, an SMS or e-mail
    they sent. Nothing is decided (it already happened), so it is not a permit; it is
    history the gate reads — consumer-initiated calls never count as attempts, and under
    Reg F § 1006.14(h)(2)(ii) a person who opted out of a medium and then uses it may be
    answered once through it — and an entry on the borrower's audit chain.

    sender: the number or address they used (None = not known; an opt-out of one address
    then never counts it as coming from there). spoke: a call that reached someone (its
    result is ``conversation``). InvalidInput names the field; NotFound for an unknown
    borrower or third party."""
    ch = _enum(Channel, channel, "channel")
    if ch not in INBOUND_CHANNELS:
        raise _bad("channel", f"one of {', '.join(str(c) for c in INBOUND_CHANNELS)}")
    if third_party_id is not None and (isinstance(third_party_id, bool)
                                       or not isinstance(third_party_id, int)):
        raise _bad("third_party_id", "expected an integer")
    if len(notes) > 2000:
        raise _bad("notes", "at most 2000 characters")
    if spoke and ch is not Channel.CALL:
        raise _bad("spoke", "only a call is spoken")
    index = masked = ""
    if sender is not None and sender.strip():
        if ch is Channel.EMAIL:
            index = sender.strip().lower()
            if "@" not in index:
                raise _bad("sender", f"not an e-mail address: {sender!r}")
            masked = mask_email(index)
        else:
            try:
                number = _e164(sender)
            except InvalidInput:
                raise _bad("sender", f"not an E.164 phone number: {sender!r}") from None
            index, masked = ctx.keyring.blind_index(number, "phone"), mask_phone(number)

    def work(conn: Connection) -> InboundRecorded:
        borrower = read_borrower(conn, borrower_id, lock=True)
        if third_party_id is not None and SQL_THIRD.first(
                conn, {"tpid": third_party_id, "bid": borrower.id}) is None:
            raise NotFound(f"no third party {third_party_id} of borrower {borrower.id!r}")
        now = ctx.clock.now()
        role = Role.BORROWER if third_party_id is None else Role.THIRD_PARTY
        values = {
            "borrower_id": borrower.id, "loan_id": loan_id, "person_role": str(role),
            "third_party_id": third_party_id, "channel": str(ch), "to_index": index,
            "to_masked": masked, "purpose": str(Purpose.COLLECTION), "direction": "inbound",
            "initiated_by": "consumer", "at": now, "collector_id": None, "agency_id": None,
            "badge": None, "template_id": None, "content": "", "consent_until": None,
            "result": str(CallResult.CONVERSATION) if ch is Channel.CALL and spoke else None,
            "result_at": now if ch is Channel.CALL and spoke else None, "recording_ref": None,
            "notes": notes, "queue_item_id": None, "decision_id": None, "idempotency_key": None,
        }
        attempt_id = int(SQL_ATTEMPT_INSERT.one(conn, values)[0])
        audit_id, _, _ = append_at_head(
            conn, chain_key=borrower.id, head_seq=borrower.audit_seq,
            head_hash=borrower.audit_head, kind="contact.inbound",
            payload={"attempt_id": attempt_id, "channel": str(ch), "from_masked": masked,
                     "person_role": str(role), "third_party_id": third_party_id,
                     "loan_id": loan_id, "spoke": spoke, "notes": notes},
            at=now, actor=by or "system", borrower_id=borrower.id, subject=loan_id or "",
            outcome="inbound", key=_key(ctx))
        return InboundRecorded(attempt_id, audit_id, masked)

    return _run(ctx, conn, work)


# --- holds and opt-outs ----------------------------------------------------------------------


def _audit_simple(conn: Connection, ctx: Any, borrower: BorrowerRow, kind: str,
                  payload: dict[str, Any], at: datetime, by: str, subject: str = "") -> int:
    audit_id, _, _ = append_at_head(
        conn, chain_key=borrower.id, head_seq=borrower.audit_seq, head_hash=borrower.audit_head,
        kind=kind, payload=payload, at=at, actor=by, borrower_id=borrower.id, subject=subject,
        key=_key(ctx))
    return audit_id


def place_hold(ctx: Any, borrower_id: str, kind: str, *, loan_id: str | None = None,
               source: str = "staff", note: str = "", by: str = "system",
               complaint_id: str | None = None, conn: Connection | None = None) -> int:
    """Put a hold on the borrower (or one debt) from now until ``end_hold``; returns its id."""
    hk = _enum(HoldKind, kind, "kind")

    def work(conn: Connection) -> int:
        borrower = read_borrower(conn, borrower_id, lock=True)
        now = ctx.clock.now()
        hold_id = int(conn.execute(_h.insert().returning(_h.c.id), {
            "borrower_id": borrower.id, "loan_id": loan_id, "kind": str(hk), "started_at": now,
            "ended_at": None, "source": source, "note": note, "complaint_id": complaint_id,
            "created_by": by}).scalar_one())
        _audit_simple(conn, ctx, borrower, "hold.placed",
                      {"hold_id": hold_id, "kind": str(hk), "loan_id": loan_id,
                       "source": source, "note": note, "complaint_id": complaint_id}, now, by,
                      loan_id or "")
        return hold_id

    return _run(ctx, conn, work)


def end_hold(ctx: Any, hold_id: int, *, by: str = "system", note: str = "",
             conn: Connection | None = None) -> None:
    """End an active hold (Conflict if it has already ended)."""

    def work(conn: Connection) -> None:
        row = conn.execute(select(_h.c.borrower_id).where(_h.c.id == hold_id)).first()
        if row is None:
            raise NotFound(f"no hold {hold_id}")
        borrower = read_borrower(conn, row[0], lock=True)
        now = ctx.clock.now()
        done = conn.execute(_h.update().where(_h.c.id == hold_id, _h.c.ended_at.is_(None))
                            .values(ended_at=now))
        if done.rowcount != 1:
            raise Conflict(f"hold {hold_id} has already ended")
        _audit_simple(conn, ctx, borrower, "hold.ended", {"hold_id": hold_id, "note": note},
                      now, by)

    _run(ctx, conn, work)


def add_opt_out(ctx: Any, borrower_id: str, channel: str, *, to: str | None = None,
                third_party_id: int | None = None, by: str = "system",
                conn: Connection | None = None) -> int:
    """Record that the borrower (or a third party) does not want contact by ``channel``
    ('all' = any channel); ``to`` narrows it to one number or e-mail address."""
    if channel != OPT_OUT_ALL:
        channel = str(_enum(Channel, channel, "channel"))
    index: str | None = None
    if to:
        index = to.strip().lower() if "@" in to else ctx.keyring.blind_index(_e164(to), "phone")

    def work(conn: Connection) -> int:
        borrower = read_borrower(conn, borrower_id, lock=True)
        now = ctx.clock.now()
        oid = int(conn.execute(_o.insert().returning(_o.c.id), {
            "borrower_id": borrower.id, "third_party_id": third_party_id, "channel": channel,
            "address_index": index, "created_at": now, "revoked_at": None}).scalar_one())
        _audit_simple(conn, ctx, borrower, "opt_out.added",
                      {"opt_out_id": oid, "channel": channel, "to_index": index,
                       "third_party_id": third_party_id}, now, by)
        return oid

    return _run(ctx, conn, work)


# --- the scenario check for the API ------------------------------------------------------------


def check_json(ctx: Any, body: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    """``POST /api/v1/gate/check``: decide a scenario document (as ``parley gate check``);
    no database. Raises InvalidInput naming the bad field."""
    from parley.services.facts import screener

    person = body.get("person") if isinstance(body, dict) else None
    third = isinstance(person, dict) and person.get("role") == "third_party"
    scr = screener()
    return check_scenario(body, lambda t: scr.screen(t, third_party=third), lang=lang)
