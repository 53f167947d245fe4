"""Shared CLI plumbing: the context, error reporting (exit 2 for bad input), JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console

from parley.errors import Conflict, InvalidInput, NotFound, ParleyError
from parley.services.context import Context

T = TypeVar("T")
err_console = Console(stderr=True)
console = Console()


def make_context() -> Context:
    from parley.store.migrate import ensure_schema

    ctx = Context.from_settings()
    ensure_schema(ctx.db)
    return ctx


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn service errors into a readable message and an exit code (2 = bad input)."""
    try:
        yield
    except InvalidInput as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (NotFound, Conflict) as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except ParleyError as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def run(fn: Callable[[], T]) -> T:
    with reporting_errors():
        return fn()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
