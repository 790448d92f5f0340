"""The `agent-lightning` command line.

Operator commands (`clients`, `audit`, `retention`, `events tail`) talk to the store directly, as
the local administrator: that is how the first AgentAdmin client of a fresh install is created.
Everything they change is audited as actor `cli:<os user>`.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent_lightning import __version__
from agent_lightning.config import ConfigError, Settings

app = typer.Typer(
    name="agent-lightning",
    help="Make deployed AI agents learn from their own mistakes.\n\n"
    "Start with `agent-lightning demo` to watch an agent learn, or `agent-lightning init NAME` "
    "for a new project. Data lives in ./.agl (SQLite) unless AGL_DATABASE_URL says otherwise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
clients_app = typer.Typer(
    help="Machine identities (OAuth2 clients) of an app.", no_args_is_help=True
)
events_app = typer.Typer(help="Look at stored telemetry.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention rules and their enforcement.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(events_app, name="events")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")

console = Console()
err = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="AGL_DATABASE_URL",
        help="SQLAlchemy URL; default: SQLite in ./.agl (postgresql://... for PostgreSQL).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    # Messages quote user input (file:line, [lists], :codes:): printed as text, not as markup.
    err.print(f"[bold red]error:[/] {escape(message)}", emoji=False)
    return typer.Exit(code)


def _settings(database_url: str | None = None) -> Settings:
    try:
        return Settings.from_env(database_url=database_url or None)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _store(database_url: str | None):
    from sqlalchemy.exc import OperationalError

    from agent_lightning.store import Store

    settings = _settings(database_url)
    try:
        return Store(settings.database_url)
    except OperationalError as exc:
        raise fail(f"cannot open the database: {exc.orig}") from None
    except ValueError as exc:
        raise fail(str(exc)) from None


def _known_app(store, app_id: str) -> None:
    """Stop with a readable error when the app does not exist (a typo would otherwise read as
    "nothing stored")."""
    from agent_lightning.store import NotFound

    try:
        store.get_app(app_id)
    except NotFound:
        apps = sorted(a.id for a in store.list_apps())
        known = ", ".join(apps[:10]) + (f" and {len(apps) - 10} more" if len(apps) > 10 else "")
        raise fail(f"no app {app_id!r} in this database (apps: {known or 'none yet'})") from None


def _cli_actor():
    from agent_lightning.security.audit import Actor

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return Actor(f"cli:{user}", "cli")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"agent-lightning {__version__}")
        raise typer.Exit()


# -- serve -----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    database_url: DatabaseUrl = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Project settings to apply at start (app, reward join, retention); default: "
            "config/agent-lightning.yaml when this folder has one (`agent-lightning init`)."
        ),
    ] = None,
) -> None:
    """Run the API server (OpenAPI docs at /docs)."""
    import os

    import uvicorn

    from agent_lightning.cli.project import CONFIG_PATH, load_project_config

    if config is not None and not config.is_file():
        raise fail(f"--config: {config} does not exist")
    config = config or (CONFIG_PATH if CONFIG_PATH.is_file() else None)
    project = None
    if config is not None:
        try:
            project = load_project_config(config)
        except ValueError as exc:  # ProjectConfigError, or YAML that does not parse
            raise fail(str(exc)) from None
        if project.database_url and not database_url and not os.environ.get("AGL_DATABASE_URL"):
            database_url = project.database_url
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key, or neither")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise fail(f"{path} does not exist")
    if database_url:
        os.environ["AGL_DATABASE_URL"] = database_url
    _settings(database_url)
    # Open the database here, where a wrong URL, a server that is down or a missing driver is a
    # one-line error (inside uvicorn it is a page of traceback); this also migrates it.
    store = _store(database_url)
    try:
        if project is not None and config is not None:
            from agent_lightning.cli.project import apply_project_config

            changes = apply_project_config(store, project, str(config))
            summary = "; ".join(changes) if changes else "already in effect"
            console.print(f"{escape(str(config))}: app {escape(project.app)}, {escape(summary)}")
    finally:
        store.close()
    if host not in ("127.0.0.1", "localhost", "::1") and tls_cert is None:
        err.print(
            f"[bold yellow]warning:[/] listening on {host} without TLS: tokens and customer "
            "text cross the network in clear. Use --tls-cert/--tls-key or a TLS proxy."
        )
    scheme = "https" if tls_cert else "http"
    console.print(f"agent-lightning {__version__} on {scheme}://{host}:{port}  (docs: /docs)")
    uvicorn.run(
        "agent_lightning.server.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        log_level=log_level,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )


# -- init ------------------------------------------------------------------------------------


def _template_help() -> str:
    from agent_lightning.scaffold import available_templates

    return "Starting point: " + ", ".join(["blank", *available_templates()]) + "."


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Directory to create for the project.")],
    template: Annotated[str, typer.Option(help=_template_help())] = "blank",
) -> None:
    """Create a project: a blank skeleton, or a runnable agent from a template.

    blank: config/, policies/, runtimes/runtime.yaml. support-ticket, kb-lookup: agent.yaml,
    policies/, sample transcripts.jsonl and a README, ready for `agent-lightning eval`.
    """
    from agent_lightning.cli.project import ProjectExists, create_project
    from agent_lightning.scaffold import available_templates, copy_template

    try:
        if template == "blank":
            created = create_project(Path(name), template)
        elif template in available_templates():
            created = copy_template(template, Path(name))
        else:
            choices = ", ".join(["blank", *available_templates()])
            raise fail(f"unknown template {template!r}; choose from {choices}")
    except (ProjectExists, FileExistsError) as exc:
        raise fail(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]created[/] {name}/")
    for path in created:
        console.print(f"  {path}")
    if template == "blank":
        console.print(f"\nnext: cd {name} && agent-lightning serve")
    else:
        console.print(f"\nnext: cd {name} && agent-lightning eval --offline  (see README.md)")


# -- clients ---------------------------------------------------------------------------------


@clients_app.command("create")
def clients_create(
    app_id: Annotated[str, typer.Option("--app", help="The app (tenant) the client belongs to.")],
    role: Annotated[
        list[str],
        typer.Option(help="Role, repeatable: AgentAdmin, Developer, Analyst, Agent."),
    ] = ["Agent"],  # noqa: B006 - Typer reads the default
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a client; prints its id and secret once (the secret is stored hashed)."""
    from agent_lightning.security.audit import AuditLog
    from agent_lightning.security.identities import create_client
    from agent_lightning.security.rbac import UnknownRole

    if not app_id or len(app_id) > 64:
        raise fail("--app must be 1 to 64 characters")
    store = _store(database_url)
    try:
        new = create_client(store, AuditLog(store), app_id, role, _cli_actor(), name)
    except UnknownRole as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(new.as_dict()))
        return
    console.print(f"client_id: [bold]{new.client_id}[/]")
    console.print(f"secret:    [bold]{new.secret}[/]")
    console.print(f"app: {new.app}   roles: {', '.join(new.roles)}")
    console.print("[yellow]Store the secret now: it is not shown again.[/]")


