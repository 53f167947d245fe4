"""Agreements (协商): the lender's agreement policy as values, and the quote maths.

Pure: standard library and `parley.core` only; no clock, no I/O. `quote` takes the debt as it
stands on `debt.as_of`, what the borrower says they can pay (`Offer`) and a `Policy`, and
returns every plan the policy allows plus, for each plan it cannot offer, a reason that names
the figures. Amounts are integer minor units throughout.

Rounding rules (stated once, applied here only):

* A waiver is `floor(share × component)`: rounding down means a waiver never exceeds the
  policy's share.
* Instalment plans use the fewest instalments the borrower can afford,
  N = ceil(total / offered); every instalment but the last is
  r = max(ceil(total / N), minimum instalment), never more than the offer; the last is what
  remains, total − (N−1)·r, which is always positive and never more than r. So instalments
  sum to the agreed total exactly, none is negative, and the last absorbs the rounding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from parley.core.dates import add_months
from parley.core.money import MoneyError, format_minor, parse_minor

COMPONENTS: tuple[str, ...] = ("principal", "interest", "fee", "penalty")


class Kind(StrEnum):
    PROMISE = "promise"  # the arrears, in one payment, by a date
    INSTALLMENT_PLAN = "installment_plan"  # 分期: arrears or whole balance over N instalments
    EXTENSION = "extension"  # 延期: arrears gathered, later instalments moved by N months
    REDUCTION = "reduction"  # 减免: a plan with waivers that take effect if it is kept


class Frequency(StrEnum):
    MONTHLY = "monthly"
    FORTNIGHTLY = "fortnightly"

    @property
    def per(self) -> str:
        return "per month" if self is Frequency.MONTHLY else "per fortnight"


class Scope(StrEnum):
    ARREARS = "arrears"  # what is overdue on as_of
    WHOLE_BALANCE = "whole_balance"  # arrears plus every instalment not yet due


class BreakRule(StrEnum):
    """What happens when a plan is broken. The only rule supported: the loan's original
    schedule applies again and conditional waivers lapse (they were never posted)."""

    RESTORE_ORIGINAL_TERMS = "restore_original_terms"


class PolicyError(ValueError):
    """A policy document that cannot be used; `field` is the dotted path at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class QuoteError(ValueError):
    """A quote request that is wrong in itself (not merely infeasible); names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Components:
    """An amount split by component (minor units, each ≥ 0 where it is owed or waived)."""

    principal: int = 0
    interest: int = 0
    fee: int = 0
    penalty: int = 0

    @property
    def total(self) -> int:
        return self.principal + self.interest + self.fee + self.penalty

    def get(self, component: str) -> int:
        return int(getattr(self, component))

    def __add__(self, other: Components) -> Components:
        return Components(*(self.get(c) + other.get(c) for c in COMPONENTS))

    def __sub__(self, other: Components) -> Components:
        return Components(*(self.get(c) - other.get(c) for c in COMPONENTS))

    def as_dict(self) -> dict[str, int]:
        return {c: self.get(c) for c in COMPONENTS}


@dataclass(frozen=True, slots=True)
class Upcoming:
    """One instalment of the loan not yet due on `as_of`: what of it is still unpaid."""

    number: int
    due_on: date
    amounts: Components

    @property
    def amount(self) -> int:
        return self.amounts.total


@dataclass(frozen=True, slots=True)
class Debt:
    """A loan's debt on `as_of`, as the ledger says.

    overdue: unpaid amounts of instalments due on or before `as_of`, by component.
    upcoming: instalments due after `as_of` with their unpaid amounts, in due-date order;
        empty = nothing more falls due (an extension then has nothing to move).
    """

    loan_id: str
    currency: str
    as_of: date
    overdue: Components
    upcoming: tuple[Upcoming, ...] = ()

    def in_scope(self, scope: Scope) -> Components:
        if scope is Scope.ARREARS:
            return self.overdue
        out = self.overdue
        for u in self.upcoming:
            out = out + u.amounts
        return out


@dataclass(frozen=True, slots=True)
class Offer:
    """What the borrower says they can pay: `amount` (minor units, > 0) every `frequency`,
    the first payment on `first_payment_on`."""

    amount: int
    frequency: Frequency
    first_payment_on: date

    def __post_init__(self) -> None:
        object.__setattr__(self, "frequency", Frequency(self.frequency))


@dataclass(frozen=True, slots=True)
class WaiverRule:
    """A component that may be waived: up to `max_share` of it (hard cap); a share above
    `approval_above` needs a supervisor's approval (0 = any waiver needs it)."""

    component: str
    max_share: Fraction
    approval_above: Fraction


