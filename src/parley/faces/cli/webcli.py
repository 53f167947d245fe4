"""`parley serve` (the pages and the API from the configured database, schema created if
empty), and the accounts that sign in to them: `parley staff add`, `parley apikey add|revoke`."""

from __future__ import annotations

from typing import Annotated

import typer

from parley.faces.cli.common import make_context, run

staff_app = typer.Typer(help="Staff accounts for the pages.", no_args_is_help=True,
                        add_completion=False)
key_app = typer.Typer(help="API keys for lenders' systems.", no_args_is_help=True,
                      add_completion=False)


@staff_app.command("add")
def staff_add(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option("--role", help="administrator, strategy_manager, team_lead, "
                                      "collector, agency_collector, compliance_officer, auditor")],
    name: Annotated[str, typer.Option("--name", help="Display name (shown to borrowers).")] = "",
    agency: Annotated[str | None, typer.Option("--agency", help="Agency id (agency collectors).")] = None,
    badge: Annotated[str | None, typer.Option("--badge", help="Badge number shown to borrowers.")] = None,
    language: Annotated[str, typer.Option("--language", help="zh-Hans, zh-Hant or en.")] = "zh-Hans",
) -> None:
    """Create a staff account (asks for the password). Roles that need a second factor get a
    TOTP secret, printed once with its otpauth:// URI for an authenticator app."""
    import pyotp

    from parley.services.auth import create_staff

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    ctx = make_context()
    sid, secret = run(lambda: create_staff(
        ctx, username=username, password=password, role=role, display_name=name,
        agency_id=agency, badge_number=badge, languages=language))
    typer.echo(f"created {sid} ({role})")
    if secret:
        typer.echo(f"TOTP secret: {secret}")
        typer.echo(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Parley"))


@key_app.command("add")
def key_add(
    name: Annotated[str, typer.Argument(help="Whose key (e.g. the lender's system).")],
    role: Annotated[str, typer.Option("--role")] = "administrator",
    agency: Annotated[str | None, typer.Option("--agency", help="Scope the key to one agency.")] = None,
) -> None:
    """Create an API key; it is printed once (only its hash is stored)."""
    from parley.services.auth import create_api_key

    ctx = make_context()
    kid, key = run(lambda: create_api_key(ctx, name, role=role, agency_id=agency))
    typer.echo(f"{kid} {key}")


@key_app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument()]) -> None:
    from parley.services.auth import revoke_api_key

    ctx = make_context()
    run(lambda: revoke_api_key(ctx, key_id))
    typer.echo(f"revoked {key_id}")


hooks_app = typer.Typer(help="Webhook subscriptions and deliveries.", no_args_is_help=True,
                        add_completion=False)


@hooks_app.command("add")
def hooks_add(url: Annotated[str, typer.Argument()],
              event: Annotated[list[str] | None, typer.Option("--event", help="Repeat; default all.")] = None) -> None:
    """Subscribe an endpoint; prints its id and signing secret (once)."""
    from parley.services.webhooks import subscribe

    ctx = make_context()
    sid, secret = run(lambda: subscribe(ctx, url, tuple(event or ["*"])))
    typer.echo(f"{sid} {secret}")


@hooks_app.command("deliver")
def hooks_deliver(limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100) -> None:
    """Post the deliveries that are due (retries back off exponentially)."""
    from parley.services.webhooks import deliver_due

    ctx = make_context()
    counts = run(lambda: deliver_due(ctx, limit=limit))
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


def register(app: typer.Typer) -> None:
    app.add_typer(staff_app, name="staff")
    app.add_typer(key_app, name="apikey")
    app.add_typer(hooks_app, name="webhooks")

    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8000,
    ) -> None:
        """Serve the web pages and the REST API (/openapi.json) from PARLEY_DATABASE_URL."""
        import uvicorn

        from parley.faces.api.app import create_app
        from parley.services.context import Context
        from parley.store.migrate import ensure_schema

        ctx = Context.from_settings()
        if ensure_schema(ctx.db):
            typer.echo("created the schema in "
                       f"{ctx.db.engine.url.render_as_string(hide_password=True)}")
        typer.echo(f"Parley on http://{host}:{port}/  (API document: /openapi.json)")
        uvicorn.run(create_app(ctx), host=host, port=port, log_level="info", proxy_headers=False)
