"""Agreements (协商) through the API: quote plans for a loan, propose one, read it, and record
an acceptance taken during a recorded call or with the borrower's one-time code."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import Field

from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import MONEY_PATTERN, Id, PathId, Strict
from parley.faces.web.auth import CtxDep
from parley.services import casework

router = api_router("agreements")



class ProposeIn(Strict):
    loan_id: Id
    plan: str = Field(min_length=3, max_length=100, pattern=r"^[a-z_]+(/[a-z0-9_]+)*$",
                      examples=["installment_plan/arrears"], description="a plan key from the quote")
    monthly: str | None = Field(default=None, pattern=MONEY_PATTERN, max_length=20,
                                description="what the borrower can pay per month, as quoted")


class AcceptIn(Strict):
    channel: Literal["call", "otp"]
    recording_ref: str = Field(default="", max_length=200, description="the call recording (channel call)")
    code: str = Field(default="", max_length=12, description="the borrower's one-time code (channel otp)")


@router.get("/loans/{loan_id}/quote")
def quote(loan_id: PathId, ctx: CtxDep, actor: ActorDep,
          monthly: Annotated[str | None, Query(pattern=MONEY_PATTERN, max_length=20)] = None
          ) -> dict[str, Any]:
    """Every plan the policy allows for the loan (for what the borrower can pay per month),
    and why the others do not fit."""
    return casework.quote_plans(ctx, actor, loan_id, monthly=monthly or "")


@router.post("/agreements", status_code=201)
def propose(body: ProposeIn, ctx: CtxDep, actor: ActorDep) -> dict[str, Any]:
    """Propose a quoted plan (re-quoted now). A loan with an open agreement answers 409."""
    out = casework.propose_plan(ctx, actor, body.loan_id, body.plan, monthly=body.monthly or "")
    return out.get("agreement", out)  # type: ignore[no-any-return]


@router.get("/agreements/{agreement_id}")
def get_agreement(agreement_id: PathId, ctx: CtxDep, actor: ActorDep) -> dict[str, Any]:
    return casework.agreement_view(ctx, actor, agreement_id)


@router.post("/agreements/{agreement_id}/accept")
def accept(agreement_id: PathId, body: AcceptIn, ctx: CtxDep, actor: ActorDep) -> dict[str, Any]:
    """Activate the agreement: from now on no collection contact about the debt (queued ones
    are cancelled in the same transaction)."""
    return casework.accept_recorded(ctx, actor, agreement_id, channel=body.channel,
                                    recording_ref=body.recording_ref, code=body.code)
