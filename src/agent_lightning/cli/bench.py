"""`agent-lightning bench intents`: the learning benchmark, through the platform's own path.

Traffic goes through `PlatformBackend` (the decide / reward / learning-task code the REST API
runs, on a SQLite store in a temporary directory), so the figures describe the product, not a
stand-alone prototype.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def run_intents_bench(
    console: Console,
    train_file: Path,
    test_file: Path,
    *,
    featurizer: str = "hybrid",
    feedback: str = "bandit",
    seed: int = 0,
    retrain_every: int | None = None,
) -> dict[str, Any]:
    from agent_lightning.controller.backend import PlatformBackend
    from agent_lightning.learning import LearningError, load_intent_csv, run_intent_benchmark
    from agent_lightning.learning.simulation import DEFAULT_RETRAIN_EVERY, DEFAULT_SPECS
    from agent_lightning.store import Store

    train = load_intent_csv(train_file)
    test = load_intent_csv(test_file)
    if not train or not test:
        raise ValueError("train and test files need rows with text,category")
    every = DEFAULT_RETRAIN_EVERY if retrain_every is None else retrain_every
    if every < 1:
        raise ValueError("retrain_every must be >= 1")
    spec = {**DEFAULT_SPECS[featurizer], "seed": seed}
    # The store lives in memory-backed tmpfs when there is one: this measures learning, not fsync.
    tmp_root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="agl-bench-") as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        try:
            backend = PlatformBackend(store, spec, retrain_every=every, seed=seed)
        except LearningError as exc:
            raise ValueError(str(exc)) from None
        progress = Progress(
            TextColumn("replaying traffic"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        with progress:
            bar = progress.add_task("replay", total=len(train))

            def tick(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total)

            try:
                result = run_intent_benchmark(
                    train,
                    test,
                    featurizer=featurizer,
                    feedback=feedback,
                    seed=seed,
                    backend=backend,
                    retrain_every=every,
                    progress=tick,
                )
            except LearningError as exc:
                raise ValueError(str(exc)) from None
        versions = backend.versions()
        store.close()
    figures = {
        "zero_shot_accuracy": result.zero_shot_accuracy,
        "learned_accuracy": result.learned_accuracy,
        "supervised_ceiling": result.supervised_ceiling,
        "online_windows": result.online_windows,
        "online_last_1000": result.online_last_1000,
        "interactions": result.interactions,
        "wall_seconds": result.wall_seconds,
        "versions_registered": len(versions) - 1,
        "featurizer": featurizer,
        "feedback": feedback,
        "seed": seed,
        "retrain_every": every,
    }
    table = Table(title=f"Banking77-style intents · {featurizer} features · {feedback} feedback")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("zero-shot test accuracy (before learning)", f"{result.zero_shot_accuracy:.1%}")
    table.add_row("learned greedy test accuracy (after one pass)", f"{result.learned_accuracy:.1%}")
    table.add_row("online resolution, last 1,000 interactions", f"{result.online_last_1000:.1%}")
    if result.supervised_ceiling is not None:
        table.add_row(
            "supervised ceiling (logistic regression, all labels)",
            f"{result.supervised_ceiling:.1%}",
        )
    table.add_row("interactions", f"{result.interactions:,}")
    table.add_row("policy versions registered (past the gate)", str(len(versions) - 1))
    table.add_row("wall time", f"{result.wall_seconds:.1f} s")
    console.print(table)
    console.print(
        "online resolution per 1,000: " + " ".join(f"{w:.0%}" for w in result.online_windows)
    )
    return figures
