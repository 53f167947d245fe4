"""`parley import`, `parley schedule quote`, `parley delinquency`, `parley payment`, `parley pause`."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from parley.core.money import MoneyError, parse_minor
from parley.faces.cli.common import console, err_console, make_context, print_json, reporting_errors

import_app = typer.Typer(help="Import the loan book from CSV or JSON Lines.")
schedule_app = typer.Typer(help="Instalment schedules.")
payment_app = typer.Typer(help="Post and reverse payments.")


class Kind(StrEnum):
    borrowers = "borrowers"
    loans = "loans"
    installments = "installments"
    payments = "payments"


class Format(StrEnum):
    json = "json"
    table = "table"


def _import(kind: Kind, file: Path) -> None:
    from parley.services.imports import import_file

    with reporting_errors():
        ctx = make_context()
        size = file.stat().st_size if file.is_file() else 0
        if err_console.is_terminal and size:
            with Progress(TextColumn(f"importing {kind.value}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                          console=err_console, transient=True) as bar:
                task = bar.add_task(kind.value, total=size)
                report = import_file(ctx, kind.value, file, progress=lambda pos: bar.update(task, completed=pos))
        else:
            report = import_file(ctx, kind.value, file)
    err_console.print(f"{report.file}: {report.rows} rows, {report.inserted} new, {report.unchanged} unchanged"
                      + (f", {report.installments} instalments" if report.installments else ""))


def register_imports(app: typer.Typer) -> None:
    @app.command("import")
    def import_cmd(kind: Kind = typer.Argument(..., help="borrowers, loans, installments or payments"),
                   file: Path = typer.Argument(..., help=".csv or .jsonl file")) -> None:
        """Import FILE; any bad row writes nothing and names the row and field (exit 2)."""
        _import(kind, file)

    @app.command("delinquency")
    def delinquency_cmd(as_of: str = typer.Option(..., "--as-of", help="YYYY-MM-DD"),
                        fmt: Format = typer.Option(Format.table, "--format"),
                        by_borrower: bool = typer.Option(False, "--by-borrower", help="one row per borrower (worst loan)"),
                        record: bool = typer.Option(False, "--record", help="also record the daily snapshot")) -> None:
        """Days past due and bucket per loan as of a date."""
        from parley.services.delinquency import borrower_days_past_due, days_past_due_all, snapshot

        with reporting_errors():
            day = _parse_date(as_of, "as-of")
            ctx = make_context()
            if record:
                snapshot(ctx, day)
            with ctx.db.read() as conn:
                rows = borrower_days_past_due(ctx, conn, day) if by_borrower else days_past_due_all(ctx, conn, day)
        key = "borrower_id" if by_borrower else "loan_id"
        items = sorted(({key: r[0], "days_past_due": r[-2], "bucket": r[-1]} | ({"borrower_id": r[1]} if not by_borrower else {})
                        for r in rows), key=lambda d: d[key])
        if fmt is Format.json:
            print_json({"as_of": day.isoformat(), "borrowers" if by_borrower else "loans": items})
            return
        table = Table(title=f"Days past due as of {day}")
        for col in (key, "days past due", "bucket"):
            table.add_column(col)
        for it in items:
            table.add_row(it[key], str(it["days_past_due"]), it["bucket"])
        console.print(table)


def _parse_date(value: str, field: str) -> date:
    from parley.errors import InvalidInput

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date like 2026-03-31", field=field) from None


@schedule_app.command("quote")
def quote_cmd(principal: str = typer.Option(..., help="amount in major units, e.g. 100.00"),
              annual_rate: str = typer.Option(..., "--annual-rate", help="percent, e.g. 9.4822"),
              terms: int = typer.Option(..., help="number of monthly instalments"),
              method: str = typer.Option("equal-installment", help="equal-installment, equal-principal or interest-only"),
              first_due: str = typer.Option(..., "--first-due", help="YYYY-MM-DD"),
              day_count: str = typer.Option("30/360", "--day-count", help="30/360, actual/365 or actual/360"),
              currency: str = typer.Option("CNY"),
              disbursed_on: str | None = typer.Option(None, "--disbursed-on", help="YYYY-MM-DD; default: a regular first month"),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Print the instalment schedule a loan would have."""
    from parley.services.schedules import quote_schedule

    with reporting_errors():
        data = quote_schedule(principal=principal, annual_rate=annual_rate, terms=terms, method=method,
                              first_due=_parse_date(first_due, "first-due"), day_count=day_count, currency=currency.upper(),
                              disbursed_on=_parse_date(disbursed_on, "disbursed-on") if disbursed_on else None)
    if fmt is Format.json:
        print_json({"installments": data["installments"]})
        return
    table = Table(title=f"{data['principal']} {data['currency']} at {data['annual_rate']}% — {data['method']}, {data['day_count']}")
    for col in ("number", "due date", "payment", "principal", "interest", "balance"):
        table.add_column(col, justify="right")
    for r in data["installments"]:
        table.add_row(str(r["number"]), r["due_date"], r["payment"], r["principal"], r["interest"], r["balance"])
    console.print(table)
    console.print(f"total interest {data['total_interest']}, total to pay {data['total_payment']}")


@payment_app.command("post")
def payment_post(payment_id: str, loan_id: str, amount: str, paid_at: str = typer.Option(..., "--paid-at")) -> None:
    """Post one payment (idempotent by PAYMENT_ID)."""
    from parley.errors import InvalidInput
    from parley.services.payments import post_payment

    with reporting_errors():
        ctx = make_context()
        try:
            at = datetime.fromisoformat(paid_at)
        except ValueError:
            raise InvalidInput(f"{paid_at!r} is not an ISO 8601 date-time", field="paid-at") from None
        with ctx.db.read() as conn:
            from sqlalchemy import select

            from parley.store.models.loanbook import Loan

            currency = conn.execute(select(Loan.currency).where(Loan.id == loan_id)).scalar()
        if currency is None:
            raise InvalidInput(f"unknown loan {loan_id!r}", field="loan_id")
        try:
            minor = parse_minor(amount, currency)
        except MoneyError as exc:
            raise InvalidInput(str(exc), field="amount") from None
        posted = post_payment(ctx, payment_id, loan_id, at, minor, source="cli")
    print_json({"payment_id": posted.payment_id, "already_posted": posted.already_posted, "paid_on": posted.paid_on,
                "allocation": [{"installment": x.number, "component": x.component.value, "amount": x.amount} for x in posted.allocation.lines],
                "credit": posted.allocation.credit})


@payment_app.command("reverse")
def payment_reverse(payment_id: str, reason: str = typer.Option(..., help="why the payment is reversed")) -> None:
    """Reverse a payment by a reversing entry (the original stays on the record)."""
    from parley.services.payments import reverse_payment

    with reporting_errors():
        entry = reverse_payment(make_context(), payment_id, reason)
    print_json({"payment_id": payment_id, "reversal_entry": entry})