@clients_app.command("list")
def clients_list(
    app_id: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List clients (never their secrets)."""
    from agent_lightning.server.serializers import client as client_json

    store = _store(database_url)
    if app_id is not None:
        _known_app(store, app_id)
    if as_json:
        for c in store.list_clients(app_id):
            print(json.dumps(client_json(c)))
        return
    table = Table("client_id", "app", "roles", "name", "created", "revoked")
    for c in store.list_clients(app_id):
        table.add_row(
            c.id,
            c.app_id,
            ", ".join(c.roles),
            c.name,
            str(c.created_at)[:19],
            str(c.revoked_at)[:19] if c.revoked_at else "",
        )
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(help="The client to revoke.")],
    app_id: Annotated[str, typer.Option("--app", help="The app it belongs to.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a client: its tokens stop working at once."""
    from agent_lightning.security.audit import AuditLog
    from agent_lightning.security.identities import revoke_client
    from agent_lightning.store import NotFound

    store = _store(database_url)
    try:
        revoke_client(store, AuditLog(store), app_id, client_id, _cli_actor())
    except NotFound as exc:
        raise fail(str(exc)) from None
    console.print(f"revoked {client_id}")


# -- events ----------------------------------------------------------------------------------


@events_app.command("tail")
def events_tail(
    app_id: Annotated[str, typer.Option("--app", help="The app whose events to show.")],
    limit: Annotated[int, typer.Option("-n", help="How many recent events.", min=1)] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show the latest events of an app (redacted, as stored)."""
    from agent_lightning.server.serializers import event as event_json

    store = _store(database_url)
    _known_app(store, app_id)
    page = store.list_records("events", app_id, limit=limit, order="desc")
    rows = list(reversed(page.items))
    last_pk = rows[-1].pk if rows else 0

    def show(row) -> None:
        if as_json:
            print(json.dumps(event_json(row)), flush=True)
        else:
            # Session ids, intents and texts are what users sent: escaped, not read as markup
            # (a message holding "[/]" would otherwise stop the command with a markup error).
            console.print(
                f"[dim]{str(row.created_at)[:19]}[/] {escape(row.session_id or '-'):>12} "
                f"[cyan]{escape(row.intent_prediction or '-')}[/] "
                f"{'' if row.confidence is None else f'{row.confidence:.2f}'} "
                f"{escape(row.text or '')}",
                emoji=False,
            )

    for row in rows:
        show(row)
    if not rows and not as_json:  # JSON lines stay machine-readable: nothing is nothing
        err.print(f"no events in {app_id!r} yet" + (" (waiting for new ones)" if follow else ""))
    while follow:
        time.sleep(1.0)
        from agent_lightning.store.pagination import encode_cursor

        newer = store.list_records("events", app_id, cursor=encode_cursor(last_pk, "asc"))
        for row in newer.items:
            show(row)
            last_pk = row.pk


# -- audit -----------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        str | None,
        typer.Option(
            help="A head printed by an earlier run, SEQ:HASH. That entry must still be there "
            "unchanged: this is what detects entries cut from the end."
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Check the hash chain; names the first edited, deleted or reordered entry.

    Prints the head (last entry and its hash). Keep it somewhere else (a ticket, a log
    shipper); `--head` later proves that nothing was cut from the end of the log since.
    """
    from agent_lightning.security.audit import AuditLog

    recorded = None
    if head is not None:
        seq, _, digest = head.partition(":")
        if not seq.isdigit() or len(digest) < 12 or not all(c in HEX for c in digest.lower()):
            raise fail("--head must be SEQ:HASH, e.g. 1234:9f86d081884c7d65 (12+ hex digits)")
        recorded = (int(seq), digest)
    result = AuditLog(_store(database_url)).verify(head=recorded)
    if result.ok:
        console.print(f"[green]ok[/] {result.message}")
        if result.head_seq is not None:
            console.print(f"head: {result.head_seq}:{result.head_hash}")
        return
    raise fail(f"audit log is broken at entry {result.broken_seq}: {result.message}", 2)


HEX = frozenset("0123456789abcdef")


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("-o", help="File to write (default stdout).")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Export the whole audit log as JSON lines."""
    from agent_lightning.security.audit import AuditLog, to_dict

    audit = AuditLog(_store(database_url))
    out = output.open("w") if output else sys.stdout
    try:
        for entry in audit.iter_all():
            out.write(json.dumps(to_dict(entry), sort_keys=True) + "\n")
    finally:
        if output:
            out.close()


# -- retention -------------------------------------------------------------------------------


@retention_app.command("apply")
def retention_apply(
    app_id: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Then give the freed space back: SQLite VACUUM (writers wait while it runs; "
            "needs free disk about the database's size), PostgreSQL VACUUM of the store's tables.",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete every record past its app's retention now (audited).

    Deleting rows does not shrink a SQLite file: its pages are reused by new records. Add
    --compact to rewrite the file without them.
    """
    from agent_lightning.security import retention
    from agent_lightning.security.audit import AuditLog

    store = _store(database_url)
    audit = AuditLog(store)
    report = retention.apply(store, audit, _cli_actor(), [app_id] if app_id else None)
    kinds = ("events", "decisions", "rewards", "spans", "policy_versions")
    table = Table("app", *kinds, title="removed (policy_versions: artifacts removed)")
    for app_name, removed in report.items():
        table.add_row(app_name, *(str(removed.get(k, 0)) for k in kinds))
    console.print(table)
    if compact:
        from sqlalchemy.exc import OperationalError

        try:
            with console.status("compacting the database"):
                sizes = retention.compact(store, audit, _cli_actor())
        except OperationalError as exc:  # e.g. SQLite still locked after the busy timeout
            raise fail(
                f"could not compact the database ({exc.orig}); the retention run above is "
                "done and kept. Try --compact again when fewer writers are busy."
            ) from None
        if sizes.before_bytes is None or sizes.after_bytes is None:
            console.print("compacted (an in-memory database has no size on disk)")
        else:
            mb = 1_000_000
            console.print(
                f"database: {sizes.before_bytes / mb:,.1f} MB -> {sizes.after_bytes / mb:,.1f} MB"
                + (
                    " (PostgreSQL keeps the freed space for new rows; VACUUM FULL returns it "
                    "to the OS but locks each table)"
                    if sizes.dialect == "postgresql"
                    else ""
                )
            )


@app.command("erase-user")
def erase_user(
    user_id: Annotated[str, typer.Argument(help="The user whose data to erase.")],
    app_id: Annotated[str, typer.Option("--app", help="The app.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Right to erasure: delete every record of one user and their sessions (audited)."""
    from agent_lightning.security import retention
    from agent_lightning.security.audit import AuditLog

    store = _store(database_url)
    _known_app(store, app_id)
    if not yes and not typer.confirm(f"erase every record of user {user_id!r} in {app_id!r}?"):
        raise typer.Exit(1)
    removed = retention.erase_user(store, AuditLog(store), app_id, user_id, _cli_actor())
    console.print(f"erased: {removed}")


def main() -> None:
    """Console-script entry point: readable errors, never a traceback for expected failures."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


secrets_app = typer.Typer(help="Connector credentials encrypted at rest.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate(database_url: DatabaseUrl = None) -> None:
    """Re-encrypt every stored credential under the primary key (first of AGL_ENCRYPTION_KEYS).

    To rotate: put a new key first in AGL_ENCRYPTION_KEYS (or the key file), keep the old one
    after it, run this, then remove the old key.
    """
    import os

    from agent_lightning.security.crypto import SecretBox, load_or_create_keyfile
    from agent_lightning.security.secrets import rotate_all

    settings = _settings(database_url)
    if os.environ.get("AGL_ENCRYPTION_KEYS"):
        box = SecretBox.from_env()
    else:
        box = SecretBox(load_or_create_keyfile(settings.data_dir / "encryption.keys"))
    store = _store(database_url)
    count = rotate_all(store, box)
    from agent_lightning.security.audit import AuditLog

    AuditLog(store).record(_cli_actor(), "secrets.rotate", "secret", None, after={"count": count})
    console.print(f"re-encrypted {count} secret(s) under the primary key")


# -- learning ----------------------------------------------------------------------------------


# The policy presets `demo` and `bench intents` offer (learning.simulation.DEFAULT_SPECS; not
# imported here, which would load numpy for every `--help`).
FEATURIZER_CHOICES = ("hybrid", "hashing", "minilm", "minilm_hybrid")


@app.command()
def demo(
    interactions: Annotated[
        int,
        typer.Option(
            help="Customer messages to replay (4,000 take 2-3 minutes on 2 cores; the rate "
            "climbs from about 50% to about 80%).",
            min=100,
            max=10_003,
        ),
    ] = 4000,
    learn_every: Annotated[
        int, typer.Option(help="Trigger a learning task every N rewards.", min=50)
    ] = 250,
    featurizer: Annotated[
        str,
        typer.Option(
            help="hybrid (default: hashed n-grams + static word vectors), hashing, minilm "
            "or minilm_hybrid (MiniLM + static word vectors; minilm* need the embeddings "
            "extra)."
        ),
    ] = "hybrid",
    seed: Annotated[int, typer.Option(min=0, help="Shuffle and exploration seed.")] = 0,
    banking77: Annotated[
        Path | None,
        typer.Option(
            envvar="AGL_BANKING77",
            help="Folder with Banking77's train.csv and categories.json (default: "
            "shared/data/banking77 beside the project).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the demo database here (default: a temp dir).")
    ] = None,
) -> None:
    """Watch a support bot learn: server on SQLite, SDK over HTTP, Banking77 traffic."""
    from agent_lightning.cli.demo import run_demo

    if featurizer not in FEATURIZER_CHOICES:
        raise fail(f"--featurizer must be one of {', '.join(FEATURIZER_CHOICES)}")
    try:
        run_demo(
            console,
            interactions=interactions,
            learn_every=learn_every,
            featurizer=featurizer,
            seed=seed,
            banking77=banking77,
            data_dir=data_dir,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None


@app.command()
def train(
    app_id: Annotated[str, typer.Option("--app", help="The app whose policy to train.")],
    policy: Annotated[str, typer.Option(help="Policy name.")],
    force: Annotated[
        bool, typer.Option(help="Register even if the off-policy gate is not passed.")
    ] = False,
    no_live: Annotated[
        bool, typer.Option("--no-live", help="Register the version but do not make it live.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run one learning task now: train on new rewards, evaluate off-policy, maybe register."""
    from agent_lightning.controller import LearningController, TaskError
    from agent_lightning.security.audit import AuditLog

    store = _store(database_url)
    _known_app(store, app_id)
    controller = LearningController(
        store, AuditLog(store), every_decisions=None, every_seconds=None
    )
    try:
        task = controller.run(
            app_id,
            {"task": "learn", "policy": policy, "force": force, "make_live": not no_live},
            actor=_cli_actor(),
        )
    except TaskError as exc:
        raise fail(str(exc)) from None
    if task.status != "succeeded":
        raise fail(f"task {task.id} failed: {task.error}")
    result = task.result
    if result.get("registered"):
        console.print(
            f"[green]registered[/] {policy} v{result['version']} "
            f"({'live' if result.get('live') else 'not live'}) from "
            f"{result['examples']:,} decisions"
        )
    else:
        console.print(f"no new version: {result.get('reason')}")
    gate = (result.get("metrics") or {}).get("gate")
    if gate:
        console.print(f"gate: {json.dumps(gate)}")


bench_app = typer.Typer(help="Benchmarks that anyone can rerun.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("intents")
def bench_intents(
    train_file: Annotated[Path, typer.Option("--train", help="CSV with text,category (learn).")],
    test_file: Annotated[Path, typer.Option("--test", help="CSV with text,category (report).")],
    featurizer: Annotated[
        str,
        typer.Option(
            help="hybrid (default: hashed n-grams + static word vectors), hashing, minilm "
            "or minilm_hybrid (MiniLM + static word vectors; minilm* need the embeddings "
            "extra)."
        ),
    ] = "hybrid",
    feedback: Annotated[
        str, typer.Option(help="bandit (resolved or not) or correction (the right intent).")
    ] = "bandit",
    seed: Annotated[int, typer.Option(min=0, help="Traffic order and exploration seed.")] = 0,
    retrain_every: Annotated[
        int | None,
        typer.Option(min=1, help="Rewards between learning tasks (default: tuned)."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures to this file.")
    ] = None,
) -> None:
    """Replay labelled queries as live traffic through decide/reward; report what was learned."""
    from agent_lightning.cli.bench import run_intents_bench
    from agent_lightning.server.main import limit_blas_threads

    for path in (train_file, test_file):
        if not path.is_file():
            raise fail(f"{path} does not exist")
    if featurizer not in FEATURIZER_CHOICES:
        raise fail(f"--featurizer must be one of {', '.join(FEATURIZER_CHOICES)}")
    if feedback not in ("bandit", "correction"):
        raise fail("--feedback must be bandit or correction")
    if json_out is not None and not json_out.parent.is_dir():
        raise fail(f"--json: the folder {json_out.parent} does not exist")
    # As the server does (AGL_BLAS_THREADS, default 1): the figures describe the product's
    # configuration, and the supervised ceiling fits on a second core meanwhile.
    limit_blas_threads(_settings().blas_threads)
    try:
        figures = run_intents_bench(
            console,
            train_file,
            test_file,
            featurizer=featurizer,
            feedback=feedback,
            seed=seed,
            retrain_every=retrain_every,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(figures, indent=2))
        except OSError as exc:  # the figures are printed above, so the run is not lost
            raise fail(f"--json: cannot write {json_out} ({exc.strerror})") from None
        console.print(f"figures written to {json_out}")


def _register_runtime_track() -> None:
    # The runtime track's commands live in their own modules; each adds itself to the root app.
    from agent_lightning.cli import connector_cmds, publisher_cmds, runtime_cmds

    for module in (publisher_cmds, runtime_cmds, connector_cmds):
        module.register(app)


_register_runtime_track()
