"""Web sign-in plumbing shared by the pages and the API: the session cookie, the current
session, CSRF checks, the client address, and the one role check (a dependency factory).

Sessions are server-side (`services.auth`); the cookie carries only a random token
(HttpOnly, SameSite=Lax, Secure outside development). Every state-changing request made with a
session cookie must carry the session's CSRF token, in the form field `csrf_token` or the
`X-CSRF-Token` header (HTMX sends the header, set once on <body>). Before sign-in, forms use a
double-submit token: a random cookie echoed in the form.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Annotated

from fastapi import Depends, Request

from parley.config import Network
from parley.errors import Forbidden
from parley.services import auth as auth_service
from parley.services.auth import Actor, Session
from parley.services.context import Context

SESSION_COOKIE = "parley_session"
PRE_COOKIE = "parley_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotSignedIn(Exception):
    """No valid session: pages redirect to sign-in, the API answers 401."""

    def __init__(self, kind: str = "staff") -> None:
        super().__init__(kind)
        self.kind = kind


class CsrfFailed(Exception):
    """A state-changing request without the right CSRF token (answered 403)."""


def get_ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


CtxDep = Annotated[Context, Depends(get_ctx)]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def forwarded_client(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The client's address as far as it can be believed.

    X-Forwarded-For is honoured only when the direct peer is a trusted proxy, and then read
    from the right: each trusted hop may vouch for the one before it, and the first address
    that is not a trusted proxy is the client. Anything left of it was written by the client
    and could be forged, so it is never used. A malformed entry stops the walk at the last
    trusted hop. Without trusted proxies (the default) the peer is the client.
    """
    def is_trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return addr is not None and any(addr in net for net in trusted)

    if not trusted or not forwarded_for or not is_trusted(_address(peer)):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        addr = _address(hop)
        if addr is None:
            return client
        client = str(addr)
        if not is_trusted(addr):
            return client
    return client


def client_ip(request: Request) -> str:
    """The address rate limits count under (see forwarded_client and PARLEY_TRUSTED_PROXIES)."""
    peer = request.client.host if request.client else ""
    trusted = get_ctx(request).settings.trusted_proxy_networks  # parsed once, by Settings
    if not trusted:
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))  # several headers: in order
    return forwarded_client(peer, forwarded, trusted)


def cookie_secure(ctx: Context) -> bool:
    return ctx.settings.env == "production"


def current_session(request: Request) -> Session | None:
    """The live session for this request (cached on the request), or None."""
    if hasattr(request.state, "parley_session"):
        return request.state.parley_session  # type: ignore[no-any-return]
    ctx = get_ctx(request)
    policy = getattr(request.app.state, "auth_policy", auth_service.DEFAULT_POLICY)
    session = auth_service.session_for(ctx, request.cookies.get(SESSION_COOKIE), policy)
    request.state.parley_session = session
    return session


async def check_csrf(request: Request, session: Session | None) -> None:
    """Raise CsrfFailed unless an unsafe request carries the right token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    expected = session.csrf_token if session is not None else request.cookies.get(PRE_COOKIE, "")
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise CsrfFailed()


def pre_token(request: Request) -> str:
    """The double-submit token for sign-in forms (reuses the cookie when present)."""
    return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)


async def _session_with_csrf(request: Request, kind: str) -> Session:
    session = current_session(request)
    if session is None or session.actor.kind != kind or session.stage != "full":
        raise NotSignedIn(kind)
    await check_csrf(request, session)
    return session


async def staff_session(request: Request) -> Session:
    return await _session_with_csrf(request, "staff")


async def borrower_session(request: Request) -> Session:
    return await _session_with_csrf(request, "borrower")


StaffSession = Annotated[Session, Depends(staff_session)]
BorrowerSession = Annotated[Session, Depends(borrower_session)]


def require_roles(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency: the signed-in staff session, if its role is one of `roles`."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Session:
        session = await staff_session(request)
        if session.actor.role not in allowed:
            raise Forbidden("not allowed for your role")
        return session

    return Depends(dependency)


def actor_of(session: Session) -> Actor:
    return session.actor
