"""The library of rule kinds: each a function ``check(ctx, rule) -> tuple[Finding, ...]``.

A pack (data) says which kinds apply, with which parameters, in which order; this module is
the only code. Every kind has the same small signature and returns findings as values:

- ``()`` — the rule does not bear on this request (wrong channel, role, no hold of that kind);
- ``allow`` — the rule was checked and passed (recorded so a decision shows what it relied on);
- ``deny`` with ``retry_at`` — the earliest instant at which this rule alone could pass, or
  None when no time will do;
- ``advise`` — an advisory flag (e.g. Regulation F rebuttal factors); never blocks.

Threshold parameters are named by their comparison (``..._at_most``, ``..._at_least``,
``local_time_before``) so the boundary is never a guess. Days are calendar days in the
contacted person's local zone; with several candidate zones every zone is checked and the most
restrictive answer wins; with none, every time-based rule denies (fails closed).

Performance: ``Facts`` carries the history's timestamps, so each count bisects to the start
of its window and looks only at the few records inside it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parley.core.gate.model import (
    CallResult,
    Channel,
    ContactRecord,
    ContactRequest,
    Facts,
    Finding,
    HoldKind,
    OptOut,
    Purpose,
    Role,
    Rule,
    RulePack,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MIDNIGHT = time(0, 0)
_ONE_DAY = timedelta(days=1)

# Localised notes appended to a rule's statement when a denial has a special cause.
REASON_NOTES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "time_zone_unknown": {
            "en": " (the person's time zone is unknown, so this fails closed)",
            "zh-Hans": "（对方所在时区未知，按禁止处理）",
            "zh-Hant": "（對方所在時區未知，按禁止處理）",
        },
        "not_screened": {
            "en": " (the message text has not been screened)",
            "zh-Hans": "（消息文本尚未经过内容审查）",
            "zh-Hant": "（訊息文字尚未經過內容審查）",
        },
        "calendar_not_covered": {
            "en": " (the business calendar does not cover this date, so this fails closed)",
            "zh-Hans": "（工作日历未覆盖该日期，按禁止处理）",
            "zh-Hant": "（工作日曆未涵蓋該日期，按禁止處理）",
        },
        "borrower_unknown": {
            "en": " (nothing is known about the debtor's reachability, so this fails closed)",
            "zh-Hans": "（无法判断债务人是否失联，按禁止处理）",
            "zh-Hant": "（無法判斷債務人是否失聯，按禁止處理）",
        },
    }
)


# --- time helpers -------------------------------------------------------------------------


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@lru_cache(maxsize=65536)
def day_start_ts(zone_name: str, ordinal: int) -> float:
    """POSIX seconds of local midnight (start of the local day) of date ``ordinal`` in a zone."""
    return local_instant(zone_name, date.fromordinal(ordinal), _MIDNIGHT).timestamp()


def local_instant(zone_name: str, day: date, at: time) -> datetime:
    """The UTC instant of local wall time ``at`` on ``day``; a time in a DST gap moves forward."""
    z = zone(zone_name)
    local = datetime.combine(day, at, tzinfo=z)
    utc = local.astimezone(UTC)
    back = utc.astimezone(z)
    if back.replace(tzinfo=None) < local.replace(tzinfo=None):
        # Non-existent wall time (spring forward): take the first instant after the gap.
        utc = utc + (local.replace(tzinfo=None) - back.replace(tzinfo=None))
    return utc


def day_start(zone_name: str, day: date) -> datetime:
    return datetime.fromtimestamp(day_start_ts(zone_name, day.toordinal()), UTC)


class Ctx:
    """What every rule needs for one evaluation, computed once.

    at: the instant evaluated (the request's time, or a candidate time when searching for
    ``next_allowed_at``). zone_names/zones/local: the person's candidate zones and ``at`` in
    each. n: the number of history records at or before ``at``.
    """

    __slots__ = (
        "request",
        "facts",
        "pack",
        "at",
        "ts",
        "zone_names",
        "zones",
        "local",
        "n",
        "history",
        "_consent",
    )

    def __init__(self, request: ContactRequest, facts: Facts, pack: RulePack, at: datetime):
        self.request = request
        self.facts = facts
        self.pack = pack
        self.at = at
        self.ts = at.timestamp()
        self.zone_names = facts.person.candidate_zones
        self.zones = tuple(zone(z) for z in self.zone_names)
        self.local = tuple(at.astimezone(z) for z in self.zones)
        self.n = bisect_right(facts.history_ts, self.ts)
        self.history = facts.history
        self._consent: tuple[tuple[float, float], ...] | None = None

    def first_index_at_or_after(self, ts: float) -> int:
        return bisect_left(self.facts.history_ts, ts, 0, self.n)

    def window_start_ts(self, i: int, days: int) -> float:
        """Start of the window of ``days`` local calendar days ending today, in zone i."""
        return day_start_ts(self.zone_names[i], self.local[i].toordinal() - (days - 1))

    def local_date(self, i: int, dt: datetime) -> date:
        return dt.astimezone(self.zones[i]).date()

    def consent_windows(self) -> tuple[tuple[float, float], ...]:
        """Reg F prior-consent windows for this person, as (start, end) POSIX seconds.

        A record with ``consent_until`` opens a window at its own time; the window closes at
        ``consent_until``, at the end of the 7th local day (the day consent was received is
        day 1), or at the next telephone conversation with the person, whichever is first.
        """
        if self._consent is not None:
            return self._consent
        pid = self.request.person_id
        hist = self.facts.history
        lo = bisect_left(self.facts.history_ts, self.ts - 9 * 86400, 0, self.n)
        out: list[tuple[float, float]] = []
        for j in range(lo, self.n):
            r = hist[j]
            if r.person_id != pid or r.consent_until is None:
                continue
            end = r.consent_until.timestamp()
            for zn in self.zone_names:
                d = r.at.astimezone(zone(zn)).date()
                end = min(end, day_start_ts(zn, d.toordinal() + 7) - 1e-6)
            for k in range(j + 1, self.n):
                c = hist[k]
                if c.person_id == pid and c.channel is Channel.CALL and c.result in _CONVERSATION:
                    end = min(end, self.facts.history_ts[k])
                    break
            out.append((r.at.timestamp(), end))
        self._consent = tuple(out)
        return self._consent

    def under_consent(self, ts: float) -> bool:
        return any(a <= ts <= b for a, b in self.consent_windows())


_CONVERSATION = frozenset({CallResult.CONVERSATION, CallResult.REFUSED})


def finding(
    rule: Rule,
    effect: str,
    params: Mapping[str, Any] | None = None,
    retry_at: datetime | None = None,
    reason: str | None = None,
) -> Finding:
    """A finding of ``rule`` with its pre-built texts (plus a localised note for ``reason``)."""
    if params is None and retry_at is None and reason is None:
        return rule.static[effect]  # immutable, so one shared value per rule and effect
    texts = rule.texts[effect]
    if reason is not None:
        note = REASON_NOTES[reason]
        texts = MappingProxyType({lang: text + note[lang] for lang, text in texts.items()})
        params = {**(params or {}), "reason": reason}
    return Finding(
        rule.id,
        rule.citation_text,
        effect,
        texts,
        MappingProxyType(params) if params else _EMPTY,
        rule.provisional,
        retry_at,
    )


def _unknown_zone(rule: Rule) -> tuple[Finding, ...]:
    return (finding(rule, "deny", None, None, "time_zone_unknown"),)


def _latest(candidates: list[datetime]) -> datetime:
    return max(candidates)


# --- parameter conversion -----------------------------------------------------------------

ALL_CHANNELS = frozenset(Channel)


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ValueError(f"{what}: expected a list")


def p_channels(value: Any) -> frozenset[Channel]:
    return frozenset(Channel(v) for v in _as_list(value, "channels"))


def p_purposes(value: Any) -> frozenset[Purpose]:
    return frozenset(Purpose(v) for v in _as_list(value, "purposes"))


def p_results(value: Any) -> frozenset[CallResult | None]:
    """Call results; the token ``unknown`` stands for a result not yet recorded (None)."""
    return frozenset(None if v == "unknown" else CallResult(v) for v in _as_list(value, "results"))


def p_strings(value: Any) -> frozenset[str]:
    items = _as_list(value, "strings")
    if not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of strings")
    return frozenset(items)


def p_hold(value: Any) -> HoldKind:
    return HoldKind(value)


def p_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def p_positive(value: Any) -> int:
    n = p_count(value)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return n


def p_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def p_time(value: Any) -> time:
    if isinstance(value, str):
        try:
            hh, mm = value.split(":")
            return time(int(hh), int(mm))
        except ValueError:
            pass
    raise ValueError(f"expected a local time 'HH:MM', got {value!r}")


_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Param:
    convert: Callable[[Any], Any]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


Check = Callable[[Ctx, Rule], tuple[Finding, ...]]


@dataclass(frozen=True, slots=True)
class RuleKind:
    """A rule kind: its check function, its parameters (with defaults) and what it does."""

    name: str
    check: Check
    params: Mapping[str, Param]
    doc: str
    validate: Callable[[Mapping[str, Any]], None] | None = None


_KINDS: dict[str, RuleKind] = {}


def _kind(
    name: str,
    params: Mapping[str, Param],
    validate: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        _KINDS[name] = RuleKind(
            name, fn, MappingProxyType(dict(params)), (fn.__doc__ or "").strip(), validate
        )
        return fn

    return register


# --- time of day --------------------------------------------------------------------------


def next_time_in_window(
    zone_names: tuple[str, ...],
    start: datetime,
    lo: time,
    hi: time,
    search: timedelta = timedelta(days=3),
) -> datetime | None:
    """Earliest instant >= start whose local time is in [lo, hi) in every zone; None if none."""
    t = start
    limit = start + search
    for _ in range(64):
        moved = False
        for zn in zone_names:
            local = t.astimezone(zone(zn))
            lt = local.time()
            if lo <= lt < hi:
                continue
            day = local.date() if lt < lo else local.date() + _ONE_DAY
            cand = local_instant(zn, day, lo)
            if cand <= t:  # defensive: never stand still
                cand = t + timedelta(minutes=1)
            t = cand
            moved = True
        if not moved:
            return t
        if t > limit:
            return None
    return None


def _check_hours_params(p: Mapping[str, Any]) -> None:
    if not p["local_time_at_least"] < p["local_time_before"]:
        raise ValueError("local_time_at_least must be earlier than local_time_before")


@_kind(
    "local_hours",
    {
        "local_time_at_least": Param(p_time),
        "local_time_before": Param(p_time),
        "channels": Param(p_channels, ALL_CHANNELS),
    },
    _check_hours_params,
)
def local_hours(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Contact only when the local time is in [local_time_at_least, local_time_before) in
    every candidate zone of the person (unknown zone: deny)."""
    p = rule.params
    if ctx.request.channel not in p["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    lo, hi = p["local_time_at_least"], p["local_time_before"]
    if all(lo <= loc.time() < hi for loc in ctx.local):
        return (finding(rule, "allow"),)
    retry = next_time_in_window(ctx.zone_names, ctx.at, lo, hi)
    times = {zn: loc.strftime("%H:%M") for zn, loc in zip(ctx.zone_names, ctx.local, strict=True)}
    return (finding(rule, "deny", {"local_times": times}, retry),)


@_kind("stated_inconvenient_times", {"channels": Param(p_channels, ALL_CHANNELS)})
def stated_inconvenient_times(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """No contact in a local time window the person said is inconvenient."""
    windows = ctx.facts.person.inconvenient_times
    if not windows or ctx.request.channel not in rule.params["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    if not any(w.contains(loc.time()) for loc in ctx.local for w in windows):
        return (finding(rule, "allow"),)
    # Step to the end of each window that contains the time, in every zone, until none does.
    t = ctx.at
    for _ in range(64):
        moved = False
        for zn in ctx.zone_names:
            local = t.astimezone(zone(zn))
            for w in windows:
                if w.contains(local.time()):
                    day = local.date()
                    if w.end <= local.time():
                        day += _ONE_DAY
                    cand = local_instant(zn, day, w.end)
                    t = cand if cand > t else t + timedelta(minutes=1)
                    moved = True
                    break
        if not moved:
            break
    else:
        return (finding(rule, "deny"),)
    return (finding(rule, "deny", None, t),)


@_kind("no_contact_on_non_working_days", {"channels": Param(p_channels, ALL_CHANNELS)})
def no_contact_on_non_working_days(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Contact only on working days of the business calendar, in every candidate zone; a date
    the calendar does not cover fails closed."""
    if ctx.request.channel not in rule.params["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    cal = ctx.facts.calendar
    days = [loc.date() for loc in ctx.local]
    if cal is None or not all(cal.covers(d) for d in days):
        return (finding(rule, "deny", None, None, "calendar_not_covered"),)
    if all(cal.is_working_day(d) for d in days):
        return (finding(rule, "allow"),)
    # The next instant at which every zone is on a working day: try local midnights ahead.
    for ahead in range(1, 32):
        cands = [
            day_start(zn, loc.date() + timedelta(days=ahead))
            for zn, loc in zip(ctx.zone_names, ctx.local, strict=True)
        ]
        t = max(cands)
        local_days = [t.astimezone(z).date() for z in ctx.zones]
        working = [cal.is_working_day(d) for d in local_days]
        if any(w is None for w in working):
            return (finding(rule, "deny", None, None, "calendar_not_covered"),)
        if all(working):
            return (finding(rule, "deny", None, t),)
    return (finding(rule, "deny"),)


# --- holds, agreements, opt-outs, content --------------------------------------------------


@_kind("hold_blocks", {"hold": Param(p_hold), "purposes": Param(p_purposes)})
def hold_blocks(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A hold of kind ``hold`` on the person (or, for a third-party contact, on the debtor)
    blocks contacts for ``purposes``; no time lifts it (a new fact must)."""
    req, facts = ctx.request, ctx.facts
    holds = facts.person.holds
    if req.role is Role.THIRD_PARTY and facts.borrower is not None:
        holds = holds + facts.borrower.holds
    if not holds:
        return ()
    kind = rule.params["hold"]
    hits = [h for h in holds if h.kind is kind and h.applies(ctx.at, req.debt_id)]
    if not hits:
        return ()
    if req.purpose in rule.params["purposes"]:
        return (finding(rule, "deny", {"hold": str(kind)}),)
    return (finding(rule, "allow", {"hold": str(kind), "purpose": str(req.purpose)}),)


@_kind(
    "active_agreement_blocks",
    {
        "purposes": Param(p_purposes, frozenset({Purpose.COLLECTION})),
    },
)
def active_agreement_blocks(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """An active agreement on the debt (active on the local date in any candidate zone, or in
    the pack's default zone when none is known) blocks ``purposes`` (collection)."""
    req = ctx.request
    mine = [a for a in ctx.facts.agreements if req.debt_id is None or a.debt_id == req.debt_id]
    if not mine:
        return ()
    days = (
        {loc.date() for loc in ctx.local}
        if ctx.local
        else {ctx.at.astimezone(zone(ctx.pack.default_timezone)).date()}
    )
    active = [a for a in mine if any(a.active_on(d) for d in days)]
    if active and req.purpose in rule.params["purposes"]:
        return (finding(rule, "deny", {"agreements": [a.debt_id for a in active]}),)
    return (
        finding(
            rule,
            "allow",
            {
                "active": [a.debt_id for a in active],
                "statuses": {a.debt_id: a.status for a in mine},
            },
        ),
    )


@_kind(
    "collect_only_while_overdue",
    {
        "purposes": Param(p_purposes, frozenset({Purpose.COLLECTION, Purpose.LOCATION})),
    },
)
def collect_only_while_overdue(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A ``purposes`` contact (collection, locating the debtor) needs something overdue on the
    debt concerned — on any of the debtor's debts when it names none — on the local date in
    every candidate zone of the person and, for a third party, of the debtor too (in the pack's
    default zone when none is known). Overdue on some of those dates but not all: lawful once
    the due date has passed in every one (``retry_at``). Overdue on none: no time will do — the
    next daily run plans again if an instalment falls due unpaid. Unknown standing (``debts``
    None) does not bear."""
    req, facts = ctx.request, ctx.facts
    debts = facts.debts
    if debts is None or req.purpose not in rule.params["purposes"]:
        return ()
    mine = [d for d in debts if req.debt_id is None or d.debt_id == req.debt_id]
    names = list(ctx.zone_names)
    if req.role is Role.THIRD_PARTY and facts.borrower is not None:
        names += [z for z in facts.borrower.candidate_zones if z not in names]
    if not names:
        names = [ctx.pack.default_timezone]
    days = [ctx.at.astimezone(zone(z)).date() for z in names]
    overdue = [d.debt_id for d in mine if all(d.overdue_on(day) for day in days)]
    if overdue:
        return (finding(rule, "allow", {"overdue": overdue}),)
    partly = [d.oldest_unpaid_due_on for d in mine if d.oldest_unpaid_due_on is not None
              and any(d.overdue_on(day) for day in days)]
    retry = (max(day_start(z, min(partly) + _ONE_DAY) for z in names) if partly else None)
    return (
        finding(
            rule,
            "deny",
            {
                "debt": req.debt_id,
                "oldest_unpaid_due_on": {
                    d.debt_id: None if d.oldest_unpaid_due_on is None
                    else d.oldest_unpaid_due_on.isoformat()
                    for d in mine
                },
            },
            retry,
        ),
    )


@_kind("channel_opt_out", {"respond_once_to_inbound": Param(p_bool, False)})
def channel_opt_out(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """No contact through a medium (or a specific address on it) the person opted out of.

    respond_once_to_inbound: a person who reaches out through that medium after opting out
    may be answered once through it (Reg F § 1006.14(h)(2)(ii)): allowed while their latest
    contact through it, made after every opt-out that covers this one, is still unanswered
    through that medium. An opt-out of unknown date never allows it."""
    req = ctx.request
    covering = [o for o in ctx.facts.person.opt_outs
                if o.channel is req.channel and (o.to is None or o.to == req.to)]
    if not covering:
        return ()
    o = covering[0]
    denied = finding(rule, "deny", {"channel": str(o.channel), "to": o.to})
    if not rule.params["respond_once_to_inbound"] or any(c.since is None for c in covering):
        return (denied,)
    inbound = _unanswered_inbound(ctx, covering)
    if inbound is None:
        return (denied,)
    return (finding(rule, "allow", {"channel": str(o.channel), "to": o.to,
                                    "responding_to": inbound.at.isoformat()}),)


def _unanswered_inbound(ctx: Ctx, covering: list[OptOut]) -> ContactRecord | None:
    """The person's latest contact through the request's medium after every covering opt-out
    (from an address each covers), if nothing went back to them through it since."""
    req = ctx.request
    since = max(o.since for o in covering if o.since is not None)
    history = ctx.facts.history[: ctx.facts.history_until(req.at)]
    latest: ContactRecord | None = None
    for r in history:
        if r.person_id != req.person_id or r.channel is not req.channel:
            continue
        if r.initiated_by != "consumer":
            latest = None  # answered (or contacted) through the medium since
        elif r.at >= since and all(o.to is None or o.to == r.to for o in covering):
            latest = r
    return latest


@_kind(
    "written_content_clean",
    {
        "channels": Param(p_channels, frozenset({Channel.SMS, Channel.EMAIL})),
        "categories_ignored": Param(p_strings, frozenset({"debt_disclosure"})),
    },
)
def written_content_clean(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A written message must have been screened and found clean (categories in
    ``categories_ignored`` are judged by other rules, e.g. debt disclosure to third parties)."""
    req = ctx.request
    if req.channel not in rule.params["channels"]:
        return ()
    if req.text is None:
        return (finding(rule, "allow", {"text": None}),)
    screening = ctx.facts.content
    if screening is None:
        return (finding(rule, "deny", None, None, "not_screened"),)
    ignored = rule.params["categories_ignored"]
    hits = [h for h in screening.hits if h.category not in ignored]
    if hits:
        return (
            finding(
                rule,
                "deny",
                {
                    "lexicon_version": screening.lexicon_version,
                    "categories": sorted({h.category for h in hits}),
                    "matched": [h.matched for h in hits],
                },
            ),
        )
    return (finding(rule, "allow", {"lexicon_version": screening.lexicon_version}),)


# --- third parties -------------------------------------------------------------------------


@_kind(
    "third_party_purposes_only",
    {
        "purposes": Param(p_purposes, frozenset({Purpose.LOCATION})),
        "disclosure_categories": Param(p_strings, frozenset({"debt_disclosure"})),
    },
)
def third_party_purposes_only(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A third party may be contacted only for ``purposes`` (location / passing a message),
    and a written text to them must not disclose the debt (screening categories)."""
    req = ctx.request
    if req.role is not Role.THIRD_PARTY:
        return ()
    if req.purpose not in rule.params["purposes"]:
        return (finding(rule, "deny", {"purpose": str(req.purpose)}),)
    screening = ctx.facts.content
    if req.text is not None:
        if screening is None:
            return (finding(rule, "deny", None, None, "not_screened"),)
        bad = sorted({h.category for h in screening.hits} & rule.params["disclosure_categories"])
        if bad:
            return (
                finding(
                    rule,
                    "deny",
                    {
                        "categories": bad,
                        "matched": [h.matched for h in screening.hits if h.category in bad],
                    },
                ),
            )
    return (finding(rule, "allow", {"purpose": str(req.purpose)}),)


@_kind(
    "third_party_only_when_debtor_unreachable",
    {
        "consecutive_failed_attempts_at_least": Param(p_positive, 3),
        "failed_results": Param(
            p_results,
            frozenset(
                {
                    CallResult.NOT_CONNECTED,
                    CallResult.NO_ANSWER,
                    CallResult.VOICEMAIL,
                    CallResult.WRONG_PARTY,
                }
            ),
        ),
    },
)
def third_party_only_when_debtor_unreachable(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A third party may be contacted only while the debtor is unreachable: every known number
    is invalid (or none is known), or the latest N contacts with the debtor were all
    collector-placed calls that failed. Unknown debtor facts fail closed."""
    req, facts = ctx.request, ctx.facts
    if req.role is not Role.THIRD_PARTY:
        return ()
    b = facts.borrower
    if b is None:
        return (finding(rule, "deny", None, None, "borrower_unknown"),)
    if not any(ph.valid for ph in b.phones):
        return (finding(rule, "allow", {"unreachable": "no_valid_number"}),)
    need = rule.params["consecutive_failed_attempts_at_least"]
    failed_results = rule.params["failed_results"]
    seen = 0
    hist = facts.history
    for j in range(ctx.n - 1, -1, -1):
        r = hist[j]
        if r.person_id != b.id:
            continue
        if (
            r.channel is Channel.CALL
            and r.initiated_by == "collector"
            and r.result in failed_results
        ):
            seen += 1
            if seen >= need:
                return (
                    finding(
                        rule,
                        "allow",
                        {"unreachable": "consecutive_failed_attempts", "attempts": seen},
                    ),
                )
            continue
        break
    return (finding(rule, "deny", {"consecutive_failed_attempts": seen, "needed": need}),)


@_kind("third_party_never_after_refusal", {})
def third_party_never_after_refusal(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Once a third party refused further contact, never contact them again."""
    req = ctx.request
    if req.role is not Role.THIRD_PARTY:
        return ()
    refused = ctx.facts.person.refused or any(
        r.person_id == req.person_id and r.result is CallResult.REFUSED
        for r in ctx.history[: ctx.n]
    )
    if refused:
        return (finding(rule, "deny", {"refused": True}),)
    return (finding(rule, "allow"),)


@_kind("third_party_contacts_at_most", {"contacts_at_most": Param(p_count, 1)})
def third_party_contacts_at_most(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """At most N collector-initiated contacts with a third party, unless they asked for more."""
    req = ctx.request
    if req.role is not Role.THIRD_PARTY:
        return ()
    if ctx.facts.person.requested_contact:
        return (finding(rule, "allow", {"requested_contact": True}),)
    count = sum(
        1
        for r in ctx.history[: ctx.n]
        if r.person_id == req.person_id
        and r.initiated_by == "collector"
        and r.result is not CallResult.NOT_CONNECTED
    )
    limit = rule.params["contacts_at_most"]
    if count >= limit:
        return (finding(rule, "deny", {"contacts": count, "limit": limit}),)
    return (finding(rule, "allow", {"contacts": count, "limit": limit}),)


# --- visits --------------------------------------------------------------------------------


@_kind(
    "collectors_identified_at_least",
    {
        "collectors_at_least": Param(p_positive),
        "channels": Param(p_channels, frozenset({Channel.VISIT})),
    },
)
def collectors_identified_at_least(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """A visit needs at least N distinct collectors, each identified by name and badge."""
    req = ctx.request
    if req.channel not in rule.params["channels"]:
        return ()
    ids = {c.id for c in req.collectors if c.identified}
    need = rule.params["collectors_at_least"]
    if len(ids) < need:
        return (finding(rule, "deny", {"identified_collectors": len(ids), "needed": need}),)
    return (finding(rule, "allow", {"identified_collectors": len(ids)}),)


# --- frequency caps ------------------------------------------------------------------------


def _next_day(ctx: Ctx, i: int, day: date, days_ahead: int) -> datetime:
    return datetime.fromtimestamp(
        day_start_ts(ctx.zone_names[i], day.toordinal() + days_ahead), UTC
    )


@_kind(
    "unanswered_attempts_per_number_per_day_at_most",
    {
        "attempts_at_most": Param(p_count),
        "results": Param(
            p_results,
            frozenset({CallResult.NOT_CONNECTED, CallResult.NO_ANSWER, CallResult.VOICEMAIL, None}),
        ),
        "channels": Param(p_channels, frozenset({Channel.CALL})),
    },
)
def unanswered_attempts_per_number_per_day_at_most(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """At most N unanswered collector attempts to one number per local calendar day; a further
    attempt is refused once N are reached (a result not yet known counts as unanswered)."""
    req = ctx.request
    p = rule.params
    if req.channel not in p["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    limit, results, channels, to = p["attempts_at_most"], p["results"], p["channels"], req.to
    hist = ctx.history
    worst, retry = 0, []
    for i in range(len(ctx.zones)):
        lo = ctx.first_index_at_or_after(ctx.window_start_ts(i, 1))
        count = 0
        for j in range(lo, ctx.n):
            r = hist[j]
            if (
                r.to == to
                and r.channel in channels
                and r.initiated_by == "collector"
                and r.result in results
            ):
                count += 1
        worst = max(worst, count)
        if count >= limit:
            retry.append(_next_day(ctx, i, ctx.local[i].date(), 1))
    if retry:
        return (
            finding(rule, "deny", {"attempts": worst, "limit": limit, "to": to}, _latest(retry)),
        )
    return (finding(rule, "allow"),)


@_kind(
    "conversations_per_borrower_per_day_at_most",
    {
        "conversations_at_most": Param(p_count),
        "results": Param(p_results, _CONVERSATION),
        "channels": Param(p_channels, frozenset({Channel.CALL})),
    },
)
def conversations_per_borrower_per_day_at_most(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """At most N connected, collector-initiated voice conversations (AI voice included) with
    the debtor per local calendar day; once N are reached no further call that day."""
    req = ctx.request
    p = rule.params
    if req.role is not Role.BORROWER or req.channel not in p["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    limit, results, channels, pid = (
        p["conversations_at_most"],
        p["results"],
        p["channels"],
        req.person_id,
    )
    hist = ctx.history
    worst, retry = 0, []
    for i in range(len(ctx.zones)):
        lo = ctx.first_index_at_or_after(ctx.window_start_ts(i, 1))
        count = 0
        for j in range(lo, ctx.n):
            r = hist[j]
            if (
                r.person_id == pid
                and r.channel in channels
                and r.initiated_by == "collector"
                and r.result in results
            ):
                count += 1
        worst = max(worst, count)
        if count >= limit:
            retry.append(_next_day(ctx, i, ctx.local[i].date(), 1))
    if retry:
        return (finding(rule, "deny", {"conversations": worst, "limit": limit}, _latest(retry)),)
    return (finding(rule, "allow"),)


def _check_days(p: Mapping[str, Any]) -> None:
    if p["days"] < 1:
        raise ValueError("days must be at least 1")


@_kind(
    "contacts_per_person_per_debt_in_days_at_most",
    {
        "contacts_at_most": Param(p_count),
        "days": Param(p_positive),
        "channels": Param(p_channels, frozenset({Channel.CALL})),
        "excluded_results": Param(p_results, frozenset({CallResult.NOT_CONNECTED})),
        "consent_excludes": Param(p_bool, False),
    },
    _check_days,
)
def contacts_per_person_per_debt_in_days_at_most(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """At most N collector-initiated contacts on ``channels`` with this person about this debt
    within ``days`` consecutive local calendar days (today is the last); results in
    ``excluded_results`` do not count; with ``consent_excludes``, calls placed under the
    person's direct prior consent neither count nor are limited (Reg F 1006.14(b)(3))."""
    req = ctx.request
    p = rule.params
    if req.channel not in p["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    consent = p["consent_excludes"]
    if consent and ctx.under_consent(ctx.ts):
        return (finding(rule, "allow", {"excluded": "prior_consent"}),)
    limit, days, channels, excluded = (
        p["contacts_at_most"],
        p["days"],
        p["channels"],
        p["excluded_results"],
    )
    pid, debt = req.person_id, req.debt_id
    hist, hts = ctx.history, ctx.facts.history_ts
    consent = consent and bool(ctx.consent_windows())
    worst, retry = 0, []
    for i in range(len(ctx.zones)):
        lo = ctx.first_index_at_or_after(ctx.window_start_ts(i, days))
        counted: list[ContactRecord] = []
        for j in range(lo, ctx.n):
            r = hist[j]
            if (
                r.person_id == pid
                and r.channel in channels
                and r.initiated_by == "collector"
                and r.result not in excluded
                and (debt is None or r.debt_id is None or r.debt_id == debt
                     or debt in r.other_debt_ids)
                and not (consent and (r.consent_until is not None or ctx.under_consent(hts[j])))
            ):
                counted.append(r)
        worst = max(worst, len(counted))
        if len(counted) >= limit:
            # The window must drop the oldest (count - limit + 1) records.
            oldest_kept = counted[len(counted) - limit] if limit else counted[-1]
            d = ctx.local_date(i, oldest_kept.at)
            retry.append(_next_day(ctx, i, d, days))
    if retry:
        return (
            finding(
                rule, "deny", {"contacts": worst, "limit": limit, "days": days}, _latest(retry)
            ),
        )
    return (finding(rule, "allow"),)


@_kind(
    "no_calls_within_days_of_conversation",
    {
        "days": Param(p_positive),
        "channels": Param(p_channels, frozenset({Channel.CALL})),
        "conversation_channels": Param(p_channels, frozenset({Channel.CALL})),
        "conversation_results": Param(p_results, _CONVERSATION),
        "consent_excludes": Param(p_bool, False),
    },
)
def no_calls_within_days_of_conversation(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """No call to a person about a debt within ``days`` consecutive local days after a
    telephone conversation with them about it, whoever initiated it; the conversation's date
    is day 1, so the first lawful day is day ``days + 1``."""
    req = ctx.request
    p = rule.params
    if req.channel not in p["channels"]:
        return ()
    if not ctx.zones:
        return _unknown_zone(rule)
    if p["consent_excludes"] and ctx.under_consent(ctx.ts):
        return (finding(rule, "allow", {"excluded": "prior_consent"}),)
    days, cchan, cres = p["days"], p["conversation_channels"], p["conversation_results"]
    pid, debt = req.person_id, req.debt_id
    hist = ctx.history
    retry: list[datetime] = []
    last: ContactRecord | None = None
    for i in range(len(ctx.zones)):
        lo = ctx.first_index_at_or_after(ctx.window_start_ts(i, days))
        for j in range(ctx.n - 1, lo - 1, -1):
            r = hist[j]
            if r.person_id == pid and r.channel in cchan and r.result in cres and r.concerns(debt):
                retry.append(_next_day(ctx, i, ctx.local_date(i, r.at), days))
                last = r
                break
    if retry and last is not None:
        return (
            finding(
                rule, "deny", {"conversation_at": last.at.isoformat(), "days": days}, _latest(retry)
            ),
        )
    return (finding(rule, "allow"),)


# --- advisory flags ------------------------------------------------------------------------


@_kind(
    "flag_rapid_unanswered_calls",
    {
        "minutes_at_most": Param(p_positive, 5),
        "results": Param(p_results, frozenset({CallResult.NO_ANSWER, CallResult.VOICEMAIL, None})),
    },
)
def flag_rapid_unanswered_calls(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Flag a call to a number that had an unanswered call within the last N minutes."""
    req = ctx.request
    if req.channel is not Channel.CALL:
        return ()
    minutes, results = rule.params["minutes_at_most"], rule.params["results"]
    lo = ctx.first_index_at_or_after(ctx.ts - minutes * 60)
    for j in range(ctx.n - 1, lo - 1, -1):
        r = ctx.history[j]
        if (
            r.to == req.to
            and r.channel is Channel.CALL
            and r.initiated_by == "collector"
            and r.result in results
        ):
            return (finding(rule, "advise", {"previous_at": r.at.isoformat(), "minutes": minutes}),)
    return ()


@_kind("flag_calls_per_number_per_day_at_least", {"calls_at_least": Param(p_positive, 7)})
def flag_calls_per_number_per_day_at_least(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Flag a call that would make N or more collector calls to one number in a local day."""
    req = ctx.request
    if req.channel is not Channel.CALL or not ctx.zones:
        return ()
    need = rule.params["calls_at_least"]
    worst = 0
    for i in range(len(ctx.zones)):
        lo = ctx.first_index_at_or_after(ctx.window_start_ts(i, 1))
        count = 1
        for r in ctx.history[lo : ctx.n]:
            if r.to == req.to and r.channel is Channel.CALL and r.initiated_by == "collector":
                count += 1
        worst = max(worst, count)
    if worst >= need:
        return (finding(rule, "advise", {"calls_today": worst}),)
    return ()


@_kind(
    "flag_non_working_day_calls_at_least",
    {
        "calls_at_least": Param(p_positive, 3),
        "days": Param(p_positive, 28),
    },
)
def flag_non_working_day_calls_at_least(ctx: Ctx, rule: Rule) -> tuple[Finding, ...]:
    """Flag calls concentrated on Sundays and holidays: a call on such a day that would make N
    or more such calls to the person within the last ``days`` local days. Without calendar
    data for the year only Sundays are counted (said in the flag)."""
    req = ctx.request
    if req.channel is not Channel.CALL or not ctx.zones:
        return ()
    cal = ctx.facts.calendar
    z0 = ctx.zones[0]

    def off(d: date) -> bool:
        if d.weekday() == 6:
            return True
        return cal is not None and cal.is_working_day(d) is False

    today = ctx.local[0].date()
    if not off(today):
        return ()
    lo = ctx.first_index_at_or_after(ctx.window_start_ts(0, rule.params["days"]))
    count = 1 + sum(
        1
        for j in range(lo, ctx.n)
        if ctx.history[j].person_id == req.person_id
        and ctx.history[j].channel is Channel.CALL
        and ctx.history[j].initiated_by == "collector"
        and off(ctx.history[j].at.astimezone(z0).date())
    )
    if count >= rule.params["calls_at_least"]:
        covered = cal is not None and cal.covers(today)
        return (finding(rule, "advise", {"calls": count, "calendar_covered": covered}),)
    return ()


KINDS: Mapping[str, RuleKind] = MappingProxyType(_KINDS)
