"""`parley strategy ...`: check strategy files before they reach the daily run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from parley.core.strategy import check_strategy
from parley.errors import InvalidInput, InvalidInputs
from parley.services.strategy_sql import load_strategy

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Collection strategies.")


@app.callback()
def strategy() -> None:
    """Collection strategies: ordered states, conditions and actions (docs/strategies.md)."""
    # A callback keeps `validate` a sub-command even while it is the only one.


@app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="A strategy YAML file.")]) -> None:
    """Validate a strategy file: print a summary, or every error with its YAML path (exit 2)."""
    try:
        strategy = load_strategy(file)
    except InvalidInput as exc:
        errors = exc.errors if isinstance(exc, InvalidInputs) else [exc]
        typer.echo(f"{file}: {len(errors)} error(s)", err=True)
        for e in errors:
            typer.echo(f"  {e.field or '(file)'}: {e.message}", err=True)
        raise typer.Exit(code=2) from None
    for finding in check_strategy(strategy):  # errors were raised above; these are warnings
        typer.echo(f"warning: {finding.field}: {finding.message}", err=True)
    typer.echo(
        f"ok: {strategy.name} v{strategy.version}, "
        f"{len(strategy.states)} states, {strategy.action_count} actions"
    )
