"""`parley run --as-of DATE` (the daily run) and `parley worker` (drains the contact queue)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parley.errors import InvalidInput
from parley.faces.cli.common import console, err_console, make_context, print_json, reporting_errors


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"not a date YYYY-MM-DD: {value!r}", record="options", field="as-of") from None


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        as_of: str = typer.Option(..., "--as-of", help="the business date, YYYY-MM-DD"),
        strategy: Annotated[list[str] | None, typer.Option(
            "--strategy", help="bundled strategy name or YAML file (default: default); "
                               "with --experiment, the arms' strategies")] = None,
        experiment: Annotated[Path | None, typer.Option(
            "--experiment", help="champion/challenger YAML")] = None,
        as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    ) -> None:
        """The daily run: every delinquent account → state → due actions → contact queue.
        Idempotent for a date; a run stopped halfway can simply be run again."""
        from parley.services.daily_run import PROGRESS_STEPS, run_daily
        from parley.services.templates import seed_default_templates

        with reporting_errors():
            day = _parse_date(as_of)
            ctx = make_context()
            seed_default_templates(ctx)
            exp = str(experiment) if experiment else None
            if err_console.is_terminal and not as_json:
                with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=err_console, transient=True) as bar:
                    before_queue = PROGRESS_STEPS.index("queue")
                    task = bar.add_task("starting", total=before_queue + 1)

                    def progress(step: str, done: int, total: int) -> None:
                        if step == "queue":
                            bar.update(task, description=f"queue {done}/{total}",
                                       completed=before_queue + done / max(total, 1))
                        elif step == "assign":  # between queue chunks: the bar stays put
                            bar.update(task, description="assign")
                        else:
                            bar.update(task, description=step,
                                       completed=PROGRESS_STEPS.index(step) + 1)

                    report = run_daily(ctx, day, strategy or None, exp, progress)
            else:
                report = run_daily(ctx, day, strategy or None, exp)
        if as_json:
            print_json({
                "as_of": report.as_of, "accounts": report.accounts,
                "enforcement_off": report.enforcement_off, "planned": report.planned,
                "inserted": report.inserted, "by_state": report.by_state,
                "by_channel": report.by_channel, "by_arm": report.by_arm,
                "by_state_channel": [{"state": s, "channel": c, "count": n}
                                     for (s, c), n in report.by_state_channel.items()],
                "tasks_assigned": report.tasks_assigned, "tasks_unassigned": report.tasks_unassigned,
                "tasks_pooled": report.tasks_pooled,
                "tasks_expired": report.tasks_expired, "unreachable": report.unreachable,
                "seconds": round(report.seconds, 3)})
            return
        channels = sorted(report.by_channel)
        table = Table(title=f"Daily run {report.as_of}: {report.accounts} delinquent accounts, "
                            f"{report.planned} actions ({report.inserted} new)")
        table.add_column("state")
        table.add_column("accounts", justify="right")
        for ch in channels:
            table.add_column(ch, justify="right")
        for state, n in report.by_state.items():
            table.add_row(state, str(n), *(str(report.by_state_channel.get((state, ch), "")) for ch in channels))
        table.add_row("[b]total[/b]", str(report.accounts), *(str(report.by_channel[ch]) for ch in channels))
        console.print(table)
        console.print(f"collector tasks: {report.tasks_assigned} assigned, "
                      f"{report.tasks_pooled} in the shared pool, "
                      f"{report.tasks_unassigned - report.tasks_pooled} beyond capacity (not queued), "
                      f"{report.tasks_expired} of earlier days expired; arms: "
                      + ", ".join(f"{a} {n}" for a, n in report.by_arm.items())
                      + f"; {report.seconds:.1f} s")
        if report.unreachable:
            console.print("not planned, no valid phone or e-mail address on file: "
                          + ", ".join(f"{ch} {n}" for ch, n in report.unreachable.items()))

    @app.command("worker")
    def worker_cmd(
        worker_id: str = typer.Option("", "--id", help="this worker's name, carried by its leases "
                                                      "(default: host-pid, unique per process)"),
        once: bool = typer.Option(False, "--once", help="stop when nothing is due"),
        max_items: int | None = typer.Option(None, "--max-items", min=1, help="stop after this many items"),
        limit: int = typer.Option(50, "--limit", min=1, help="items leased per pass"),
        poll: float = typer.Option(2.0, "--poll", min=0.0, help="seconds to wait when idle"),
        console_channels: bool = typer.Option(False, "--console",
                                              help="print messages instead of sending (demo)"),
    ) -> None:
        """Send due SMS and e-mail from the contact queue, each permitted by the gate at send
        time, and carry out agency placements and legal referrals; runs until stopped (Ctrl-C /
        SIGTERM finishes the current pass)."""
        from parley.adapters.channels.base import build_channels
        from parley.services.templates import seed_default_templates
        from parley.services.worker import run_worker

        worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with reporting_errors():
            ctx = make_context()
            seed_default_templates(ctx)
            try:
                channels = build_channels(ctx.settings, console=console_channels)
            except ValueError as exc:
                raise InvalidInput(str(exc), record="settings", field="sms_webhook_url") from exc

            def on_pass(r):  # type: ignore[no-untyped-def]
                if r.leased:
                    err_console.print(f"{worker_id}: leased {r.leased}: sent {r.sent}, rescheduled "
                                      f"{r.rescheduled}, dropped {r.dropped}, retried {r.retried}, "
                                      f"failed {r.failed}, tasks done {r.done}, cancelled "
                                      f"{r.cancelled}")

            total = run_worker(ctx, worker_id, channels=channels, limit=limit, poll_seconds=poll,
                               once=once, max_items=max_items, stop=stop, on_pass=on_pass)
        console.print(f"{worker_id}: {total.leased} leased, {total.sent} sent, {total.rescheduled} "
                      f"rescheduled, {total.dropped} dropped, {total.retried} retried, "
                      f"{total.failed} failed, {total.done} tasks done, {total.cancelled} cancelled")
