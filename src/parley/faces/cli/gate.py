"""`parley gate ...`: the contact gate from the command line (thin: parse, call, print)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from parley.core.content import ContentScreening
from parley.errors import InvalidInput
from parley.services.gate_check import check_scenario

app = typer.Typer(help="The contact gate: decide a contact against a jurisdiction's rule pack.",
                  no_args_is_help=True, add_completion=False)


def _screener() -> Callable[[str], ContentScreening]:
    from parley.screening import default_screener

    return default_screener().screen


@app.callback()
def _gate() -> None:
    """The contact gate."""


@app.command("check")
def check(
    scenario: Annotated[Path, typer.Argument(help="Scenario JSON file (see docs/gate.md).")],
    lang: Annotated[str, typer.Option("--lang", help="Message language: en, zh-Hans, zh-Hant.")
                    ] = "en",
) -> None:
    """Decide one scenario and print the decision as JSON."""
    try:
        raw = scenario.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"{scenario}: cannot read: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        typer.echo(f"{scenario}: not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        screen = _screener()
    except Exception as exc:  # a broken screener must not degrade to "unscreened is fine"
        typer.echo(f"content screener unavailable: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        result = check_scenario(doc, screen, lang=lang)
    except InvalidInput as exc:
        typer.echo(f"{scenario}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
