"""POST /api/v1/payments: post one payment exactly once (payment_id is the idempotency key)."""

from __future__ import annotations

from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import PaymentIn, PaymentOut
from parley.faces.web.auth import CtxDep
from parley.services import casework

router = api_router("payments", "/payments")


@router.post("", response_model=PaymentOut, status_code=201)
def post_payment(body: PaymentIn, ctx: CtxDep, actor: ActorDep) -> PaymentOut:
    """Allocate the payment by the configured waterfall. Re-posting the same payment_id with the
    same content returns the original result (already_posted=true); different content is 409."""
    return PaymentOut.model_validate(
        casework.record_payment(ctx, actor, payment_id=body.payment_id, loan_id=body.loan_id,
                                paid_at=body.paid_at, amount=body.amount)
    )
