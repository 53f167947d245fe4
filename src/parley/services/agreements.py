"""Agreements (协商): quote, propose, approve, accept, and the daily keep/break review.

Lifecycle: proposed → approved (only where the policy requires a supervisor) → accepted →
active → kept | broken | cancelled; a proposal may instead end expired or superseded.
Acceptance and activation happen in one transaction under the borrower lock: the agreement
becomes 'active', queued collection contacts for the debt are cancelled, a delinquency pause
covers the plan, and the receipt's verification code is stored (brief, invariant 1).

Parley **pauses** delinquency for the plan rather than re-ageing the loan: the loan's own
schedule is never rewritten, the plan is an overlay (`agreement_installment`), and waivers
are conditional — posted to the ledger only when the plan is kept. Breaking a plan therefore
restores the original terms and waivers by construction; the pause simply ends on the break
date and days past due grow again from there.

Payments count towards a plan when their ledger entry is newer than the ledger the quote was
computed from (`terms.ledger_basis`, a ledger entry id read under the borrower lock). So a
payment that races an acceptance is counted exactly once whichever commits first.

Every public function runs in one transaction, takes plain values and returns plain dicts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import defaultdict
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from parley.core.agreements import (
    COMPONENTS,
    Components,
    Debt,
    Frequency,
    InstallmentProgress,
    Offer,
    Plan,
    Policy,
    PolicyError,
    QuoteError,
    Scope,
    Upcoming,
    apply_payments,
    custom_plan,
    parse_policy,
    review,
)
from parley.core.agreements import quote as core_quote
from parley.core.money import MoneyError, format_minor, parse_minor
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.services.audit import append_for_borrower
from parley.services.context import Context
from parley.services.payments import loan_balance, refresh_loan_cache
from parley.store.db import lock_borrower
from parley.store.models.agreements import Agreement, AgreementInstallment
from parley.store.models.loanbook import (
    Borrower,
    DelinquencyPause,
    Installment,
    LedgerEntry,
    LedgerPosting,
    Loan,
    Payment,
)
from parley.store.models.queue import ContactQueueItem
from parley.store.models.staff import StaffUser

OPEN = ("proposed", "approved", "accepted", "active")
PROPOSAL = ("proposed", "approved")
CHANNELS = ("portal", "otp", "call")
RECORD = "agreement"


# --------------------------------------------------------------------------- policy


@lru_cache(maxsize=16)
def load_policy(policy_id: str = "default") -> Policy:
    """The policy parley/policies/<policy_id>.yaml, validated; InvalidInput names the field."""
    if not policy_id or not policy_id.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"invalid policy id {policy_id!r}", field="policy_id")
    res = resources.files("parley").joinpath("policies", f"{policy_id}.yaml")
    if not res.is_file():
        raise InvalidInput(f"no agreement policy {policy_id!r}", field="policy_id")
    doc = yaml.safe_load(res.read_text(encoding="utf-8"))
    try:
        return parse_policy(doc)
    except PolicyError as exc:
        raise InvalidInput(exc.message, record=f"policy {policy_id}", field=exc.field) from None


# --------------------------------------------------------------------------- helpers


def _money(amount: int, currency: str) -> str:
    return format_minor(amount, currency)


def _parse_amount(value: str | int | None, currency: str, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, (bool, float)):
        raise InvalidInput("amounts are decimal strings like 500.00, never floats", field=field)
    if isinstance(value, int):
        return value
    try:
        return parse_minor(str(value), currency)
    except MoneyError as exc:
        raise InvalidInput(str(exc), field=field) from None


def _parse_date(value: date | str | None, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date like 2026-03-31", field=field) from None


def load_debt(conn: Connection, loan_id: str, as_of: date) -> Debt:
    """The loan's debt on `as_of`: overdue by component from the ledger (`loan_balance`, which
    honours waiver postings) and the unpaid part of every instalment not yet due."""
    bal = loan_balance(conn, loan_id, as_of)
    overdue = Components(*(max(0, int(getattr(bal, f"overdue_{c}"))) for c in COMPONENTS))
    rows = conn.execute(
        select(Installment.__table__).where(Installment.loan_id == loan_id, Installment.due_on > as_of)
        .order_by(Installment.due_on, Installment.number)
    ).all()
    upcoming = []
    for r in rows:
        amounts = Components(
            max(0, r.principal_due - r.paid_principal),
            max(0, r.interest_due - r.paid_interest),
            max(0, r.fee_due - r.paid_fee),
            max(0, r.penalty_due - r.paid_penalty),
        )
        if amounts.total > 0:
            upcoming.append(Upcoming(r.number, r.due_on, amounts))
    return Debt(loan_id, bal.currency, as_of, overdue, tuple(upcoming))


def _ledger_head(conn: Connection, loan_id: str) -> int:
    return int(conn.execute(select(func.coalesce(func.max(LedgerEntry.id), 0))
                            .where(LedgerEntry.loan_id == loan_id)).scalar_one())


def _offer(debt: Debt, policy: Policy, amount: str | int | None, monthly: str | int | None,
           frequency: str | None, first_payment_on: date | str | None) -> Offer:
    minor = _parse_amount(amount, debt.currency, "amount")
    if minor is None and monthly not in (None, ""):
        minor = _parse_amount(monthly, debt.currency, "monthly")
        frequency = frequency or "monthly"
    if minor is None:
        # No stated amount: quote at the policy's minimum instalment (the longest plans).
        try:
            minor = policy.minimum(debt.currency)
        except QuoteError as exc:
            raise InvalidInput(exc.message, field=exc.field) from None
    freq = frequency or "monthly"
    try:
        f = Frequency(freq)
    except ValueError:
        raise InvalidInput(f"{freq!r} is not one of {', '.join(Frequency)}", field="frequency") from None
    first = _parse_date(first_payment_on, "first_payment_on") or (
        debt.as_of + timedelta(days=min(7, policy.first_payment_within_days)))
    return Offer(minor, f, first)


def _waivers(value: dict[str, Any] | None, currency: str) -> Components | None:
    if not value:
        return None
    amounts = {}
    for comp, raw in value.items():
        if comp not in COMPONENTS:
            raise InvalidInput(f"{comp!r} is not one of {', '.join(COMPONENTS)}", field=f"waivers.{comp}")
        parsed = _parse_amount(raw, currency, f"waivers.{comp}")
        amounts[comp] = parsed or 0
    return Components(**amounts)


def plan_dict(plan: Plan, currency: str) -> dict[str, Any]:
    m = lambda v: _money(v, currency)  # noqa: E731
    return {
        "key": plan.key,
        "kind": plan.kind.value,
        "scope": plan.scope.value,
        "frequency": plan.frequency.value,
        "currency": currency,
        "basis": {c: m(plan.basis.get(c)) for c in COMPONENTS} | {"total": m(plan.basis.total)},
        "waived": {c: m(plan.waived.get(c)) for c in COMPONENTS} | {"total": m(plan.waived.total)},
        "total": m(plan.total),
        "installments": [{"number": i.number, "due_on": i.due_on.isoformat(), "amount": m(i.amount)}
                         for i in plan.installments],
        "count": len(plan.installments),
        "ends_on": plan.ends_on.isoformat(),
        "needs_approval": plan.needs_approval,
        "approval_reasons": list(plan.approval_reasons),
        "moved_by_months": plan.moved_by_months,
    }


def _terms(plan: Plan, debt: Debt, offer: Offer, policy: Policy, ledger_basis: int) -> dict[str, Any]:
    """The canonical record of what was agreed (minor units; dates ISO)."""
    return {
        "key": plan.key,
        "kind": plan.kind.value,
        "scope": plan.scope.value,
        "frequency": plan.frequency.value,
        "currency": debt.currency,
        "basis": plan.basis.as_dict(),
        "waived": plan.waived.as_dict(),
        "total": plan.total,
        "installments": [{"number": i.number, "due_on": i.due_on.isoformat(), "amount": i.amount}
                         for i in plan.installments],
        "approval_reasons": list(plan.approval_reasons),
        "moved_by_months": plan.moved_by_months,
        "offer": {"amount": offer.amount, "frequency": offer.frequency.value,
                  "first_payment_on": offer.first_payment_on.isoformat()},
        "quoted_on": debt.as_of.isoformat(),
        "policy": {"id": policy.id, "version": policy.version},
        "grace_days": policy.grace_days,
        "on_break": policy.on_break.value,
        "ledger_basis": ledger_basis,
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- quote


def quote(ctx: Context, loan_id: str, *, amount: str | int | None = None,
          frequency: str | None = None, first_payment_on: date | str | None = None,
          as_of: date | str | None = None, waivers: dict[str, Any] | None = None,
          policy_id: str = "default", monthly: str | int | None = None) -> dict[str, Any]:
    """Every plan the policy allows for the loan's debt and what the borrower can pay.

    amount: per `frequency` (monthly or fortnightly), decimal string in major units (or int
        minor units); `monthly` is a shorthand for amount + frequency=monthly. No amount =
        quote at the policy's minimum instalment. first_payment_on: default a week ahead.
    waivers: {component: amount} a collector wants to offer; None = the policy's standard and
        maximum waivers. Returns {"loan_id", "as_of", "debt", "offer", "plans", "infeasible"}.
    """
    policy = load_policy(policy_id)
    with ctx.db.read() as conn:
        if conn.execute(select(Loan.id).where(Loan.id == loan_id)).first() is None:
            raise NotFound(f"unknown loan {loan_id!r}")
        day = _parse_date(as_of, "as_of") or ctx.today()
        debt = load_debt(conn, loan_id, day)
    offer = _offer(debt, policy, amount, monthly, frequency, first_payment_on)
    try:
        q = core_quote(debt, offer, policy, _waivers(waivers, debt.currency))
    except QuoteError as exc:
        raise InvalidInput(exc.message, record="quote", field=exc.field) from None
    return _quote_dict(q.debt, q.offer, policy, q)


def _quote_dict(debt: Debt, offer: Offer, policy: Policy, q: Any) -> dict[str, Any]:
    cur = debt.currency
    return {
        "loan_id": debt.loan_id,
        "as_of": debt.as_of.isoformat(),
        "policy": {"id": policy.id, "version": policy.version},
        "debt": {
            "currency": cur,
            "overdue": {c: _money(debt.overdue.get(c), cur) for c in COMPONENTS}
            | {"total": _money(debt.overdue.total, cur)},
            "whole_balance": _money(debt.in_scope(Scope.WHOLE_BALANCE).total, cur),
            "upcoming_installments": len(debt.upcoming),
        },
        "offer": {"amount": _money(offer.amount, cur), "frequency": offer.frequency.value,
                  "first_payment_on": offer.first_payment_on.isoformat()},
        "plans": [plan_dict(p, cur) for p in q.plans],
        "infeasible": [{"key": i.key, "reason": i.reason, "message": i.message} for i in q.infeasible],
    }


# --------------------------------------------------------------------------- propose


def _agreement(conn: Connection, agreement_id: str) -> Agreement:
    row = conn.execute(select(Agreement.__table__).where(Agreement.id == agreement_id)).first()
    if row is None:
        raise NotFound(f"unknown agreement {agreement_id!r}")
    return row


def _locked(conn: Connection, agreement_id: str) -> dict[str, Any]:
    """The agreement row, read again after taking its borrower's lock (so it is current)."""
    first = conn.execute(select(Agreement.borrower_id).where(Agreement.id == agreement_id)).first()
    if first is None:
        raise NotFound(f"unknown agreement {agreement_id!r}")
    lock_borrower(conn, first.borrower_id)
    row = conn.execute(select(Agreement.__table__).where(Agreement.id == agreement_id)).mappings().one()
    return dict(row)


