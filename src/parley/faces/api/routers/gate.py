"""POST /api/v1/gate/check: decide one scenario (the body of `parley gate check`, docs/gate.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from parley.faces.api.deps import ActorDep
from parley.faces.api.schemas import ERROR_RESPONSES
from parley.faces.web.auth import CtxDep
from parley.services.permits import check_json

router = APIRouter(prefix="/gate", tags=["gate"], responses=ERROR_RESPONSES)


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
