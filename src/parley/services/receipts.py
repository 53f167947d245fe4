"""The agreement receipt (HTML page and PDF) and its verification code.

The verification code is an itsdangerous token signed with HMAC under `settings.secret_key`
(its own salt): it carries the agreement id and a digest of the agreed terms. Without the key
nobody can make a code for another agreement, and changing any character breaks the
signature; if the stored terms were altered after acceptance the digest no longer matches.
`verify_code` is what a public "is this agreement genuine?" URL calls: it says whether the
code is genuine and, if so, the agreement's status and a summary of its terms — never the
borrower's name or contact details.

Chinese text in the PDF uses reportlab's built-in CID fonts (STSong-Light for Simplified,
MSung-Light for Traditional), so no font files are needed.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Connection, select

from parley.core.money import format_minor
from parley.errors import NotFound
from parley.services.context import Context
from parley.store.models.agreements import Agreement, AgreementInstallment
from parley.store.models.loanbook import Borrower

SALT = "parley.agreement-receipt"
VERIFY_PATH = "/verify/"


def _serializer(ctx: Context) -> URLSafeSerializer:
    return URLSafeSerializer(ctx.settings.secret_key.get_secret_value(), salt=SALT)


def terms_digest(terms: str) -> str:
    return hashlib.sha256(terms.encode()).hexdigest()[:24]


def sign_code(ctx: Context, agreement_id: str, terms: str | None = None,
              conn: Connection | None = None) -> str:
    """The verification code for an agreement (stored on it at acceptance)."""
    if terms is None:
        if conn is None:
            with ctx.db.read() as c:
                terms = c.execute(select(Agreement.terms).where(Agreement.id == agreement_id)).scalar_one()
        else:
            terms = conn.execute(select(Agreement.terms).where(Agreement.id == agreement_id)).scalar_one()
    return str(_serializer(ctx).dumps({"a": agreement_id, "t": terms_digest(terms or "")}))


def verify_code(ctx: Context, code: str) -> dict[str, Any]:
    """Is `code` a genuine Parley agreement code? {"genuine": bool, "reason", and when genuine:
    agreement_id, status, active, kind, currency, total, waived, installments, starts_on,
    ends_on, first_due_on, last_due_on}. Never raises for a bad code: it answers not genuine."""
    code = (code or "").strip()
    if not code or len(code) > 400:
        return {"genuine": False, "reason": "not a verification code"}
    try:
        data = _serializer(ctx).loads(code)
    except BadSignature:
        return {"genuine": False, "reason": "the signature does not match: this code was not issued by us or was altered"}
    if not isinstance(data, dict) or not isinstance(data.get("a"), str):
        return {"genuine": False, "reason": "not a verification code"}
    with ctx.db.read() as conn:
        a = conn.execute(select(Agreement.__table__).where(Agreement.id == data["a"])).first()
        if a is None or a.verification_code != code:
            return {"genuine": False, "reason": "no agreement carries this code"}
        if terms_digest(a.terms) != data.get("t"):
            return {"genuine": False, "reason": "the agreement's recorded terms differ from those signed"}
        insts = conn.execute(select(AgreementInstallment.due_on).where(
            AgreementInstallment.agreement_id == a.id).order_by(AgreementInstallment.number)).scalars().all()
    today = ctx.today()
    active = a.status == "active" and a.starts_on is not None and a.starts_on <= today and (
        a.ends_on is None or today <= a.ends_on)
    return {
        "genuine": True,
        "reason": "signed by Parley and matching the recorded terms",
        "agreement_id": a.id,
        "status": a.status,
        "active": active,
        "kind": a.kind,
        "currency": a.currency,
        "total": format_minor(a.total_amount, a.currency),
        "waived": format_minor(a.waived_amount, a.currency),
        "installments": len(insts),
        "first_due_on": insts[0].isoformat() if insts else None,
        "last_due_on": insts[-1].isoformat() if insts else None,
        "starts_on": a.starts_on.isoformat() if a.starts_on else None,
        "ends_on": a.ends_on.isoformat() if a.ends_on else None,
        "accepted_at": a.accepted_at.isoformat() if a.accepted_at else None,
    }


# --------------------------------------------------------------------------- content

_KIND = {
    "promise": ("还款承诺", "還款承諾", "Promise to pay"),
    "installment_plan": ("分期还款计划", "分期還款計劃", "Instalment plan"),
    "extension": ("延期还款", "延期還款", "Extension"),
    "reduction": ("减免还款协议", "減免還款協議", "Reduction / settlement"),
}
_LABELS = {
    "title": ("还款协议回执", "還款協議回執", "Repayment agreement receipt"),
    "agreement": ("协议编号", "協議編號", "Agreement"),
    "loan": ("借款编号", "借款編號", "Loan"),
    "borrower": ("借款人", "借款人", "Borrower"),
    "kind": ("协议类型", "協議類型", "Kind"),
    "status": ("状态", "狀態", "Status"),
    "accepted": ("接受时间", "接受時間", "Accepted"),
    "total": ("应还总额", "應還總額", "Total to pay"),
    "waived": ("履约后减免", "履約後減免", "Waived if the plan is kept"),
    "schedule": ("还款计划", "還款計劃", "Instalments"),
    "number": ("期数", "期數", "No."),
    "due": ("到期日", "到期日", "Due on"),
    "amount": ("金额", "金額", "Amount"),
    "grace": ("宽限期", "寬限期", "Grace"),
    "break": ("违约后果", "違約後果", "If an instalment is missed"),
    "code": ("验证码", "驗證碼", "Verification code"),
    "contact": ("协议生效期间，我们不会就该笔借款进行催收联系，仅发送协议服务提醒。",
                "協議生效期間，我們不會就該筆借款進行催收聯繫，僅發送協議服務提醒。",
                "While this agreement is active we make no collection contact about this loan; "
                "you receive only reminders about the agreement."),
}
_COMPONENT = {"principal": ("本金", "本金", "principal"), "interest": ("利息", "利息", "interest"),
              "fee": ("费用", "費用", "fees"), "penalty": ("罚息", "罰息", "penalties")}
_LANG = {"zh-Hans": 0, "zh-Hant": 1, "en": 2}


def receipt_data(ctx: Context, agreement_id: str) -> dict[str, Any]:
    """What a receipt shows, as plain values (amounts formatted in major units)."""
    with ctx.db.read() as conn:
        a = conn.execute(select(Agreement.__table__).where(Agreement.id == agreement_id)).first()
        if a is None:
            raise NotFound(f"unknown agreement {agreement_id!r}")
        b = conn.execute(select(Borrower.name, Borrower.preferred_language).where(
            Borrower.id == a.borrower_id)).first()
        insts = conn.execute(select(AgreementInstallment.__table__).where(
            AgreementInstallment.agreement_id == a.id).order_by(AgreementInstallment.number)).all()
    terms = json.loads(a.terms or "{}")
    cur = a.currency
    waived = {c: format_minor(int(v), cur) for c, v in terms.get("waived", {}).items() if int(v) > 0}
    return {
        "agreement_id": a.id, "loan_id": a.loan_id, "borrower": b.name if b else "",
        "language": b.preferred_language if b else "zh-Hans", "kind": a.kind, "status": a.status,
        "currency": cur, "total": format_minor(a.total_amount, cur), "waived": waived,
        "waived_total": format_minor(a.waived_amount, cur),
        "accepted_at": a.accepted_at.astimezone(ctx.business_zone).strftime("%Y-%m-%d %H:%M") if a.accepted_at else "",
        "starts_on": a.starts_on, "ends_on": a.ends_on, "grace_days": a.grace_days,
        "installments": [(i.number, i.due_on, format_minor(i.amount, cur)) for i in insts],
        "verification_code": a.verification_code or "",
        "verify_path": VERIFY_PATH + (a.verification_code or ""),
    }


def _both(key: str, lang: str, table: dict[str, tuple[str, str, str]] = _LABELS) -> str:
    """The label in the borrower's language, with English alongside when that is not English."""
    i = _LANG.get(lang, 0)
    t = table[key]
    return t[i] if i == 2 else f"{t[i]} / {t[2]}"


