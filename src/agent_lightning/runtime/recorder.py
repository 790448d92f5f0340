"""`InMemoryRecorder`: keeps records in lists, for evaluation and tests (and nothing durable)."""

from __future__ import annotations

import threading

from agent_lightning.ingestion.schemas import DecisionIn, EventIn, RewardIn


class InMemoryRecorder:
    """A `Recorder` that keeps every record in memory, in arrival order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: list[DecisionIn] = []
        self.rewards: list[RewardIn] = []
        self.events: list[EventIn] = []

    def record_decision(self, decision: DecisionIn) -> None:
        with self._lock:
            self.decisions.append(decision)

    def record_reward(self, reward: RewardIn) -> None:
        with self._lock:
            self.rewards.append(reward)

    def record_event(self, event: EventIn) -> None:
        with self._lock:
            self.events.append(event)

    def decision(self, decision_id: str) -> DecisionIn:
        """The recorded decision with this id (KeyError if none)."""
        with self._lock:
            for d in self.decisions:
                if d.id == decision_id:
                    return d
        raise KeyError(decision_id)
