"""The FastAPI application: the REST API under /api/v1 and the server-rendered pages, wired
in one place. Nothing is built at import time: call `create_app(ctx)`.

Errors are mapped here, once: InvalidInput → 422, NotFound → 404, Conflict → 409,
Forbidden/CSRF → 403, not signed in → 401 (API) or a redirect to sign-in (pages),
RateLimited → 429 with Retry-After. API errors are JSON naming the field:
{"error": {"message", "field", "record"}} (+ "errors" when an import found several).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from parley.errors import Conflict, Forbidden, InvalidInput, InvalidInputs, NotFound, ParleyError
from parley.faces.web.auth import CsrfFailed, NotSignedIn
from parley.services.auth import DEFAULT_POLICY, Policy, RateLimited, SignInFailed
from parley.services.context import Context

API_PREFIX = "/api/v1"


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _utf8(text: str) -> str:
    """``text`` with any lone surrogate as its escape: a field named by a client's JSON key
    ("\\ud800") would otherwise make the error itself fail to encode (a 500 for a 422)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, message: str, field: str = "", record: str = "",
           errors: list[dict[str, str]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"message": _utf8(message), "field": _utf8(field),
                                      "record": _utf8(record)}}
    if errors:
        body["errors"] = [{k: _utf8(v) for k, v in e.items()} for e in errors]
    return JSONResponse(body, status_code=status, headers=headers)


def _loc_field(loc: tuple[Any, ...] | list[Any]) -> tuple[str, str]:
    parts = list(loc)
    record = str(parts[0]) if parts else ""
    rest = parts[1:] if parts and parts[0] in ("body", "query", "path", "header", "cookie") else parts
    field = ""
    for p in rest:
        field += f"[{p}]" if isinstance(p, int) else (f".{p}" if field else str(p))
    return record, field


def _install_error_handlers(app: FastAPI) -> None:
    from parley.faces.web import pages

    def page_or_json(request: Request, status: int, message: str, **kw: Any) -> Response:
        if _is_api(request):
            return _error(status, message, **kw)
        return pages.error_page(request, status, message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errs = []
        for e in exc.errors():
            record, field = _loc_field(e.get("loc", ()))
            errs.append({"message": str(e.get("msg", "invalid")), "field": field, "record": record})
        first = errs[0] if errs else {"message": "invalid request", "field": "", "record": ""}
        if not _is_api(request):
            return pages.error_page(request, 422, f"{first['field']}: {first['message']}")
        return _error(422, first["message"], first["field"], first["record"], errs)

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        errs = None
        if isinstance(exc, InvalidInputs):
            errs = [{"message": e.message, "field": e.field, "record": e.record} for e in exc.errors]
        if not _is_api(request):
            return pages.error_page(request, 422, str(exc))
        return _error(422, exc.message, exc.field, exc.record, errs)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return page_or_json(request, 404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        return page_or_json(request, 409, str(exc))

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return page_or_json(request, 403, str(exc))

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return page_or_json(request, 403, "missing or wrong CSRF token", field="csrf_token")

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> Response:
        headers = {"Retry-After": str(exc.retry_after)}
        if _is_api(request):
            return _error(429, str(exc), headers=headers)
        resp = pages.error_page(request, 429, str(exc))
        resp.headers.update(headers)
        return resp

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if _is_api(request):
            return _error(401, "sign in or send an API key", headers={"WWW-Authenticate": "ApiKey"})
        target = "/portal/signin" if exc.kind == "borrower" else "/signin"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(SignInFailed)
    async def _signin_failed(request: Request, exc: SignInFailed) -> Response:
        return page_or_json(request, 401, str(exc))

    @app.exception_handler(ParleyError)
    async def _other(request: Request, exc: ParleyError) -> Response:
        return page_or_json(request, 400, str(exc))


def create_app(
    ctx: Context | None = None,
    *,
    otp_sender: Callable[[str, str], None] | None = None,
    dialer: Callable[[str, dict[str, Any]], str] | None = None,
    auth_policy: Policy = DEFAULT_POLICY,
) -> FastAPI:
    """The whole web face. ctx: defaults to one built from the environment's settings.
    otp_sender(e164, code): delivers borrowers' one-time codes (default: the SMS adapter when
    configured, else the server log outside production). dialer(e164, meta) -> call ref: the
    click-to-call hook (default: a console stub outside production)."""
    from parley.faces.api.routers import (
        agreements,
        complaints,
        gate,
        imports,
        loans,
        payments,
        webhooks,
    )
    from parley.faces.web import pages

    ctx = ctx or Context.from_settings()
    app = FastAPI(
        title="Parley API",
        version="1",
        description="Collections with every contact lawful, identified and on the record. "
        "Money is a decimal string; errors are JSON naming the field. See docs/api.md.",
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.auth_policy = auth_policy
    app.state.otp_sender = otp_sender or pages.default_otp_sender(ctx)
    app.state.dialer = dialer or pages.default_dialer(ctx)
    for router in (imports.router, payments.router, loans.router, agreements.router, gate.router,
                   complaints.router, webhooks.router):
        app.include_router(router, prefix=API_PREFIX)
    pages.install(app)
    _install_error_handlers(app)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not _is_api(request):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "frame-ancestors 'none'",
            )
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