def _break_text(data: dict[str, Any], lang: str) -> str:
    g = data["grace_days"]
    zh = (f"任何一期逾期超过{g}天未足额还款，协议即告违约：恢复原借款条款，减免不再适用，并在恢复催收前通知您。",
          f"任何一期逾期超過{g}天未足額還款，協議即告違約：恢復原借款條款，減免不再適用，並在恢復催收前通知您。")
    en = (f"If an instalment is not paid in full within {g} days of its due date, the agreement "
          "is broken: the loan's original terms apply again, the waivers lapse, and you are told "
          "before any collection contact resumes.")
    i = _LANG.get(lang, 0)
    return en if i == 2 else f"{zh[i]} {en}"


def receipt_html(ctx: Context, agreement_id: str, lang: str | None = None) -> str:
    """The receipt as a self-contained HTML page (every value escaped)."""
    d = receipt_data(ctx, agreement_id)
    lang = lang or d["language"]
    e = html.escape
    L = lambda k: e(_both(k, lang))  # noqa: E731
    kind = e(_both(d["kind"], lang, _KIND)) if d["kind"] in _KIND else e(d["kind"])
    rows = "".join(f"<tr><td>{n}</td><td>{due.isoformat()}</td><td class=num>{e(amt)} {e(d['currency'])}</td></tr>"
                   for n, due, amt in d["installments"])
    waived = "".join(f"<li>{e(_both(c, lang, _COMPONENT))}: {e(v)} {e(d['currency'])}</li>"
                     for c, v in d["waived"].items()) or "<li>—</li>"
    html_lang = {"zh-Hans": "zh-Hans", "zh-Hant": "zh-Hant"}.get(lang, "en")
    return f"""<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8"><title>{L('title')} {e(d['agreement_id'])}</title>
<style>body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}}
.num{{text-align:right}}code{{word-break:break-all}}</style></head>
<body>
<h1>{L('title')}</h1>
<dl>
<dt>{L('agreement')}</dt><dd>{e(d['agreement_id'])}</dd>
<dt>{L('loan')}</dt><dd>{e(d['loan_id'])}</dd>
<dt>{L('borrower')}</dt><dd>{e(d['borrower'])}</dd>
<dt>{L('kind')}</dt><dd>{kind}</dd>
<dt>{L('status')}</dt><dd>{e(d['status'])}</dd>
<dt>{L('accepted')}</dt><dd>{e(d['accepted_at'])}</dd>
<dt>{L('total')}</dt><dd>{e(d['total'])} {e(d['currency'])}</dd>
<dt>{L('waived')}</dt><dd><ul>{waived}</ul></dd>
</dl>
<h2>{L('schedule')}</h2>
<table><thead><tr><th>{L('number')}</th><th>{L('due')}</th><th class=num>{L('amount')}</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>{L('break')}</h2><p>{e(_break_text(d, lang))}</p>
<p>{e(_both('contact', lang))}</p>
<h2>{L('code')}</h2><p><code>{e(d['verification_code'])}</code></p>
<p><a href="{e(d['verify_path'])}">{e(d['verify_path'])}</a></p>
</body></html>
"""


