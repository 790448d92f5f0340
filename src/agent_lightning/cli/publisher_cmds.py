"""`agent-lightning rollout ...` and `agent-lightning policy create|export|import|diff`.

Like the other operator commands these talk to the store directly, as the local administrator,
and every change is audited as actor `cli:<os user>`. A running server notices within a second
(its rollout cache expires), so no restart is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

rollout_app = typer.Typer(
    help="Canaries, A/B tests, blue/green switches and feature flags of policy versions.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="Policies and their versions: create one from its YAML, compare versions, export and "
    "import signed bundles.",
    no_args_is_help=True,
)

AppOption = Annotated[str, typer.Option("--app", help="The app (tenant) the policy belongs to.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit log.")]


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="AGL_DATABASE_URL",
        help="SQLAlchemy URL; default: SQLite in ./.agl (postgresql://... for PostgreSQL).",
        show_default=False,
    ),
]


def _main() -> Any:
    # The module, not the `main` function that `agent_lightning.cli` re-exports under that name.
    import importlib

    return importlib.import_module("agent_lightning.cli.main")


def _manager(database_url: str | None) -> Any:
    from agent_lightning.publisher.rollouts import RolloutManager
    from agent_lightning.security.audit import AuditLog

    store = _main()._store(database_url)
    return RolloutManager(store, AuditLog(store))


def _errors(fn: Any) -> Any:
    """Turn the publisher's expected failures into one readable line and exit code 1."""
    from agent_lightning.publisher.bundle import BundleError
    from agent_lightning.publisher.registry import RegistryError
    from agent_lightning.publisher.rollouts import RolloutError
    from agent_lightning.store import Conflict, NotFound

    try:
        return fn()
    except (RolloutError, RegistryError, NotFound, Conflict) as exc:
        raise _main().fail(str(exc)) from None
    except BundleError as exc:
        raise _main().fail(f"bundle refused: {exc}") from None


def _parse_steps(raw: str | None) -> list[float] | None:
    if raw is None:
        return None
    try:
        return [float(part) for part in raw.replace(" ", "").split(",") if part]
    except ValueError:
        raise _main().fail(f"--steps: expected comma-separated percentages, got {raw!r}") from None


def _parse_guardrail(raw: str) -> dict[str, Any]:
    """`metric`, `metric:max_drop=0.05` or `metric:threshold=0.1,direction=lower_is_better`."""
    metric, _, options = raw.partition(":")
    out: dict[str, Any] = {"metric": metric.strip()}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise _main().fail(f"--guardrail {raw!r}: expected key=value after the metric")
        if key in ("max_drop", "threshold"):
            try:
                out[key] = float(value)
            except ValueError:
                raise _main().fail(f"--guardrail {raw!r}: {key} must be a number") from None
        elif key == "direction":
            out[key] = value
        else:
            raise _main().fail(f"--guardrail {raw!r}: unknown option {key!r}")
    return out


