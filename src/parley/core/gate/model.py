"""The contact gate's values: what is asked, what is known, what is decided.

Every record is a frozen, slotted dataclass holding tuples, so a decision can be replayed from
the exact values it saw. Every ``datetime`` must be tz-aware; a naive one raises ``ValueError``
at construction, because a naive time cannot be placed in the borrower's local day.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from parley.core.content import ContentScreening

LANGS: tuple[str, ...] = ("en", "zh-Hans", "zh-Hant")


class Channel(StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"
    VISIT = "visit"
    INTERVIEW = "interview"


class Purpose(StrEnum):
    COLLECTION = "collection"
    AGREEMENT_SERVICE = "agreement_service"
    LOCATION = "location"


class CallResult(StrEnum):
    NOT_CONNECTED = "not_connected"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    CONVERSATION = "conversation"
    REFUSED = "refused"
    WRONG_PARTY = "wrong_party"


class Role(StrEnum):
    BORROWER = "borrower"
    THIRD_PARTY = "third_party"


class HoldKind(StrEnum):
    DISPUTE = "dispute"
    CEASE = "cease"
    LEGAL_REPRESENTATION = "legal_representation"
    BANKRUPTCY = "bankruptcy"
    DECEASED = "deceased"
    VULNERABLE = "vulnerable"
    COMPLAINT_INVESTIGATION = "complaint_investigation"


WRITTEN_CHANNELS: frozenset[Channel] = frozenset({Channel.SMS, Channel.EMAIL})


def require_aware(value: datetime | None, what: str) -> None:
    """Raise ValueError unless ``value`` is None or a tz-aware datetime."""
    if value is None:
        return
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")


@dataclass(frozen=True, slots=True)
class Collector:
    """A person who makes or attends a contact. ``name``/``badge`` empty = not identified."""

    id: str
    name: str = ""
    badge: str = ""

    @property
    def identified(self) -> bool:
        return bool(self.name.strip()) and bool(self.badge.strip())


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """One contact someone wants to make now.

    at: the instant of the contact (tz-aware). channel, purpose: see the enums.
    person_id / role: who is contacted; a third party is anyone but the borrower.
    to: the E.164 phone, e-mail address or address key used.
    debt_id: the debt concerned; None = about the borrower generally (counts against every debt).
    text: the message for written channels; None = no text (nothing to screen).
    collectors: who makes a visit or interview; empty for remote channels.
    """

    at: datetime
    channel: Channel
    person_id: str
    role: Role
    to: str
    purpose: Purpose
    debt_id: str | None = None
    text: str | None = None
    collectors: tuple[Collector, ...] = ()

    def __post_init__(self) -> None:
        require_aware(self.at, "ContactRequest.at")
        object.__setattr__(self, "channel", Channel(self.channel))
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "purpose", Purpose(self.purpose))


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """One contact already made (an item of history).

    result: for calls; None = not known yet (counted conservatively as an unanswered attempt).
    initiated_by: ``collector`` or ``consumer`` (consumer-initiated calls never count as attempts).
    debt_id: the debt discussed; None = not tied to one debt (counts against every debt).
    other_debt_ids: further debts discussed in the same contact (Reg F FAQ: a conversation
        about two debts is a conversation about each).
    consent_until: set when this contact was made under, or gave, the person's direct prior
        consent (Reg F 1006.14(b)(3)(i)); calls until then are excluded from the frequency count.
    """

    at: datetime
    channel: Channel
    person_id: str
    role: Role
    to: str
    debt_id: str | None = None
    result: CallResult | None = None
    purpose: Purpose = Purpose.COLLECTION
    initiated_by: str = "collector"
    consent_until: datetime | None = None
    other_debt_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_aware(self.at, "ContactRecord.at")
        require_aware(self.consent_until, "ContactRecord.consent_until")
        object.__setattr__(self, "channel", Channel(self.channel))
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "purpose", Purpose(self.purpose))
        if self.result is not None:
            object.__setattr__(self, "result", CallResult(self.result))
        if self.initiated_by not in ("collector", "consumer"):
            raise ValueError("ContactRecord.initiated_by must be 'collector' or 'consumer'")

    def concerns(self, debt_id: str | None) -> bool:
        """Whether this contact counts for ``debt_id`` (None on either side = every debt)."""
        if debt_id is None or self.debt_id is None:
            return True
        return self.debt_id == debt_id or debt_id in self.other_debt_ids


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold on a person. debt_id None = every debt; since None = always (already in force)."""

    kind: HoldKind
    debt_id: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.since, "Hold.since")
        object.__setattr__(self, "kind", HoldKind(self.kind))

    def applies(self, at: datetime, debt_id: str | None) -> bool:
        if self.since is not None and self.since > at:
            return False
        return self.debt_id is None or debt_id is None or self.debt_id == debt_id


