"""Complaints: list, file, read (with evidence), acknowledge, assign, resolve."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import (
    AssignIn,
    ComplaintDetailOut,
    ComplaintIn,
    ComplaintOut,
    Created,
    Done,
    PathId,
    ResolveIn,
)
from parley.faces.web.auth import CtxDep
from parley.services import complaints

router = api_router("complaints", "/complaints")



@router.get("", response_model=list[ComplaintOut])
def list_complaints(
    ctx: CtxDep,
    actor: ActorDep,
    status: Annotated[Literal["open", "acknowledged", "resolved", "rejected"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ComplaintOut]:
    """Complaints the caller may see, soonest resolve deadline first."""
    return [ComplaintOut.model_validate(c)
            for c in complaints.list_complaints(ctx, actor, status=status, limit=limit)]


@router.post("", response_model=Created, status_code=201)
def file_complaint(body: ComplaintIn, ctx: CtxDep, actor: ActorDep) -> Created:
    """File a complaint for a borrower (e.g. one received by phone or from a regulator)."""
    cid = complaints.file_complaint(
        ctx, actor, borrower_id=body.borrower_id, category=body.category,
        description=body.description, loan_id=body.loan_id,
        contact_ids=tuple(body.contact_ids), channel="api",
    )
    return Created(id=cid)


@router.get("/{complaint_id}", response_model=ComplaintDetailOut)
def get_complaint(complaint_id: PathId, ctx: CtxDep, actor: ActorDep) -> ComplaintDetailOut:
    return ComplaintDetailOut.model_validate(complaints.get_complaint(ctx, actor, complaint_id))


@router.post("/{complaint_id}/acknowledge", response_model=Done)
def acknowledge(complaint_id: PathId, ctx: CtxDep, actor: ActorDep) -> Done:
    complaints.acknowledge(ctx, actor, complaint_id)
    return Done()


@router.post("/{complaint_id}/assign", response_model=Done)
def assign(complaint_id: PathId, body: AssignIn, ctx: CtxDep, actor: ActorDep) -> Done:
    complaints.assign(ctx, actor, complaint_id, body.staff_id)
    return Done()


@router.post("/{complaint_id}/resolve", response_model=Done)
def resolve(complaint_id: PathId, body: ResolveIn, ctx: CtxDep, actor: ActorDep) -> Done:
    complaints.resolve(ctx, actor, complaint_id, body.outcome, upheld=body.upheld)
    return Done()