@dataclass(frozen=True, slots=True)
class Policy:
    """The lender's agreement policy (parley/policies/<id>.yaml, parsed by `parse_policy`).

    min_installment: per currency, minor units; a currency missing here cannot be quoted
        (fails closed rather than guessing a minimum).
    max_term_months: every plan's last instalment falls due at most this many months after
        the quote date.
    first_payment_within_days: the first payment is due at most this many days ahead.
    promise_max_days: a promise to pay must be kept within this many days.
    extension_max_months: an extension moves later instalments by 1..this many months.
    waivers: components that may be waived; a component not listed is never waived.
    proposal_expiry_hours: an unaccepted proposal expires after this long.
    grace_days: an instalment unpaid more than this many days after its due date breaks
        the plan.
    """

    id: str
    version: str
    kinds: tuple[Kind, ...]
    scopes: tuple[Scope, ...]
    frequencies: tuple[Frequency, ...]
    min_installment: tuple[tuple[str, int], ...]
    max_term_months: int
    first_payment_within_days: int
    promise_max_days: int
    extension_max_months: int
    waivers: tuple[WaiverRule, ...]
    proposal_expiry_hours: int
    grace_days: int
    on_break: BreakRule
    approver_roles: tuple[str, ...]
    otp_ttl_minutes: int
    otp_max_attempts: int

    def minimum(self, currency: str) -> int:
        for cur, amount in self.min_installment:
            if cur == currency:
                return amount
        raise QuoteError(
            "currency", f"the policy {self.id!r} has no minimum instalment for {currency}"
        )

    def waiver(self, component: str) -> WaiverRule | None:
        for w in self.waivers:
            if w.component == component:
                return w
        return None


@dataclass(frozen=True, slots=True)
class PlannedInstallment:
    """One instalment of a plan: `amount` (minor units, > 0) due on `due_on`."""

    number: int
    due_on: date
    amount: int


@dataclass(frozen=True, slots=True)
class Plan:
    """One plan the policy allows.

    key: stable name of the option, e.g. ``installment_plan/arrears``, ``reduction/whole_balance/standard``.
    basis: what is owed in scope before waivers. waived: what is waived if the plan is kept
        (all zero for plans without waivers). total: what the borrower pays = basis − waived.
    installments: sum exactly to `total`; none is zero or negative.
    approval_reasons: why a supervisor must approve; empty = no approval needed.
    """

    key: str
    kind: Kind
    scope: Scope
    frequency: Frequency
    basis: Components
    waived: Components
    total: int
    installments: tuple[PlannedInstallment, ...]
    approval_reasons: tuple[str, ...] = ()
    moved_by_months: int = 0

    def __post_init__(self) -> None:
        # Validation, not an assert: a plan that does not cover its amount must never exist.
        if sum(i.amount for i in self.installments) != self.total:
            raise ValueError(
                f"plan {self.key}: instalments sum to {sum(i.amount for i in self.installments)}, "
                f"not the agreed {self.total}"
            )
        if any(i.amount <= 0 for i in self.installments) or not self.installments:
            raise ValueError(f"plan {self.key}: every instalment must be positive")
        if self.basis.total - self.waived.total != self.total:
            raise ValueError(f"plan {self.key}: total is not basis minus waivers")
        if any(self.waived.get(c) < 0 for c in COMPONENTS):
            raise ValueError(f"plan {self.key}: negative waiver")

    @property
    def needs_approval(self) -> bool:
        return bool(self.approval_reasons)

    @property
    def starts_on(self) -> date:
        return self.installments[0].due_on

    @property
    def ends_on(self) -> date:
        return self.installments[-1].due_on


