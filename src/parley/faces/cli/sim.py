"""`parley simulate` and `parley demo`: the portfolio simulator, Parley against a naive
collector, and the one-command demo (simulate, report, demo accounts, serve)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from parley.errors import InvalidInput
from parley.faces.cli.common import console, err_console, reporting_errors


class Format(StrEnum):
    table = "table"
    json = "json"


def _fresh_sqlite(path: Path) -> str:
    """A new, empty SQLite database at ``path`` (any earlier one removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    return f"sqlite:///{path}"


def _context(url: str, start: datetime) -> Any:
    from parley.adapters.clock import FixedClock
    from parley.config import Settings
    from parley.services.context import Context
    from parley.store.db import Database
    from parley.store.migrate import ensure_schema

    settings = Settings(database_url=url)
    ctx = Context(Database(url), settings, FixedClock(start))
    ensure_schema(ctx.db)
    return ctx


def _run(config: Any, url: str, *, show_progress: bool, label: str = "Simulating") -> Any:
    from parley.sim.engine import simulate
    from parley.sim.portfolio import local_instant

    ctx = _context(url, local_instant(config.start, 0, 0, "Asia/Shanghai"))
    try:
        if not show_progress:
            return simulate(config, ctx), ctx
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console) as bar:
            setup = bar.add_task("Writing the portfolio", total=config.borrowers)
            days = bar.add_task(f"{label} {config.days} days", total=config.days)

            def tick(step: str, done: int, total: int) -> None:
                if step == "portfolio":
                    bar.update(setup, completed=done, total=total)
                else:
                    bar.update(setup, completed=config.borrowers)
                    bar.update(days, completed=done, total=total)

            return simulate(config, ctx, tick), ctx
    except BaseException:
        ctx.db.dispose()
        raise


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        borrowers: Annotated[int, typer.Option("--borrowers", min=1, help="Borrowers (one loan each).")] = 1000,
        days: Annotated[int, typer.Option("--days", min=1, max=3650, help="Days to simulate.")] = 30,
        seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same result.")] = 1,
        fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
        database_url: Annotated[str, typer.Option(
            "--database-url", help="An EMPTY database to run Parley on (default: a fresh "
            "SQLite file under var/sim/).")] = "",
        agents: Annotated[int, typer.Option("--agents", min=0, help="Collectors (0 = one per 500 borrowers).")] = 0,
        report: Annotated[bool, typer.Option("--report/--no-report", help="Write the HTML report under var/reports/.")] = True,
        shards: Annotated[int, typer.Option(
            "--shards", min=1, max=64, help="Split the borrowers over this many processes, each "
            "on its own SQLite file under var/sim/ (results are deterministic for a seed and a "
            "number of shards).")] = 1,
    ) -> None:
        """Simulate a portfolio under Parley and under a naive collector; print the summary
        ({"parley": {...}, "naive": {...}} with --format json)."""
        from parley.config import Settings
        from parley.sim import report as rep
        from parley.sim.engine import SimConfig, simulate_sharded

        with reporting_errors():
            config = SimConfig(borrowers=borrowers, days=days, seed=seed, agents=agents)
            settings = Settings()
            var = settings.var_dir
            if shards > 1:
                if database_url:
                    raise InvalidInput("--shards runs each shard on its own SQLite file under "
                                       "var/sim/; leave --database-url out", record="simulate",
                                       field="database_url")
                urls = [_fresh_sqlite(var / "sim" / f"simulate-seed{seed}-shard{k}.db")
                        for k in range(shards)]
                if fmt is Format.table:
                    err_console.print(f"Simulating {borrowers:,} borrowers × {days} days in "
                                      f"{shards} shards…")
                result = simulate_sharded(config, urls, settings)
            else:
                url = database_url or _fresh_sqlite(var / "sim" / f"simulate-seed{seed}.db")
                result, ctx = _run(config, url, show_progress=fmt is Format.table)
                ctx.db.dispose()
        if fmt is Format.json:
            sys.stdout.write(json.dumps(result.summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
        else:
            console.print(rep.table(result.summary))
            console.print(f"{borrowers * days / result.seconds:,.0f} simulated borrower-days per second "
                          f"({result.seconds:.1f} s)")
        if report:
            path = rep.write_html(result, var / "reports")
            err_console.print(f"report: {path}")

    @app.command("demo")
    def demo_cmd(
        # about a minute on an idle 2-core machine (1,000 × 60 days took 32 s)
        borrowers: Annotated[int, typer.Option("--borrowers", min=1)] = 2000,
        days: Annotated[int, typer.Option("--days", min=1, max=3650)] = 60,
        seed: Annotated[int, typer.Option("--seed")] = 2026,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the web app afterwards.")] = True,
    ) -> None:
        """Set up a fresh SQLite database under var/, simulate, report, create demo accounts
        and serve the web app."""
        from parley.config import Settings
        from parley.sim import report as rep
        from parley.sim.demo import ShiftedClock, create_accounts, demo_borrower
        from parley.sim.engine import SimConfig
        from parley.sim.portfolio import local_instant

        var = Settings().var_dir
        db_path = var / "demo.db"
        with reporting_errors():
            url = _fresh_sqlite(db_path)
            config = SimConfig(borrowers=borrowers, days=days, seed=seed)
            console.print(f"[bold]Parley demo[/bold]: {borrowers} borrowers over {days} days "
                          f"on SQLite ({db_path})")
            result, ctx = _run(config, url, show_progress=True)
            console.print(rep.table(result.summary))
            console.print(f"{borrowers * days / result.seconds:,.0f} simulated borrower-days per "
                          f"second ({result.seconds:.1f} s)")
            for k, v in result.services.items():
                console.print(f"  [dim]{k}:[/dim] {v}", highlight=False)
            path = rep.write_html(result, var / "reports")
            console.print(f"Report: [link=file://{path.resolve()}]{path}[/link]")
            accounts = create_accounts(ctx)
        console.print("\n[bold]Demo accounts[/bold] (staff sign in with username and password):")
        for a in accounts:
            extra = f"  TOTP secret {a.totp_secret}" if a.totp_secret else ""
            console.print(f"  {a.role:<19} {a.username:<11} {a.password}{extra}", highlight=False)
        who = demo_borrower(result.portfolio.borrowers if result.portfolio else ())
        if who:
            console.print(f"  borrower            {who[1]} ({who[0]}): sign in with phone {who[2]}; "
                          "the one-time code is printed by the console SMS provider", highlight=False)
        if not serve:
            ctx.db.dispose()
            return
        import uvicorn

        from parley.faces.api.app import create_app
        from parley.services.context import Context

        end = local_instant(config.start + timedelta(days=days), 9, 0, "Asia/Shanghai")
        ctx.db.dispose()
        web_ctx = Context.from_settings(Settings(database_url=url), clock=ShiftedClock(end.astimezone(UTC)))
        console.print(f"\nParley on http://{host}:{port}/  (today is {end.date().isoformat()} in the demo; "
                      "Ctrl-C to stop)")
        uvicorn.run(create_app(web_ctx), host=host, port=port, log_level="warning")
