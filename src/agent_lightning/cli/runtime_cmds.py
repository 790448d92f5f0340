"""CLI commands of the runtime track: `run` (the HTTP service), `bootstrap-policy`, `eval`.

Each command is a plain function; `register(app)` adds them to the root app. Expected failures
(an invalid policy, a missing file, an unreachable connector) print one readable error and exit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

_console = Console()
_err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Messages carry file:line: text; no markup or :emoji: codes may be read into them.
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, emoji=False)
    return typer.Exit(code)


# -- run ---------------------------------------------------------------------------------------


def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The runtime's agent.yaml.")
    ] = Path("agent.yaml"),
    host: Annotated[str | None, typer.Option(help="Interface (default: listen.host).")] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default: listen.port).", min=0, max=65535)
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Serve without a bearer token (local experiments only)."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run one agent as an HTTP service: answers messages on its policy, works offline, syncs
    policies and telemetry with the server when it can."""
    import logging

    import uvicorn

    from agent_lightning.runtime.config import RuntimeConfigError, load_runtime_config
    from agent_lightning.runtime.service import create_runtime_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_runtime_config(config)
        app = create_runtime_app(cfg, insecure_no_auth=insecure_no_auth)
    except (RuntimeConfigError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    edge = app.state.edge
    bind_host = host or cfg.listen.host
    bind_port = cfg.listen.port if port is None else port
    if insecure_no_auth:
        _err.print("[bold yellow]warning:[/] --insecure-no-auth: anyone who reaches it may use it")
    print(
        f"agent-lightning runtime {cfg.name} listening on http://{bind_host}:{bind_port}\n"
        f"policy {edge.spec.name}: serving {edge.sync.describe()}; "
        f"server {cfg.server.url if cfg.server else '(none: offline)'}; "
        f"outbox {edge.outbox.pending()} pending; state in {cfg.state_path}",
        flush=True,
    )
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level)


# -- bootstrap-policy --------------------------------------------------------------------------


