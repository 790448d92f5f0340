"""RolloutSelector: which version serves one decide call while a rollout runs.

Plugs into `DecisionService.version_selector`. The active rollout of each policy is read from
the store at most once per `ttl` seconds (and at once after `invalidate`), so `decide` pays a
dictionary lookup and one SHA-256, not a query. Assignment is the same pure function the
runtimes use (`assignment.in_candidate`), so a user lands in the same arm on the server and on
every edge device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_lightning.publisher import assignment


@dataclass(frozen=True)
class ActiveRollout:
    """What serving needs of a running (or paused) rollout."""

    id: str
    kind: str
    status: str
    baseline_version: int
    candidate_version: int
    percent: float
    salt: str
    segment: Mapping[str, Any] | None

    @classmethod
    def of(cls, row: Any) -> ActiveRollout:
        return cls(
            row.id,
            row.kind,
            row.status,
            row.baseline_version,
            row.candidate_version,
            float(row.percent),
            row.salt,
            dict(row.segment) if row.segment else None,
        )

    def in_segment(
        self, user_id: str | None, session_id: str | None, attributes: Mapping[str, Any]
    ) -> bool:
        """Inside the segment (always, without one). `user_id`/`session_id` name the fields."""
        if not self.segment:
            return True
        attribute = self.segment.get("attribute")
        if attribute == "user_id":
            value: Any = user_id
        elif attribute == "session_id":
            value = session_id
        else:
            value = (attributes or {}).get(attribute)
        if value is None or isinstance(value, dict | list):
            return False
        return str(value) in {str(v) for v in self.segment.get("values") or []}

    def arm(
        self,
        user_id: str | None,
        session_id: str | None,
        attributes: Mapping[str, Any],
        fallback: str,
    ) -> str:
        """`candidate` or `baseline` for one unit (sticky: a pure function of salt and key)."""
        if not self.in_segment(user_id, session_id, attributes):
            return "baseline"
        key = assignment.unit_key(user_id, session_id, fallback)
        return "candidate" if assignment.in_candidate(self.salt, key, self.percent) else "baseline"

    def version_for(self, arm: str) -> int:
        return self.candidate_version if arm == "candidate" else self.baseline_version


class RolloutSelector:
    """`(app_id, policy_row, RankRequest) -> version`, cached for at most `ttl` seconds."""

    def __init__(self, store: Any, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, ActiveRollout | None]] = {}

    def invalidate(self, app_id: str | None = None) -> None:
        with self._lock:
            if app_id is None:
                self._cache.clear()
            else:
                for key in [k for k in self._cache if k[0] == app_id]:
                    del self._cache[key]

    def active(self, app_id: str, policy_id: str) -> ActiveRollout | None:
        key = (app_id, policy_id)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        from sqlalchemy import select

        from agent_lightning.publisher.models import Rollout

        with self.store.session() as s:
            row = s.scalar(
                select(Rollout).where(Rollout.app_id == app_id, Rollout.active_key == policy_id)
            )
            found = ActiveRollout.of(row) if row is not None else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self.ttl, found)
        return found

    def __call__(self, app_id: str, policy: Any, request: Any) -> int | None:
        rollout = self.active(app_id, policy.id)
        if rollout is None:
            return policy.live_version
        from agent_lightning.store import new_id

        arm = rollout.arm(
            request.user_id, request.session_id, request.attributes, request.id or new_id()
        )
        return rollout.version_for(arm)


__all__ = ["ActiveRollout", "RolloutSelector"]
