"""The gate over HTTP: check a scenario (the body of `parley gate check`, docs/gate.md), ask for a
permit for a real contact (what a lender's dialer or worker calls at the moment of contact),
and record the contact's outcome afterwards."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body, Path, Query
from pydantic import Field

from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import Id, InboundOut, Strict
from parley.faces.web.auth import CtxDep
from parley.services import casework
from parley.services.permits import check_json

router = api_router("gate", "/gate")


@router.post("/check")
def gate_check(
    scenario: Annotated[dict[str, Any], Body(description="a scenario document (docs/gate.md)")],
    ctx: CtxDep,
    actor: ActorDep,
    lang: Annotated[Literal["en", "zh-Hans", "zh-Hant"], Query()] = "en",
) -> dict[str, Any]:
    """The gate's decision: allowed or not, every reason (rule id, effect, message, citation),
    and the next lawful time. A malformed scenario answers 422 naming the JSON path."""
    return check_json(ctx, scenario, lang=lang)


class PermitIn(Strict):
    loan_id: Id
    channel: Literal["call", "sms", "email"]
    purpose: Literal["collection", "agreement_service"] = "collection"
    phone_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="which of the borrower's phones; default the first valid one")
    text: str | None = Field(default=None, max_length=2000, description="the message, for sms and email (screened)")
    template_id: Id | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200,
                                        description="repeat-safe: the same key returns the original permit")


class OutcomeIn(Strict):
    loan_id: Id
    result: Literal["conversation", "no_answer", "voicemail", "not_connected", "refused", "wrong_party"]
    notes: str = Field(default="", max_length=4000)
    promise: bool = False


@router.post("/permits")
def gate_permit(
    body: PermitIn,
    ctx: CtxDep,
    actor: ActorDep,
    lang: Annotated[Literal["en", "zh-Hans", "zh-Hant"], Query()] = "en",
) -> dict[str, Any]:
    """Decide a contact now and, when allowed, record it as a contact attempt in the same
    transaction (`attempt_id`). Denied: the rules, and `next_allowed_at` (null when no time will
    do). Contact only when `allowed` is true; report the outcome to /gate/attempts/{id}/outcome."""
    return casework.request_contact_permit(
        ctx, actor, body.loan_id, channel=body.channel, purpose=body.purpose, phone_id=body.phone_id,
        text=body.text, template_id=body.template_id, idempotency_key=body.idempotency_key, lang=lang)


class InboundIn(Strict):
    loan_id: Id
    channel: Literal["call", "sms", "email"]
    sender: str | None = Field(default=None, max_length=320,
                               description="the number or e-mail address they used, if known")
    spoke: bool = Field(default=False, description="a call of theirs that reached someone")
    notes: str = Field(default="", max_length=2000)


@router.post("/inbound", status_code=201, response_model=InboundOut)
def gate_inbound(body: InboundIn, ctx: CtxDep, actor: ActorDep) -> InboundOut:
    """Record a contact the borrower started: their call, SMS or e-mail. Nothing is decided;
    it is history the gate reads — their calls never count as attempts, a conversation in one
    starts Regulation F's seven quiet days, and after opting out of a medium a message from
    them through it may be answered once through it."""
    return InboundOut(**casework.log_inbound(ctx, actor, body.loan_id, channel=body.channel,
                                             sender=body.sender, spoke=body.spoke,
                                             notes=body.notes))


@router.post("/attempts/{attempt_id}/outcome")
def gate_outcome(
    attempt_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: OutcomeIn,
    ctx: CtxDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Record what happened on a permitted contact (once). Outcomes feed the caps: a
    conversation starts Regulation F's seven quiet days; a refusal by a third party is final."""
    return casework.log_outcome(ctx, actor, body.loan_id, attempt_id, result=body.result, notes=body.notes,
                                promise=body.promise)
