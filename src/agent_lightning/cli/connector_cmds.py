"""CLI commands of the connectors track: ``connectors list|test`` and ``refservices serve``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The agent.yaml whose connectors: block to read.")
]
AppOption = Annotated[
    str | None,
    typer.Option("--app", help="App whose stored secrets back auth.secret references."),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="AGL_DATABASE_URL",
        help="Store holding the secrets (with --app); default: SQLite in ./.agl.",
        show_default=False,
    ),
]


def _load_connectors_block(path: Path) -> dict[str, Any]:
    """The raw ``connectors:`` mapping of an agent.yaml, or a readable CLI error."""
    import yaml

    from agent_lightning.cli.main import fail

    if not path.is_file():
        raise fail(f"{path} does not exist (give the agent config with --config)")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise fail(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(document, dict):
        raise fail(f"{path}: expected a mapping at the top level")
    block = document.get("connectors")
    if not block:
        raise fail(f"{path} has no connectors: section")
    if not isinstance(block, dict):
        raise fail(f"{path}: connectors: must map connector names to their config")
    return block


def _secret_source(app_id: str | None, database_url: str | None) -> Any:
    """A lazy lookup of stored secrets: the store is opened only if a connector needs one."""

    def lookup(name: str) -> str:
        if app_id is None:
            raise LookupError("give --app APP to read stored secrets")
        from agent_lightning.cli.main import _settings
        from agent_lightning.security.crypto import SecretBox, load_or_create_keyfile
        from agent_lightning.security.secrets import get_secret
        from agent_lightning.store import Store

        settings = _settings(database_url)
        if os.environ.get("AGL_ENCRYPTION_KEYS"):
            box = SecretBox.from_env()
        else:
            box = SecretBox(load_or_create_keyfile(settings.data_dir / "encryption.keys"))
        store = Store(settings.database_url)
        try:
            return get_secret(store, box, app_id, name)
        finally:
            store.close()

    return lookup


def connectors_list(config: ConfigOption = Path("agent.yaml")) -> None:
    """List the configured connectors, their auth type and endpoints (no network, no secrets)."""
    from rich.table import Table

    from agent_lightning.cli.main import console, fail
    from agent_lightning.connectors import ConnectorConfigError, parse_connectors

    try:
        configs = parse_connectors(_load_connectors_block(config))
    except ConnectorConfigError as exc:
        raise fail(f"{config}: {exc}") from None
    table = Table(title=f"connectors in {config}")
    for column in ("name", "base url", "auth", "endpoints", "test", "limit/s"):
        table.add_column(column, overflow="fold")
    for name, c in sorted(configs.items()):
        endpoints = ", ".join(f"{n} ({e.method} {e.path})" for n, e in sorted(c.endpoints.items()))
        rate = f"{c.rate_limit_per_second:g}" if c.rate_limit_per_second else "-"
        table.add_row(name, c.base_url, c.auth.type, endpoints or "-", c.test_endpoint or "-", rate)
    console.print(table)


def connectors_test(
    name: Annotated[
        str | None, typer.Argument(help="Connector to test; all of them when omitted.")
    ] = None,
    config: ConfigOption = Path("agent.yaml"),
    app_id: AppOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Call a connector's test endpoint; report status, latency and response-shape problems.

    Exits 1 when any connector has a problem (unreachable, wrong credentials, bad shape).
    """
    from rich.markup import escape
    from rich.table import Table

    from agent_lightning.cli.main import console, fail
    from agent_lightning.connectors import (
        ConnectorConfigError,
        RestConnector,
        parse_connector_config,
    )

    block = _load_connectors_block(config)
    if name is not None and name not in block:
        known = ", ".join(sorted(map(str, block))) or "none"
        raise fail(f"unknown connector {name!r} in {config} (configured: {known})")
    names = [name] if name is not None else sorted(map(str, block))
    secrets = _secret_source(app_id, database_url)
    reports = []
    for connector_name in names:
        try:
            connector_config = parse_connector_config(connector_name, block[connector_name])
            connector = RestConnector(connector_name, connector_config, secrets=secrets)
        except ConnectorConfigError as exc:
            raise fail(f"{config}: {exc}") from None
        with connector:
            reports.append((connector_config.base_url, connector.test()))

    table = Table(title=f"connector test ({config})")
    for column in ("connector", "endpoint", "url", "status", "latency", "result"):
        table.add_column(column, overflow="fold")
    for base_url, report in reports:
        latency = f"{report.latency_ms:.1f} ms" if report.latency_ms is not None else "-"
        result = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        table.add_row(
            report.connector,
            report.endpoint or "-",
            base_url,
            str(report.status) if report.status is not None else "-",
            latency,
            result,
        )
    console.print(table)
    failed = [r for _, r in reports if not r.ok]
    for report in failed:
        console.print(f"[bold red]{escape(report.connector)}[/]:")
        for problem in report.problems:
            console.print(f"  - {escape(problem)}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def refservices_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8801,
    db: Annotated[Path, typer.Option("--db", help="SQLite file (seeded on first start).")] = Path(
        ".agl/refservices.db"
    ),
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the token clients must present.")
    ] = "REFSERVICES_TOKEN",
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without authentication (local demos only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the reference knowledge base, ticketing and CRM service (FastAPI + SQLite)."""
    import uvicorn

    from agent_lightning.cli.main import console, err, fail
    from agent_lightning.refservices import create_app

    token = os.environ.get(token_env) or None
    if no_auth:
        token = None
        err.print("[bold yellow]warning:[/] --no-auth: anyone who can reach the port can use it")
    elif token is None:
        raise fail(f"set {token_env} to the token clients must present, or pass --no-auth")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[bold yellow]warning:[/] listening on {host} over plain HTTP")
    try:
        app = create_app(db, token)
    except (OSError, RuntimeError) as exc:
        raise fail(f"cannot open {db}: {exc}") from None
    shown_host = f"[{host}]" if ":" in host else host
    auth = "no auth" if token is None else f"bearer token from {token_env}"
    console.print(
        f"reference services on http://{shown_host}:{port}  ({auth}; db {db}; docs: /docs)",
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add ``connectors`` and ``refservices`` to the root ``agent-lightning`` app."""
    connectors_app = typer.Typer(
        help="REST connectors of an agent (the connectors: block of agent.yaml).",
        no_args_is_help=True,
    )
    connectors_app.command("list")(connectors_list)
    connectors_app.command("test")(connectors_test)
    refservices_app = typer.Typer(
        help="The reference knowledge-base / ticketing / CRM service templates run against.",
        no_args_is_help=True,
    )
    refservices_app.command("serve")(refservices_serve)
    app.add_typer(connectors_app, name="connectors")
    app.add_typer(refservices_app, name="refservices")