def _expire_if_due(ctx: Context, conn: Connection, a: dict[str, Any]) -> bool:
    """Mark a lapsed proposal expired (in the caller's transaction); True if it was."""
    now = ctx.clock.now()
    if a["status"] in PROPOSAL and a["expires_at"] is not None and a["expires_at"] <= now:
        conn.execute(update(Agreement).where(Agreement.id == a["id"]).values(
            status="expired", ended_at=now, end_reason=f"not accepted by {a['expires_at'].isoformat()}"))
        append_for_borrower(ctx, conn, a["borrower_id"], "agreement.expired",
                            {"agreement_id": a["id"], "expires_at": a["expires_at"]},
                            subject=a["id"])
        a["status"] = "expired"
        return True
    return False


def propose(ctx: Context, loan_id: str, plan: str, *, proposed_by: str,
            amount: str | int | None = None, frequency: str | None = None,
            first_payment_on: date | str | None = None, waivers: dict[str, Any] | None = None,
            installments: list[tuple[date | str, str | int]] | None = None,
            supersedes: str | None = None, policy_id: str = "default",
            monthly: str | int | None = None) -> dict[str, Any]:
    """Record a proposal of the quoted option `plan` (a key from `quote`, e.g.
    ``installment_plan/arrears``), re-quoted now under the borrower lock.

    installments: optional [(due_on, amount)] typed by the collector; they must sum exactly
        to the plan's total (InvalidInput field 'installments' otherwise).
    supersedes: the id of the open proposal this one replaces. Without it, a loan with an
        open agreement (proposed, approved or active) refuses a new one with Conflict — which
        is how two collectors proposing at once learn that one of them won.
    """
    if not proposed_by:
        raise InvalidInput("who proposes must be named", field="proposed_by")
    policy = load_policy(policy_id)
    with ctx.db.transaction() as conn:
        loan = conn.execute(select(Loan.borrower_id).where(Loan.id == loan_id)).first()
        if loan is None:
            raise NotFound(f"unknown loan {loan_id!r}")
        lock_borrower(conn, loan.borrower_id)
        now = ctx.clock.now()
        today = ctx.today()
        open_rows = [dict(r) for r in conn.execute(
            select(Agreement.__table__).where(Agreement.loan_id == loan_id, Agreement.status.in_(OPEN))
        ).mappings()]
        open_rows = [a for a in open_rows if not _expire_if_due(ctx, conn, a)]
        superseded: dict[str, Any] | None = None
        if supersedes:
            matches = [a for a in open_rows if a["id"] == supersedes]
            if not matches:
                status = conn.execute(select(Agreement.status).where(
                    Agreement.id == supersedes, Agreement.loan_id == loan_id)).scalar_one_or_none()
                if status is None:
                    raise InvalidInput(f"no agreement {supersedes!r} on loan {loan_id}", field="supersedes")
                raise Conflict(f"agreement {supersedes} is {status}; only an open proposal can be superseded")
            superseded = matches[0]
            if superseded["status"] not in PROPOSAL:
                raise Conflict(f"agreement {supersedes} is {superseded['status']}; cancel it before proposing another")
        others = [a for a in open_rows if superseded is None or a["id"] != superseded["id"]]
        if others:
            a = others[0]
            raise Conflict(
                f"loan {loan_id} already has an open agreement {a['id']} ({a['status']}, proposed by "
                f"{a['proposed_by']} at {a['proposed_at'].isoformat()}); to replace a proposal, name it "
                "in supersedes")
        debt = load_debt(conn, loan_id, today)
        offer = _offer(debt, policy, amount, monthly, frequency, first_payment_on)
        try:
            q = core_quote(debt, offer, policy, _waivers(waivers, debt.currency))
        except QuoteError as exc:
            raise InvalidInput(exc.message, record="proposal", field=exc.field) from None
        chosen = q.plan(plan)
        if chosen is None:
            why = [i for i in q.infeasible if i.key == plan]
            if why:
                raise InvalidInput(why[0].message, record="proposal", field="plan")
            keys = ", ".join(p.key for p in q.plans) or "none"
            raise InvalidInput(f"{plan!r} is not a quoted option (available: {keys})",
                               record="proposal", field="plan")
        if installments:
            typed = []
            for i, (d, a) in enumerate(installments):
                due = _parse_date(d, f"installments[{i}].due_on")
                amt = _parse_amount(a, debt.currency, f"installments[{i}].amount")
                if due is None or amt is None:
                    raise InvalidInput("needs a due date and an amount", field=f"installments[{i}]")
                typed.append((due, amt))
            try:
                chosen = custom_plan(chosen, typed, policy, debt.currency, today)
            except QuoteError as exc:
                raise InvalidInput(exc.message, record="proposal", field=exc.field) from None
        agreement_id = "AG-" + secrets.token_hex(6).upper()
        terms = _terms(chosen, debt, offer, policy, _ledger_head(conn, loan_id))
        if superseded is not None:
            conn.execute(update(Agreement).where(Agreement.id == superseded["id"]).values(
                status="superseded", ended_at=now, ended_by=proposed_by,
                end_reason=f"superseded by {agreement_id}"))
            append_for_borrower(ctx, conn, loan.borrower_id, "agreement.superseded",
                                {"agreement_id": superseded["id"], "by": agreement_id},
                                actor=proposed_by, subject=superseded["id"])
        conn.execute(insert(Agreement), {
            "id": agreement_id, "borrower_id": loan.borrower_id, "loan_id": loan_id,
            "kind": chosen.kind.value, "status": "proposed", "starts_on": None, "ends_on": None,
            "currency": debt.currency, "total_amount": chosen.total,
            "waived_amount": chosen.waived.total, "terms": _canonical(terms), "policy_id": policy.id,
            "proposed_by": proposed_by, "proposed_at": now,
            "expires_at": now + timedelta(hours=policy.proposal_expiry_hours),
            "supersedes_id": superseded["id"] if superseded else None,
            "plan_key": chosen.key, "scope": chosen.scope.value, "frequency": chosen.frequency.value,
            "needs_approval": chosen.needs_approval, "grace_days": policy.grace_days,
            "otp_attempts": 0,
        })
        conn.execute(insert(AgreementInstallment), [
            {"agreement_id": agreement_id, "number": i.number, "due_on": i.due_on, "amount": i.amount,
             "paid_amount": 0, "paid_off_on": None} for i in chosen.installments])
        append_for_borrower(
            ctx, conn, loan.borrower_id, "agreement.proposed",
            {"agreement_id": agreement_id, "loan_id": loan_id, "plan": chosen.key,
             "total": chosen.total, "waived": chosen.waived.as_dict(), "currency": debt.currency,
             "installments": len(chosen.installments), "needs_approval": chosen.needs_approval,
             "supersedes": superseded["id"] if superseded else None},
            actor=proposed_by, subject=agreement_id)
        return _show(conn, agreement_id)


