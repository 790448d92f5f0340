"""`agent-lightning demo`: watch a support bot learn from its own mistakes, end to end.

The real thing on the embedded default: the server on SQLite (uvicorn on loopback), the Python
SDK over HTTP, Banking77 customer queries as live traffic. A simulated customer says "resolved"
only when the bot routed the query to the right intent. Every few hundred rewards the demo
triggers a learning task through the SDK; a new policy version goes live only when it passes the
off-policy gate. At the end it prints what was stored (redacted) and the lineage of versions.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# A few customers type more than they should: the demo shows it never reaches the store.
PII_SUFFIXES = [
    " My card is 4111 1111 1111 1111.",
    " You can email me at jane.doe@example.com",
    " Call me back on +44 20 7946 0958 please.",
    " My IBAN is GB82 WEST 1234 5698 7654 32.",
]


def banking77_dir(explicit: Path | None = None) -> Path | None:
    """The Banking77 folder (holding train.csv): `explicit`, else `$AGL_BANKING77`, else
    `shared/data/banking77` beside the working directory or the project. None if absent."""
    if explicit is None and os.environ.get("AGL_BANKING77"):
        explicit = Path(os.environ["AGL_BANKING77"])
    if explicit is not None:
        return explicit if (explicit / "train.csv").exists() else None
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        for candidate in (base / "shared/data/banking77", base.parent / "shared/data/banking77"):
            if (candidate / "train.csv").exists():
                return candidate
    return None


def run_demo(
    console: Console,
    *,
    interactions: int = 4000,
    learn_every: int = 250,
    featurizer: str = "hybrid",
    seed: int = 0,
    banking77: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    from agent_lightning import AgentLightningClient
    from agent_lightning.config import Settings
    from agent_lightning.gateway.testing import ThreadedServer
    from agent_lightning.learning.simulation import DEFAULT_SPECS, load_intent_csv
    from agent_lightning.security.audit import Actor
    from agent_lightning.security.identities import create_client
    from agent_lightning.server.app import create_app
    from agent_lightning.server.main import limit_blas_threads
    from agent_lightning.server.wiring import with_components

    data = banking77_dir(banking77)
    if data is None:
        source = banking77 or os.environ.get("AGL_BANKING77")
        where = f"{source} has no train.csv" if source else "none beside the project"
        raise FileNotFoundError(
            f"Banking77 not found ({where}): pass --banking77 DIR, or set AGL_BANKING77, to the "
            "folder holding train.csv and categories.json"
        )
    queries = load_intent_csv(data / "train.csv")  # SpecError (a ValueError) names the line
    try:
        intents = json.loads((data / "categories.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{data / 'categories.json'} cannot be read: {exc}") from None
    if not isinstance(intents, list) or not all(isinstance(i, str) and i for i in intents):
        raise ValueError(f"{data / 'categories.json'} must be a JSON list of intent names")
    random.Random(seed).shuffle(queries)
    queries = queries[:interactions]

    workdir = data_dir or Path(tempfile.mkdtemp(prefix="agl-demo-"))
    # A seeded decision service: the same --seed replays the same story.
    settings = Settings(
        data_dir=workdir, database_url=f"sqlite:///{workdir / 'demo.db'}", decision_seed=seed
    )
    state = with_components(settings)
    limit_blas_threads(settings.blas_threads)  # the server's default: learning leaves a core
    if state.controller is not None:
        # The demo triggers a task every --learn-every rewards itself; the server's own
        # scheduler would add tasks whenever its thread wakes, so no two runs would match.
        state.controller.every_decisions = state.controller.every_seconds = None
    app = create_app(settings, state=state)
    server = ThreadedServer(app).start()
    console.print(
        f"[bold]agent-lightning demo[/]  server {server.url}  (SQLite: {workdir / 'demo.db'})"
    )
    admin = create_client(state.store, state.audit, "support-bot", ["AgentAdmin"], Actor("demo"))
    actions = [{"id": name, "description": name.replace("_", " ")} for name in intents]
    windows: list[float] = []
    registered: list[str] = []
    try:
        with AgentLightningClient(admin.client_id, admin.secret, base_url=server.url) as agl:
            agl.create_policy(
                "intents",
                decision_point="intent",
                spec={**DEFAULT_SPECS[featurizer], "seed": seed},
                description="which of the 77 banking intents handles a customer message",
            )
            console.print(
                f"{len(queries):,} customer messages, {len(intents)} intents; the bot starts "
                "from zero-shot similarity between message and intent name.\n"
            )
            resolved_window: list[float] = []
            progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("resolution (last 250): [bold]{task.fields[rate]}[/]"),
                TextColumn("live: v{task.fields[version]}"),
                TimeElapsedColumn(),
                console=console,
            )
            live_version = 1
            with progress:
                bar = progress.add_task("learning", total=len(queries), rate="-", version=1)
                for i, (text, label) in enumerate(queries, start=1):
                    if i % 97 == 0:
                        text += PII_SUFFIXES[i % len(PII_SUFFIXES)]
                    session = f"chat-{i}"
                    decision = agl.decide(
                        actions,
                        text=text,
                        decision_point="intent",
                        session_id=session,
                        user_id=f"customer-{i % 400}",
                    )
                    resolved = decision.action_id == label
                    agl.log_event(
                        text,
                        user_id=f"customer-{i % 400}",
                        session_id=session,
                        intent_prediction=decision.action_id,
                        confidence=decision.propensity,
                        feedback_score=1.0 if resolved else 0.0,
                    )
                    agl.reward(decision.decision_id, 1.0 if resolved else 0.0)
                    resolved_window.append(1.0 if resolved else 0.0)
                    recent = resolved_window[-250:]
                    if i % learn_every == 0:
                        windows.append(sum(recent) / len(recent))
                        task = agl.trigger_task({"task": "learn", "policy": "intents"})
                        task = agl.wait_for_task(task.id, timeout=300, poll=0.2)
                        result = task.result or {}
                        gate = (result.get("metrics") or {}).get("gate") or {}
                        if result.get("registered"):
                            live_version = result["version"]
                            registered.append(
                                f"v{live_version} after {i:,} messages: estimated resolution "
                                f"{gate.get('candidate_value') or 0:.1%} vs live "
                                f"{gate.get('live_value') or 0:.1%} (lower bound of the gain "
                                f"{gate.get('difference_ci_low') or 0:+.1%})"
                            )
                            progress.console.print(f"  [green]registered[/] {registered[-1]}")
                        elif task.status == "failed":
                            progress.console.print(f"  [red]task failed:[/] {task.error}")
                    progress.update(
                        bar,
                        advance=1,
                        rate=f"{sum(recent) / len(recent):.1%}",
                        version=live_version,
                    )
            _print_story(console, agl, windows, registered, learn_every)
    finally:
        server.stop()
    return {"windows": windows, "registered": registered, "data_dir": str(workdir)}


def _print_story(console: Console, agl: Any, windows, registered, learn_every) -> None:
    table = Table(title="resolution rate, per window of 250 messages")
    table.add_column("messages")
    table.add_column("resolved", justify="right")
    for n, rate in enumerate(windows, start=1):
        table.add_row(f"{(n - 1) * learn_every + 1:,}-{n * learn_every:,}", f"{rate:.1%}")
    console.print(table)
    if windows:
        console.print(
            f"first window {windows[0]:.1%} → last window {windows[-1]:.1%}; "
            f"{len(registered)} version(s) passed the off-policy gate"
        )
    console.print("\n[bold]What was stored[/] (PII redacted before it reached the database):")
    shown = 0
    for event in agl.list_events(order="desc"):
        if "<" in (event.get("text") or "") or shown < 2:
            # Stored text is data: printed as it is, not read as Rich markup.
            line = f"  event  {event['text']!r}  pii={event.get('pii_counts')}"
            console.print(escape(line), emoji=False)
            shown += 1
        if shown >= 4:
            break
    for decision in agl.list_decisions(order="desc"):
        top = sorted(decision["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        console.print(
            f"  decision {decision['id'][:13]}… chose {decision['action_id']} "
            f"(p={decision['propensity']:.2f}; top: "
            + ", ".join(f"{a} {p:.2f}" for a, p in top)
            + f") by policy v{decision['policy']['version']}"
        )
        break