def receipt_pdf(ctx: Context, agreement_id: str, lang: str | None = None) -> bytes:
    """The receipt as PDF bytes (A4), Chinese set in reportlab's built-in CID fonts."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    d = receipt_data(ctx, agreement_id)
    lang = lang or d["language"]
    font = "MSung-Light" if lang == "zh-Hant" else "STSong-Light"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=True)
    pdf.setTitle(f"{_both('title', lang)} {d['agreement_id']}")
    width, height = A4
    y = height - 56

    def line(text: str, size: int = 10, gap: int = 15) -> None:
        nonlocal y
        for chunk in _wrap(text, 90 if size <= 10 else 60):
            if y < 56:
                pdf.showPage()
                y = height - 56
            pdf.setFont(font, size)
            pdf.drawString(48, y, chunk)
            y -= gap

    line(_both("title", lang), 16, 26)
    kind = _both(d["kind"], lang, _KIND) if d["kind"] in _KIND else d["kind"]
    for key, value in (("agreement", d["agreement_id"]), ("loan", d["loan_id"]), ("borrower", d["borrower"]),
                       ("kind", kind), ("status", d["status"]), ("accepted", d["accepted_at"]),
                       ("total", f"{d['total']} {d['currency']}")):
        line(f"{_both(key, lang)}: {value}")
    waived = "; ".join(f"{_both(c, lang, _COMPONENT)} {v}" for c, v in d["waived"].items()) or "—"
    line(f"{_both('waived', lang)}: {waived}")
    y -= 6
    line(_both("schedule", lang), 12, 20)
    for n, due, amount in d["installments"]:
        line(f"{n:>3}   {due.isoformat()}   {amount:>14} {d['currency']}")
    y -= 6
    line(_both("break", lang), 12, 20)
    line(_break_text(d, lang))
    line(_both("contact", lang))
    y -= 6
    line(_both("code", lang), 12, 20)
    line(d["verification_code"], 8, 12)
    line(d["verify_path"], 8, 12)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def _wrap(text: str, width: int) -> list[str]:
    """Split into lines of at most `width` display columns (CJK counts double)."""
    out: list[str] = []
    current = ""
    cols = 0
    for ch in text:
        w = 2 if ord(ch) > 0x2E80 else 1
        if cols + w > width:
            out.append(current)
            current, cols = "", 0
        current += ch
        cols += w
    if current or not out:
        out.append(current)
    return out
