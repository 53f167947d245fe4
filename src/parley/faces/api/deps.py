"""API dependencies: the context and the caller (an API key, or a staff session + CSRF)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from parley.faces.web.auth import NotSignedIn, check_csrf, current_session, get_ctx
from parley.services.auth import Actor, SignInFailed, actor_for_api_key

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="an API key (or use a staff session cookie + X-CSRF-Token)")


async def api_actor(
    request: Request, api_key: Annotated[str | None, Depends(_api_key_header)] = None
) -> Actor:
    """The caller: an API key wins; otherwise a full staff session, with CSRF on writes."""
    ctx = get_ctx(request)
    auth = request.headers.get("authorization", "")
    if not api_key and auth.lower().startswith("bearer "):
        api_key = auth[7:].strip()
    if api_key:
        try:
            return actor_for_api_key(ctx, api_key)
        except SignInFailed:
            raise NotSignedIn("api") from None
    session = current_session(request)
    if session is None or session.actor.kind != "staff" or session.stage != "full":
        raise NotSignedIn("api")
    await check_csrf(request, session)
    return session.actor


ActorDep = Annotated[Actor, Depends(api_actor)]