# --------------------------------------------------------------------------- approve


def approve(ctx: Context, agreement_id: str, *, approved_by: str) -> dict[str, Any]:
    """A supervisor approves a proposal that needs it (four eyes: never the proposer; the
    approver must be an active staff user whose role the policy names)."""
    with ctx.db.transaction() as conn:
        a = _locked(conn, agreement_id)
        expired = _expire_if_due(ctx, conn, a)
        if not expired:
            if a["status"] != "proposed":
                raise Conflict(f"agreement {agreement_id} is {a['status']}; only a proposal can be approved")
            if not a["needs_approval"]:
                raise Conflict(f"agreement {agreement_id} does not need approval under its policy")
            policy = load_policy(a["policy_id"])
            if approved_by == a["proposed_by"]:
                raise Forbidden("the proposer cannot approve their own proposal")
            staff = conn.execute(select(StaffUser.role, StaffUser.active).where(StaffUser.id == approved_by)).first()
            if staff is None or not staff.active or staff.role not in policy.approver_roles:
                raise Forbidden(f"{approved_by!r} may not approve agreements (needs one of the roles "
                                f"{', '.join(policy.approver_roles)})")
            conn.execute(update(Agreement).where(Agreement.id == agreement_id).values(
                status="approved", approved_by=approved_by, approved_at=ctx.clock.now()))
            append_for_borrower(ctx, conn, a["borrower_id"], "agreement.approved",
                                {"agreement_id": agreement_id, "approved_by": approved_by},
                                actor=approved_by, subject=agreement_id)
            return _show(conn, agreement_id)
    raise Conflict(f"agreement {agreement_id} expired at {a['expires_at'].isoformat()}")