@dataclass(frozen=True, slots=True)
class OptOut:
    """The person asked not to be contacted by ``channel``; to None = at any address.
    since: when they asked (None = not known; a rule that needs it then assumes the worst)."""

    channel: Channel
    to: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel", Channel(self.channel))
        if self.since is not None:
            require_aware(self.since, "OptOut.since")


@dataclass(frozen=True, slots=True)
class LocalWindow:
    """A stated inconvenient time of day, local to the person; end < start wraps midnight."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """The person being contacted.

    candidate_zones: IANA names; empty = location unknown, every time-based rule fails closed.
    holds, opt_outs, inconvenient_times: empty = none recorded.
    refused: a third party who said not to contact them again.
    requested_contact: a third party who asked to be contacted again (Reg F location rule).
    """

    id: str
    role: Role
    candidate_zones: tuple[str, ...] = ()
    holds: tuple[Hold, ...] = ()
    opt_outs: tuple[OptOut, ...] = ()
    inconvenient_times: tuple[LocalWindow, ...] = ()
    refused: bool = False
    requested_contact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True, slots=True)
class PhoneFact:
    """One of the borrower's numbers; valid False = known invalid / out of service."""

    number: str
    valid: bool = True


@dataclass(frozen=True, slots=True)
class BorrowerFacts:
    """The borrower the contact is about, as seen by third-party rules (is the debtor reachable?)."""

    id: str
    phones: tuple[PhoneFact, ...] = ()
    candidate_zones: tuple[str, ...] = ()
    holds: tuple[Hold, ...] = ()


@dataclass(frozen=True, slots=True)
class AgreementFact:
    """A repayment agreement on a debt. status: active/broken/completed/cancelled/proposed.

    ends_on None = open-ended. Only ``active`` within [starts_on, ends_on] suppresses collection.
    """

    debt_id: str
    status: str
    starts_on: date
    ends_on: date | None = None

    def active_on(self, day: date) -> bool:
        if self.status != "active" or day < self.starts_on:
            return False
        return self.ends_on is None or day <= self.ends_on


@dataclass(frozen=True, slots=True)
class DebtStanding:
    """Where a debt stands on its schedule: ``oldest_unpaid_due_on`` is the due date of its
    oldest instalment not yet paid off (None = nothing left to pay). The debt is overdue on a
    day after that date. The gate needs it because a payment recorded at t governs every
    decision after t: yesterday's plan may say "remind", today's payment says there is nothing
    left to remind about."""

    debt_id: str
    oldest_unpaid_due_on: date | None

    def overdue_on(self, day: date) -> bool:
        return self.oldest_unpaid_due_on is not None and self.oldest_unpaid_due_on < day


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Working days for the years in ``years``; a day outside them is unknown (fail closed).

    holidays: non-working dates; workdays: make-up working days (调休) that fall on weekends.
    """

    years: frozenset[int] = frozenset()
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def covers(self, day: date) -> bool:
        return day.year in self.years

    def is_working_day(self, day: date) -> bool | None:
        """True/False, or None when the year is not covered."""
        if day.year not in self.years:
            return None
        if day in self.holidays:
            return False
        if day in self.workdays:
            return True
        return day.weekday() < 5


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the gate knows when it decides.

    person: the person contacted. borrower: the debtor (None = the person is the borrower).
    history: every contact about this borrower, sorted by ``at`` (ValueError otherwise).
    agreements: repayment agreements on the borrower's debts.
    calendar: the business calendar; None = no calendar (rules needing one fail closed).
    content: the screener's verdict on request.text; None = not screened.
    debts: where each of the borrower's debts stands; None = not known (facts built by hand,
        or logged before debts were recorded), and rules that need it do not bear.
    """

    person: PersonFacts
    borrower: BorrowerFacts | None = None
    history: tuple[ContactRecord, ...] = ()
    agreements: tuple[AgreementFact, ...] = ()
    calendar: BusinessCalendar | None = None
    content: ContentScreening | None = None
    debts: tuple[DebtStanding, ...] | None = None
    # Derived once so every decision can bisect instead of scanning (UTC POSIX seconds).
    history_ts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ts = tuple(r.at.timestamp() for r in self.history)
        for i in range(1, len(ts)):
            if ts[i] < ts[i - 1]:
                raise ValueError(f"Facts.history must be sorted by time (item {i} is earlier)")
        object.__setattr__(self, "history_ts", ts)

    def history_until(self, at: datetime) -> int:
        """Number of history items at or before ``at``."""
        return bisect_right(self.history_ts, at.timestamp())


