"""Collection strategies as data: an ordered list of states, the first match wins.

The shape follows Kill Bill's overdue configuration (see docs/strategies.md):

* a ``Strategy`` is an ordered tuple of ``State`` records, **most severe first**; the first
  state whose ``Condition`` matches an account wins, and an account matching none is in the
  strategy's clear state (no actions);
* a ``Condition`` is an AND of optional predicates whose names say their comparison
  (``days_past_due_at_least`` includes the boundary day);
* a state's effects are data: a tuple of ``Action`` records, each with its ``Timing``;
* accounts carrying any ``enforcement_off_tags`` (an active agreement, a hold) get no state and
  no action at all -- this is checked **before** any state, as Kill Bill's
  ``OVERDUE_ENFORCEMENT_OFF`` is.

Three steps are kept apart: the shell builds an ``AccountSnapshot``; ``evaluate`` decides, as a
pure function of the snapshot and the date passed in; ``due_actions`` filters the state's
actions by day of week, re-evaluation interval and maximum per period. The same conditions are
compiled to SQL by ``parley.services.strategy_sql.state_case`` so the daily run is set-based.

Standard library only: no I/O, no clock. YAML is read in the services layer and handed here as
a plain ``dict`` (``parse_strategy``), which is validated completely -- every problem is
reported with its YAML path, not just the first.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from parley.core.money import MINOR_UNITS, MoneyError, format_minor, parse_minor
from parley.errors import InvalidInput, InvalidInputs

ACTION_KINDS = (
    "sms",
    "email",
    "call",
    "interview",
    "field_visit",
    "legal_referral",
    "agency_placement",
)
DAYS_OF_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index == date.weekday()
INTERVIEW_MODES = ("phone", "video", "in_person")
DEFAULT_ENFORCEMENT_OFF_TAGS = ("agreement_active", "hold")
DEFAULT_PRIORITY = 100
DEFAULT_COLLECTORS_FOR_VISIT = 2
ARM_BUCKETS = 10_000
# What an action needs on file to be carried out at all: an SMS or a call a valid phone
# number, an e-mail an address. Without it the action is not planned (it could only be
# dropped at send time, or sit in a collector's queue with nothing to dial). 面谈 invitations
# and visits are arranged by the collector, who works from the whole file.
PHONE, EMAIL = "phone", "email"
REACH_NEEDED = {"sms": PHONE, "call": PHONE, "email": EMAIL}
REACH_ALL = frozenset({PHONE, EMAIL})

# Tags and codes are canonical lowercase ASCII so that the pure evaluator and SQL (where
# SQLite's LIKE ignores ASCII case) agree; ``_`` is escaped when compiled to LIKE.
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HOURS_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourWindow:
    """A preferred contact window in the borrower's local time, ``[start, end)``.

    start_minute / end_minute: minutes after local midnight; ``end_minute`` may be 1440
    (written ``24:00``). The gate still decides lawful hours; this is only a preference.
    """

    start_minute: int
    end_minute: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start_minute)}-{_hhmm(self.end_minute)}"


@dataclass(frozen=True, slots=True)
class MaxPerPeriod:
    """At most ``count`` actions of this kind in any ``days`` consecutive days (today included)."""

    count: int
    days: int


@dataclass(frozen=True, slots=True)
class Timing:
    """When an action may be taken.

    days_of_week: the days (``mon``..``sun``) on which it is due; all seven when not written.
    preferred_hours: windows in the borrower's local time; empty means "whenever the gate
        allows". Not used by ``due_actions`` (a date-level filter); the queue carries them.
    reevaluate_every_days: after an action of this kind, wait this many days before the
        next; ``None`` means it is due at every run.
    max_per_period: a cap on actions of this kind in a rolling window; ``None`` means no cap
        here (the rule pack's caps still apply at the gate).
    """

    days_of_week: tuple[str, ...] = DAYS_OF_WEEK
    preferred_hours: tuple[HourWindow, ...] = ()
    reevaluate_every_days: int | None = None
    max_per_period: MaxPerPeriod | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One effect of a state, as data.

    kind: one of ``ACTION_KINDS``.
    priority: lower runs first; ties keep file order.
    timing: see ``Timing``.
    template: the message template id, for ``sms`` and ``email`` (required there); else None.
    queue: the collector queue, for ``call`` (required) and ``legal_referral`` (optional).
    required_skills: skills a collector needs to take a ``call`` (e.g. ``lang:yue``); empty
        means any collector of the queue.
    mode: ``phone`` / ``video`` / ``in_person``, for ``interview`` (面谈) only.
    collectors_required: how many collectors go on a ``field_visit`` (走访); default 2.
    agency: the outside agency's id, for ``agency_placement`` (委外) only.
    """

    kind: str
    priority: int = DEFAULT_PRIORITY
    timing: Timing = Timing()
    template: str | None = None
    queue: str | None = None
    required_skills: tuple[str, ...] = ()
    mode: str | None = None
    collectors_required: int | None = None
    agency: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """An AND of optional predicates; a predicate left as ``None`` does not constrain.

    Bounds are inclusive (``_at_least`` means ``>=``, ``_at_most`` means ``<=``). Balances are
    integer minor units of the strategy's currency; an account in another currency fails any
    balance predicate. An account whose bucket, product or risk score is unknown (None) fails
    a predicate on it. The empty condition matches every account.
    """

    days_past_due_at_least: int | None = None
    days_past_due_at_most: int | None = None
    bucket_in: tuple[str, ...] | None = None
    balance_at_least_minor: int | None = None
    balance_at_most_minor: int | None = None
    product_in: tuple[str, ...] | None = None
    risk_score_at_least: int | None = None
    risk_score_at_most: int | None = None
    broken_promises_at_least: int | None = None
    tags_include: tuple[str, ...] = ()
    tags_exclude: tuple[str, ...] = ()

    @property
    def dpd_range(self) -> tuple[int, int | None]:
        """The days-past-due interval this condition allows, ``(low, high or None for ∞)``."""
        return (self.days_past_due_at_least or 0, self.days_past_due_at_most)


@dataclass(frozen=True, slots=True)
class State:
    """A named state: its condition and its actions (possibly none: a "watch" state)."""

    name: str
    condition: Condition
    actions: tuple[Action, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class DpdGap:
    """A days-past-due range the author leaves uncovered on purpose (e.g. a grace period).

    at_most: None means "and above".
    """

    at_least: int
    at_most: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Strategy:
    """A versioned collection strategy.

    id: a stable lowercase id (``default``, ``challenger-2026q3``); version: an integer ≥ 1.
    currency: the ISO code balances in conditions are written in.
    states: most severe first; the first matching state wins.
    clear_state: the name given to accounts that match no state (they get no action).
    enforcement_off_tags: any one of these tags on an account means no state and no action.
    intended_dpd_gaps: days-past-due ranges deliberately covered by no state.
    """

    id: str
    name: str
    version: int
    currency: str
    states: tuple[State, ...]
    description: str = ""
    clear_state: str = "clear"
    enforcement_off_tags: tuple[str, ...] = DEFAULT_ENFORCEMENT_OFF_TAGS
    intended_dpd_gaps: tuple[DpdGap, ...] = ()

    @property
    def action_count(self) -> int:
        return sum(len(s.actions) for s in self.states)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The facts about one account that a strategy may look at, as of one business date.

    balance_minor: the overdue balance in integer minor units of ``currency``.
    bucket / product / risk_score: None when unknown (predicates on them then fail).
    tags: canonical lowercase tags (``agreement_active``, ``hold``, ``vip``...); empty = none.
    last_action_on: ``(kind, date)`` pairs, the latest date per action kind; empty = never.
    """

    account_id: str
    borrower_id: str
    loan_id: str
    days_past_due: int
    bucket: str | None
    balance_minor: int
    currency: str
    product: str | None
    risk_score: int | None
    broken_promises: int
    tags: frozenset[str] = frozenset()
    last_action_on: tuple[tuple[str, date], ...] = ()


@dataclass(frozen=True, slots=True)
class PredicateResult:
    """One predicate checked against one account: what was required, what was seen."""

    name: str
    expected: str
    actual: str
    matched: bool


@dataclass(frozen=True, slots=True)
class StateMiss:
    """Why an earlier state did not match: its first failing predicate."""

    state_name: str
    failed: PredicateResult


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The decision for one account: which state, why, and its actions.

    state_name: the matching state, or the strategy's clear state when none matched, or None
        when enforcement is off for this account (then ``actions`` is empty).
    is_clear: True when no state matched.
    actions: the state's actions, sorted by priority (file order breaks ties).
    matched_predicates: every predicate of the winning state with the values seen; empty for
        the clear state, for a catch-all state and when enforcement is off.
    enforcement_off_by: the account's tags that switched enforcement off; empty when on.
    misses: for each state tried before the winner, its first failing predicate.
    """

    strategy_id: str
    strategy_version: int
    account_id: str
    as_of: date
    state_name: str | None
    is_clear: bool
    actions: tuple[Action, ...]
    matched_predicates: tuple[PredicateResult, ...]
    enforcement_off_by: tuple[str, ...] = ()
    misses: tuple[StateMiss, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionHistory:
    """Past actions on one account: ``(kind, date)`` pairs, in any order; empty = none yet."""

    done: tuple[tuple[str, date], ...] = ()

    @classmethod
    def from_account(cls, account: AccountSnapshot) -> ActionHistory:
        """Only the latest date per kind: enough for re-evaluation, an undercount for caps."""
        return cls(account.last_action_on)

    def last_on(self, kind: str, as_of: date) -> date | None:
        dates = [d for k, d in self.done if k == kind and d <= as_of]
        return max(dates) if dates else None

    def count_between(self, kind: str, first: date, last: date) -> int:
        return sum(1 for k, d in self.done if k == kind and first <= d <= last)


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """Whether one action is due today, with a machine reason and a human message.

    reason: ``due``, ``not_on_this_weekday``, ``reevaluation_interval`` or ``max_per_period``.
    """

    action: Action
    due: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found by a strategy check: ``error`` fails validation, ``warning`` does not."""

    severity: str
    key: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a champion/challenger experiment: a strategy id and its integer weight."""

    strategy: str
    weight: int


@dataclass(frozen=True, slots=True)
class Experiment:
    """A stable, seeded split of accounts between strategies.

    Assignment depends only on ``seed`` and the account id (see ``experiment_bucket``), so it
    is the same on every run and independent of which other accounts exist. Changing the seed
    reshuffles everyone; changing weights moves only accounts near the changed boundaries.
    """

    id: str
    seed: str
    arms: tuple[Arm, ...]


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate(strategy: Strategy, account: AccountSnapshot, as_of: date) -> Evaluation:
    """Decide the account's state: enforcement-off tags first, then the first matching state."""

    def decided(state_name: str | None, **rest: Any) -> Evaluation:
        return Evaluation(strategy.id, strategy.version, account.account_id, as_of,
                          state_name, **rest)  # fmt: skip

    off = tuple(t for t in strategy.enforcement_off_tags if t in account.tags)
    if off:
        return decided(None, is_clear=False, actions=(), matched_predicates=(),
                       enforcement_off_by=off)  # fmt: skip
    misses: list[StateMiss] = []
    for state in strategy.states:
        results: list[PredicateResult] = []
        for result in predicate_results(state.condition, account, strategy):
            if not result.matched:
                misses.append(StateMiss(state.name, result))
                break
            results.append(result)
        else:  # every predicate matched: the first matching state wins
            return decided(state.name, is_clear=False, actions=_by_priority(state.actions),
                           matched_predicates=tuple(results), misses=tuple(misses))  # fmt: skip
    return decided(strategy.clear_state, is_clear=True, actions=(), matched_predicates=(),
                   misses=tuple(misses))  # fmt: skip


def predicate_results(
    c: Condition, a: AccountSnapshot, strategy: Strategy
) -> Iterator[PredicateResult]:
    """Each predicate the condition sets, in a fixed order, checked against the account."""

    def r(name: str, expected: object, actual: object, ok: bool) -> PredicateResult:
        return PredicateResult(name, _show(expected), _show(actual), ok)

    dpd = a.days_past_due
    if c.days_past_due_at_least is not None:
        yield r(
            "days_past_due_at_least", c.days_past_due_at_least, dpd, dpd >= c.days_past_due_at_least
        )
    if c.days_past_due_at_most is not None:
        yield r(
            "days_past_due_at_most", c.days_past_due_at_most, dpd, dpd <= c.days_past_due_at_most
        )
    if c.bucket_in is not None:
        yield r("bucket_in", c.bucket_in, a.bucket, a.bucket in c.bucket_in)
    for name, bound, cmp in (
        ("balance_at_least", c.balance_at_least_minor, _ge),
        ("balance_at_most", c.balance_at_most_minor, _le),
    ):
        if bound is not None:
            same = a.currency == strategy.currency
            shown = (
                format_minor(a.balance_minor, a.currency) if same else f"{a.balance_minor} minor"
            )
            yield r(
                name,
                f"{strategy.currency} {format_minor(bound, strategy.currency)}",
                f"{a.currency} {shown}",
                same and cmp(a.balance_minor, bound),
            )
    if c.product_in is not None:
        yield r("product_in", c.product_in, a.product, a.product in c.product_in)
    for name, bound, cmp in (
        ("risk_score_at_least", c.risk_score_at_least, _ge),
        ("risk_score_at_most", c.risk_score_at_most, _le),
    ):
        if bound is not None:
            yield r(
                name, bound, a.risk_score, a.risk_score is not None and cmp(a.risk_score, bound)
            )
    if c.broken_promises_at_least is not None:
        yield r(
            "broken_promises_at_least",
            c.broken_promises_at_least,
            a.broken_promises,
            a.broken_promises >= c.broken_promises_at_least,
        )
    if c.tags_include:
        yield r(
            "tags_include", c.tags_include, sorted(a.tags), all(t in a.tags for t in c.tags_include)
        )
    if c.tags_exclude:
        yield r(
            "tags_exclude",
            c.tags_exclude,
            sorted(a.tags),
            not any(t in a.tags for t in c.tags_exclude),
        )


def action_decisions(
    evaluation: Evaluation, history: ActionHistory, as_of: date,
    reach: frozenset[str] = REACH_ALL,
) -> tuple[ActionDecision, ...]:
    """Every action of the evaluation with whether it is due on ``as_of`` and why (not).

    ``reach``: what the borrower can be reached on (``PHONE``: a valid number, ``EMAIL``: an
    address); it decides nothing about the state, only which of its actions can be carried out.

    Checks run in this order and the first that fails is the reason: day of week, then what
    the action needs on file (``REACH_NEEDED``), then the re-evaluation interval (due when
    ``as_of - last >= reevaluate_every_days``), then the maximum per period (the window is the
    ``days`` days ending on ``as_of``, both ends included, i.e. ``as_of - days < d <=
    as_of``). History is counted per action kind.
    """
    out: list[ActionDecision] = []
    weekday = DAYS_OF_WEEK[as_of.weekday()]
    for action in evaluation.actions:
        t = action.timing
        last = history.last_on(action.kind, as_of)
        if weekday not in t.days_of_week:
            out.append(
                ActionDecision(
                    action,
                    False,
                    "not_on_this_weekday",
                    f"{action.kind} runs on {','.join(t.days_of_week)}; {as_of} is a {weekday}",
                )
            )
        elif not reachable(action.kind, reach):
            need = REACH_NEEDED[action.kind]
            out.append(
                ActionDecision(
                    action,
                    False,
                    "unreachable",
                    f"{action.kind} needs "
                    f"{'a valid phone number' if need == PHONE else 'an e-mail address'} on file",
                )
            )
        elif (
            t.reevaluate_every_days is not None
            and last is not None
            and (as_of - last).days < t.reevaluate_every_days
        ):
            out.append(
                ActionDecision(
                    action,
                    False,
                    "reevaluation_interval",
                    f"last {action.kind} on {last}; next due on "
                    f"{last + timedelta(days=t.reevaluate_every_days)}",
                )
            )
        elif (
            t.max_per_period is not None
            and (
                n := history.count_between(
                    action.kind, as_of - timedelta(days=t.max_per_period.days - 1), as_of
                )
            )
            >= t.max_per_period.count
        ):
            out.append(
                ActionDecision(
                    action,
                    False,
                    "max_per_period",
                    f"{n} {action.kind} in the last {t.max_per_period.days} "
                    f"days; at most {t.max_per_period.count}",
                )
            )
        else:
            out.append(ActionDecision(action, True, "due", f"{action.kind} is due"))
    return tuple(out)


def reachable(kind: str, on_file: frozenset[str]) -> bool:
    """Whether an action of ``kind`` can be carried out with ``on_file`` (``PHONE``, ``EMAIL``)."""
    need = REACH_NEEDED.get(kind)
    return need is None or need in on_file


def due_actions(evaluation: Evaluation, history: ActionHistory, as_of: date,
                reach: frozenset[str] = REACH_ALL) -> tuple[Action, ...]:
    """The actions due on ``as_of``, in priority order (see ``action_decisions`` for why not)."""
    return tuple(d.action for d in action_decisions(evaluation, history, as_of, reach) if d.due)


def _by_priority(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    # sorted() is stable, so equal priorities keep the order they were written in.
    return tuple(sorted(actions, key=lambda a: a.priority))


def _ge(a: int, b: int) -> bool:
    return a >= b


def _le(a: int, b: int) -> bool:
    return a <= b


def _show(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


# --------------------------------------------------------------------------------------------
# Champion / challenger
# --------------------------------------------------------------------------------------------


def experiment_bucket(seed: str, account_id: str) -> int:
    """The account's bucket in ``[0, 10000)``: SHA-256 of ``seed + "\\x1f" + account_id``
    (UTF-8), first 8 bytes big-endian, modulo 10000. Stable, seeded, per account only; the
    daily run may precompute it into a column and use ``arm_ranges`` (or ``arm_case`` in SQL).
    """
    digest = hashlib.sha256(f"{seed}\x1f{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % ARM_BUCKETS


def arm_ranges(experiment: Experiment) -> tuple[tuple[Arm, int, int], ...]:
    """Each arm with its bucket range ``[low, high)``; together they tile ``[0, 10000)``."""
    total = sum(a.weight for a in experiment.arms)
    if total <= 0:
        raise ValueError(f"experiment {experiment.id!r} has no arm with a positive weight")
    out: list[tuple[Arm, int, int]] = []
    cumulative = 0
    for arm in experiment.arms:
        low = cumulative * ARM_BUCKETS // total
        cumulative += arm.weight
        out.append((arm, low, cumulative * ARM_BUCKETS // total))
    return tuple(out)


def assign_arm(experiment: Experiment, account_id: str) -> Arm:
    """The arm an account belongs to in this experiment (stable across runs)."""
    bucket = experiment_bucket(experiment.seed, account_id)
    for arm, low, high in arm_ranges(experiment):
        if low <= bucket < high:
            return arm
    raise ValueError(f"experiment {experiment.id!r} has no arm with a positive weight")


# --------------------------------------------------------------------------------------------
# Checks on a parsed strategy: each has the same signature and returns findings as values.
# --------------------------------------------------------------------------------------------


def _check_unreachable_states(s: Strategy) -> Iterator[Finding]:
    """A later state no account can reach because an earlier state takes all its accounts."""
    for j, later in enumerate(s.states):
        for earlier in s.states[:j]:
            if covers(earlier.condition, later.condition):
                yield Finding(
                    "error",
                    "unreachable_state",
                    f"states[{j}]",
                    f"state {later.name!r} can never match: the earlier state "
                    f"{earlier.name!r} matches every account it would",
                )
                break


def _check_unsatisfiable_states(s: Strategy) -> Iterator[Finding]:
    """A state whose own condition cannot hold, or needs an enforcement-off tag."""
    for i, st in enumerate(s.states):
        c = st.condition
        both = sorted(set(c.tags_include) & set(c.tags_exclude))
        if both:
            yield Finding(
                "error",
                "unsatisfiable_state",
                f"states[{i}].condition",
                f"tags {both} are both included and excluded",
            )
        off = sorted(set(c.tags_include) & set(s.enforcement_off_tags))
        if off:
            yield Finding(
                "error",
                "unsatisfiable_state",
                f"states[{i}].condition.tags_include",
                f"tags {off} switch enforcement off, so this state can never match",
            )


def _check_dpd_gaps(s: Strategy) -> Iterator[Finding]:
    """Days past due (from 1 up) that no state covers, unless marked as intended gaps.

    Only the dpd axis is analysed. A state counts towards coverage when it bounds days past
    due or has the empty (catch-all) condition; a state that only narrows other axes (say
    ``bucket_in: [WO]``) covers no dpd range for this check, since most accounts fall past it.
    """
    covered = _union([st.condition.dpd_range for st in s.states if _covers_dpd(st.condition)])
    intended = _union([(g.at_least, g.at_most) for g in s.intended_dpd_gaps])
    for low, high in _complement(covered, start=1):
        for gl, gh in _subtract([(low, high)], intended):
            yield Finding(
                "error",
                "dpd_gap",
                "states",
                f"no state covers days past due {_range(gl, gh)}; cover it or add "
                f"it to intended_dpd_gaps",
            )
    for i, g in enumerate(s.intended_dpd_gaps):
        overlap = _subtract([(g.at_least, g.at_most)], _complement(covered, start=0))
        if overlap:
            yield Finding(
                "warning",
                "intended_gap_covered",
                f"intended_dpd_gaps[{i}]",
                f"days past due {', '.join(_range(a, b) for a, b in overlap)} are "
                f"marked as a gap but a state covers them",
            )


def _covers_dpd(c: Condition) -> bool:
    bounds_dpd = c.days_past_due_at_least is not None or c.days_past_due_at_most is not None
    return bounds_dpd or c == Condition()


def _check_severity_order(s: Strategy) -> Iterator[Finding]:
    """States should be listed most severe first, i.e. by falling days_past_due_at_least.

    Only neighbours that both set ``days_past_due_at_least`` are compared: a state without it
    (say, ``bucket_in: [WO]`` for written-off loans) may sit anywhere.
    """
    for i in range(1, len(s.states)):
        prev, cur = s.states[i - 1], s.states[i]
        p_low, c_low = prev.condition.days_past_due_at_least, cur.condition.days_past_due_at_least
        if p_low is not None and c_low is not None and c_low > p_low:
            yield Finding(
                "warning",
                "severity_order",
                f"states[{i}]",
                f"state {cur.name!r} starts at a higher days past due than the "
                f"earlier {prev.name!r}; list the most severe state first",
            )


STRATEGY_CHECKS: tuple[Callable[[Strategy], Iterable[Finding]], ...] = (
    _check_unreachable_states,
    _check_unsatisfiable_states,
    _check_dpd_gaps,
    _check_severity_order,
)


def check_strategy(strategy: Strategy) -> tuple[Finding, ...]:
    """Run every check in ``STRATEGY_CHECKS``, in order; errors and warnings together."""
    return tuple(f for check in STRATEGY_CHECKS for f in check(strategy))


def covers(earlier: Condition, later: Condition) -> bool:
    """True when every account matching ``later`` also matches ``earlier`` (axis by axis)."""

    def interval(lo1: int | None, hi1: int | None, lo2: int | None, hi2: int | None) -> bool:
        low_ok = lo1 is None or (lo2 is not None and lo2 >= lo1)
        high_ok = hi1 is None or (hi2 is not None and hi2 <= hi1)
        return low_ok and high_ok

    def among(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> bool:
        return a is None or (b is not None and set(b) <= set(a))

    e, lt = earlier, later
    return (
        interval(e.dpd_range[0], e.dpd_range[1], lt.dpd_range[0], lt.dpd_range[1])
        and among(e.bucket_in, lt.bucket_in)
        and interval(
            e.balance_at_least_minor,
            e.balance_at_most_minor,
            lt.balance_at_least_minor,
            lt.balance_at_most_minor,
        )
        and among(e.product_in, lt.product_in)
        and interval(
            e.risk_score_at_least,
            e.risk_score_at_most,
            lt.risk_score_at_least,
            lt.risk_score_at_most,
        )
        and (e.broken_promises_at_least or 0) <= (lt.broken_promises_at_least or 0)
        and set(e.tags_include) <= set(lt.tags_include)
        and set(e.tags_exclude) <= set(lt.tags_exclude)
    )


_Interval = tuple[int, int | None]  # inclusive; None = no upper end


def _union(intervals: Iterable[_Interval]) -> list[_Interval]:
    out: list[_Interval] = []
    for low, high in sorted(intervals, key=lambda iv: iv[0]):
        if out and (out[-1][1] is None or low <= out[-1][1] + 1):
            prev_high = out[-1][1]
            merged = None if prev_high is None or high is None else max(prev_high, high)
            out[-1] = (out[-1][0], merged)
        else:
            out.append((low, high))
    return out


def _complement(intervals: list[_Interval], start: int) -> list[_Interval]:
    out: list[_Interval] = []
    cursor: int | None = start
    for low, high in _union(intervals):
        if cursor is None:
            break
        if low > cursor:
            out.append((cursor, low - 1))
        cursor = None if high is None else max(cursor, high + 1)
    if cursor is not None:
        out.append((cursor, None))
    return out


def _subtract(a: list[_Interval], b: list[_Interval]) -> list[_Interval]:
    """``a`` minus ``b``, for unions of inclusive integer intervals."""
    out: list[_Interval] = []
    for low, high in a:
        pieces: list[_Interval] = [(low, high)]
        for blow, bhigh in b:
            nxt: list[_Interval] = []
            for plow, phigh in pieces:
                if (phigh is not None and phigh < blow) or (bhigh is not None and plow > bhigh):
                    nxt.append((plow, phigh))
                    continue
                if plow < blow:
                    nxt.append((plow, blow - 1))
                if bhigh is not None and (phigh is None or phigh > bhigh):
                    nxt.append((bhigh + 1, phigh))
            pieces = nxt
        out.extend(pieces)
    return out


def _range(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else (f"{low}" if low == high else f"{low}-{high}")


# --------------------------------------------------------------------------------------------
# Parsing and validation from a plain dict (YAML already loaded by the services layer)
# --------------------------------------------------------------------------------------------

_STRATEGY_KEYS = (
    "id",
    "name",
    "version",
    "description",
    "currency",
    "clear_state",
    "enforcement_off_tags",
    "intended_dpd_gaps",
    "states",
)
_STATE_KEYS = ("name", "description", "condition", "actions")
_CONDITION_KEYS = (
    "days_past_due_at_least",
    "days_past_due_at_most",
    "bucket_in",
    "balance_at_least",
    "balance_at_most",
    "product_in",
    "risk_score_at_least",
    "risk_score_at_most",
    "broken_promises_at_least",
    "tags_include",
    "tags_exclude",
)
_TIMING_KEYS = ("days_of_week", "preferred_hours", "reevaluate_every_days", "max_per_period")
_ACTION_COMMON = ("kind", "priority", "timing")
_ACTION_KEYS: Mapping[str, tuple[str, ...]] = {
    "sms": ("template",),
    "email": ("template",),
    "call": ("queue", "required_skills"),
    "interview": ("mode",),
    "field_visit": ("collectors_required",),
    "legal_referral": ("queue",),
    "agency_placement": ("agency",),
}
_ACTION_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "sms": ("template",),
    "email": ("template",),
    "call": ("queue",),
    "interview": ("mode",),
    "agency_placement": ("agency",),
}
_ALL_ACTION_KEYS = tuple(dict.fromkeys(_ACTION_COMMON + sum(_ACTION_KEYS.values(), ())))

_MISSING: Any = object()


class _Reader:
    """Collects every problem, each with its YAML path, instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[InvalidInput] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(InvalidInput(message, record=self.source, field=path))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_type(value)}")
            return None
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                self.error(_join(path, str(key)), f"unknown key {key!r}{extra}")
        return value

    def text(
        self,
        doc: dict[str, Any],
        key: str,
        path: str,
        *,
        default: Any = _MISSING,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
    ) -> Any:
        p = _join(path, key)
        if key not in doc:
            if default is _MISSING:
                self.error(p, "is required")
            return None if default is _MISSING else default
        value = doc[key]
        if not isinstance(value, str) or not value.strip():
            self.error(p, f"expected a non-empty string, got {_type(value)}")
            return None
        if choices and value not in choices:
            self.error(p, f"{value!r} is not one of {', '.join(choices)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(p, f"{value!r} must be lowercase letters, digits, '_', '.', ':' or '-'")
            return None
        return value

    def integer(
        self,
        doc: dict[str, Any],
        key: str,
        path: str,
        *,
        minimum: int,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        p = _join(path, key)
        if key not in doc:
            if required:
                self.error(p, "is required")
            return default
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(p, f"expected an integer, got {_type(value)}")
            return default
        if value < minimum:
            word = "negative" if minimum == 0 else f"less than {minimum}"
            self.error(p, f"{value} is {word}; it must be at least {minimum}")
            return default
        return value

    def strings(
        self,
        doc: dict[str, Any],
        key: str,
        path: str,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        non_empty: bool = True,
    ) -> tuple[str, ...] | None:
        p = _join(path, key)
        if key not in doc:
            return None
        value = doc[key]
        if not isinstance(value, list):
            self.error(p, f"expected a list, got {_type(value)}")
            return None
        if non_empty and not value:
            self.error(p, "must not be empty")
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            ip = f"{p}[{i}]"
            if not isinstance(item, str) or not item:
                self.error(ip, f"expected a non-empty string, got {_type(item)}")
            elif choices and item not in choices:
                self.error(ip, f"{item!r} is not one of {', '.join(choices)}")
            elif pattern is not None and not pattern.match(item):
                self.error(ip, f"{item!r} must be lowercase letters, digits, '_', '.', ':' or '-'")
            elif item in out:
                self.error(ip, f"{item!r} is listed twice")
            else:
                out.append(item)
        return tuple(out)

    def money(self, doc: dict[str, Any], key: str, path: str, currency: str | None) -> int | None:
        """A balance bound: a decimal string in major units, via ``parley.core.money``."""
        p = _join(path, key)
        if key not in doc:
            return None
        value = doc[key]
        if isinstance(value, (bool, float)) or not isinstance(value, (int, str)):
            self.error(p, f"expected a decimal string such as '5000.00', got {_type(value)}")
            return None
        if currency is None:
            return None  # the currency error is reported once, at 'currency'
        try:
            minor = parse_minor(str(value), currency)
        except MoneyError as exc:
            self.error(p, str(exc))
            return None
        if minor < 0:
            self.error(p, f"{value!r} is negative; balances in conditions are at least 0")
            return None
        return minor


def parse_strategy(doc: Any, source: str) -> Strategy:
    """Validate a loaded YAML document and build the ``Strategy``.

    Raises ``InvalidInputs`` listing every problem, each with ``record=source`` and ``field``
    the YAML path (``states[2].actions[0].timing.preferred_hours[1]``); this includes the
    ``error`` findings of ``check_strategy`` (unreachable states, unmarked dpd gaps).
    """
    r = _Reader(source)
    top = r.mapping(doc, "", _STRATEGY_KEYS)
    if top is None:
        raise InvalidInputs(r.errors)
    sid = r.text(top, "id", "", pattern=_ID_RE)
    name = r.text(top, "name", "")
    version = r.integer(top, "version", "", minimum=1, required=True)
    description = _optional_text(r, top, "description", "")
    currency = r.text(top, "currency", "", choices=tuple(MINOR_UNITS))
    clear_state = r.text(top, "clear_state", "", default="clear")
    off_tags = r.strings(top, "enforcement_off_tags", "", pattern=_TAG_RE, non_empty=False)
    gaps = _parse_gaps(r, top.get("intended_dpd_gaps", []))
    states: list[State] = []
    raw_states = top.get("states", _MISSING)
    if raw_states is _MISSING:
        r.error("states", "is required")
    elif not isinstance(raw_states, list) or not raw_states:
        r.error("states", f"expected a non-empty list of states, got {_type(raw_states)}")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_states):
            state = _parse_state(r, raw, f"states[{i}]", currency)
            if state is None:
                continue
            if state.name in seen:
                r.error(
                    f"states[{i}].name",
                    f"duplicate state name {state.name!r} (also states[{seen[state.name]}])",
                )
            elif state.name == clear_state:
                r.error(f"states[{i}].name", f"{state.name!r} is the clear_state's name")
            seen.setdefault(state.name, i)
            states.append(state)
    if r.errors:
        raise InvalidInputs(r.errors)
    strategy = Strategy(
        id=sid,
        name=name,
        version=version,
        currency=currency,
        states=tuple(states),
        description=description,
        clear_state=clear_state,
        enforcement_off_tags=DEFAULT_ENFORCEMENT_OFF_TAGS if off_tags is None else off_tags,
        intended_dpd_gaps=gaps,
    )
    for finding in check_strategy(strategy):
        if finding.severity == "error":
            r.error(finding.field, finding.message)
    if r.errors:
        raise InvalidInputs(r.errors)
    return strategy


def _parse_gaps(r: _Reader, raw: Any) -> tuple[DpdGap, ...]:
    if not isinstance(raw, list):
        r.error("intended_dpd_gaps", f"expected a list, got {_type(raw)}")
        return ()
    out: list[DpdGap] = []
    for i, item in enumerate(raw):
        p = f"intended_dpd_gaps[{i}]"
        g = r.mapping(item, p, ("days_past_due_at_least", "days_past_due_at_most", "reason"))
        if g is None:
            continue
        low = r.integer(g, "days_past_due_at_least", p, minimum=0, required=True)
        high = r.integer(g, "days_past_due_at_most", p, minimum=0)
        reason = r.text(g, "reason", p)
        if low is not None and high is not None and low > high:
            r.error(
                f"{p}.days_past_due_at_least", f"{low} is greater than days_past_due_at_most {high}"
            )
        elif low is not None and reason is not None:
            out.append(DpdGap(low, high, reason))
    return tuple(out)


def _parse_state(r: _Reader, raw: Any, path: str, currency: str | None) -> State | None:
    doc = r.mapping(raw, path, _STATE_KEYS)
    if doc is None:
        return None
    name = r.text(doc, "name", path)
    description = _optional_text(r, doc, "description", path)
    condition = None
    if "condition" not in doc:
        r.error(_join(path, "condition"), "is required (write {} to match every account)")
    else:
        condition = _parse_condition(r, doc["condition"], _join(path, "condition"), currency)
    actions: list[Action] = []
    raw_actions = doc.get("actions", [])
    if not isinstance(raw_actions, list):
        r.error(_join(path, "actions"), f"expected a list, got {_type(raw_actions)}")
    else:
        for j, item in enumerate(raw_actions):
            action = _parse_action(r, item, f"{path}.actions[{j}]")
            if action is not None:
                actions.append(action)
    if name is None or condition is None:
        return None
    return State(name, condition, tuple(actions), description)


def _parse_condition(r: _Reader, raw: Any, path: str, currency: str | None) -> Condition | None:
    doc = r.mapping(raw if raw is not None else {}, path, _CONDITION_KEYS)
    if doc is None:
        return None
    before = len(r.errors)
    c = Condition(
        days_past_due_at_least=r.integer(doc, "days_past_due_at_least", path, minimum=0),
        days_past_due_at_most=r.integer(doc, "days_past_due_at_most", path, minimum=0),
        bucket_in=r.strings(doc, "bucket_in", path),
        balance_at_least_minor=r.money(doc, "balance_at_least", path, currency),
        balance_at_most_minor=r.money(doc, "balance_at_most", path, currency),
        product_in=r.strings(doc, "product_in", path),
        risk_score_at_least=r.integer(doc, "risk_score_at_least", path, minimum=-(2**31)),
        risk_score_at_most=r.integer(doc, "risk_score_at_most", path, minimum=-(2**31)),
        broken_promises_at_least=r.integer(doc, "broken_promises_at_least", path, minimum=0),
        tags_include=r.strings(doc, "tags_include", path, pattern=_TAG_RE) or (),
        tags_exclude=r.strings(doc, "tags_exclude", path, pattern=_TAG_RE) or (),
    )
    for low, high, label in (
        (c.days_past_due_at_least, c.days_past_due_at_most, "days_past_due"),
        (c.balance_at_least_minor, c.balance_at_most_minor, "balance"),
        (c.risk_score_at_least, c.risk_score_at_most, "risk_score"),
    ):
        if low is not None and high is not None and low > high:
            r.error(
                f"{path}.{label}_at_least",
                f"{label}_at_least is greater than {label}_at_most; no account can match",
            )
    return c if len(r.errors) == before else None


def _parse_action(r: _Reader, raw: Any, path: str) -> Action | None:
    if not isinstance(raw, dict):
        r.error(path, f"expected a mapping, got {_type(raw)}")
        return None
    kind = r.text(raw, "kind", path, choices=ACTION_KINDS)
    if kind is None:
        r.mapping(raw, path, _ALL_ACTION_KEYS)
        return None
    allowed = _ACTION_COMMON + _ACTION_KEYS[kind]
    before = len(r.errors)
    for key in raw:
        if key not in allowed:
            if key in _ALL_ACTION_KEYS:
                r.error(_join(path, key), f"{key!r} does not apply to {kind} actions")
            else:
                r.mapping({key: None}, path, _ALL_ACTION_KEYS)  # reports it with a hint
    for key in _ACTION_REQUIRED.get(kind, ()):
        if key not in raw:
            r.error(_join(path, key), f"is required for {kind} actions")
    priority = r.integer(raw, "priority", path, minimum=0, default=DEFAULT_PRIORITY)
    timing = _parse_timing(r, raw.get("timing", {}), _join(path, "timing"))
    action = Action(
        kind=kind,
        priority=priority,
        timing=timing or Timing(),
        template=r.text(raw, "template", path, default=None) if "template" in allowed else None,
        queue=r.text(raw, "queue", path, default=None) if "queue" in allowed else None,
        required_skills=(r.strings(raw, "required_skills", path, non_empty=False) or ())
        if kind == "call"
        else (),
        mode=r.text(raw, "mode", path, choices=INTERVIEW_MODES, default=None)
        if kind == "interview"
        else None,
        collectors_required=r.integer(
            raw, "collectors_required", path, minimum=1, default=DEFAULT_COLLECTORS_FOR_VISIT
        )
        if kind == "field_visit"
        else None,
        agency=r.text(raw, "agency", path, default=None) if kind == "agency_placement" else None,
    )
    return action if len(r.errors) == before else None


def _parse_timing(r: _Reader, raw: Any, path: str) -> Timing | None:
    doc = r.mapping(raw if raw is not None else {}, path, _TIMING_KEYS)
    if doc is None:
        return None
    before = len(r.errors)
    days = r.strings(doc, "days_of_week", path, choices=DAYS_OF_WEEK)
    windows: list[HourWindow] = []
    raw_hours = doc.get("preferred_hours", [])
    if not isinstance(raw_hours, list):
        r.error(_join(path, "preferred_hours"), f"expected a list, got {_type(raw_hours)}")
    else:
        for i, item in enumerate(raw_hours):
            w = _parse_window(r, item, f"{path}.preferred_hours[{i}]")
            if w is not None:
                windows.append(w)
        ordered = sorted(windows, key=lambda w: w.start_minute)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start_minute < a.end_minute:
                r.error(_join(path, "preferred_hours"), f"windows {a} and {b} overlap")
    every = r.integer(doc, "reevaluate_every_days", path, minimum=1)
    cap = None
    if "max_per_period" in doc:
        cp = _join(path, "max_per_period")
        m = r.mapping(doc["max_per_period"], cp, ("count", "days"))
        if m is not None:
            count = r.integer(m, "count", cp, minimum=1, required=True)
            period = r.integer(m, "days", cp, minimum=1, required=True)
            if count is not None and period is not None:
                cap = MaxPerPeriod(count, period)
    if len(r.errors) != before:
        return None
    return Timing(
        days_of_week=tuple(d for d in DAYS_OF_WEEK if d in days) if days else DAYS_OF_WEEK,
        preferred_hours=tuple(windows),
        reevaluate_every_days=every,
        max_per_period=cap,
    )


def _parse_window(r: _Reader, raw: Any, path: str) -> HourWindow | None:
    m = _HOURS_RE.match(raw) if isinstance(raw, str) else None
    if m is None:
        r.error(path, f"expected a window like '09:00-12:00', got {raw!r}")
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        r.error(path, f"{raw!r} is not a valid time of day")
        return None
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= end:
        r.error(path, f"{raw!r} ends before it starts (windows cannot cross midnight)")
        return None
    return HourWindow(start, end)


def parse_experiment(doc: Any, source: str) -> Experiment:
    """Validate ``{id, seed, arms: [{strategy, weight}]}``; raises ``InvalidInputs``."""
    r = _Reader(source)
    top = r.mapping(doc, "", ("id", "seed", "arms"))
    if top is None:
        raise InvalidInputs(r.errors)
    eid = r.text(top, "id", "", pattern=_ID_RE)
    seed = r.text(top, "seed", "")
    arms: list[Arm] = []
    raw_arms = top.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        r.error("arms", f"expected a non-empty list of arms, got {_type(raw_arms)}")
    else:
        for i, item in enumerate(raw_arms):
            p = f"arms[{i}]"
            a = r.mapping(item, p, ("strategy", "weight"))
            if a is None:
                continue
            strategy = r.text(a, "strategy", p, pattern=_ID_RE)
            weight = r.integer(a, "weight", p, minimum=0, required=True)
            if strategy is not None and any(x.strategy == strategy for x in arms):
                r.error(f"{p}.strategy", f"strategy {strategy!r} has two arms")
            elif strategy is not None and weight is not None:
                arms.append(Arm(strategy, weight))
        if not r.errors and sum(a.weight for a in arms) == 0:
            r.error("arms", "the weights add up to 0; at least one arm needs a positive weight")
    if r.errors:
        raise InvalidInputs(r.errors)
    return Experiment(eid, seed, tuple(arms))


def _optional_text(r: _Reader, doc: dict[str, Any], key: str, path: str) -> str:
    if key not in doc or doc[key] is None:
        return ""
    value = doc[key]
    if not isinstance(value, str):
        r.error(_join(path, key), f"expected a string, got {_type(value)}")
        return ""
    return value.strip()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


__all__ = [
    "ACTION_KINDS", "DAYS_OF_WEEK", "INTERVIEW_MODES", "DEFAULT_ENFORCEMENT_OFF_TAGS",
    "EMAIL", "PHONE", "REACH_ALL", "REACH_NEEDED", "STRATEGY_CHECKS", "AccountSnapshot",
    "Action", "ActionDecision", "ActionHistory", "Arm", "Condition", "DpdGap", "Evaluation",
    "Experiment", "Finding",
    "HourWindow", "MaxPerPeriod", "PredicateResult", "State", "StateMiss", "Strategy", "Timing",
    "action_decisions", "arm_ranges", "assign_arm", "check_strategy", "covers", "due_actions",
    "evaluate", "experiment_bucket", "parse_experiment", "parse_strategy",
    "predicate_results", "reachable",
]  # fmt: skip
