"""`parley audit ...`: the tamper-evident audit log (thin: call the service, print)."""

from __future__ import annotations

from typing import Annotated

import typer

from parley.faces.cli.common import make_context, print_json, run
from parley.services.audit import verify_audit

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def _audit() -> None:
    """The tamper-evident audit log."""


@app.command("verify")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every audit chain; exit 1 naming each edited or deleted entry, 0 when intact."""
    ctx = make_context()
    try:
        report = run(lambda: verify_audit(ctx))
    finally:
        ctx.db.dispose()
    if as_json:
        print_json({
            "ok": report.ok,
            "entries_checked": report.entries_checked,
            "problems": [p._asdict() for p in report.problems],
        })
    else:
        for p in report.problems:
            entry = f"id {p.audit_id}" if p.audit_id is not None else "id unknown"
            typer.echo(f"BAD chain {p.chain_key} seq {p.seq} ({entry}): {p.what}")
        state = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        typer.echo(f"audit log: {report.entries_checked} entries checked, {state}")
    if not report.ok:
        raise typer.Exit(1)
