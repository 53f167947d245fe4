"""Webhook subscriptions: where Parley posts signed events (see services.webhooks)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from parley.errors import Forbidden
from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import Done, PathId, Strict
from parley.faces.web.auth import CtxDep
from parley.services import webhooks

router = api_router("webhooks", "/webhooks")

EventName = Literal["*", "complaint.filed", "complaint.resolved", "agreement.accepted", "payment.posted"]


class SubscriptionIn(Strict):
    url: str = Field(min_length=8, max_length=1000, examples=["https://lender.example/parley-events"])
    events: list[EventName] = Field(default=["*"], min_length=1, max_length=10)


class SubscriptionCreated(BaseModel):
    id: str
    secret: str = Field(description="the signing secret; shown only once")


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: str
    disabled_at: str | None


def _admin(actor) -> None:  # type: ignore[no-untyped-def]
    if actor.role != "administrator":
        raise Forbidden("not allowed for your role")


@router.post("", response_model=SubscriptionCreated, status_code=201)
def subscribe(body: SubscriptionIn, ctx: CtxDep, actor: ActorDep) -> SubscriptionCreated:
    """Register an endpoint. Events are POSTed with `Parley-Signature: t=…,v1=HMAC-SHA256(secret,
    "t.body")`, at least once (dedupe by `Parley-Event-Id`), retried with back-off."""
    _admin(actor)
    sid, secret = webhooks.subscribe(ctx, body.url, tuple(body.events))
    return SubscriptionCreated(id=sid, secret=secret)


@router.get("", response_model=list[SubscriptionOut])
def list_subscriptions(ctx: CtxDep, actor: ActorDep) -> list[SubscriptionOut]:
    _admin(actor)
    return [SubscriptionOut.model_validate(s) for s in webhooks.list_subscriptions(ctx)]


@router.delete("/{subscription_id}", response_model=Done)
def disable(subscription_id: PathId,
            ctx: CtxDep, actor: ActorDep) -> Done:
    _admin(actor)
    webhooks.disable(ctx, subscription_id)
    return Done()
