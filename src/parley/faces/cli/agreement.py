"""`parley agreement quote|propose|approve|send-code|accept|cancel|show|verify|review`.

Thin: parse, call one service in parley.services.agreements / receipts, print. Bad input
exits 2 naming the field; a conflict (lost race, expired or superseded proposal) exits 1.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from parley.faces.cli.common import console, err_console, make_context, print_json, reporting_errors

app = typer.Typer(help="Agreements (协商): quote, propose, approve, accept and show repayment plans.",
                  no_args_is_help=True)


class Format(StrEnum):
    json = "json"
    table = "table"


def _waivers(values: list[str]) -> dict[str, str] | None:
    from parley.errors import InvalidInput

    out: dict[str, str] = {}
    for v in values:
        comp, sep, amount = v.partition("=")
        if not sep or not comp.strip() or not amount.strip():
            raise InvalidInput(f"{v!r} is not COMPONENT=AMOUNT, e.g. penalty=120.00", field="waive")
        out[comp.strip()] = amount.strip()
    return out or None


def _installments(values: list[str]) -> list[tuple[str, str]] | None:
    from parley.errors import InvalidInput

    out = []
    for i, v in enumerate(values):
        day, sep, amount = v.partition("=")
        if not sep:
            raise InvalidInput(f"{v!r} is not DATE=AMOUNT, e.g. 2026-04-01=500.00", field=f"installment[{i}]")
        out.append((day.strip(), amount.strip()))
    return out or None


@app.command("quote")
def quote_cmd(loan_id: str,
              amount: str = typer.Option(None, help="what the borrower can pay each period, e.g. 500.00"),
              frequency: str = typer.Option("monthly", help="monthly or fortnightly"),
              first_payment: str = typer.Option(None, "--first-payment", help="YYYY-MM-DD (default: a week ahead)"),
              as_of: str = typer.Option(None, "--as-of", help="YYYY-MM-DD (default: today)"),
              waive: list[str] = typer.Option([], "--waive", help="COMPONENT=AMOUNT, repeatable"),  # noqa: B008
              policy: str = typer.Option("default", help="agreement policy id"),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:  # noqa: B008
    """Every plan the policy allows for LOAN_ID, and why any other option is not offered."""
    from parley.services.agreements import quote

    with reporting_errors():
        data = quote(make_context(), loan_id, amount=amount, frequency=frequency,
                     first_payment_on=first_payment, as_of=as_of, waivers=_waivers(waive),
                     policy_id=policy)
    if fmt is Format.json:
        print_json(data)
        return
    debt = data["debt"]
    console.print(f"Loan {data['loan_id']} as of {data['as_of']}: overdue {debt['overdue']['total']} "
                  f"{debt['currency']}, whole balance {debt['whole_balance']}; offer {data['offer']['amount']} "
                  f"{data['offer']['frequency']} from {data['offer']['first_payment_on']}")
    if not data["plans"]:
        console.print("No plan under this policy fits this offer:", highlight=False)
    table = Table(title="Plans this policy allows")
    for col in ("option", "total", "waived", "instalments", "ends", "approval"):
        table.add_column(col)
    for p in data["plans"]:
        first = p["installments"][0]["amount"]
        table.add_row(p["key"], p["total"], p["waived"]["total"], f"{p['count']} × {first}", p["ends_on"],
                      "needed" if p["needs_approval"] else "")
    console.print(table)
    for i in data["infeasible"]:
        console.print(f"[dim]{i['key']}: {i['message']}[/dim]", highlight=False)


@app.command("propose")
def propose_cmd(loan_id: str,
                plan: str = typer.Option(..., help="an option key from `quote`, e.g. installment_plan/arrears"),
                by: str = typer.Option(..., "--by", help="the proposing collector's id"),
                amount: str = typer.Option(None), frequency: str = typer.Option("monthly"),
                first_payment: str = typer.Option(None, "--first-payment"),
                waive: list[str] = typer.Option([], "--waive", help="COMPONENT=AMOUNT, repeatable"),  # noqa: B008
                installment: list[str] = typer.Option([], "--installment", help="DATE=AMOUNT, repeatable: own instalments"),  # noqa: B008
                supersedes: str = typer.Option(None, help="the id of the open proposal this replaces"),
                policy: str = typer.Option("default")) -> None:
    """Propose a quoted plan to the borrower (a loan has at most one open agreement)."""
    from parley.services.agreements import propose

    with reporting_errors():
        data = propose(make_context(), loan_id, plan, proposed_by=by, amount=amount, frequency=frequency,
                       first_payment_on=first_payment, waivers=_waivers(waive),
                       installments=_installments(installment), supersedes=supersedes, policy_id=policy)
    print_json(data)


@app.command("approve")
def approve_cmd(agreement_id: str, by: str = typer.Option(..., "--by", help="the approving supervisor's id")) -> None:
    """Approve a proposal whose waivers need a supervisor."""
    from parley.services.agreements import approve

    with reporting_errors():
        print_json(approve(make_context(), agreement_id, approved_by=by))


@app.command("send-code")
def send_code_cmd(agreement_id: str) -> None:
    """Send the borrower a one-time acceptance code by SMS, through the gate (only its hash is
    stored; the contact log keeps the message with the code masked)."""
    from parley.services.agreements import send_acceptance_code

    with reporting_errors():
        print_json(send_acceptance_code(make_context(), agreement_id))


@app.command("accept")
def accept_cmd(agreement_id: str,
               channel: str = typer.Option(..., help="portal, otp or call"),
               by: str = typer.Option(None, "--by", help="who accepted (call: the collector)"),
               code: str = typer.Option(None, help="the one-time code (channel otp)"),
               recording: str = typer.Option(None, "--recording", help="call recording reference (channel call)"),
               receipt_pdf: Path = typer.Option(None, "--receipt-pdf", help="also write the receipt PDF here"),  # noqa: B008
               receipt_html: Path = typer.Option(None, "--receipt-html", help="also write the receipt HTML here")) -> None:  # noqa: B008
    """Accept and activate: collection stops for the loan in the same transaction."""
    from parley.services.agreements import accept
    from parley.services.receipts import receipt_html as html_of
    from parley.services.receipts import receipt_pdf as pdf_of

    with reporting_errors():
        ctx = make_context()
        data = accept(ctx, agreement_id, channel=channel, accepted_by=by, code=code, recording_ref=recording)
        if receipt_pdf:
            receipt_pdf.write_bytes(pdf_of(ctx, agreement_id))
        if receipt_html:
            receipt_html.write_text(html_of(ctx, agreement_id), encoding="utf-8")
    print_json(data)


@app.command("cancel")
def cancel_cmd(agreement_id: str, by: str = typer.Option(..., "--by"),
               reason: str = typer.Option(..., help="why")) -> None:
    """Withdraw a proposal or end an active agreement."""
    from parley.services.agreements import cancel

    with reporting_errors():
        print_json(cancel(make_context(), agreement_id, by=by, reason=reason))


@app.command("show")
def show_cmd(agreement_id: str,
             receipt_pdf: Path = typer.Option(None, "--receipt-pdf", help="write the receipt PDF here"),  # noqa: B008
             receipt_html: Path = typer.Option(None, "--receipt-html", help="write the receipt HTML here")) -> None:  # noqa: B008
    """The agreement, its instalments, progress and who did what when."""
    from parley.services.agreements import show
    from parley.services.receipts import receipt_html as html_of
    from parley.services.receipts import receipt_pdf as pdf_of

    with reporting_errors():
        ctx = make_context()
        data = show(ctx, agreement_id)
        if receipt_pdf:
            receipt_pdf.write_bytes(pdf_of(ctx, agreement_id))
        if receipt_html:
            receipt_html.write_text(html_of(ctx, agreement_id), encoding="utf-8")
    print_json(data)


@app.command("verify")
def verify_cmd(code: str) -> None:
    """Check a receipt's verification code (exit 1 if it is not genuine)."""
    from parley.services.receipts import verify_code

    with reporting_errors():
        data = verify_code(make_context(), code)
    print_json(data)
    if not data["genuine"]:
        raise typer.Exit(1)


@app.command("review")
def review_cmd(as_of: str = typer.Option(None, "--as-of", help="YYYY-MM-DD (default: today)")) -> None:
    """Apply payments to plans, then mark plans kept or broken and expire stale proposals."""
    from datetime import date

    from parley.errors import InvalidInput
    from parley.services.agreements import review_agreements

    with reporting_errors():
        try:
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise InvalidInput(f"{as_of!r} is not a date like 2026-03-31", field="as-of") from None
        data = review_agreements(make_context(), day)
    err_console.print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in data.items()}))
    print_json(data)
