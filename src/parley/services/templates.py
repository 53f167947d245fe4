"""Message templates with variables, in zh-Hans, zh-Hant and en, screened when saved.

A template body uses ``{variable}`` placeholders from ``VARIABLES`` (``{{`` and ``}}`` are
literal braces). Saving screens the body with ``parley.screening.default_screener()``; a body
with any hit (threats, obscenity, shaming, impersonation, false legal claims, pressure through
family) is refused with ``InvalidInput`` naming each category and the words matched, and
nothing is written. Each save of an existing (id, locale) adds a new version; the highest
version is current. Rendering fills the variables; the gate screens the rendered text again
at send time (a variable's value could itself be abusive).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert, select

from parley.errors import InvalidInput, NotFound
from parley.services.context import Context
from parley.store.hot import Hot
from parley.store.models.templates import Template

_t = Template.__table__
LOCALES = ("zh-Hans", "zh-Hant", "en")
CHANNELS = ("sms", "email", "notice")
VARIABLES: Mapping[str, str] = {
    "name": "the borrower's name",
    "loan_id": "the loan's id",
    "amount_due": "the overdue amount with its currency, e.g. CNY 1,234.50",
    "days_past_due": "days past due",
    "lender": "the lender's name",
    "portal_url": "where the borrower sees what they owe and the plans on offer",
    "place": "an appointment's place",
    "scheduled_at": "an appointment's local date and time",
    "collectors": "the collectors' names and badge numbers",
}


@dataclass(frozen=True, slots=True)
class TemplateView:
    """One stored template version (subject is empty for SMS)."""

    id: str
    locale: str
    version: int
    channel: str
    name: str
    subject: str
    body: str
    lexicon_version: str
    created_at: datetime


def placeholders(text: str, record: str = "template", field: str = "body") -> tuple[str, ...]:
    """The variable names a template text uses; InvalidInput on bad syntax or unknown names."""
    try:
        names = [f for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise InvalidInput(f"bad placeholder syntax: {exc}", record=record, field=field) from exc
    for n in names:
        if n not in VARIABLES:
            raise InvalidInput(f"unknown variable {{{n}}}; known: {', '.join(sorted(VARIABLES))}",
                               record=record, field=field)
    return tuple(dict.fromkeys(names))


def screen_text(text: str, record: str, field: str = "body") -> str:
    """Screen ``text``; return the lexicon version, or raise InvalidInput naming every category
    and the words matched."""
    from parley.screening import default_screener

    result = default_screener().screen(text)
    if not result.clean:
        by_cat: dict[str, list[str]] = {}
        for hit in result.hits:
            by_cat.setdefault(hit.category, []).append(hit.matched)
        detail = "; ".join(f"{cat}: {', '.join(repr(w) for w in words)}"
                           for cat, words in sorted(by_cat.items()))
        raise InvalidInput(f"fails content screening (lexicon {result.lexicon_version}) — {detail}",
                           record=record, field=field)
    return result.lexicon_version


def save_template(ctx: Context, template_id: str, locale: str, channel: str, body: str, *,
                  name: str = "", subject: str = "", by: str = "system",
                  conn: Connection | None = None) -> TemplateView:
    """Validate, screen and store a new version of (template_id, locale)."""
    record = f"template {template_id} ({locale})"
    if not template_id or not all(c.isalnum() or c in "_-." for c in template_id):
        raise InvalidInput("template id must be letters, digits, '_', '-' or '.'",
                           record=record, field="id")
    if locale not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}", record=record, field="locale")
    if channel not in CHANNELS:
        raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}", record=record,
                           field="channel")
    if not body.strip():
        raise InvalidInput("the body is empty", record=record, field="body")
    placeholders(body, record, "body")
    placeholders(subject, record, "subject")
    lexicon = screen_text(body, record, "body")
    if subject:
        screen_text(subject, record, "subject")

    def work(c: Connection) -> TemplateView:
        current = c.execute(select(func.max(Template.version)).where(
            Template.id == template_id, Template.locale == locale)).scalar()
        version = int(current or 0) + 1
        now = ctx.clock.now()
        c.execute(insert(Template).values(
            id=template_id, locale=locale, version=version, channel=channel,
            name=name or template_id, subject=subject, body=body, lexicon_version=lexicon,
            created_by=by, created_at=now))
        return TemplateView(template_id, locale, version, channel, name or template_id, subject,
                            body, lexicon, now)

    if conn is not None:
        return work(conn)
    with ctx.db.transaction() as c:
        return work(c)


# Hot (parley.store.hot): the worker reads a template for every message it sends.
SQL_CURRENT = Hot(select(*(_t.c[f.name] for f in fields(TemplateView)))  # its row is one
                  .where(_t.c.id == bindparam("tid"), _t.c.locale == bindparam("loc"))
                  .order_by(_t.c.version.desc()).limit(1))


def get_template(conn: Connection, template_id: str, locale: str) -> TemplateView:
    """The current version in ``locale``, falling back to zh-Hans, then en; NotFound if none."""
    for loc in dict.fromkeys((locale, "zh-Hans", "en")):
        row = SQL_CURRENT.first(conn, {"tid": template_id, "loc": loc})
        if row is not None:
            return TemplateView(*row)
    raise NotFound(f"no template {template_id!r}")


def list_templates(ctx: Context) -> list[TemplateView]:
    """Current versions of every template, by id and locale."""
    with ctx.db.read() as c:
        rows = c.execute(select(_t).order_by(_t.c.id, _t.c.locale, _t.c.version)).all()
    latest: dict[tuple[str, str], TemplateView] = {}
    for r in rows:
        latest[(r.id, r.locale)] = TemplateView(r.id, r.locale, r.version, r.channel, r.name,
                                                r.subject, r.body, r.lexicon_version, r.created_at)
    return list(latest.values())


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: TemplateView, values: Mapping[str, object]) -> tuple[str, str]:
    """(subject, body) with the variables filled; a variable without a value renders empty."""
    vals = _Values({k: str(v) for k, v in values.items()})
    return (string.Formatter().vformat(template.subject, (), vals),
            string.Formatter().vformat(template.body, (), vals))


# The default set: one template per action of the bundled strategies, in three locales.
DEFAULTS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("early_reminder", "sms", "", {
        "zh-Hans": "{name}您好，您的借款 {loan_id} 已逾期 {days_past_due} 天，应还 {amount_due}。如有困难可协商还款计划：{portal_url}",
        "zh-Hant": "{name}您好，您的借款 {loan_id} 已逾期 {days_past_due} 天，應還 {amount_due}。如有困難可協商還款計劃：{portal_url}",
        "en": "Hello {name}, your loan {loan_id} is {days_past_due} days overdue; {amount_due} is due. If it is hard to pay, you can agree a plan: {portal_url}",
    }),
    ("m1_reminder", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，应还 {amount_due}。请尽快还款或在线协商：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，應還 {amount_due}。請儘快還款或線上協商：{portal_url}",
        "en": "Hello {name}, loan {loan_id} is {days_past_due} days overdue ({amount_due}). Please pay or agree a plan online: {portal_url}",
    }),
    ("m1_statement", "email", "{lender}: statement for loan {loan_id}", {
        "zh-Hans": "{name}您好：\n\n您的借款 {loan_id} 已逾期 {days_past_due} 天，当前应还 {amount_due}。\n查看明细、选择可负担的还款计划：{portal_url}\n\n{lender}",
        "zh-Hant": "{name}您好：\n\n您的借款 {loan_id} 已逾期 {days_past_due} 天，目前應還 {amount_due}。\n查看明細、選擇可負擔的還款計劃：{portal_url}\n\n{lender}",
        "en": "Dear {name},\n\nYour loan {loan_id} is {days_past_due} days overdue; {amount_due} is now due.\nSee the details and choose a plan you can afford: {portal_url}\n\n{lender}",
    }),
    ("m2_reminder", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 已逾期 {days_past_due} 天，应还 {amount_due}。可在线申请分期或延期：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 已逾期 {days_past_due} 天，應還 {amount_due}。可線上申請分期或延期：{portal_url}",
        "en": "Hello {name}, loan {loan_id} is {days_past_due} days overdue ({amount_due}). You can apply for instalments or an extension: {portal_url}",
    }),
    ("m3_reminder", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，应还 {amount_due}。请联系我们商定还款方案：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，應還 {amount_due}。請聯繫我們商定還款方案：{portal_url}",
        "en": "Hello {name}, loan {loan_id} is {days_past_due} days overdue ({amount_due}). Please contact us to agree a repayment plan: {portal_url}",
    }),
    ("agency_placement_notice", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 已委托合作机构跟进，对方会出示工号。您也可直接在线处理：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 已委託合作機構跟進，對方會出示工號。您也可直接線上處理：{portal_url}",
        "en": "Hello {name}, loan {loan_id} has been placed with a partner agency, whose staff will give their badge number. You can still settle online: {portal_url}",
    }),
    ("legal_referral_notice", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，应还 {amount_due}，已转交法务部门评估。协商渠道仍然开放：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 逾期 {days_past_due} 天，應還 {amount_due}，已轉交法務部門評估。協商管道仍然開放：{portal_url}",
        "en": "Hello {name}, loan {loan_id} is {days_past_due} days overdue ({amount_due}) and has been passed to our legal team for review. You can still agree a plan: {portal_url}",
    }),
    # the agreements service's notices to the borrower (agreement_service, SMS): a plan ended
    # because an instalment was missed, or cancelled. Placeholders: see the worker.
    ("agreement.broken", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 的还款协议因有一期未在宽限期内还款已终止，原借款条款恢复，当前应还 {amount_due}。如需重新协商：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 的還款協議因有一期未在寬限期內還款已終止，原借款條款恢復，目前應還 {amount_due}。如需重新協商：{portal_url}",
        "en": "Hello {name}, the repayment agreement for loan {loan_id} has ended because an instalment was not paid within the grace period; the original loan terms apply again and {amount_due} is now due. To agree a new plan: {portal_url}",
    }),
    ("agreement.cancelled", "sms", "", {
        "zh-Hans": "{name}您好，借款 {loan_id} 的还款协议已取消，原借款条款恢复，当前应还 {amount_due}。如需重新协商：{portal_url}",
        "zh-Hant": "{name}您好，借款 {loan_id} 的還款協議已取消，原借款條款恢復，目前應還 {amount_due}。如需重新協商：{portal_url}",
        "en": "Hello {name}, the repayment agreement for loan {loan_id} has been cancelled; the original loan terms apply again and {amount_due} is now due. To agree a new plan: {portal_url}",
    }),
    ("appointment_notice", "notice", "", {
        "zh-Hans": "{name}您好，{lender}已为您安排会面：{scheduled_at}，地点：{place}。到访人员：{collectors}。请核对工号，如有疑问请致电客服。",
        "zh-Hant": "{name}您好，{lender}已為您安排會面：{scheduled_at}，地點：{place}。到訪人員：{collectors}。請核對工號，如有疑問請致電客服。",
        "en": "Hello {name}, {lender} has arranged a meeting: {scheduled_at}, at {place}. Staff attending: {collectors}. Please check their badge numbers; call us with any doubt.",
    }),
)


def seed_default_templates(ctx: Context) -> int:
    """Store the default set where (id, locale) has no version yet; returns how many added."""
    with ctx.db.transaction() as c:
        return sum(ensure_default_template(ctx, c, d[0]) for d in DEFAULTS)


def ensure_default_template(ctx: Context, conn: Connection, template_id: str, *,
                            by: str = "system") -> int:
    """Store the default ``template_id`` in each locale that has no version yet, inside the
    caller's transaction (screened like every save); returns how many added. The fallback for
    a database whose defaults were seeded before this template joined them: a stored (perhaps
    edited) version is never replaced. KeyError for an id that is not a default."""
    tid, channel, subject, bodies = {d[0]: d for d in DEFAULTS}[template_id]
    have = set(conn.execute(select(Template.locale).where(Template.id == tid)).scalars())
    added = 0
    for locale, body in bodies.items():
        if locale not in have:
            save_template(ctx, tid, locale, channel, body, name=tid, subject=subject, by=by,
                          conn=conn)
            added += 1
    return added
