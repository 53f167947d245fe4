"""The `parley` command line: one Typer app, a sub-app per area, each calling services only."""

from __future__ import annotations

import typer

from parley.faces.cli import agreement, audit, gate, ops, sim, strategy, webcli
from parley.faces.cli.loanbook import payment_app, register_imports, schedule_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Parley collections platform.")
register_imports(app)
app.add_typer(schedule_app, name="schedule")
app.add_typer(payment_app, name="payment")
for _name, _area in (("gate", gate), ("strategy", strategy), ("agreement", agreement),
                     ("audit", audit)):
    app.add_typer(_area.app, name=_name)
for _commands in (ops, webcli, sim):  # top-level commands: run/worker, serve, simulate/demo
    _commands.register(app)

if __name__ == "__main__":
    app()
