"""The `parley` command line: one Typer app, a sub-app per area, each calling services only."""

from __future__ import annotations

import importlib

import typer

from parley.faces.cli.loanbook import payment_app, register_imports, schedule_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Parley collections platform.")
register_imports(app)
app.add_typer(schedule_app, name="schedule")
app.add_typer(payment_app, name="payment")

# Areas built by their own modules; each exposes a Typer `app`. Missing modules are skipped so a
# partial checkout still runs.
for _name, _module in (("gate", "gate"), ("strategy", "strategy"), ("agreement", "agreement"),
                       ("audit", "audit"), ("db", "dbadmin")):
    try:
        _sub = importlib.import_module(f"parley.faces.cli.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"parley.faces.cli.{_module}":
            raise
        continue
    app.add_typer(_sub.app, name=_name)

for _module in ("ops", "webcli", "sim"):  # top-level commands: run/worker, serve, simulate/demo
    try:
        importlib.import_module(f"parley.faces.cli.{_module}").register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"parley.faces.cli.{_module}":
            raise

if __name__ == "__main__":
    app()