EFFECTS = ("deny", "advise", "allow")


@dataclass(frozen=True, slots=True)
class Finding:
    """What one rule found.

    effect: ``deny`` blocks; ``advise`` is a flag; ``allow`` records that the rule was checked
        and passed. messages: one text per language (en, zh-Hans, zh-Hant).
    params: runtime details (counts, windows, matched categories); empty = none.
    retry_at: for a denial, the earliest instant at which this rule alone could pass;
        None = no time will do (hold, agreement, opt-out, refusal, content...).
    """

    rule_id: str
    citation: str
    effect: str
    messages: Mapping[str, str]
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    provisional: bool = False
    retry_at: datetime | None = None

    def message(self, lang: str = "en") -> str:
        return self.messages.get(lang) or self.messages["en"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer for one request.

    next_allowed_at: the earliest instant this same contact becomes lawful (the request time
        when allowed); None = no time will do within the horizon.
    reasons: every rule that bears on the decision. flags: the advisory findings among them.
    decided_at: the time the decision was made for (the request's ``at``; no clock is read).
    """

    allowed: bool
    reasons: tuple[Finding, ...]
    next_allowed_at: datetime | None
    flags: tuple[Finding, ...]
    pack_id: str
    pack_version: str
    decided_at: datetime

    @property
    def outcome(self) -> str:
        return "allow" if self.allowed else "deny"

    @property
    def denials(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.reasons if f.effect == "deny")

    def rule_ids(self, effect: str | None = None) -> tuple[str, ...]:
        return tuple(f.rule_id for f in self.reasons if effect is None or f.effect == effect)

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        """The documented decision format (docs/gate.md)."""
        return {
            "decision": self.outcome,
            "pack": {"id": self.pack_id, "version": self.pack_version},
            "decided_at": self.decided_at.isoformat(),
            "reasons": [_finding_json(f, lang) for f in self.reasons],
            "next_allowed_at": (
                self.next_allowed_at.isoformat() if self.next_allowed_at is not None else None
            ),
            "flags": [
                {
                    "flag": f.rule_id,
                    "citation": f.citation,
                    "message": f.message(lang),
                    "params": _jsonable(f.params),
                }
                for f in self.flags
            ],
        }


def _finding_json(f: Finding, lang: str) -> dict[str, Any]:
    return {
        "rule": f.rule_id,
        "citation": f.citation,
        "effect": f.effect,
        "message": f.message(lang),
        "messages": dict(f.messages),
        "provisional": f.provisional,
        "params": _jsonable(f.params),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (frozenset, set)) else items
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    return value


@dataclass(frozen=True, slots=True)
class Citation:
    """Where a rule comes from: the source document and the section within it."""

    source: str
    section: str = ""

    def __str__(self) -> str:
        return f"{self.source} {self.section}".strip()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a pack: a rule kind applied with parameters.

    params: the validated, converted parameters (read-only). raw_params: as written in the pack.
    messages: the rule's statement per language, parameters already interpolated.
    check: the rule kind's function (see ``parley.core.gate.rules``).
    provisional: the source was not verified (see the pack); the rule is still enforced.
    """

    id: str
    kind: str
    params: Mapping[str, Any]
    raw_params: Mapping[str, Any]
    citation: Citation
    messages: Mapping[str, str]
    templates: Mapping[str, str]
    check: Any = field(compare=False, repr=False)
    provisional: bool = False
    # Pre-built texts per effect, so a finding costs one object, not three string formats.
    texts: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    citation_text: str = ""
    advisory: bool = False  # the kind only ever advises (flags); skipped in next-time search
    # One shared Finding per effect for the common case with no runtime details.
    static: Mapping[str, Finding] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class RulePack:
    """A jurisdiction's rules, in evaluation order, after composition with its parent.

    extends: the parent pack id (None = a root pack). default_timezone: the zone used to read
    agreement dates when the person's zone is unknown (time-of-day rules still fail closed).
    """

    id: str
    version: str
    name: str
    rules: tuple[Rule, ...]
    default_timezone: str
    extends: str | None = None
    horizon_days: int = 400
    # The rules in next-time search order: time-of-day kinds first, as their retry times
    # are the cheapest to reach; empty = the evaluation order.
    search_order: tuple[Rule, ...] = ()

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)
