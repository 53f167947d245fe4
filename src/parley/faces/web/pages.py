"""The server-rendered pages: sign-in, the collector's workbench, the borrower's portal and the
compliance desk. Thin: parse the form, call one service, render a template (or an HTMX
fragment). Access checks live in the services (`casework`, `complaints`); the role gate for
each page is the `require_roles` dependency.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

import segno
from fastapi import APIRouter, FastAPI, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from parley.core.text import ID_PATTERN
from parley.errors import Conflict, InvalidInput
from parley.faces.web import charts, i18n
from parley.faces.web.auth import (
    CSRF_FIELD,
    PRE_COOKIE,
    SESSION_COOKIE,
    BorrowerSession,
    CtxDep,
    check_csrf,
    client_ip,
    cookie_secure,
    current_session,
    get_ctx,
    pre_token,
    require_roles,
)
from parley.services import auth as auth_service
from parley.services import casework, complaints
from parley.services.auth import RateLimited, Session, SignInFailed
from parley.services.context import Context

log = logging.getLogger("parley.web")

# Vendored from the npm registry: htmx.org 2.0.11, dist/htmx.min.js (npm pack htmx.org@2.0.11).
# Pinned by version in the file name and by its SRI hash; nothing loads from a CDN.
HTMX_FILE = "htmx-2.0.11.min.js"
HTMX_SRI = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
LANG_COOKIE = "parley_lang"
LoanId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
ComplaintId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
AgreementId = ComplaintId

WORKBENCH_ROLES = ("administrator", "team_lead", "collector", "agency_collector",
                   "strategy_manager")
DESK_ROLES = ("administrator", "compliance_officer", "auditor")
Workbench = Annotated[Session, require_roles(*WORKBENCH_ROLES, "compliance_officer", "auditor")]
Caller = Annotated[Session, require_roles(*sorted(casework.CALL_ROLES))]
Desk = Annotated[Session, require_roles(*DESK_ROLES)]
Admin = Annotated[Session, require_roles("administrator")]

router = APIRouter(include_in_schema=False)


# --- hooks -----------------------------------------------------------------------------------


def default_otp_sender(ctx: Context) -> Callable[[str, str], None]:
    """One-time codes go by the configured SMS provider (PARLEY_SMS_PROVIDER=http). Without one,
    outside production they go to the server log (for trying the system locally); in
    production a missing provider refuses to pretend. A sign-in code is a message the borrower
    asked for, not a collection contact, so it does not pass the contact gate."""

    def send(e164: str, code: str) -> None:
        if ctx.settings.sms_provider == "http":
            from parley.adapters.channels.base import Message, build_channels

            body = f"【Parley】登录验证码 {code}，5 分钟内有效，请勿告诉他人。Sign-in code {code}."
            build_channels(ctx.settings)["sms"].send(
                Message(channel="sms", to=e164, body=body, idempotency_key=f"otp:{uuid.uuid4().hex}"))
            return
        if ctx.settings.env == "production":
            raise RuntimeError("no SMS provider configured for one-time codes")
        log.warning("one-time code for %s: %s (development only)", e164[:-4] + "****", code)

    return send


def default_dialer(ctx: Context) -> Callable[[str, dict[str, Any]], str]:
    def dial(e164: str, meta: dict[str, Any]) -> str:
        ref = f"console-{uuid.uuid4().hex[:10]}"
        log.info("click-to-call %s for %s (%s)", ref, meta.get("collector_id"), meta.get("loan_id"))
        return ref

    return dial


# --- rendering -------------------------------------------------------------------------------


def _env(app: FastAPI) -> Environment:
    env: Environment | None = getattr(app.state, "jinja", None)
    if env is None:
        folder = resources.files("parley.faces.web").joinpath("templates")
        env = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(("html", "xml"), default_for_string=True),
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals["htmx_src"] = f"/static/{HTMX_FILE}"
        env.globals["htmx_sri"] = HTMX_SRI
        env.globals["LANGS"] = i18n.LANGS
        env.globals["LANG_NAMES"] = i18n.LANG_NAMES
        app.state.jinja = env
    return env


def _lang_for(request: Request, session: Session | None) -> str:
    if session is not None:
        return i18n.pick(session.lang)
    return i18n.pick(request.cookies.get(LANG_COOKIE))


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    session = current_session(request)
    ctx = get_ctx(request)
    lang = _lang_for(request, session)
    fmt = i18n.Formatter(lang, ctx.business_zone)
    token = session.csrf_token if session is not None else pre_token(request)
    data = {
        **fmt.template_globals(),
        "request": request,
        "session": session,
        "actor": session.actor if session and session.stage == "full" else None,
        "csrf_token": token,
        "csrf_field": CSRF_FIELD,
        "now": ctx.clock.now(),
        **values,
    }
    html = _env(request.app).get_template(template).render(data)
    resp = HTMLResponse(html, status_code=status)
    if session is None and not request.cookies.get(PRE_COOKIE):
        resp.set_cookie(PRE_COOKIE, token, httponly=True, samesite="strict",
                        secure=cookie_secure(ctx), path="/")
    return resp


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    if request.headers.get("hx-request"):
        return render(request, "partials/error.html", status=status, message=message, code=status)
    return render(request, "error.html", status=status, message=message, code=status)


def _set_session_cookie(resp: Response, ctx: Context, token: str) -> None:
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=cookie_secure(ctx),
                    path="/")


def _home_for(session: Session | None) -> str:
    if session is None or session.stage != "full":
        return "/signin"
    if session.actor.kind == "borrower":
        return "/portal"
    if session.actor.role in ("compliance_officer", "auditor"):
        return "/desk"
    return "/workbench"


# --- sign-in ---------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse(_home_for(current_session(request)), status_code=303)


@router.get("/signin")
def signin_page(request: Request) -> Response:
    return render(request, "signin.html")


@router.post("/signin")
async def signin(
    request: Request, ctx: CtxDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
) -> Response:
    await check_csrf(request, None)
    policy = request.app.state.auth_policy
    try:
        result = auth_service.staff_sign_in(ctx, username, password, ip=client_ip(request),
                                            lang=request.cookies.get(LANG_COOKIE, ""),
                                            policy=policy)
    except SignInFailed:
        return render(request, "signin.html", status=401, failed=True, username=username)
    except RateLimited as exc:
        resp = render(request, "signin.html", status=429, limited=True, username=username)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    resp = RedirectResponse("/signin/totp" if result.stage == "totp" else "/", status_code=303)
    _set_session_cookie(resp, ctx, result.token)
    resp.delete_cookie(PRE_COOKIE, path="/")
    return resp


def _totp_session(request: Request) -> Session | None:
    s = current_session(request)
    return s if s is not None and s.actor.kind == "staff" and s.stage == "totp" else None


@router.get("/signin/totp")
def totp_page(request: Request) -> Response:
    if _totp_session(request) is None:
        return RedirectResponse("/signin", status_code=303)
    return render(request, "totp.html")


@router.post("/signin/totp")
async def totp(request: Request, ctx: CtxDep,
               code: Annotated[str, Form(max_length=12)]) -> Response:
    session = _totp_session(request)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    await check_csrf(request, session)
    try:
        token = auth_service.verify_totp(ctx, request.cookies[SESSION_COOKIE], code,
                                         policy=request.app.state.auth_policy)
    except SignInFailed:
        return render(request, "totp.html", status=401, failed=True)
    except RateLimited:
        return render(request, "totp.html", status=429, limited=True)
    resp = RedirectResponse("/", status_code=303)
    _set_session_cookie(resp, ctx, token)
    return resp


@router.post("/signout")
async def signout(request: Request, ctx: CtxDep) -> Response:
    session = current_session(request)
    await check_csrf(request, session)
    kind = session.actor.kind if session else "staff"
    auth_service.sign_out(ctx, request.cookies.get(SESSION_COOKIE))
    resp = RedirectResponse("/portal/signin" if kind == "borrower" else "/signin", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.post("/lang")
async def set_lang(request: Request, ctx: CtxDep,
                   lang: Annotated[str, Form(max_length=16)],
                   back: Annotated[str, Form(max_length=200)] = "/") -> Response:
    session = current_session(request)
    await check_csrf(request, session)
    lang = i18n.pick(lang)
    if session is not None:
        auth_service.set_language(ctx, request.cookies[SESSION_COOKIE], lang)
    target = back if back.startswith("/") and not back.startswith(("//", "/\\")) else "/"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(LANG_COOKIE, lang, samesite="lax", secure=cookie_secure(ctx), path="/",
                    max_age=365 * 86400)
    return resp


# --- borrower sign-in ------------------------------------------------------------------------


@router.get("/portal/signin")
def portal_signin_page(request: Request) -> Response:
    return render(request, "portal_signin.html", step="phone")


@router.post("/portal/signin/code")
async def portal_send_code(request: Request, ctx: CtxDep,
                           phone: Annotated[str, Form(max_length=32)]) -> Response:
    await check_csrf(request, None)
    try:
        auth_service.request_otp(ctx, phone, ip=client_ip(request),
                                 send=request.app.state.otp_sender,
                                 policy=request.app.state.auth_policy)
    except InvalidInput:
        return render(request, "portal_signin.html", status=422, step="phone", bad_phone=True,
                      phone=phone)
    except RateLimited as exc:
        resp = render(request, "portal_signin.html", status=429, step="phone", limited=True,
                      phone=phone)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    return render(request, "portal_signin.html", step="code", phone=phone)


@router.post("/portal/signin/verify")
async def portal_verify(request: Request, ctx: CtxDep,
                        phone: Annotated[str, Form(max_length=32)],
                        code: Annotated[str, Form(max_length=12)]) -> Response:
    await check_csrf(request, None)
    try:
        result = auth_service.verify_otp(ctx, phone, code, ip=client_ip(request),
                                         lang=request.cookies.get(LANG_COOKIE, ""),
                                         policy=request.app.state.auth_policy)
    except (SignInFailed, InvalidInput):
        return render(request, "portal_signin.html", status=401, step="code", phone=phone,
                      failed=True)
    except RateLimited as exc:
        resp = render(request, "portal_signin.html", status=429, step="code", phone=phone,
                      limited=True)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    resp = RedirectResponse("/portal", status_code=303)
    _set_session_cookie(resp, ctx, result.token)
    resp.delete_cookie(PRE_COOKIE, path="/")
    return resp


# --- the collector's workbench ---------------------------------------------------------------


@router.get("/workbench")
def workbench(request: Request, ctx: CtxDep, session: Workbench) -> Response:
    queue = casework.work_queue(ctx, session.actor)
    return render(request, "workbench.html", queue=queue)


def _case_page(request: Request, ctx: Context, session: Session, loan_id: str,
               status: int = 200, **values: Any) -> HTMLResponse:
    case = casework.case_at_glance(ctx, session.actor, loan_id)
    may_call = session.actor.role in casework.CALL_ROLES
    return render(request, "case.html", status=status, case=case, results=casework.CALL_RESULTS,
                  may_call=may_call, visits=casework.visits(ctx, session.actor, loan_id),
                  colleagues=casework.colleagues(ctx, session.actor) if may_call else [],
                  visit_kinds=casework.APPOINTMENT_KINDS,
                  may_manage=session.actor.role in casework.PLACEMENT_WRITE_ROLES, **values)


@router.get("/cases/{loan_id}")
def case_page(request: Request, ctx: CtxDep, session: Workbench, loan_id: LoanId) -> Response:
    return _case_page(request, ctx, session, loan_id)


# Recalling a placement and closing a legal referral: the role check (administrator, team lead,
# strategy manager) and the access rules are the service's (casework); the audit entry is the
# placements service's. A missing reason or a loan no longer placed re-shows the case.

@router.post("/cases/{loan_id}/placement/recall")
def case_recall_placement(request: Request, ctx: CtxDep, session: Workbench, loan_id: LoanId,
                          reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    try:
        casework.recall_case_placement(ctx, session.actor, loan_id, reason)
    except (InvalidInput, Conflict) as exc:
        return _case_page(request, ctx, session, loan_id,
                          status=422 if isinstance(exc, InvalidInput) else 409,
                          action_error={"section": "placements", "message": str(exc),
                                        "field": getattr(exc, "field", "") or ""})
    return RedirectResponse(f"/cases/{loan_id}#placements", status_code=303)


@router.post("/cases/{loan_id}/legal-referrals/{referral_id}/close")
def case_close_referral(request: Request, ctx: CtxDep, session: Workbench, loan_id: LoanId,
                        referral_id: Annotated[int, Path(ge=1, le=2**62)],
                        reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    try:
        casework.close_case_referral(ctx, session.actor, loan_id, referral_id, reason)
    except (InvalidInput, Conflict) as exc:
        return _case_page(request, ctx, session, loan_id,
                          status=422 if isinstance(exc, InvalidInput) else 409,
                          action_error={"section": "legal", "message": str(exc),
                                        "field": getattr(exc, "field", "") or "",
                                        "referral": referral_id})
    return RedirectResponse(f"/cases/{loan_id}#legal", status_code=303)


# Booking a visit, recording an inbound contact and adding a note: bad input (or a clash)
# re-shows the case with the reason next to that form and what was typed still in it.
# Free-text fields take more than their services allow (TYPED_MAX), so an over-long entry
# comes back to its form with the service's limit named rather than as a bare error page.

TYPED_MAX = 20_000


def _case_refused(request: Request, ctx: Context, session: Session, loan_id: str, section: str,
                  exc: InvalidInput | Conflict, typed: dict[str, Any]) -> HTMLResponse:
    return _case_page(request, ctx, session, loan_id,
                      status=422 if isinstance(exc, InvalidInput) else 409,
                      action_error={"section": section, "message": str(exc),
                                    "field": getattr(exc, "field", "") or "", "typed": typed})


@router.post("/cases/{loan_id}/visits")
def case_visit(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
               kind: Annotated[str, Form(max_length=32)],
               scheduled_at: Annotated[str, Form(max_length=32)],
               place: Annotated[str, Form(max_length=500)] = "",
               with_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    try:
        casework.book_visit(ctx, session.actor, loan_id, kind=kind, local_time=scheduled_at,
                            place=place, with_ids=(with_id,) if with_id else ())
    except (InvalidInput, Conflict) as exc:
        return _case_refused(request, ctx, session, loan_id, "visits", exc,
                             {"kind": kind, "scheduled_at": scheduled_at, "place": place,
                              "with_id": with_id})
    return RedirectResponse(f"/cases/{loan_id}#visits", status_code=303)


@router.post("/cases/{loan_id}/may-i-call")
def case_may_i_call(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
                    phone_id: Annotated[int | None, Form(ge=1, le=2**62)] = None) -> Response:
    answer = casework.may_i_call(ctx, session.actor, loan_id, phone_id, lang=session.lang)
    return render(request, "partials/gate_answer.html", answer=answer, loan_id=loan_id)


@router.post("/cases/{loan_id}/dial")
def case_dial(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
              phone_id: Annotated[int, Form(ge=1, le=2**62)]) -> Response:
    answer = casework.click_to_call(ctx, session.actor, loan_id, phone_id,
                                    request.app.state.dialer, lang=session.lang)
    return render(request, "partials/dial.html", answer=answer, loan_id=loan_id,
                  results=casework.CALL_RESULTS)


@router.post("/cases/{loan_id}/outcome")
def case_outcome(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
                 attempt_id: Annotated[int, Form(ge=1, le=2**62)],
                 result: Annotated[str, Form(max_length=20)],
                 notes: Annotated[str, Form(max_length=4000)] = "",
                 promise: Annotated[bool, Form()] = False) -> Response:
    try:
        out = casework.log_outcome(ctx, session.actor, loan_id, attempt_id, result=result,
                                   notes=notes, promise=promise)
    except Conflict as exc:
        return render(request, "partials/error.html", status=409, message=str(exc), code=409)
    return render(request, "partials/outcome.html", out=out)


@router.post("/cases/{loan_id}/inbound")
def case_inbound(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
                 channel: Annotated[str, Form(max_length=10)],
                 sender: Annotated[str, Form(max_length=320)] = "",
                 spoke: Annotated[bool, Form()] = False,
                 notes: Annotated[str, Form(max_length=TYPED_MAX)] = "") -> Response:
    try:
        casework.log_inbound(ctx, session.actor, loan_id, channel=channel, sender=sender or None,
                             spoke=spoke, notes=notes)
    except (InvalidInput, Conflict) as exc:
        return _case_refused(request, ctx, session, loan_id, "contacts", exc,
                             {"channel": channel, "sender": sender, "spoke": spoke,
                              "notes": notes})
    return RedirectResponse(f"/cases/{loan_id}#contacts", status_code=303)


@router.post("/cases/{loan_id}/notes")
def case_note(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
              text: Annotated[str, Form(max_length=TYPED_MAX)] = "") -> Response:
    try:
        casework.add_note(ctx, session.actor, loan_id, text)
    except (InvalidInput, Conflict) as exc:
        return _case_refused(request, ctx, session, loan_id, "notes", exc, {"text": text})
    return RedirectResponse(f"/cases/{loan_id}#notes", status_code=303)


@router.post("/cases/{loan_id}/quote")
def case_quote(request: Request, ctx: CtxDep, session: Workbench, loan_id: LoanId,
               monthly: Annotated[str, Form(max_length=20)] = "") -> Response:
    quotes = casework.quote_plans(ctx, session.actor, loan_id, monthly=monthly)
    return render(request, "partials/quotes.html", quotes=quotes, loan_id=loan_id,
                  can_propose=session.actor.role in casework.CALL_ROLES, portal=False)


@router.post("/cases/{loan_id}/propose")
def case_propose(request: Request, ctx: CtxDep, session: Caller, loan_id: LoanId,
                 plan: Annotated[str, Form(max_length=200)],
                 monthly: Annotated[str, Form(max_length=20)] = "") -> Response:
    out = casework.propose_plan(ctx, session.actor, loan_id, plan, monthly=monthly)
    return render(request, "partials/proposed.html", out=out)


# --- the borrower's portal -------------------------------------------------------------------


def _portal_page(request: Request, ctx: Context, session: Session, status: int = 200,
                 **values: Any) -> HTMLResponse:
    view = casework.borrower_overview(ctx, session.actor)
    return render(request, "portal.html", status=status, view=view,
                  categories=complaints.CATEGORIES, channels=casework.OPT_OUT_CHANNELS, **values)


def _portal_refused(request: Request, ctx: Context, session: Session, section: str,
                    exc: InvalidInput, typed: dict[str, Any]) -> HTMLResponse:
    """The portal again (422) with the reason next to the form and what was typed kept."""
    return _portal_page(request, ctx, session, status=422,
                        action_error={"section": section, "message": str(exc),
                                      "field": exc.field, "typed": typed})


@router.get("/portal")
def portal(request: Request, ctx: CtxDep, session: BorrowerSession) -> Response:
    return _portal_page(request, ctx, session, filed=request.query_params.get("filed"))


@router.post("/portal/quote")
def portal_quote(request: Request, ctx: CtxDep, session: BorrowerSession,
                 loan_id: Annotated[str, Form(max_length=64, pattern=ID_PATTERN)],
                 monthly: Annotated[str, Form(max_length=20)] = "") -> Response:
    quotes = casework.quote_plans(ctx, session.actor, loan_id, monthly=monthly)
    return render(request, "partials/quotes.html", quotes=quotes, loan_id=loan_id,
                  can_propose=False, portal=True)


@router.post("/portal/plans")
def portal_choose(request: Request, ctx: CtxDep, session: BorrowerSession,
                  loan_id: Annotated[str, Form(max_length=64, pattern=ID_PATTERN)],
                  plan: Annotated[str, Form(max_length=200)],
                  monthly: Annotated[str, Form(max_length=20)] = "") -> Response:
    out = casework.choose_plan(ctx, session.actor, loan_id, plan, monthly=monthly)
    return render(request, "partials/accepted.html", out=out)


@router.post("/portal/agreements/{agreement_id}/accept")
def portal_accept(request: Request, ctx: CtxDep, session: BorrowerSession,
                  agreement_id: AgreementId) -> Response:
    out = casework.accept_plan(ctx, session.actor, agreement_id)
    return render(request, "partials/accepted.html", out=out)


@router.post("/portal/preferences")
async def portal_preferences(request: Request, ctx: CtxDep, session: BorrowerSession,
                             quiet_from: Annotated[str, Form(max_length=5)] = "",
                             quiet_to: Annotated[str, Form(max_length=5)] = "") -> Response:
    """Opt-outs and the inconvenient window are saved together or not at all; bad input
    re-shows the portal (422) with the field named and the form as the borrower left it."""
    form = await request.form()
    channels = {str(v) for v in form.getlist("opt_out")}
    try:
        casework.set_preferences(ctx, session.actor, opt_outs=channels, quiet_from=quiet_from,
                                 quiet_to=quiet_to)
    except InvalidInput as exc:
        return _portal_refused(request, ctx, session, "preferences", exc,
                               {"opt_out": sorted(channels), "quiet_from": quiet_from,
                                "quiet_to": quiet_to})
    return RedirectResponse("/portal#preferences", status_code=303)


@router.post("/portal/complaints")
def portal_complaint(request: Request, ctx: CtxDep, session: BorrowerSession,
                     category: Annotated[str, Form(max_length=32)],
                     description: Annotated[str, Form(max_length=TYPED_MAX)] = "") -> Response:
    try:
        cid = complaints.file_complaint(ctx, session.actor, category=category,
                                        description=description, channel="portal")
    except InvalidInput as exc:
        return _portal_refused(request, ctx, session, "complaints", exc,
                               {"category": category, "description": description})
    return RedirectResponse(f"/portal?filed={cid}#complaints", status_code=303)


@router.post("/portal/contacted-after-agreement")
def portal_contacted_after(request: Request, ctx: CtxDep, session: BorrowerSession) -> Response:
    cid = complaints.contacted_after_agreement(ctx, session.actor)
    return RedirectResponse(f"/portal?filed={cid}#complaints", status_code=303)


@router.get("/agreements/{agreement_id}/receipt.pdf")
def agreement_receipt(request: Request, ctx: CtxDep, agreement_id: AgreementId) -> Response:
    """The receipt PDF, for the borrower in the portal or staff who may see the loan."""
    from parley.faces.web.auth import NotSignedIn

    session = current_session(request)
    if session is None or session.stage != "full":
        raise NotSignedIn("staff")
    pdf = casework.agreement_receipt_pdf(ctx, session.actor, agreement_id, session.lang)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{agreement_id}.pdf"'})


@router.get("/verify")
def verify_page(request: Request, ctx: CtxDep, code: str = "") -> Response:
    """Public: anyone holding a receipt can check that it is genuine and still in force."""
    result = casework.verify_receipt(ctx, code[:400]) if code else None
    return render(request, "verify.html", result=result, code=code[:400])


# --- the compliance desk ---------------------------------------------------------------------


@router.get("/desk")
def desk(request: Request, ctx: CtxDep, session: Desk) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, *complaints.STATUSES):
        status = None
    metrics = casework.desk_metrics(ctx, session.actor)
    return render(
        request, "desk.html",
        complaints=complaints.list_complaints(ctx, session.actor, status=status),
        denials=casework.denials_by_rule(ctx, session.actor),
        packs=casework.packs_in_force(session.actor),
        metrics=metrics,
        charts=charts.desk_charts(metrics),  # the window and amounts come with the metrics
        status_filter=status,
    )


@router.post("/desk/audit/verify")
def desk_verify(request: Request, ctx: CtxDep, session: Desk) -> Response:
    return render(request, "partials/audit.html",
                  report=casework.verify_audit_log(ctx, session.actor))


@router.get("/desk/complaints/{complaint_id}")
def desk_complaint(request: Request, ctx: CtxDep, session: Desk,
                   complaint_id: ComplaintId) -> Response:
    c = complaints.get_complaint(ctx, session.actor, complaint_id)
    staff = casework.staff_directory(ctx, session.actor, casework.COMPLIANCE_WRITE_ROLES)
    return render(request, "complaint.html", c=c, staff=staff,
                  can_write=session.actor.role in casework.COMPLIANCE_WRITE_ROLES)


@router.post("/desk/complaints/{complaint_id}/{action}")
def desk_complaint_action(
    request: Request, ctx: CtxDep, session: Desk, complaint_id: ComplaintId,
    action: Annotated[str, Path(pattern=r"^(acknowledge|assign|resolve|evidence)$")],
    staff_id: Annotated[str, Form(max_length=64)] = "",
    outcome: Annotated[str, Form(max_length=4000)] = "",
    upheld: Annotated[str, Form(max_length=5)] = "",
    contact_id: Annotated[int | None, Form(ge=1, le=2**62)] = None,
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    actor = session.actor
    if action == "acknowledge":
        complaints.acknowledge(ctx, actor, complaint_id)
    elif action == "assign":
        complaints.assign(ctx, actor, complaint_id, staff_id)
    elif action == "resolve":
        if upheld not in ("yes", "no"):
            raise InvalidInput("use yes or no", record="complaint", field="upheld")
        complaints.resolve(ctx, actor, complaint_id, outcome, upheld=upheld == "yes")
    else:
        complaints.add_evidence(ctx, actor, complaint_id, contact_id=contact_id, note=note)
    return RedirectResponse(f"/desk/complaints/{complaint_id}", status_code=303)


# --- administration: staff and API keys -----------------------------------------------------
#
# Administrators only (everyone else gets the 403 every admin-only thing answers). Secrets made
# here - a set-password link, a TOTP secret, an API key - are shown once, in the response to
# the POST that made them, and never again.

StaffId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
ResetToken = Annotated[str, Path(min_length=1, max_length=500, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _reset_link(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + f"/signin/reset/{token}"


def totp_qr(uri: str) -> Markup:
    """The otpauth address as an inline SVG QR code, so the new staff member's authenticator
    app can scan it from the administrator's screen instead of having the secret typed in.
    Drawn here, like the charts: nothing is fetched, stored or logged."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, border=4, svgclass="qr",
                                                title=uri, dark="#000", light="#fff")
    return Markup(svg)  # segno's own markup; it XML-escapes the URI in the title