# --------------------------------------------------------------------------- acceptance code


def _otp_hash(ctx: Context, agreement_id: str, code: str) -> str:
    key = ctx.settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"parley.agreement-otp|{agreement_id}|{code}".encode(), hashlib.sha256).hexdigest()


def _acceptable(a: dict[str, Any], agreement_id: str) -> None:
    status = a["status"]
    if status in ("accepted", "active"):
        raise Conflict(f"agreement {agreement_id} was already accepted at {a['accepted_at'].isoformat()}")
    if status == "superseded":
        raise Conflict(f"agreement {agreement_id} was superseded ({a['end_reason']}); accept the newer proposal")
    if status == "expired":
        raise Conflict(f"agreement {agreement_id} expired at {a['expires_at'].isoformat()}; ask for a new proposal")
    if status not in PROPOSAL:
        raise Conflict(f"agreement {agreement_id} is {status} and cannot be accepted")
    if a["needs_approval"] and status != "approved":
        raise Conflict(f"agreement {agreement_id} needs a supervisor's approval before it can be accepted")


def issue_acceptance_code(ctx: Context, agreement_id: str) -> dict[str, Any]:
    """A fresh one-time code for the borrower to accept with (channel 'otp'). Only its HMAC,
    expiry and an attempt counter are stored; the caller sends the returned code to the
    borrower (an agreement_service message) and must not keep it."""
    with ctx.db.transaction() as conn:
        a = _locked(conn, agreement_id)
        if not _expire_if_due(ctx, conn, a):
            _acceptable(a, agreement_id)
            policy = load_policy(a["policy_id"])
            code = f"{secrets.randbelow(10**6):06d}"
            expires = ctx.clock.now() + timedelta(minutes=policy.otp_ttl_minutes)
            conn.execute(update(Agreement).where(Agreement.id == agreement_id).values(
                otp_hash=_otp_hash(ctx, agreement_id, code), otp_expires_at=expires, otp_attempts=0))
            append_for_borrower(ctx, conn, a["borrower_id"], "agreement.code_issued",
                                {"agreement_id": agreement_id, "expires_at": expires},
                                subject=agreement_id)
            return {"agreement_id": agreement_id, "code": code, "expires_at": expires.isoformat()}
    raise Conflict(f"agreement {agreement_id} expired at {a['expires_at'].isoformat()}; ask for a new proposal")


_CODE_TEXT = {
    "zh-Hans": "您的还款计划确认码：{code}，{minutes}分钟内有效，请勿告诉他人。",
    "zh-Hant": "您的還款計劃確認碼：{code}，{minutes}分鐘內有效，請勿告訴他人。",
    "en": "Your repayment plan confirmation code is {code}. It is valid for {minutes} minutes; do not share it.",
}


def send_acceptance_code(ctx: Context, agreement_id: str, *, channels: Any = None) -> dict[str, Any]:
    """Issue a one-time code and send it to the borrower by SMS, through the gate.

    The message is an agreement_service contact: it is permitted (lawful hours, opt-outs,
    holds) and recorded like any other, but the contact log keeps the text with the code
    masked, so the secret exists only in the borrower's SMS. Not lawful now → Conflict with
    the rules and the next lawful time, and no code is issued.
    """
    from dataclasses import replace

    from parley.adapters.channels.base import Message, build_channels
    from parley.services.permits import PermitRequest, check_contact, request_permit
    from parley.services.worker import recipient_address

    with ctx.db.read() as conn:
        a = conn.execute(select(Agreement.borrower_id, Agreement.loan_id, Agreement.policy_id)
                         .where(Agreement.id == agreement_id)).first()
        if a is None:
            raise NotFound(f"unknown agreement {agreement_id!r}")
        lang = conn.execute(select(Borrower.preferred_language).where(Borrower.id == a.borrower_id)).scalar() or "zh-Hans"
        phone = recipient_address(ctx, conn, a.borrower_id, "sms")
    if phone is None:
        raise Conflict(f"borrower of agreement {agreement_id} has no valid phone number to send a code to")
    template = _CODE_TEXT.get(lang, _CODE_TEXT["zh-Hans"])
    minutes = load_policy(a.policy_id).otp_ttl_minutes
    recorded = template.format(code="******", minutes=minutes)
    req = PermitRequest(borrower_id=a.borrower_id, channel="sms", purpose="agreement_service", loan_id=a.loan_id,
                        text=recorded, template_id="agreement.code", initiated_by="system")
    preview = check_contact(ctx, req)
    if not preview.allowed:
        when = preview.decision.next_allowed_at
        raise Conflict(f"a code cannot be sent now ({', '.join(preview.decision.rule_ids('deny'))}); "
                       + (f"next lawful time {when.isoformat()}" if when else "no lawful time"))
    issued = issue_acceptance_code(ctx, agreement_id)
    key = f"otp:{agreement_id}:{issued['expires_at']}"
    permit = request_permit(ctx, replace(req, idempotency_key=key))
    if not permit.allowed:  # the situation changed between the preview and now
        raise Conflict("a code cannot be sent now; ask again later")
    adapters = channels or build_channels(ctx.settings)
    adapters["sms"].send(Message("sms", phone, template.format(code=issued["code"], minutes=minutes), key,
                                 reference=str(permit.attempt_id)))
    return {"agreement_id": agreement_id, "sent_to": permit.to_masked, "expires_at": issued["expires_at"]}