def bootstrap_policy(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Policy name ([A-Za-z0-9._-]+).")],
    kind: Annotated[
        str, typer.Option("--type", help="qna (question/answer pairs) or intents (labelled file).")
    ] = "qna",
    qa_pairs: Annotated[
        bool,
        typer.Option(
            "--qa-pairs",
            help='Followed by "question" "answer" pairs: --qa-pairs "Q1" "A1" "Q2" "A2".',
        ),
    ] = False,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="CSV (text,category) or JSONL ({text, intent}) for intents."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (policies/NAME.yaml).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Create a first policy from Q&A pairs or labelled utterances (plus an Escalate intent)."""
    from agent_lightning.runtime.bootstrap import (
        BootstrapError,
        bootstrap_intents,
        bootstrap_qna,
        read_labelled,
        write_policy,
    )
    from agent_lightning.runtime.spec import PolicySpecError

    extra = list(ctx.args)
    try:
        if kind == "qna":
            if from_file is not None:
                raise _fail("--from is for --type intents; give --qa-pairs for --type qna")
            if not qa_pairs or not extra:
                raise _fail('give --qa-pairs "question" "answer" [...] for --type qna')
            if len(extra) % 2:
                raise _fail(
                    f"--qa-pairs needs question/answer pairs; got {len(extra)} value(s), "
                    f"the last question ({extra[-1]!r}) has no answer"
                )
            text = bootstrap_qna(name, list(zip(extra[0::2], extra[1::2], strict=True)))
        elif kind == "intents":
            if extra or qa_pairs:
                raise _fail("--qa-pairs is for --type qna; give --from FILE for --type intents")
            if from_file is None:
                raise _fail("give --from FILE (CSV text,category or JSONL) for --type intents")
            text = bootstrap_intents(name, read_labelled(from_file))
        else:
            raise _fail(f"--type must be qna or intents, got {kind!r}")
        path = write_policy(text, output or Path("policies") / f"{name}.yaml", force=force)
    except (BootstrapError, PolicySpecError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write the policy: {exc}") from None
    _console.print(f"[green]wrote[/] {escape(str(path))}", emoji=False)
    _console.print("next: edit the replies, then `agent-lightning eval` with sample transcripts")


# -- eval --------------------------------------------------------------------------------------


def _connectors_for(config: Any, spec: Any, offline: bool) -> Any:
    """The project's connectors, checked reachable; None offline. Exits with a readable error."""
    if offline:
        return None
    used = sorted(
        {a.params["connector"] for i in spec.intents for a in i.actions if "connector" in a.params}
    )
    if not used:
        return None
    if config is None or not config.connectors:
        raise _fail(
            f"the policy calls connectors ({', '.join(used)}) but no agent.yaml defines them; "
            "use --offline to evaluate without calling anything"
        )
    from agent_lightning.connectors import ConnectorError, ConnectorRegistry

    try:
        registry = ConnectorRegistry.from_config(config.connectors)
    except ConnectorError as exc:
        raise _fail(f"{exc}\n(or use --offline to evaluate without connectors)") from None
    problems = spec.connector_problems(registry)  # the check `run` makes at start, too
    if problems:
        registry.close()
        raise _fail("\n".join(problems))
    for name in used:
        report = registry[name].test()
        if not report.ok:
            registry.close()
            raise _fail(
                f"connector {name!r} is not usable: {'; '.join(report.problems)}\n"
                "Start the service it points at (for the templates: the reference service) and "
                f"check its credentials{_credential_vars(config.connectors.get(name))}, "
                "or use --offline to evaluate the policy and guardrails without calling anything."
            )
    return registry


def _credential_vars(raw: Any) -> str:
    """` (REFSERVICES_TOKEN)`: the environment variables a connector's auth reads, if any."""
    auth = raw.get("auth") if isinstance(raw, dict) else None
    names = [str(v) for k, v in (auth or {}).items() if str(k).endswith("_env") and v]
    return f" ({', '.join(names)})" if names else ""


def eval_project(
    project: Annotated[
        Path, typer.Option("--project", help="Project directory (with agent.yaml).")
    ] = Path("."),
    transcripts: Annotated[
        Path | None,
        typer.Option(help="JSONL transcripts (default: PROJECT/transcripts.jsonl)."),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy YAML (default: the one agent.yaml names).")
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Call no connector: connector actions count as dry runs; measures the policy "
            "and guardrails only.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures (and turns) here.")
    ] = None,
    show_turns: Annotated[
        bool, typer.Option("--turns", help="Print every turn, not only the misses.")
    ] = False,
) -> None:
    """Replay sample transcripts through the runtime: intent accuracy, resolution, escalation,
    satisfaction."""
    from agent_lightning.runtime.config import RuntimeConfigError, load_runtime_config
    from agent_lightning.runtime.evaluate import TranscriptError, load_transcripts, run_eval
    from agent_lightning.runtime.spec import PolicySpecError, load_policy_spec

    config = None
    agent_yaml = project / "agent.yaml"
    if agent_yaml.is_file():
        try:
            config = load_runtime_config(agent_yaml)
        except RuntimeConfigError as exc:
            raise _fail(str(exc)) from None
    elif policy is None:
        raise _fail(f"{agent_yaml} not found; run in a project directory or give --policy")
    policy_path = policy if policy is not None else config.policy_path
    try:
        spec = load_policy_spec(policy_path)
        turns = load_transcripts(transcripts or project / "transcripts.jsonl", spec)
    except PolicySpecError as exc:
        raise _fail(f"the policy is invalid:\n{exc}") from None
    except TranscriptError as exc:
        raise _fail(str(exc)) from None
    registry = _connectors_for(config, spec, offline)
    try:
        report = run_eval(spec, turns, connectors=registry)
    finally:
        if registry is not None:
            registry.close()
    _print_report(report, show_turns)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(report.to_dict(), indent=2))
        except OSError as exc:
            raise _fail(f"cannot write {json_out}: {exc}") from None
        _console.print(f"figures written to {escape(str(json_out))}", emoji=False)


def _print_report(report: Any, show_turns: bool) -> None:
    from rich.table import Table
    from rich.text import Text  # transcript text and errors are shown as written, not as markup

    mode = "offline: connector actions not run" if report.mode == "offline" else "connectors"
    table = Table(title=f"{report.policy}: {report.turns} turns ({mode})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("intent accuracy", report.intent_accuracy),
        ("  (most common intent)", report.chance_accuracy),
        ("resolution rate", report.resolution_rate),
        ("escalation rate", report.escalation_rate),
        ("clarification rate", report.clarification_rate),
        ("error rate", report.error_rate),
        ("outcome accuracy", report.outcome_accuracy),
        ("satisfaction (simulated CSAT)", report.satisfaction),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:.1%}")
    _console.print(table)
    intents = Table("intent", "turns", "accuracy", title="per intent")
    for name, row in report.per_intent.items():
        intents.add_row(name, str(int(row["turns"])), f"{row['accuracy']:.0%}")
    _console.print(intents)
    shown = [
        r
        for r in report.results
        if show_turns or r.intent != r.expected_intent or r.outcome != r.expected_outcome
    ]
    if shown:
        turns = Table(
            "text", "expected", "got", "conf", "outcome", "error",
            title="turns" if show_turns else "misses",
        )  # fmt: skip
        for r in shown:
            turns.add_row(
                Text(r.text[:60]),
                f"{r.expected_intent} / {r.expected_outcome}",
                r.intent,
                f"{r.confidence:.2f}",
                r.outcome,
                Text((r.error or "")[:80]),
            )
        _console.print(turns)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root `agent-lightning` app."""
    app.command("run")(run)
    extra_args = {"allow_extra_args": True, "ignore_unknown_options": False}
    app.command("bootstrap-policy", context_settings=extra_args)(bootstrap_policy)
    app.command("eval")(eval_project)
