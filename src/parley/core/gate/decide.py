"""The gate's one decision: ``decide(request, facts, pack) -> Decision``.

Pure: the rules of the pack run in order over the facts at the request's time; nothing is
read from a clock or a store. When the contact is denied, ``next_allowed_at`` is found as a
fixpoint: jump to the latest ``retry_at`` of the denying rules, decide again there, and repeat
until every rule passes (that instant is the answer), a rule says no time will do, or the
pack's horizon is passed (both give None). Because each rule's ``retry_at`` is the earliest
instant at which that rule alone passes, no lawful instant is skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from parley.core.gate.model import ContactRequest, Decision, Facts, Finding, RulePack
from parley.core.gate.rules import Ctx, zone

_MAX_STEPS = 200


def evaluate(request: ContactRequest, facts: Facts, pack: RulePack,
             at: datetime | None = None, *, denials_only: bool = False) -> tuple[Finding, ...]:
    """Every finding of every rule of ``pack`` for ``request`` at ``at`` (default: request.at).

    denials_only: skip advisory kinds and keep only denials (the next-time search needs no more).
    """
    ctx = Ctx(request, facts, pack, request.at if at is None else at)
    out: list[Finding] = []
    if denials_only:
        for rule in pack.rules:
            if not rule.advisory:
                out.extend(f for f in rule.check(ctx, rule) if f.effect == "deny")
        return tuple(out)
    for rule in pack.rules:
        out.extend(rule.check(ctx, rule))
    return tuple(out)


def _retry(denials: list[Finding]) -> datetime | None:
    """The earliest instant at which all of these denials could have lifted; None = never."""
    latest: datetime | None = None
    for f in denials:
        if f.retry_at is None:
            return None
        if latest is None or f.retry_at > latest:
            latest = f.retry_at
    return latest


def _first_denial(request: ContactRequest, facts: Facts, pack: RulePack,
                  at: datetime) -> Finding | None:
    """The first denial at ``at`` in the pack's search order (time-of-day rules first)."""
    ctx = Ctx(request, facts, pack, at)
    for rule in pack.search_order or pack.rules:
        if rule.advisory:
            continue
        findings: tuple[Finding, ...] = rule.check(ctx, rule)
        for f in findings:
            if f.effect == "deny":
                return f
    return None


def next_allowed_at(request: ContactRequest, facts: Facts, pack: RulePack,
                    denials: list[Finding]) -> datetime | None:
    """The earliest instant after request.at at which the same contact would be allowed.

    Any one denial's ``retry_at`` is a lower bound (that rule fails until then), so the search
    may jump to it after finding the first denial at each candidate instant.
    """
    horizon = request.at + timedelta(days=pack.horizon_days)
    t = _retry(denials)
    for _ in range(_MAX_STEPS):
        if t is None or t > horizon:
            return None
        found = _first_denial(request, facts, pack, t)
        if found is None:
            # Shown in the person's (first candidate) zone: the same instant, readable there.
            zones = facts.person.candidate_zones
            return t.astimezone(zone(zones[0])) if zones else t.astimezone(request.at.tzinfo)
        t2 = found.retry_at
        if t2 is None:
            return None
        t = t2 if t2 > t else t + timedelta(minutes=1)
    return None


def decide(request: ContactRequest, facts: Facts, pack: RulePack) -> Decision:
    """Allow or deny ``request`` under ``pack`` given ``facts``, with every reason."""
    if request.person_id != facts.person.id:
        raise ValueError(f"request is for {request.person_id!r} but facts are for "
                         f"{facts.person.id!r}")
    if request.role is not facts.person.role:
        raise ValueError(f"request role {request.role} differs from the person's role "
                         f"{facts.person.role}")
    findings = evaluate(request, facts, pack)
    denials = [f for f in findings if f.effect == "deny"]
    allowed = not denials
    nxt = request.at if allowed else next_allowed_at(request, facts, pack, denials)
    return Decision(
        allowed=allowed,
        reasons=findings,
        next_allowed_at=nxt,
        flags=tuple(f for f in findings if f.effect == "advise"),
        pack_id=pack.id,
        pack_version=pack.version,
        decided_at=request.at,
    )