# --------------------------------------------------------------------------- accept


def accept(ctx: Context, agreement_id: str, *, channel: str, accepted_by: str | None = None,
           code: str | None = None, recording_ref: str | None = None) -> dict[str, Any]:
    """Accept a proposal and activate it, atomically, under the borrower lock.

    channel: 'portal' (the borrower, signed in), 'otp' (the borrower, with the one-time code
        sent to them) or 'call' (recorded by a collector during a call: `accepted_by` is the
        collector and `recording_ref` the call recording).
    In the same transaction: status 'active' (starts on the acceptance date, ends after the
    last instalment's grace days); pending or leased collection items in the contact queue for
    the loan (or for the borrower generally) are cancelled; a delinquency pause covers the
    plan; payments since the quote are applied; the receipt's verification code is stored.
    """
    if channel not in CHANNELS:
        raise InvalidInput(f"{channel!r} is not one of {', '.join(CHANNELS)}", field="channel")
    if channel == "call":
        if not recording_ref or not recording_ref.strip():
            raise InvalidInput("an acceptance during a call needs the call's recording reference",
                               field="recording_ref")
        if not accepted_by:
            raise InvalidInput("name the collector who recorded the acceptance", field="accepted_by")
    if channel == "otp" and not (code or "").strip():
        raise InvalidInput("the one-time code is required", field="code")
    failure: Exception | None = None
    with ctx.db.transaction() as conn:
        a = _locked(conn, agreement_id)
        if _expire_if_due(ctx, conn, a):
            failure = Conflict(f"agreement {agreement_id} expired at {a['expires_at'].isoformat()}; "
                               "ask for a new proposal")
        else:
            _acceptable(a, agreement_id)
            if channel == "otp":
                failure = _check_code(ctx, conn, a, (code or "").strip())
            if channel == "portal" and accepted_by and accepted_by != a["borrower_id"]:
                raise Forbidden("only the borrower accepts in the portal")
        if failure is None:
            who = accepted_by or a["borrower_id"]
            result = _activate(ctx, conn, a, channel, who, recording_ref)
            return result
    raise failure


def _check_code(ctx: Context, conn: Connection, a: dict[str, Any], code: str) -> Exception | None:
    policy = load_policy(a["policy_id"])
    now = ctx.clock.now()
    if a["otp_hash"] is None:
        return InvalidInput("no acceptance code was issued for this agreement", field="code")
    if a["otp_attempts"] >= policy.otp_max_attempts:
        return InvalidInput("too many wrong codes; ask for a new one", field="code")
    if a["otp_expires_at"] is None or a["otp_expires_at"] <= now:
        return InvalidInput("the acceptance code has expired; ask for a new one", field="code")
    if not hmac.compare_digest(a["otp_hash"], _otp_hash(ctx, a["id"], code)):
        attempts = a["otp_attempts"] + 1
        conn.execute(update(Agreement).where(Agreement.id == a["id"]).values(otp_attempts=attempts))
        append_for_borrower(ctx, conn, a["borrower_id"], "agreement.code_rejected",
                            {"agreement_id": a["id"], "attempts": attempts}, subject=a["id"])
        left = policy.otp_max_attempts - attempts
        return InvalidInput(f"wrong acceptance code ({left} attempt{'s' if left != 1 else ''} left)",
                            field="code")
    return None


def _activate(ctx: Context, conn: Connection, a: dict[str, Any], channel: str, who: str,
              recording_ref: str | None) -> dict[str, Any]:
    from parley.services.receipts import sign_code

    now = ctx.clock.now()
    today = now.astimezone(ctx.business_zone).date()
    last_due = conn.execute(select(func.max(AgreementInstallment.due_on))
                            .where(AgreementInstallment.agreement_id == a["id"])).scalar_one()
    ends_on = last_due + timedelta(days=a["grace_days"])
    code = sign_code(ctx, a["id"], terms=a["terms"])
    conn.execute(update(Agreement).where(Agreement.id == a["id"]).values(
        status="active", accepted_by=who, accepted_at=now, acceptance_channel=channel,
        recording_ref=recording_ref.strip() if recording_ref else None,
        starts_on=today, ends_on=ends_on, verification_code=code, otp_hash=None))
    cancelled = conn.execute(
        update(ContactQueueItem)
        .where(ContactQueueItem.borrower_id == a["borrower_id"],
               or_(ContactQueueItem.loan_id == a["loan_id"], ContactQueueItem.loan_id.is_(None)),
               ContactQueueItem.status.in_(("pending", "leased")),
               ContactQueueItem.purpose == "collection")
        .values(status="cancelled", last_reason=f"agreement {a['id']} accepted", updated_at=now,
                lease_until=None)
    ).rowcount
    pauses = _pause(ctx, conn, a, today, ends_on + timedelta(days=1))
    _apply(conn, [a["id"]], today)
    append_for_borrower(ctx, conn, a["borrower_id"], "agreement.accepted", {
        "agreement_id": a["id"], "loan_id": a["loan_id"], "channel": channel, "accepted_by": who,
        "recording_ref": recording_ref, "starts_on": today, "ends_on": ends_on,
        "cancelled_queue_items": max(cancelled, 0), "pauses": pauses}, actor=who, subject=a["id"])
    append_for_borrower(ctx, conn, a["borrower_id"], "agreement.activated",
                        {"agreement_id": a["id"], "starts_on": today, "ends_on": ends_on},
                        subject=a["id"])
    out = _show(conn, a["id"])
    out["cancelled_queue_items"] = max(cancelled, 0)
    return out


