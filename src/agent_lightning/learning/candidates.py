"""A learning task's candidate that survives the gate's refusals.

A task clones the live version and teaches the clone what the live version has not learned. When
the gate refuses it, starting over at the next task would retrain on everything since the live
version again (work that grows with every refusal). `IncrementalCandidate` keeps the clone and
teaches it only the rows it has not seen, identified by a stable key (a decision's sequence
number, an index into a log), so a run of refusals costs what one task would. Both the library's
`InProcessBackend` and the platform's `LearningController` use it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from agent_lightning.learning.types import LoggedDecision


class IncrementalCandidate:
    """A clone of `parent` that learns each keyed row once, however many tasks offer it.

    `owner` says what the candidate belongs to (e.g. the live version and where its data ends);
    a caller starts a new one when that changes. If `teach` raises, the clone may be half-taught:
    drop it.
    """

    def __init__(self, parent: Any, owner: Hashable = None) -> None:
        self.owner = owner
        self.policy = parent.clone()
        self._learned: set[Hashable] = set()

    def teach(self, rows: Iterable[tuple[Hashable, LoggedDecision]]) -> int:
        """Learn the rows whose keys are new; returns how many that was."""
        fresh = [(key, logged) for key, logged in rows if key not in self._learned]
        self.policy.learn([logged for _, logged in fresh])
        self._learned.update(key for key, _ in fresh)
        return len(fresh)


__all__ = ["IncrementalCandidate"]