def _admin_staff_page(request: Request, ctx: Context, session: Session, status: int = 200,
                      **values: Any) -> HTMLResponse:
    if values.get("totp_uri"):
        values["totp_qr"] = totp_qr(values["totp_uri"])
    return render(request, "admin_staff.html", status=status,
                  staff=auth_service.list_staff(ctx, session.actor),
                  roles=auth_service.STAFF_ROLES, **values)


@router.get("/admin/staff")
def admin_staff(request: Request, ctx: CtxDep, session: Admin) -> Response:
    return _admin_staff_page(request, ctx, session)


@router.post("/admin/staff")
async def admin_staff_create(
    request: Request, ctx: CtxDep, session: Admin,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=24)],
    display_name: Annotated[str, Form(max_length=200)] = "",
    agency_id: Annotated[str, Form(max_length=64)] = "",
    badge_number: Annotated[str, Form(max_length=64)] = "",
    skills: Annotated[str, Form(max_length=400)] = "",
    daily_capacity: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    """Create a staff member. The service validates every field (a blank daily capacity is
    its default); bad input re-shows the page (422) with the input kept and the field named."""
    form = await request.form()
    languages = ",".join(str(v) for v in form.getlist("languages")) or i18n.DEFAULT
    try:
        new = auth_service.admin_create_staff(
            ctx, session.actor, username=username, role=role, display_name=display_name,
            agency_id=agency_id, badge_number=badge_number, languages=languages,
            skills=skills, daily_capacity=daily_capacity)
    except InvalidInput as exc:
        return _admin_staff_page(request, ctx, session, status=422, error=exc,
                                 form={k: str(v) for k, v in form.items()},
                                 form_languages=form.getlist("languages"))
    return _admin_staff_page(
        request, ctx, session, status=201, created=username,
        reset_link=_reset_link(request, new.reset_token), totp_secret=new.totp_secret,
        totp_uri=auth_service.totp_uri(new.totp_secret, username) if new.totp_secret else None)