def _pause(ctx: Context, conn: Connection, a: dict[str, Any], start: date, end: date) -> list[int]:
    """Pause [start, end) on the loan, around any pause already there (pauses never overlap)."""
    existing = conn.execute(select(DelinquencyPause.start_on, DelinquencyPause.end_on).where(
        DelinquencyPause.loan_id == a["loan_id"], DelinquencyPause.start_on < end,
        DelinquencyPause.end_on > start).order_by(DelinquencyPause.start_on)).all()
    from parley.services.delinquency import add_pause

    ids: list[int] = []
    cursor = start
    for s, e in [*existing, (end, end)]:
        if s > cursor:
            ids.append(add_pause(ctx, a["loan_id"], cursor, min(s, end), reason=f"agreement {a['id']}",
                                 by="agreements", agreement_id=a["id"], conn=conn))
        cursor = max(cursor, e)
        if cursor >= end:
            break
    return ids


def _end_pauses(conn: Connection, agreement_id: str, on: date) -> None:
    """Pauses of this agreement end on `on` (a pause wholly after it is removed)."""
    conn.execute(delete(DelinquencyPause).where(DelinquencyPause.agreement_id == agreement_id,
                                                DelinquencyPause.start_on >= on))
    conn.execute(update(DelinquencyPause).where(DelinquencyPause.agreement_id == agreement_id,
                                                DelinquencyPause.end_on > on).values(end_on=on))


# --------------------------------------------------------------------------- cancel


def cancel(ctx: Context, agreement_id: str, *, by: str, reason: str) -> dict[str, Any]:
    """Withdraw a proposal, or end an active agreement early (its pause ends today and
    collection may resume; the borrower is told first by an agreement_service notice)."""
    if not reason or not reason.strip():
        raise InvalidInput("a cancellation needs a reason", field="reason")
    with ctx.db.transaction() as conn:
        a = _locked(conn, agreement_id)
        if a["status"] not in OPEN:
            raise Conflict(f"agreement {agreement_id} is {a['status']} and cannot be cancelled")
        now = ctx.clock.now()
        today = ctx.today()
        conn.execute(update(Agreement).where(Agreement.id == agreement_id).values(
            status="cancelled", ended_at=now, ended_by=by, end_reason=reason.strip()))
        if a["status"] == "active":
            _end_pauses(conn, agreement_id, today)
            _notice(ctx, conn, a, today, "agreement.cancelled")
        append_for_borrower(
            ctx, conn, a["borrower_id"], "agreement.cancelled",
            {"agreement_id": agreement_id, "was": a["status"], "reason": reason.strip()},
            actor=by, subject=agreement_id)
        return _show(conn, agreement_id)


# The notices this service queues: default templates (``templates.DEFAULTS``), seeded and screened
# with the others by ``seed_default_templates``. Should a database have been seeded before they
# joined the defaults, the first notice stores whichever locales are missing (never replacing a
# stored version), so a notice is never queued without a template to send.
NOTICES = ("agreement.broken", "agreement.cancelled")


def _ensure_notice_template(ctx: Context, conn: Connection, template: str) -> None:
    from parley.services.templates import ensure_default_template

    ensure_default_template(ctx, conn, template, by="agreements")


def _notice(ctx: Context, conn: Connection, a: dict[str, Any], day: date, template: str) -> None:
    """Queue the borrower's notice (agreement_service, SMS) ahead of any collection contact."""
    now = ctx.clock.now()
    key = f"agreement|{a['id']}|{template}"
    if conn.execute(select(ContactQueueItem.id).where(
            ContactQueueItem.borrower_id == a["borrower_id"],
            ContactQueueItem.idempotency_key == key)).first():
        return
    _ensure_notice_template(ctx, conn, template)
    conn.execute(insert(ContactQueueItem), {
        "business_date": day, "borrower_id": a["borrower_id"], "loan_id": a["loan_id"],
        "strategy_id": "agreements", "arm": "", "state": "", "action_kind": "sms", "channel": "sms",
        "purpose": "agreement_service", "template_id": template, "priority": 0, "not_before": now,
        "status": "pending", "attempts": 0, "idempotency_key": key, "last_reason": "",
        "created_at": now, "updated_at": now})


# --------------------------------------------------------------------------- payments


def _apply(conn: Connection, agreement_ids: list[str], as_of: date) -> int:
    """Recompute paid_amount/paid_off_on of these agreements' instalments from the loan's
    payments newer than each quote's ledger basis (not reversed, effective by `as_of`)."""
    if not agreement_ids:
        return 0
    ids = bindparam("ids", expanding=True)
    agreements = conn.execute(select(Agreement.id, Agreement.loan_id, Agreement.terms)
                              .where(Agreement.id.in_(ids)), {"ids": agreement_ids}).all()
    insts: dict[str, list[Any]] = defaultdict(list)
    for r in conn.execute(select(AgreementInstallment.__table__).where(AgreementInstallment.agreement_id.in_(ids)),
                          {"ids": agreement_ids}).all():
        insts[r.agreement_id].append(r)
    loans = sorted({a.loan_id for a in agreements})
    pays: dict[str, list[tuple[int, date, int]]] = defaultdict(list)
    for entry_id, loan_id, day, amount in conn.execute(
        select(LedgerEntry.id, LedgerEntry.loan_id, LedgerEntry.effective_on, Payment.amount)
        .join(Payment, Payment.id == LedgerEntry.payment_id)
        .where(LedgerEntry.loan_id.in_(bindparam("loans", expanding=True)), LedgerEntry.kind == "payment",
               Payment.reversed_at.is_(None), LedgerEntry.effective_on <= as_of),
        {"loans": loans},
    ):
        pays[loan_id].append((entry_id, day, amount))
    changes = []
    for a in agreements:
        basis = int(json.loads(a.terms).get("ledger_basis", 0))
        mine = [(d, amt) for eid, d, amt in pays[a.loan_id] if eid > basis]
        rows = insts[a.id]
        progress = apply_payments([(r.number, r.due_on, r.amount) for r in rows], mine)
        by_number = {r.number: r for r in rows}
        for p in progress:
            r = by_number[p.number]
            if r.paid_amount != p.paid or r.paid_off_on != p.paid_off_on:
                changes.append({"k_a": a.id, "k_n": p.number, "v_paid": p.paid, "v_off": p.paid_off_on})
    if changes:
        t = AgreementInstallment.__table__
        conn.execute(update(t).where(t.c.agreement_id == bindparam("k_a"), t.c.number == bindparam("k_n"))
                     .values(paid_amount=bindparam("v_paid"), paid_off_on=bindparam("v_off")), changes)
    return len(changes)