@dataclass(frozen=True, slots=True)
class Infeasible:
    """An option the policy does not allow for this debt and offer: `reason` is a machine key,
    `message` names the figures."""

    key: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Quote:
    """Everything the policy allows for `debt` and `offer`; `infeasible` says why each other
    option is not offered. Both empty never happens: a request with no options is an error."""

    debt: Debt
    offer: Offer
    policy_id: str
    plans: tuple[Plan, ...]
    infeasible: tuple[Infeasible, ...]

    def plan(self, key: str) -> Plan | None:
        for p in self.plans:
            if p.key == key:
                return p
        return None


# --------------------------------------------------------------------------- policy parsing


def parse_share(text: Any, field: str) -> Fraction:
    """'50%' or '12.5%' → exact Fraction in [0, 1]."""
    if not isinstance(text, str) or not text.strip().endswith("%"):
        raise PolicyError(field, f"{text!r} is not a percentage like '50%'")
    number = text.strip()[:-1].strip()
    if not re.fullmatch(r"\d{1,3}(\.\d{1,6})?", number):
        raise PolicyError(field, f"{text!r} is not a percentage like '50%'")
    value = Fraction(Decimal(number)) / 100
    if not 0 <= value <= 1:
        raise PolicyError(field, f"{text!r} is not between 0% and 100%")
    return value


