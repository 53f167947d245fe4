"""GET /api/v1/loans/{loan_id}: a loan, what is overdue and since when, its schedule, its agency
placements and legal referrals; and the managers' two decisions on them: recall a placement,
close a legal referral."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Path
from pydantic import Field

from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import (
    LegalReferralOut,
    LoanOut,
    PathId,
    PlacementOut,
    RecalledOut,
    Strict,
)
from parley.faces.web.auth import CtxDep
from parley.services import casework

router = api_router("loans", "/loans")



@router.get("/{loan_id}", response_model=LoanOut)
def get_loan(loan_id: PathId, ctx: CtxDep, actor: ActorDep) -> LoanOut:
    """A loan as the caller may see it, with its placement history and legal referrals. A loan
    placed with another agency answers 404, exactly as a loan that does not exist; an
    agency-scoped caller sees only its own agency's placements."""
    return LoanOut.model_validate(casework.loan_view(ctx, actor, loan_id))


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


@router.post("/{loan_id}/placement/recall", response_model=RecalledOut)
def recall_placement(loan_id: PathId, body: ReasonIn, ctx: CtxDep, actor: ActorDep) -> RecalledOut:
    """Recall the loan from its outside agency (委外): the placement ends now, the agency's
    collectors no longer see the case, and the recall is audited on the borrower's chain.
    Administrator, team-lead and strategy-manager keys; 409 when the loan is not placed."""
    out = casework.recall_case_placement(ctx, actor, loan_id, body.reason)
    ended = out.placement
    return RecalledOut(loan_id=out.loan_id, agency_id=out.agency_id, ended_at=out.ended_at,
                       placement=None if ended is None else PlacementOut(
                           **asdict(ended) | {"active": ended.ended_at is None}))


@router.post("/{loan_id}/legal-referrals/{referral_id}/close", response_model=LegalReferralOut)
def close_referral(loan_id: PathId, referral_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                   body: ReasonIn, ctx: CtxDep, actor: ActorDep) -> LegalReferralOut:
    """Close one of the loan's legal referrals, with the reason (audited). A referral of
    another loan answers 404 like a missing one; 409 when it is already closed."""
    closed = casework.close_case_referral(ctx, actor, loan_id, referral_id, body.reason)
    return LegalReferralOut.model_validate(closed, from_attributes=True)