def apply_payments_to_agreements(ctx: Context, as_of: date | None = None) -> int:
    """Apply the loans' payments to every active agreement's instalments (the daily run calls
    this before `review_agreements`). Recomputed from the ledger, so it is idempotent and a
    reversed payment simply stops counting. Returns the number of instalment rows changed."""
    day = as_of or ctx.today()
    with ctx.db.transaction() as conn:
        ids = list(conn.execute(select(Agreement.id).where(Agreement.status == "active")).scalars())
        changed = 0
        for i in range(0, len(ids), 500):
            changed += _apply(conn, ids[i:i + 500], day)
        return changed


# --------------------------------------------------------------------------- daily review


def review_agreements(ctx: Context, as_of: date | None = None) -> dict[str, Any]:
    """The daily review: expire lapsed proposals; apply payments; mark each active plan kept
    (every instalment paid: waivers posted, pause ended) or broken (an instalment unpaid more
    than the grace days after it fell due: pause ended at the break date, the original terms
    apply again, and an agreement_service notice is queued before collection resumes)."""
    day = as_of or ctx.today()
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        lapsed = list(conn.execute(select(Agreement.id).where(
            Agreement.status.in_(PROPOSAL), Agreement.expires_at <= now)).scalars())
    expired = 0
    for agreement_id in lapsed:
        with ctx.db.transaction() as conn:
            expired += _expire_if_due(ctx, conn, _locked(conn, agreement_id))
    apply_payments_to_agreements(ctx, day)
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(AgreementInstallment.agreement_id, AgreementInstallment.number, AgreementInstallment.due_on,
                   AgreementInstallment.amount, AgreementInstallment.paid_amount,
                   AgreementInstallment.paid_off_on, Agreement.grace_days)
            .join(Agreement, Agreement.id == AgreementInstallment.agreement_id)
            .where(Agreement.status == "active")
            .order_by(AgreementInstallment.agreement_id, AgreementInstallment.number)).all()
    plans: dict[str, list[InstallmentProgress]] = defaultdict(list)
    grace: dict[str, int] = {}
    for r in rows:
        plans[r.agreement_id].append(InstallmentProgress(r.number, r.due_on, r.amount, r.paid_amount, r.paid_off_on))
        grace[r.agreement_id] = r.grace_days
    kept: list[str] = []
    broken: list[str] = []
    for agreement_id, progress in plans.items():
        outcome = review(progress, day, grace[agreement_id])
        if not outcome.outcome:
            continue
        with ctx.db.transaction() as conn:
            a = _locked(conn, agreement_id)
            if a["status"] != "active":
                continue  # someone else ended it meanwhile
            # Decide again under the lock on fresh figures: a payment may have landed since.
            _apply(conn, [agreement_id], day)
            outcome = review(_progress(conn, agreement_id), day, a["grace_days"])
            if outcome.outcome == "broken":
                _break(ctx, conn, a, outcome, day)
                broken.append(agreement_id)
            elif outcome.outcome == "kept":
                _keep(ctx, conn, a, outcome.on or day)
                kept.append(agreement_id)
    return {"as_of": day.isoformat(), "expired": expired, "kept": kept, "broken": broken}


def _progress(conn: Connection, agreement_id: str) -> list[InstallmentProgress]:
    t = AgreementInstallment.__table__
    return [InstallmentProgress(r.number, r.due_on, r.amount, r.paid_amount, r.paid_off_on)
            for r in conn.execute(select(t).where(t.c.agreement_id == agreement_id).order_by(t.c.number))]


def _break(ctx: Context, conn: Connection, a: dict[str, Any], outcome: Any, day: date) -> None:
    missed = outcome.missed
    cur = a["currency"]
    reason = (f"instalment {missed.number} of {_money(missed.amount, cur)} due {missed.due_on} "
              f"was {_money(missed.amount - missed.paid, cur)} short more than {a['grace_days']} "
              f"grace days after it fell due")
    conn.execute(update(Agreement).where(Agreement.id == a["id"]).values(
        status="broken", ended_at=ctx.clock.now(), ended_by="system", end_reason=reason,
        ends_on=max(outcome.on - timedelta(days=1), a["starts_on"] or outcome.on)))
    _end_pauses(conn, a["id"], outcome.on)
    _notice(ctx, conn, a, day, "agreement.broken")
    append_for_borrower(ctx, conn, a["borrower_id"], "agreement.broken", {
        "agreement_id": a["id"], "broken_on": outcome.on, "missed_installment": missed.number,
        "reason": reason, "on_break": json.loads(a["terms"]).get("on_break")}, subject=a["id"])


def _keep(ctx: Context, conn: Connection, a: dict[str, Any], kept_on: date) -> None:
    terms = json.loads(a["terms"])
    waived = Components(**{c: int(terms["waived"].get(c, 0)) for c in COMPONENTS})
    entry_id = None
    if waived.total > 0:
        entry_id = _post_waivers(ctx, conn, a, terms, waived, kept_on)
    conn.execute(update(Agreement).where(Agreement.id == a["id"]).values(
        status="kept", ended_at=ctx.clock.now(), ended_by="system",
        end_reason=f"every instalment paid by {kept_on}"))
    _end_pauses(conn, a["id"], max(kept_on + timedelta(days=1), (a["starts_on"] or kept_on) + timedelta(days=1)))
    append_for_borrower(ctx, conn, a["borrower_id"], "agreement.kept", {
        "agreement_id": a["id"], "kept_on": kept_on, "waived": waived.as_dict(),
        "waiver_entry_id": entry_id}, subject=a["id"])


