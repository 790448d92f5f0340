"""Wiring the publisher into a server: one object per server state, installed idempotently.

`install_publisher(state)` creates the RolloutManager (whose transitions invalidate the decide
caches) and plugs the RolloutSelector into `DecisionService.version_selector`; the server
mounts the routes (`server/routes/rollouts.py`), so this package never imports the server.
`start_evaluator(state)` adds the background evaluator to the server's startup/shutdown hooks
(the full server does; bare test apps call `evaluate` themselves).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from agent_lightning.publisher.rollouts import (
    RolloutEvaluator,
    RolloutManager,
    auto_rollout,
    auto_rollout_config,
    evaluator_interval,
)
from agent_lightning.publisher.selector import RolloutSelector


class ChangeFeed:
    """A counter per app, bumped on every rollout transition in this process.

    The manifest stream checks it several times a second (a dictionary read) and rebuilds the
    manifest at once when it moved; changes made by other replicas or by `PUT /live` are caught
    by the stream's periodic re-read instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def bump(self, app_id: str) -> None:
        with self._lock:
            self._counts[app_id] = self._counts.get(app_id, 0) + 1

    def count(self, app_id: str) -> int:
        return self._counts.get(app_id, 0)


@dataclass
class Publisher:
    manager: RolloutManager
    selector: RolloutSelector
    changes: ChangeFeed = field(default_factory=ChangeFeed)
    evaluator: RolloutEvaluator | None = None


def install_publisher(state: Any) -> Publisher:
    """Build the publisher for a server state (idempotent; returns the instance)."""
    existing = state.extras.get("publisher")
    if isinstance(existing, Publisher):
        return existing
    selector = RolloutSelector(state.store)
    manager = RolloutManager(state.store, state.audit)
    manager.add_listener(selector.invalidate)
    manager.add_listener(state.decisions.invalidate)
    state.decisions.version_selector = selector
    publisher = Publisher(manager, selector)
    manager.add_listener(publisher.changes.bump)
    state.extras["publisher"] = publisher
    return publisher


def start_evaluator(state: Any, every_seconds: float | None = None) -> RolloutEvaluator:
    """Evaluate every active rollout every N seconds while the server runs (idempotent)."""
    publisher = install_publisher(state)
    if publisher.evaluator is None:
        seconds = every_seconds if every_seconds is not None else evaluator_interval()
        publisher.evaluator = RolloutEvaluator(publisher.manager, seconds)
        state.extras.setdefault("on_startup", []).append(publisher.evaluator.start)
        state.extras.setdefault("on_shutdown", []).append(publisher.evaluator.stop)
    return publisher.evaluator


class ControllerRollouts:
    """How the learning controller hands a freshly learned version to the publisher."""

    def __init__(self, store: Any, audit: Any, manager: RolloutManager) -> None:
        self.store = store
        self.audit = audit
        self.manager = manager

    def route(self, app_id: str, policy_name: str) -> str:
        """ "candidate" while a rollout is active (live must not move under it), "rollout" when
        the app asks for automatic canaries, else "live" (the gate's verdict is enough)."""
        if self.manager.active(app_id, policy_name) is not None:
            return "candidate"
        if auto_rollout_config(self.store, app_id, policy_name) is not None:
            return "rollout"
        return "live"

    def start(self, app_id: str, policy_name: str, version: int) -> Any:
        return auto_rollout(
            self.store, self.audit, app_id, policy_name, version, manager=self.manager
        )


__all__ = [
    "ChangeFeed",
    "ControllerRollouts",
    "Publisher",
    "install_publisher",
    "start_evaluator",
]