def _int(doc: Mapping[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = doc.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PolicyError(name, f"must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise PolicyError(name, f"{value} is outside {lo}..{hi}")
    return value


def _enum_list(doc: Mapping[str, Any], name: str, enum: Any) -> tuple[Any, ...]:
    raw = doc.get(name)
    if not isinstance(raw, list) or not raw:
        raise PolicyError(name, "must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(enum(item))
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise PolicyError(f"{name}[{i}]", f"{item!r} is not one of {allowed}") from None
    return tuple(dict.fromkeys(out))


def parse_policy(doc: Mapping[str, Any]) -> Policy:
    """A policy document (already loaded from YAML) → `Policy`; PolicyError names the field."""
    if not isinstance(doc, Mapping):
        raise PolicyError("", "a policy is a mapping")
    pid = doc.get("id")
    if not isinstance(pid, str) or not pid:
        raise PolicyError("id", "is required")
    mins = doc.get("min_installment")
    if not isinstance(mins, Mapping) or not mins:
        raise PolicyError("min_installment", "must map currency codes to amounts")
    min_installment = []
    for cur, text in mins.items():
        try:
            amount = parse_minor(str(text), str(cur))
        except MoneyError as exc:
            raise PolicyError(f"min_installment.{cur}", str(exc)) from None
        if amount <= 0:
            raise PolicyError(f"min_installment.{cur}", "must be positive")
        min_installment.append((str(cur), amount))
    waivers = []
    raw_w = doc.get("waivers") or {}
    if not isinstance(raw_w, Mapping):
        raise PolicyError("waivers", "must map components to rules")
    for comp, rule in raw_w.items():
        if comp not in COMPONENTS:
            raise PolicyError(f"waivers.{comp}", f"is not one of {', '.join(COMPONENTS)}")
        if not isinstance(rule, Mapping):
            raise PolicyError(f"waivers.{comp}", "must have max_share and approval_above")
        max_share = parse_share(rule.get("max_share"), f"waivers.{comp}.max_share")
        approval = parse_share(rule.get("approval_above", "100%"), f"waivers.{comp}.approval_above")
        waivers.append(WaiverRule(str(comp), max_share, approval))
    on_break = doc.get("on_break", BreakRule.RESTORE_ORIGINAL_TERMS.value)
    try:
        rule_break = BreakRule(on_break)
    except ValueError:
        raise PolicyError("on_break", f"{on_break!r} is not one of {', '.join(BreakRule)}") from None
    roles = doc.get("approver_roles", ["team_lead", "administrator"])
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles) or not roles:
        raise PolicyError("approver_roles", "must be a non-empty list of role names")
    otp = doc.get("acceptance_code", {}) or {}
    if not isinstance(otp, Mapping):
        raise PolicyError("acceptance_code", "must be a mapping")
    promise = doc.get("promise", {}) or {}
    extension = doc.get("extension", {}) or {}
    if not isinstance(promise, Mapping) or not isinstance(extension, Mapping):
        raise PolicyError("promise", "promise and extension must be mappings")
    try:
        promise_days = _int(promise, "max_days", 1, 90, 14)
        ext_months = _int(extension, "max_months", 1, 24, 3)
        ttl = _int(otp, "ttl_minutes", 1, 24 * 60, 15)
        attempts = _int(otp, "max_attempts", 1, 20, 5)
    except PolicyError as exc:
        parent = "promise" if exc.field == "max_days" else "extension" if exc.field == "max_months" else "acceptance_code"
        raise PolicyError(f"{parent}.{exc.field}", exc.message) from None
    return Policy(
        id=pid,
        version=str(doc.get("version", "1")),
        kinds=_enum_list(doc, "kinds", Kind),
        scopes=_enum_list(doc, "scopes", Scope),
        frequencies=_enum_list(doc, "frequencies", Frequency),
        min_installment=tuple(min_installment),
        max_term_months=_int(doc, "max_term_months", 1, 120),
        first_payment_within_days=_int(doc, "first_payment_within_days", 0, 366, 30),
        promise_max_days=promise_days,
        extension_max_months=ext_months,
        waivers=tuple(waivers),
        proposal_expiry_hours=_int(doc, "proposal_expiry_hours", 1, 24 * 90, 72),
        grace_days=_int(doc, "grace_days", 0, 60, 3),
        on_break=rule_break,
        approver_roles=tuple(roles),
        otp_ttl_minutes=ttl,
        otp_max_attempts=attempts,
    )


# --------------------------------------------------------------------------- quote maths


def due_dates(first: date, frequency: Frequency, count: int) -> tuple[date, ...]:
    """`count` due dates from `first`: monthly anchored on the first day (31 Jan → 28/29 Feb →
    31 Mar), fortnightly every 14 days."""
    if frequency is Frequency.MONTHLY:
        return tuple(add_months(first, k) for k in range(count))
    return tuple(first + timedelta(days=14 * k) for k in range(count))


def last_due_date(first: date, frequency: Frequency, count: int) -> date | None:
    """The last of ``due_dates(first, frequency, count)`` without listing them; None when it
    falls after 9999-12-31."""
    try:
        if frequency is Frequency.MONTHLY:
            return add_months(first, count - 1)
        return first + timedelta(days=14 * (count - 1))
    except (ValueError, OverflowError):
        return None


def split_evenly(total: int, count: int, minimum: int) -> tuple[int, ...]:
    """`count` amounts summing to `total`: all but the last equal r = max(ceil(total/count),
    minimum) (capped so that the last stays positive), the last takes what remains."""
    if count <= 0 or total <= 0:
        raise ValueError("split_evenly needs a positive total and count")
    if count == 1:
        return (total,)
    regular = max(-(-total // count), minimum)
    if regular * (count - 1) >= total:  # the minimum would leave nothing for the last
        regular = -(-total // count)
        if regular * (count - 1) >= total:
            regular = total // count
            return (regular,) * (count - 1) + (total - regular * (count - 1),)
    return (regular,) * (count - 1) + (total - regular * (count - 1),)


def _money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


def _waiver_options(
    basis: Components, policy: Policy, requested: Components | None
) -> list[tuple[str, Components]]:
    """(level name, waived amounts) to quote: the requested waivers if given, else 'standard'
    (the most that needs no approval) and 'maximum' (the policy's cap), when they differ."""
    if requested is not None:
        return [("requested", requested)] if requested.total > 0 else []
    standard: dict[str, int] = {}
    maximum: dict[str, int] = {}
    for c in COMPONENTS:
        rule = policy.waiver(c)
        amount = basis.get(c)
        if rule is None or amount <= 0:
            standard[c] = maximum[c] = 0
            continue
        share_std = min(rule.max_share, rule.approval_above)
        standard[c] = _floor_share(share_std, amount)
        maximum[c] = _floor_share(rule.max_share, amount)
    out: list[tuple[str, Components]] = []
    std = Components(**standard)
    mx = Components(**maximum)
    if std.total > 0:
        out.append(("standard", std))
    if mx.total > 0 and mx != std:
        out.append(("maximum", mx))
    return out


def _floor_share(share: Fraction, amount: int) -> int:
    return (share.numerator * amount) // share.denominator


def check_waivers(basis: Components, waived: Components, policy: Policy, currency: str,
                  field: str = "waivers") -> tuple[str, ...]:
    """Raise QuoteError if a waiver exceeds the policy; return why approval is needed."""
    reasons: list[str] = []
    for c in COMPONENTS:
        w = waived.get(c)
        if w == 0:
            continue
        rule = policy.waiver(c)
        if w < 0:
            raise QuoteError(f"{field}.{c}", "a waiver cannot be negative")
        if rule is None:
            raise QuoteError(f"{field}.{c}", f"the policy {policy.id!r} does not allow waiving {c}")
        amount = basis.get(c)
        cap = _floor_share(rule.max_share, amount)
        if w > cap:
            raise QuoteError(
                f"{field}.{c}",
                f"waiving {_money(w, currency)} of {c} {_money(amount, currency)} is above the "
                f"policy's maximum {_pct(rule.max_share)} ({_money(cap, currency)})",
            )
        if Fraction(w, amount) > rule.approval_above:
            reasons.append(
                f"waiving {_pct(Fraction(w, amount))} of {c} is above {_pct(rule.approval_above)}"
                " and needs a supervisor's approval"
            )
    return tuple(reasons)


def _pct(share: Fraction) -> str:
    value = share * 100
    if value.denominator == 1:
        return f"{value.numerator}%"
    whole = value.numerator * 100 // value.denominator
    return f"{whole // 100}.{whole % 100:02d}%"


def _spread(
    key: str,
    kind: Kind,
    scope: Scope,
    basis: Components,
    waived: Components,
    offer: Offer,
    policy: Policy,
    currency: str,
    as_of: date,
    approval: tuple[str, ...],
) -> Plan | Infeasible:
    """The total (basis − waived) spread over the fewest instalments the offer affords."""
    total = basis.total - waived.total
    if total <= 0:
        what = "nothing is overdue" if scope is Scope.ARREARS else "nothing is owed"
        return Infeasible(key, "nothing_owed", f"{what} on {as_of}")
    minimum = policy.minimum(currency)
    if offer.amount < total and offer.amount < minimum:
        return Infeasible(
            key,
            "below_minimum_installment",
            f"the minimum instalment under this policy is {_money(minimum, currency)}; "
            f"{_money(offer.amount, currency)} {offer.frequency.per} is below it",
        )
    count = -(-total // offer.amount)
    latest = add_months(as_of, policy.max_term_months)
    # the last date first: a small offer against a large debt is a count in the millions,
    # past the calendar's end, and only a plan within the term has its dates listed
    last = last_due_date(offer.first_payment_on, offer.frequency, count)
    if last is None or last > latest:
        return Infeasible(
            key,
            "term_too_long",
            f"at {_money(offer.amount, currency)} {offer.frequency.per}, "
            f"{_money(total, currency)} takes {count} instalments"
            + (f", the last on {last}" if last is not None else "")
            + f"; this policy allows plans of up to {policy.max_term_months} months "
            f"(ending by {latest})",
        )
    dates = due_dates(offer.first_payment_on, offer.frequency, count)
    amounts = split_evenly(total, count, minimum)
    insts = tuple(PlannedInstallment(n, d, a) for n, (d, a) in enumerate(zip(dates, amounts, strict=True), 1))
    return Plan(key, kind, scope, offer.frequency, basis, waived, total, insts, approval)


def _promise(debt: Debt, offer: Offer, policy: Policy) -> Plan | Infeasible:
    key = "promise/arrears"
    total = debt.overdue.total
    cur = debt.currency
    if total <= 0:
        return Infeasible(key, "nothing_owed", f"nothing is overdue on {debt.as_of}")
    by = debt.as_of + timedelta(days=policy.promise_max_days)
    if offer.first_payment_on > by:
        return Infeasible(
            key,
            "promise_too_late",
            f"a promise to pay must be kept within {policy.promise_max_days} days (by {by}); "
            f"{offer.first_payment_on} is later",
        )
    if offer.amount < total:
        return Infeasible(
            key,
            "cannot_pay_arrears",
            f"a promise pays the arrears {_money(total, cur)} in one payment; "
            f"{_money(offer.amount, cur)} is below it",
        )
    inst = (PlannedInstallment(1, offer.first_payment_on, total),)
    return Plan(key, Kind.PROMISE, Scope.ARREARS, offer.frequency, debt.overdue, Components(), total, inst)


def _extension(debt: Debt, offer: Offer, policy: Policy, months: int) -> Plan | Infeasible:
    key = f"extension/{months}m"
    cur = debt.currency
    if not debt.upcoming:
        return Infeasible(key, "nothing_to_move", f"no instalment falls due after {debt.as_of}; "
                          "an extension has nothing to move")
    rows: dict[date, int] = {}
    if debt.overdue.total > 0:
        rows[offer.first_payment_on] = debt.overdue.total
    for u in debt.upcoming:
        if u.amount > 0:
            moved = add_months(u.due_on, months)
            rows[moved] = rows.get(moved, 0) + u.amount
    if not rows:
        return Infeasible(key, "nothing_owed", f"nothing is owed on {debt.as_of}")
    # Monthly capacity: a fortnightly offer is counted as two payments a month (never more).
    capacity = offer.amount if offer.frequency is Frequency.MONTHLY else 2 * offer.amount
    biggest = max(rows.values())
    if biggest > capacity:
        return Infeasible(
            key,
            "cannot_pay_moved_installment",
            f"an extension by {months} month{'s' if months > 1 else ''} leaves a payment of "
            f"{_money(biggest, cur)} in one month; {_money(capacity, cur)} per month is below it",
        )
    ordered = sorted(rows.items())
    insts = tuple(PlannedInstallment(n, d, a) for n, (d, a) in enumerate(ordered, 1))
    basis = debt.in_scope(Scope.WHOLE_BALANCE)
    return Plan(key, Kind.EXTENSION, Scope.WHOLE_BALANCE, Frequency.MONTHLY, basis, Components(),
                basis.total, insts, (), months)


def validate_offer(debt: Debt, offer: Offer, policy: Policy) -> None:
    """Raise QuoteError for a request that is wrong in itself (not merely infeasible)."""
    if offer.amount <= 0:
        raise QuoteError("amount", "must be positive")
    if offer.frequency not in policy.frequencies:
        raise QuoteError("frequency", f"{offer.frequency.value!r} is not offered under policy "
                         f"{policy.id!r} (use {', '.join(f.value for f in policy.frequencies)})")
    if offer.first_payment_on < debt.as_of:
        raise QuoteError("first_payment_on", f"{offer.first_payment_on} is before {debt.as_of}")
    latest = debt.as_of + timedelta(days=policy.first_payment_within_days)
    if offer.first_payment_on > latest:
        raise QuoteError("first_payment_on", f"{offer.first_payment_on} is later than this policy "
                         f"allows for a first payment ({policy.first_payment_within_days} days, by {latest})")
    if any(debt.overdue.get(c) < 0 for c in COMPONENTS):
        raise QuoteError("debt", "overdue amounts cannot be negative")
    policy.minimum(debt.currency)


def quote(debt: Debt, offer: Offer, policy: Policy, waivers: Components | None = None) -> Quote:
    """Every plan `policy` allows for `debt` given `offer`, and why each other option is not.

    waivers: specific waivers a collector proposes (checked against the policy per scope; a
        waiver above it makes that option infeasible, naming the component); None = quote the policy's standard and
        maximum waivers.
    """
    validate_offer(debt, offer, policy)
    cur = debt.currency
    out: list[Plan | Infeasible] = []
    if Kind.PROMISE in policy.kinds:
        out.append(_promise(debt, offer, policy))
    if Kind.INSTALLMENT_PLAN in policy.kinds:
        for scope in policy.scopes:
            out.append(_spread(f"installment_plan/{scope.value}", Kind.INSTALLMENT_PLAN, scope,
                               debt.in_scope(scope), Components(), offer, policy, cur, debt.as_of, ()))
    if Kind.EXTENSION in policy.kinds:
        for months in range(1, policy.extension_max_months + 1):
            out.append(_extension(debt, offer, policy, months))
    if Kind.REDUCTION in policy.kinds:
        for scope in policy.scopes:
            basis = debt.in_scope(scope)
            levels = _waiver_options(basis, policy, waivers)
            if not levels:
                out.append(Infeasible(f"reduction/{scope.value}", "nothing_to_waive",
                                      f"nothing in the {scope.value.replace('_', ' ')} may be waived under this policy"))
            for level, waived in levels:
                try:
                    approval = check_waivers(basis, waived, policy, cur)
                except QuoteError as exc:
                    out.append(Infeasible(f"reduction/{scope.value}/{level}", "waiver_above_policy",
                                          f"{exc.field}: {exc.message}"))
                    continue
                out.append(_spread(f"reduction/{scope.value}/{level}", Kind.REDUCTION, scope, basis,
                                   waived, offer, policy, cur, debt.as_of, approval))
    plans = tuple(p for p in out if isinstance(p, Plan))
    infeasible = tuple(p for p in out if isinstance(p, Infeasible))
    return Quote(debt, offer, policy.id, plans, infeasible)


def custom_plan(
    base: Plan, installments: Sequence[tuple[date, int]], policy: Policy, currency: str, as_of: date
) -> Plan:
    """`base` with instalments a collector typed in: they must sum to the agreed total exactly,
    be positive, dated in order from `as_of`, and end within the policy's term."""
    if not installments:
        raise QuoteError("installments", "at least one instalment is needed")
    total = sum(a for _, a in installments)
    if total != base.total:
        raise QuoteError(
            "installments",
            f"the instalments add up to {_money(total, currency)}, not the agreed "
            f"{_money(base.total, currency)}",
        )
    previous = as_of - timedelta(days=1)
    for i, (d, a) in enumerate(installments):
        if a <= 0:
            raise QuoteError(f"installments[{i}].amount", "must be positive")
        if d <= previous:
            raise QuoteError(f"installments[{i}].due_on", f"{d} must be after {previous}")
        previous = d
    latest = add_months(as_of, policy.max_term_months)
    if previous > latest:
        raise QuoteError("installments", f"the last instalment {previous} is after {latest}, "
                         f"the end of this policy's {policy.max_term_months}-month term")
    insts = tuple(PlannedInstallment(n, d, a) for n, (d, a) in enumerate(installments, 1))
    return Plan(base.key + "/custom", base.kind, base.scope, base.frequency, base.basis, base.waived,
                base.total, insts, base.approval_reasons, base.moved_by_months)


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True, slots=True)
class InstallmentProgress:
    """How far an instalment has been paid: `paid` (0..amount), `paid_off_on` None = not yet."""

    number: int
    due_on: date
    amount: int
    paid: int
    paid_off_on: date | None


def apply_payments(
    installments: Sequence[tuple[int, date, int]], payments: Sequence[tuple[date, int]]
) -> tuple[InstallmentProgress, ...]:
    """Payments (date, amount; reversed ones already left out) applied to the plan's
    instalments oldest first, in payment-date order. Pure and replayable: the daily run
    recomputes it from scratch, so a reversal simply disappears from the input."""
    ordered = sorted(installments, key=lambda r: r[0])
    paid = [0] * len(ordered)
    off: list[date | None] = [None] * len(ordered)
    i = 0
    for day, amount in sorted(payments, key=lambda p: p[0]):
        left = amount
        while left > 0 and i < len(ordered):
            need = ordered[i][2] - paid[i]
            take = min(need, left)
            paid[i] += take
            left -= take
            if paid[i] >= ordered[i][2]:
                off[i] = day
                i += 1
    return tuple(InstallmentProgress(n, d, a, paid[k], off[k]) for k, (n, d, a) in enumerate(ordered))


@dataclass(frozen=True, slots=True)
class Review:
    """The outcome of reviewing one active plan on `as_of`.

    outcome: 'kept' (every instalment paid), 'broken' (an instalment unpaid more than the
    grace days after it fell due), or '' (still running). on: the date the outcome took
    effect (for broken: the first day past grace; for kept: the day the last was paid).
    missed: the instalment that broke the plan (None unless broken).
    """

    outcome: str
    on: date | None = None
    missed: InstallmentProgress | None = None
    reasons: tuple[str, ...] = field(default=())


def review(progress: Sequence[InstallmentProgress], as_of: date, grace_days: int) -> Review:
    """Kept, broken or running on `as_of` (a broken check counts only days after due + grace)."""
    if progress and all(p.paid >= p.amount for p in progress):
        last = max(p.paid_off_on or as_of for p in progress)
        return Review("kept", last)
    for p in progress:
        if p.paid < p.amount and (as_of - p.due_on).days > grace_days:
            return Review("broken", p.due_on + timedelta(days=grace_days + 1), p)
    return Review("")