def _post_waivers(ctx: Context, conn: Connection, a: dict[str, Any], terms: dict[str, Any],
                  waived: Components, kept_on: date) -> int:
    """Post the agreed waivers as one 'waiver' ledger entry, spread over the loan's instalments
    in scope, oldest first, each component against what that instalment charged of it; then,
    if the instalments in scope are settled as a whole, mark them paid off (the DPD query
    reads that cache)."""
    quoted_on = date.fromisoformat(terms["quoted_on"])
    q = select(Installment.__table__).where(Installment.loan_id == a["loan_id"]).order_by(Installment.due_on, Installment.number)
    if terms["scope"] == "arrears":
        q = q.where(Installment.due_on <= quoted_on)
    insts = list(conn.execute(q).all())
    charged: dict[tuple[int | None, str], int] = defaultdict(int)
    for number, component, _kind, amount in conn.execute(
        select(LedgerPosting.installment_number, LedgerPosting.component, LedgerEntry.kind,
               func.sum(LedgerPosting.amount))
        .join(LedgerEntry, LedgerEntry.id == LedgerPosting.entry_id)
        .where(LedgerPosting.loan_id == a["loan_id"], LedgerEntry.kind == "waiver")
        .group_by(LedgerPosting.installment_number, LedgerPosting.component, LedgerEntry.kind)):
        # as in payments.loan_balance: the instalment row holds what was charged; earlier
        # waivers reduce it
        charged[(number, component)] -= int(amount)
    postings: list[dict[str, Any]] = []
    for comp in COMPONENTS:
        left = waived.get(comp)
        for inst in insts:
            if left <= 0:
                break
            base = {"principal": inst.principal_due, "interest": inst.interest_due,
                    "fee": inst.fee_due, "penalty": inst.penalty_due}[comp]
            room = base + charged[(inst.number, comp)]
            take = min(left, max(0, room))
            if take:
                postings.append({"installment_number": inst.number, "component": comp, "amount": take})
                left -= take
        if left > 0 and insts:  # never silently drop part of an agreed waiver
            postings.append({"installment_number": insts[-1].number, "component": comp, "amount": left})
    now = ctx.clock.now()
    entry_id = int(conn.execute(insert(LedgerEntry).returning(LedgerEntry.id), {
        "loan_id": a["loan_id"], "borrower_id": a["borrower_id"], "kind": "waiver",
        "effective_on": kept_on, "recorded_at": now, "payment_id": None,
        "memo": f"agreement {a['id']} kept: waivers as agreed"}).scalar_one())
    conn.execute(insert(LedgerPosting), [{"entry_id": entry_id, "loan_id": a["loan_id"], **p} for p in postings])
    # Settled as a whole: what the instalments in scope charged, less the waivers, is covered
    # by what was paid to them. (Per instalment the components may not line up: the waterfall
    # paid interest before principal, while the waiver is recorded on the component agreed.)
    owed = sum(i.principal_due + i.interest_due + i.fee_due + i.penalty_due
               + sum(charged[(i.number, c)] for c in COMPONENTS)
               - (i.paid_principal + i.paid_interest + i.paid_fee + i.paid_penalty) for i in insts)
    if owed - waived.total <= 0:
        conn.execute(update(Installment).where(
            Installment.loan_id == a["loan_id"], Installment.paid_off_on.is_(None),
            Installment.number.in_(bindparam("nums", expanding=True))).values(paid_off_on=kept_on),
            {"nums": [i.number for i in insts]})
        refresh_loan_cache(conn, [a["loan_id"]])
    return entry_id


# --------------------------------------------------------------------------- read


def _show(conn: Connection, agreement_id: str) -> dict[str, Any]:
    a = _agreement(conn, agreement_id)
    cur = a.currency
    insts = conn.execute(select(AgreementInstallment.__table__).where(AgreementInstallment.agreement_id == agreement_id)
                         .order_by(AgreementInstallment.number)).all()
    terms = json.loads(a.terms or "{}")
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return {
        "id": a.id, "loan_id": a.loan_id, "borrower_id": a.borrower_id, "kind": a.kind,
        "plan": a.plan_key, "scope": a.scope, "frequency": a.frequency, "status": a.status,
        "currency": cur, "total": _money(a.total_amount, cur), "waived": _money(a.waived_amount, cur),
        "waived_by_component": {c: _money(int(terms.get("waived", {}).get(c, 0)), cur) for c in COMPONENTS},
        "needs_approval": a.needs_approval, "approval_reasons": terms.get("approval_reasons", []),
        "starts_on": iso(a.starts_on), "ends_on": iso(a.ends_on), "grace_days": a.grace_days,
        "policy": terms.get("policy", {"id": a.policy_id}),
        "proposed_by": a.proposed_by, "proposed_at": iso(a.proposed_at), "expires_at": iso(a.expires_at),
        "approved_by": a.approved_by, "approved_at": iso(a.approved_at),
        "accepted_by": a.accepted_by, "accepted_at": iso(a.accepted_at),
        "acceptance_channel": a.acceptance_channel, "recording_ref": a.recording_ref,
        "supersedes": a.supersedes_id, "ended_at": iso(a.ended_at), "ended_by": a.ended_by,
        "end_reason": a.end_reason, "verification_code": a.verification_code,
        "installments": [{"number": i.number, "due_on": i.due_on.isoformat(), "amount": _money(i.amount, cur),
                          "paid": _money(i.paid_amount, cur), "paid_off_on": iso(i.paid_off_on)} for i in insts],
    }


def show(ctx: Context, agreement_id: str) -> dict[str, Any]:
    """The agreement, its instalments and progress, and who did what when."""
    with ctx.db.read() as conn:
        return _show(conn, agreement_id)


def list_agreements(ctx: Context, loan_id: str) -> list[dict[str, Any]]:
    """Every agreement on a loan, newest first."""
    with ctx.db.read() as conn:
        ids = conn.execute(select(Agreement.id).where(Agreement.loan_id == loan_id)
                           .order_by(Agreement.proposed_at.desc())).scalars().all()
        return [_show(conn, i) for i in ids]