# Registered before the action route below, whose "{action}" would otherwise match "edit".
@router.post("/admin/staff/{staff_id}/edit")
async def admin_staff_edit(
    request: Request, ctx: CtxDep, session: Admin, staff_id: StaffId,
    agency_id: Annotated[str, Form(max_length=200)] = "",
    badge_number: Annotated[str, Form(max_length=200)] = "",
    skills: Annotated[str, Form(max_length=1000)] = "",
    daily_capacity: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Edit a member's agency, badge, languages, skills and daily capacity. Bad input re-shows
    the page (422) with that member's form open, their input kept and the field named."""
    form = await request.form()
    languages = ",".join(str(v) for v in form.getlist("languages"))
    try:
        auth_service.admin_update_staff(
            ctx, session.actor, staff_id, agency_id=agency_id, badge_number=badge_number,
            languages=languages, skills=skills, daily_capacity=daily_capacity)
    except InvalidInput as exc:
        return _admin_staff_page(request, ctx, session, status=422, edit_for=staff_id,
                                 edit_error=exc, edit_form={k: str(v) for k, v in form.items()},
                                 edit_languages=form.getlist("languages"))
    return RedirectResponse(f"/admin/staff#staff-{staff_id}", status_code=303)


@router.post("/admin/staff/{staff_id}/{action}")
def admin_staff_action(
    request: Request, ctx: CtxDep, session: Admin, staff_id: StaffId,
    action: Annotated[str, Path(pattern=r"^(deactivate|reactivate|password-reset|totp-reset)$")],
) -> Response:
    actor = session.actor
    if action in ("deactivate", "reactivate"):
        auth_service.set_staff_active(ctx, actor, staff_id, action == "reactivate")
        return RedirectResponse(f"/admin/staff#staff-{staff_id}", status_code=303)
    who = auth_service.get_staff(ctx, actor, staff_id)  # NotFound (404) if unknown
    if action == "password-reset":
        token = auth_service.issue_password_reset(ctx, actor, staff_id)
        return _admin_staff_page(request, ctx, session, reset_for=who.username,
                                 reset_link=_reset_link(request, token))
    secret = auth_service.reset_staff_totp(ctx, actor, staff_id)
    return _admin_staff_page(request, ctx, session, totp_for=who.username, totp_secret=secret,
                             totp_uri=auth_service.totp_uri(secret, who.username))


def _admin_keys_page(request: Request, ctx: Context, session: Session, status: int = 200,
                     **values: Any) -> HTMLResponse:
    return render(request, "admin_keys.html", status=status,
                  keys=auth_service.list_api_keys(ctx, session.actor),
                  roles=auth_service.STAFF_ROLES, **values)


@router.get("/admin/api-keys")
def admin_keys(request: Request, ctx: CtxDep, session: Admin) -> Response:
    return _admin_keys_page(request, ctx, session)


@router.post("/admin/api-keys")
def admin_key_create(request: Request, ctx: CtxDep, session: Admin,
                     name: Annotated[str, Form(max_length=200)],
                     role: Annotated[str, Form(max_length=24)],
                     agency_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    try:
        kid, key = auth_service.admin_create_api_key(ctx, session.actor, name, role=role,
                                                     agency_id=agency_id.strip() or None)
    except InvalidInput as exc:
        return _admin_keys_page(request, ctx, session, status=422, error=exc,
                                form={"name": name, "role": role, "agency_id": agency_id})
    return _admin_keys_page(request, ctx, session, status=201, new_key=key, new_key_id=kid)


@router.post("/admin/api-keys/{key_id}/revoke")
def admin_key_revoke(request: Request, ctx: CtxDep, session: Admin, key_id: StaffId) -> Response:
    auth_service.admin_revoke_api_key(ctx, session.actor, key_id)
    return RedirectResponse("/admin/api-keys", status_code=303)


# --- setting a password from a one-time link (no session needed) ----------------------------


@router.get("/signin/reset/{token}")
def password_reset_page(request: Request, ctx: CtxDep, token: ResetToken) -> Response:
    try:
        username = auth_service.reset_link_user(ctx, token)
    except SignInFailed:
        return render(request, "password_reset.html", status=410, dead=True)
    return render(request, "password_reset.html", username=username, token=token)


@router.post("/signin/reset/{token}")
async def password_reset(request: Request, ctx: CtxDep, token: ResetToken,
                         password: Annotated[str, Form(max_length=200)],
                         confirm: Annotated[str, Form(max_length=200)]) -> Response:
    await check_csrf(request, current_session(request))
    try:
        username = auth_service.reset_link_user(ctx, token)
    except SignInFailed:
        return render(request, "password_reset.html", status=410, dead=True)
    if password != confirm:
        return render(request, "password_reset.html", status=422, username=username, token=token,
                      mismatch=True)
    try:
        auth_service.set_password_with_token(ctx, token, password)
    except InvalidInput:
        return render(request, "password_reset.html", status=422, username=username, token=token,
                      too_short=True)
    except SignInFailed:
        return render(request, "password_reset.html", status=410, dead=True)
    return RedirectResponse("/signin?password=set", status_code=303)


def install(app: FastAPI) -> None:
    """Mount the pages and the vendored static files on `app`."""
    static = resources.files("parley.faces.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(router)
