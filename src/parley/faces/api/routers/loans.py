"""GET /api/v1/loans/{loan_id}: a loan, what is overdue and since when, its schedule, its agency
placements and legal referrals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from parley.faces.api.deps import ActorDep
from parley.faces.api.schemas import ERROR_RESPONSES, ID_PATTERN, LoanOut
from parley.faces.web.auth import CtxDep
from parley.services import casework

router = APIRouter(prefix="/loans", tags=["loans"], responses=ERROR_RESPONSES)

LoanId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


@router.get("/{loan_id}", response_model=LoanOut)
def get_loan(loan_id: LoanId, ctx: CtxDep, actor: ActorDep) -> LoanOut:
    """A loan as the caller may see it, with its placement history and legal referrals. A loan
    placed with another agency answers 404, exactly as a loan that does not exist; an
    agency-scoped caller sees only its own agency's placements."""
    return LoanOut.model_validate(casework.loan_view(ctx, actor, loan_id))