def _parse_segment(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    attribute, sep, values = raw.partition("=")
    if not sep or not attribute or not values:
        raise _main().fail(f"--segment: expected attribute=value[,value...], got {raw!r}")
    return {"attribute": attribute.strip(), "values": [v.strip() for v in values.split(",")]}


def _show(row: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    from agent_lightning.publisher.rollouts import rollout_json

    data = rollout_json(row)
    if extra:
        data.update(extra)
    if as_json:
        print(json.dumps(data, default=str))
        return
    console = _main().console
    segment = data["segment"]
    seg = f"  segment {segment['attribute']} in {segment['values']}" if segment else ""
    # Reasons and segment values are free text: printed as written, not as markup or :emoji:.
    console.print(
        f"[bold]{data['id']}[/] {data['policy']} {data['kind']} [cyan]{data['status']}[/] "
        f"v{data['baseline_version']} → v{data['candidate_version']} at {data['percent']:g}% "
        f"(step {data['step_index'] + 1}/{len(data['steps'])}: {data['steps']}){escape(seg)}",
        emoji=False,
    )
    if data["reason"]:
        console.print(f"  reason: {escape(str(data['reason']))}", emoji=False)


# -- rollout ----------------------------------------------------------------------------------


@rollout_app.command("start")
def rollout_start(
    app_id: AppOption,
    policy: Annotated[str, typer.Option(help="Policy name.")],
    candidate: Annotated[int, typer.Option(help="The version to roll out.", min=1)],
    kind: Annotated[str, typer.Option(help="canary, ab, blue_green or flag.")] = "canary",
    baseline: Annotated[
        int | None, typer.Option(help="Compare with this version (default: the live one).")
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Percent per step, e.g. 5,25,50,100 (canary default).")
    ] = None,
    min_decisions: Annotated[
        int, typer.Option(help="Candidate decisions needed before each step.", min=1)
    ] = 100,
    segment: Annotated[
        str | None, typer.Option(help="Only units whose attribute matches: plan=pro,enterprise.")
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(
            help="Repeatable: mean_reward, error_rate:max_drop=0.01, "
            "latency_p99:threshold=2000 (default: mean_reward and error_rate)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Error rate of the sequential tests.")] = 0.05,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Start rolling a version out; guardrails roll it back automatically on a regression."""
    manager = _manager(database_url)
    row = _errors(
        lambda: manager.start(
            app_id,
            _main()._cli_actor(),
            policy=policy,
            candidate_version=candidate,
            kind=kind,
            baseline_version=baseline,
            steps=_parse_steps(steps),
            min_decisions_per_step=min_decisions,
            segment=_parse_segment(segment),
            guardrails=[_parse_guardrail(g) for g in guardrail] if guardrail else None,
            alpha=alpha,
            reason=reason,
        )
    )
    _show(row, as_json)


@rollout_app.command("list")
def rollout_list(
    app_id: AppOption,
    policy: Annotated[str | None, typer.Option(help="Only this policy.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="running, paused, promoted, rolled_back, aborted or active."),
    ] = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Rollouts of an app, newest first."""
    manager = _manager(database_url)
    _main()._known_app(manager.store, app_id)
    rows = _errors(lambda: manager.list(app_id, policy=policy, status=status))
    if not rows and not as_json:
        _main().console.print("no rollouts")
    for row in rows:
        _show(row, as_json)


@rollout_app.command("status")
def rollout_status(
    rollout_id: Annotated[str, typer.Argument(help="The rollout id (ro_...).")],
    app_id: AppOption,
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate now (may advance, promote or roll back).")
    ] = False,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """One rollout with both arms' live metrics and each guardrail's test."""
    manager = _manager(database_url)
    action = None
    if evaluate:
        result = _errors(lambda: manager.evaluate(app_id, rollout_id, _main()._cli_actor()))
        action = result.action
    row = _errors(lambda: manager.get(app_id, rollout_id))
    metrics = manager.report(row)
    metrics.pop("_regressions", None)
    extra = {"metrics": metrics, **({"action": action} if action else {})}
    if as_json:
        _show(row, True, extra)
        return
    _show(row, False)
    console = _main().console
    if action:
        console.print(f"  evaluation: {action}")
    for arm in ("baseline", "candidate"):
        m = metrics[arm]
        console.print(
            f"  {arm:9} v{m['version']}: {m['decisions']} decisions, mean reward "
            f"{m['mean_reward']} (n={m['rewarded']}), resolution {m['resolution_rate']}, "
            f"escalation {m['escalation_rate']}, errors {m['error_rate']}, "
            f"p99 {m['latency_p99']} ms"
        )
    for g in metrics["guardrails"]:
        flag = "[red]REGRESSION[/]" if g["regression"] else "ok"
        console.print(f"  guardrail {g['metric']}: {flag} ({g['test']}, interval {g['interval']})")
    console.print(
        f"  this step: {metrics['step_decisions']}/{metrics['min_decisions_per_step']} "
        "candidate decisions"
    )


def _move(verb: str, rollout_id: str, app_id: str, reason: str, as_json: bool, url: Any) -> None:
    manager = _manager(url)
    actor = _main()._cli_actor()
    method = getattr(manager, verb)
    row = _errors(lambda: method(app_id, rollout_id, actor, reason))
    _show(row, as_json)


@rollout_app.command("promote")
def rollout_promote(
    rollout_id: Annotated[str, typer.Argument(help="The rollout id.")],
    app_id: AppOption,
    reason: ReasonOption = "promoted from the command line",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Make the candidate live for everyone now; the rollout ends."""
    _move("promote", rollout_id, app_id, reason, as_json, database_url)


@rollout_app.command("pause")
def rollout_pause(
    rollout_id: Annotated[str, typer.Argument(help="The rollout id.")],
    app_id: AppOption,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Freeze the share: no further steps (guardrails still roll back on a regression)."""
    _move("pause", rollout_id, app_id, reason, as_json, database_url)


@rollout_app.command("resume")
def rollout_resume(
    rollout_id: Annotated[str, typer.Argument(help="The rollout id.")],
    app_id: AppOption,
    reason: ReasonOption = "",
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Resume a paused rollout."""
    _move("resume", rollout_id, app_id, reason, as_json, database_url)


@rollout_app.command("rollback")
def rollout_rollback(
    rollout_id: Annotated[str, typer.Argument(help="The rollout id.")],
    app_id: AppOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (required; audited).")],
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Put everyone back on the baseline (switches back a promoted rollout, too)."""
    _move("rollback", rollout_id, app_id, reason, as_json, database_url)


# -- policy -----------------------------------------------------------------------------------


def _data_dir(database_url: str | None) -> Path:
    return _main()._settings(database_url).data_dir


@policy_app.command("create")
def policy_create(
    app_id: AppOption,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="The policy YAML (default: the one agent.yaml names)."),
    ] = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The runtime's agent.yaml (without --from).")
    ] = Path("agent.yaml"),
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create the server-side policy of a runtime's policy YAML: its name, decision point and
    learner spec, with version 1 (untrained) live. Runtimes of that policy then sync, and
    rollouts of its later versions can start. An existing policy is left as it is."""
    from agent_lightning.learning import LearningError, make_policy
    from agent_lightning.runtime.config import RuntimeConfigError, load_runtime_config
    from agent_lightning.runtime.spec import PolicySpecError, load_policy_spec
    from agent_lightning.security.audit import AuditLog
    from agent_lightning.store import NotFound, Policy, PolicyVersion, new_id

    fail = _main().fail
    path = from_file
    if path is None:
        if not config.is_file():
            raise fail(f"{config} not found; run in a project directory or give --from FILE")
        try:
            path = load_runtime_config(config).policy_path
        except RuntimeConfigError as exc:
            raise fail(str(exc)) from None
    try:
        spec = load_policy_spec(path)
    except PolicySpecError as exc:
        raise fail(f"the policy is invalid:\n{exc}") from None
    store = _main()._store(database_url)
    _main()._known_app(store, app_id)  # a typo would create a policy no runtime asks for
    try:
        existing = store.get_policy(app_id, spec.name)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.decision_point != spec.decision_point:
            raise fail(
                f"policy {spec.name!r} already exists in app {app_id!r} for decision point "
                f"{existing.decision_point!r}, not {spec.decision_point!r} as {path.name} says"
            )
        live = existing.live_version
        if as_json:
            print(json.dumps({"policy": spec.name, "live_version": live, "created": False}))
            return
        _main().console.print(
            escape(
                f"policy {spec.name} already exists in app {app_id} "
                f"(live version: {live if live is not None else 'none'}); nothing changed"
            ),
            emoji=False,
        )
        return
    try:
        artifact = make_policy(dict(spec.learner)).to_bytes()
    except (LearningError, ValueError, TypeError) as exc:
        raise fail(f"{path.name}: learner: {exc}") from None
    actor, audit = _main()._cli_actor(), AuditLog(store)
    row = _errors(
        lambda: store.create_policy(
            Policy(
                id=new_id(),
                app_id=app_id,
                name=spec.name,
                decision_point=spec.decision_point,
                description=spec.description,
                spec=dict(spec.learner),
                created_by=actor.name,
            )
        )
    )
    after = {"name": spec.name, "decision_point": spec.decision_point, "spec": spec.learner}
    audit.record(actor, "policy.create", "policy", spec.name, app_id=app_id, after=after)
    # As `POST /v1/policies` with a spec: version 1 is the untrained policy, live at once.
    version = store.add_policy_version(
        PolicyVersion(
            id=new_id(),
            policy_id=row.id,
            artifact=artifact,
            notes=f"initial version from {path.name} (warm start, nothing learned yet)",
            created_by=actor.name,
        ),
        make_live=True,
    )
    audit.record(
        actor,
        "policy_version.create",
        "policy_version",
        f"{spec.name}@{version.version}",
        app_id=app_id,
        after={"version": version.version, "live": True},
    )
    if as_json:
        print(json.dumps({"policy": spec.name, "live_version": version.version, "created": True}))
        return
    _main().console.print(
        f"[green]created[/] policy {spec.name} in app {escape(app_id)} "
        f"(decision point {escape(spec.decision_point)}) with v{version.version} live",
        emoji=False,
    )


@policy_app.command("export")
def policy_export(
    app_id: AppOption,
    policy: Annotated[str, typer.Option(help="Policy name.")],
    version: Annotated[int, typer.Option(help="The version to export.", min=1)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default stdout).")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write one version as a bundle signed with this installation's Ed25519 key."""
    from agent_lightning.publisher import keys, registry

    store = _main()._store(database_url)
    key = keys.signing_key(_data_dir(database_url))
    data = _errors(lambda: registry.export_bundle(store, app_id, policy, version, key))
    if output is None:
        print(data.decode())
        return
    output.write_bytes(data)
    message = f"wrote {policy} v{version} to {output} ({len(data):,} bytes)"
    _main().console.print(escape(message), emoji=False)


@policy_app.command("public-key")
def policy_public_key(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="PEM file to write (default stdout)."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print (or write) the public key runtimes must trust to accept this server's bundles.

    Put the file next to the runtime's agent.yaml and list it under `trusted_keys`, e.g.
    `agent-lightning policy public-key -o support-desk/keys/publisher.pem`.
    """
    from agent_lightning.publisher import keys

    pem = keys.public_keys(_data_dir(database_url))[0]["pem"]
    if output is None:
        print(pem, end="")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(pem)
    _main().console.print(escape(f"wrote the publisher's public key to {output}"), emoji=False)


@policy_app.command("import")
def policy_import(
    bundle: Annotated[Path, typer.Argument(help="The bundle file to import.")],
    app_id: AppOption,
    policy: Annotated[
        str | None, typer.Option(help="Expected policy name (default: the bundle's).")
    ] = None,
    trusted_key: Annotated[
        list[Path] | None,
        typer.Option(help="Repeatable: an Ed25519 public key (PEM) allowed to sign it."),
    ] = None,
    create: Annotated[bool, typer.Option(help="Create the policy if it does not exist.")] = False,
    make_live: Annotated[bool, typer.Option(help="Make the imported version live.")] = False,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Verify a signed bundle and register it as a new version (refused if tampered)."""
    from agent_lightning.publisher import keys, registry
    from agent_lightning.publisher.bundle import load_public_key
    from agent_lightning.security.audit import AuditLog

    if not bundle.is_file():
        raise _main().fail(f"{bundle} does not exist")
    extra = []
    for path in trusted_key or []:
        if not path.is_file():
            raise _main().fail(f"{path} does not exist")
        extra.append(_errors(lambda p=path: load_public_key(p.read_bytes())))
    store = _main()._store(database_url)
    trusted = _errors(lambda: keys.trusted_keys(_data_dir(database_url), extra))
    row, created = _errors(
        lambda: registry.import_bundle(
            store,
            AuditLog(store),
            _main()._cli_actor(),
            app_id,
            bundle.read_bytes(),
            trusted,
            policy=policy,
            create_policy=create,
            make_live=make_live,
        )
    )
    name = policy or json.loads(bundle.read_bytes())["manifest"]["policy"]
    if as_json:
        print(json.dumps({"policy": name, "version": row.version, "created": created}))
        return
    verb = "imported" if created else "already imported as"
    live = " (live)" if make_live and created else ""
    _main().console.print(f"[green]{verb}[/] {escape(name)} v{row.version}{live}", emoji=False)


@policy_app.command("diff")
def policy_diff(
    app_id: AppOption,
    policy: Annotated[str, typer.Option(help="Policy name.")],
    from_version: Annotated[
        int | None, typer.Argument(help="Older version (default: the newer one's parent).")
    ] = None,
    to_version: Annotated[
        int | None, typer.Argument(help="Newer version (default: the newest).")
    ] = None,
    as_json: JsonOption = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Compare two versions: metadata, metrics, lineage and learned-parameter changes."""
    from agent_lightning.publisher import registry

    store = _main()._store(database_url)
    diff = _errors(lambda: registry.diff_versions(store, app_id, policy, from_version, to_version))
    if as_json:
        print(json.dumps(diff, default=str))
        return
    console = _main().console
    console.print(
        f"[bold]{policy}[/] v{diff['from']} → v{diff['to']} "
        f"({diff['lineage']['related']}; path {diff['lineage']['path']})"
    )
    for key, change in diff["metadata"].items():  # notes and metrics are free text
        console.print(escape(f"  {key}: {change['from']} → {change['to']}"), emoji=False)
    for key, change in diff["metrics"].items():
        delta = f" ({change['delta']:+g})" if "delta" in change else ""
        line = f"  metric {key}: {change['from']} → {change['to']}{delta}"
        console.print(escape(line), emoji=False)
    params = diff["parameters"]
    if params and params.get("comparable"):
        seen = params["examples_seen"]
        console.print(f"  examples seen: {seen['from']} → {seen['to']}")
        for key, change in params["config_changes"].items():
            line = f"  config {key}: {change['from']} → {change['to']}"
            console.print(escape(line), emoji=False)
        for item in params["largest_changes"][:10]:
            console.print(
                f"  {item['name']}: L2 change {item['l2_delta']}, max {item['max_abs_delta']}"
            )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root `agent-lightning` app."""
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(policy_app, name="policy")
