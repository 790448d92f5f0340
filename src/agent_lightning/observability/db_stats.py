"""Metrics read from the database at scrape time: per policy version, and learning tasks.

Per policy version (labels `app_id`, `policy`, `version`; `version="none"` for decisions made
without a learned version):

- `agl_policy_decisions`: decisions logged.
- `agl_policy_escalation_rate`: share of those decisions that escalated, meaning the chosen
  action id is one of `ESCALATION_ACTIONS` (`escalate`) or the decision's attributes carry
  `"escalated": true`.
- `agl_policy_rewarded_decisions`: decisions with at least one reward.
- `agl_policy_mean_reward`: mean of the reward values given to those decisions (each reward
  counts once; session-level rewards without a decision id are not attributed to a version).
- `agl_policy_resolution_rate`: share of rewarded decisions that were *resolved*, meaning at
  least one of their rewards is > 0 (so 0 is "not resolved" and negative is "harmful").

The aggregation is incremental and index-friendly: each refresh runs GROUP BY queries over the
rows added since the last one (a primary-key range), joining rewards to decisions through the
`(app_id, decision_id)` index, so a scrape costs in proportion to new rows, not table size. Results
are cached for `ttl` seconds. On PostgreSQL, rows are read one refresh behind the newest primary
key, so a transaction that took a key earlier but committed later is not skipped. Totals are since
the table began; rows removed by retention stay counted.

The series count (and the memory behind it) is bounded, because a decision may name any policy:
only the newest `max_versions` versions of each policy are kept. Policies registered for the app
always get a label of their own. Other names get one only for the first `max_policies` of each
app. Decisions naming any further unregistered policy are counted under `policy="<other>"`
(version `none`). That label cannot be a registered policy's name.

Learning tasks: `agl_learning_tasks{app_id,status}` (current count per status) and
`agl_learning_task_duration_seconds{app_id,outcome}` (a histogram over finished tasks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import aliased

from agent_lightning.store import Decision, Policy, Reward, Store, Task

log = logging.getLogger("agent_lightning.observability")

ESCALATION_ACTIONS = ("escalate",)
OTHER_POLICY = "<other>"  # unregistered policies past the cap (policy names are [A-Za-z0-9._-])
TASK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def escalated_clause(dialect: str) -> Any:
    """SQL truth of "this decision escalated", for the store's dialect."""
    flag = Decision.attributes["escalated"].as_string()
    truthy: list[Any] = ["true", "1"] if dialect == "postgresql" else [1, "true", "1"]
    return Decision.action_id.in_(ESCALATION_ACTIONS) | flag.in_(truthy)


@dataclass
class VersionStats:
    decisions: int = 0
    escalations: int = 0
    rewards: int = 0
    reward_sum: float = 0.0
    rewarded: int = 0
    resolved: int = 0

    @property
    def escalation_rate(self) -> float | None:
        return self.escalations / self.decisions if self.decisions else None

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewards if self.rewards else None

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.rewarded if self.rewarded else None


Key = tuple[str, str, int | None]  # app_id, policy name ("" if none), version


class PolicyStats:
    """A prometheus collector over decisions and rewards, aggregated by policy version."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = 5.0,
        chunk: int = 50_000,
        max_rows_per_refresh: int = 1_000_000,
        max_versions: int = 5,
        max_policies: int = 20,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.chunk = chunk
        self.max_rows_per_refresh = max_rows_per_refresh
        self.max_versions = max_versions
        self.max_policies = max_policies
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._stats: dict[Key, VersionStats] = {}
        self._registered: set[tuple[str, str]] = set()  # (app_id, policy name)
        self._unregistered: dict[str, set[str]] = {}  # app_id -> names with a label of their own
        self._marks = {"decisions": 0, "rewards": 0}
        self._seen_max = {"decisions": 0, "rewards": 0}
        self._fresh_until = float("-inf")

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration, and no query until the first scrape

    def snapshot(self) -> dict[Key, VersionStats]:
        """Current totals (refreshed if older than `ttl`)."""
        with self._lock:
            if self.monotonic() >= self._fresh_until:
                try:
                    self._refresh()
                except Exception:  # noqa: BLE001 - a scrape must not fail because the DB did
                    log.warning("policy stats refresh failed; serving the last values")
                self._fresh_until = self.monotonic() + self.ttl
            return {k: VersionStats(**vars(v)) for k, v in self._stats.items()}

    def collect(self) -> Iterator[Metric]:
        stats = self._bounded(self.snapshot())
        labels = ["app_id", "policy", "version"]
        families = {
            "decisions": GaugeMetricFamily(
                "agl_policy_decisions", "Decisions logged per policy version", labels=labels
            ),
            "escalation_rate": GaugeMetricFamily(
                "agl_policy_escalation_rate",
                "Share of decisions that escalated (action 'escalate' or attributes.escalated)",
                labels=labels,
            ),
            "rewarded": GaugeMetricFamily(
                "agl_policy_rewarded_decisions",
                "Decisions with at least one reward per policy version",
                labels=labels,
            ),
            "mean_reward": GaugeMetricFamily(
                "agl_policy_mean_reward", "Mean reward value per policy version", labels=labels
            ),
            "resolution_rate": GaugeMetricFamily(
                "agl_policy_resolution_rate",
                "Share of rewarded decisions with a reward > 0, per policy version",
                labels=labels,
            ),
        }
        for (app_id, policy, version), s in sorted(stats.items(), key=_sort_key):
            values = [app_id, policy, "none" if version is None else str(version)]
            families["decisions"].add_metric(values, s.decisions)
            families["rewarded"].add_metric(values, s.rewarded)
            for name in ("escalation_rate", "mean_reward", "resolution_rate"):
                value = getattr(s, name)
                if value is not None:
                    families[name].add_metric(values, value)
        yield from families.values()

    def _bounded(self, stats: dict[Key, VersionStats]) -> dict[Key, VersionStats]:
        newest: dict[tuple[str, str], list[int]] = {}
        for app_id, policy, version in stats:
            if version is not None:
                newest.setdefault((app_id, policy), []).append(version)
        keep = {k: set(sorted(v)[-self.max_versions :]) for k, v in newest.items()}
        return {
            k: v for k, v in stats.items() if k[2] is None or k[2] in keep.get((k[0], k[1]), ())
        }

    # -- incremental aggregation ----------------------------------------------------------------

    def _target(self, table: str, current_max: int) -> int:
        if self.store.dialect == "sqlite":
            return current_max  # one writer at a time: key order is commit order
        target, self._seen_max[table] = self._seen_max[table], current_max
        return min(target, current_max)

    def _refresh(self) -> None:
        with self.store.session() as s:
            max_decision = int(s.scalar(select(func.max(Decision.pk))) or 0)
            max_reward = int(s.scalar(select(func.max(Reward.pk))) or 0)
            self._registered = {(a, n) for a, n in s.execute(select(Policy.app_id, Policy.name))}
        self._advance("decisions", self._target("decisions", max_decision), self._decision_rows)
        self._advance("rewards", self._target("rewards", max_reward), self._reward_rows)

    def _advance(self, table: str, target: int, rows: Callable[[int, int], list[Any]]) -> None:
        budget = self.max_rows_per_refresh
        while self._marks[table] < target and budget > 0:
            low = self._marks[table]
            high = min(target, low + self.chunk)
            # Sorted, so which names get a label does not depend on the database's row order.
            for row in sorted(rows(low, high), key=lambda r: (r[0], r[1] or "", r[2] or 0)):
                stats = self._stats.setdefault(
                    self._key(row[0], row[1] or "", row[2]), VersionStats()
                )
                _accumulate(table, stats, row)
            self._stats = self._bounded(self._stats)  # older versions are never shown again
            self._marks[table] = high
            budget -= high - low

    def _key(self, app_id: str, policy: str, version: int | None) -> Key:
        """The series a row counts in: its policy's, or the app's overflow bucket."""
        if not policy or (app_id, policy) in self._registered:
            return app_id, policy, version
        named = self._unregistered.setdefault(app_id, set())
        if policy != OTHER_POLICY and (policy in named or len(named) < self.max_policies):
            named.add(policy)
            return app_id, policy, version
        return app_id, OTHER_POLICY, None

    def _decision_rows(self, low: int, high: int) -> list[Any]:
        escalated = escalated_clause(self.store.dialect)
        query = (
            select(
                Decision.app_id,
                Decision.policy_name,
                Decision.policy_version,
                func.count(),
                func.sum(case((escalated, 1), else_=0)),
            )
            .where(Decision.pk > low, Decision.pk <= high)
            .group_by(Decision.app_id, Decision.policy_name, Decision.policy_version)
        )
        with self.store.session() as s:
            return list(s.execute(query).all())

    def _reward_rows(self, low: int, high: int) -> list[Any]:
        earlier = aliased(Reward)
        earlier_positive = aliased(Reward)
        first = ~exists().where(
            earlier.app_id == Reward.app_id,
            earlier.decision_id == Reward.decision_id,
            earlier.pk < Reward.pk,
        )
        first_positive = (Reward.value > 0) & ~exists().where(
            earlier_positive.app_id == Reward.app_id,
            earlier_positive.decision_id == Reward.decision_id,
            earlier_positive.pk < Reward.pk,
            earlier_positive.value > 0,
        )
        query = (
            select(
                Decision.app_id,
                Decision.policy_name,
                Decision.policy_version,
                func.count(),
                func.sum(Reward.value),
                func.sum(case((first, 1), else_=0)),
                func.sum(case((first_positive, 1), else_=0)),
            )
            .select_from(Reward)
            .join(
                Decision,
                and_(Decision.app_id == Reward.app_id, Decision.id == Reward.decision_id),
            )
            .where(Reward.pk > low, Reward.pk <= high)
            .group_by(Decision.app_id, Decision.policy_name, Decision.policy_version)
        )
        with self.store.session() as s:
            return list(s.execute(query).all())


def _accumulate(table: str, stats: VersionStats, row: Any) -> None:
    if table == "decisions":
        stats.decisions += int(row[3])
        stats.escalations += int(row[4] or 0)
    else:
        stats.rewards += int(row[3])
        stats.reward_sum += float(row[4] or 0.0)
        stats.rewarded += int(row[5] or 0)
        stats.resolved += int(row[6] or 0)


def _sort_key(item: tuple[Key, VersionStats]) -> tuple[str, str, int]:
    (app_id, policy, version), _ = item
    return app_id, policy, -1 if version is None else version


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class TaskStats:
    """A prometheus collector over the tasks table: counts by status, durations of finished ones.

    Finished tasks are read incrementally by `finished_at` (with a minute of slack for clocks and
    late commits) and remembered by primary key, so each is counted once.
    """

    def __init__(
        self, store: Store, *, ttl: float = 5.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._fresh_until = float("-inf")
        self._by_status: list[tuple[str, str, int]] = []
        self._counted: dict[int, datetime] = {}  # pk -> finished_at, pruned as `_since` moves
        self._since: datetime | None = None
        # (app_id, outcome) -> [bucket counts..., +Inf count], sum
        self._hist: dict[tuple[str, str], tuple[list[int], float]] = {}

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self.monotonic() >= self._fresh_until:
                try:
                    self._refresh()
                except Exception:  # noqa: BLE001 - a scrape must not fail because the DB did
                    log.warning("task stats refresh failed; serving the last values")
                self._fresh_until = self.monotonic() + self.ttl
            by_status = list(self._by_status)
            hist = {k: (list(v[0]), v[1]) for k, v in self._hist.items()}
        tasks = GaugeMetricFamily(
            "agl_learning_tasks", "Learning tasks by current status", labels=["app_id", "status"]
        )
        for app_id, status, count in by_status:
            tasks.add_metric([app_id, status], count)
        yield tasks
        durations = HistogramMetricFamily(
            "agl_learning_task_duration_seconds",
            "Run time of finished learning tasks, by outcome (succeeded, failed)",
            labels=["app_id", "outcome"],
        )
        for (app_id, outcome), (counts, total) in sorted(hist.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*TASK_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            durations.add_metric([app_id, outcome], buckets, total)
        yield durations

    def _refresh(self) -> None:
        with self.store.session() as s:
            self._by_status = [
                (app_id, status, int(n))
                for app_id, status, n in s.execute(
                    select(Task.app_id, Task.status, func.count())
                    .group_by(Task.app_id, Task.status)
                    .order_by(Task.app_id, Task.status)
                ).all()
            ]
            query = select(
                Task.pk, Task.app_id, Task.status, Task.started_at, Task.finished_at
            ).where(Task.finished_at.is_not(None))
            if self._since is not None:
                query = query.where(Task.finished_at >= self._since - timedelta(minutes=1))
            finished = s.execute(query).all()
        for pk, app_id, status, started, ended in finished:
            if pk in self._counted:
                continue
            ended = _utc(ended)
            self._counted[pk] = ended
            if self._since is None or ended > self._since:
                self._since = ended
            seconds = max(0.0, (ended - _utc(started)).total_seconds()) if started else 0.0
            counts, total = self._hist.get((app_id, status), ([0] * (len(TASK_BUCKETS) + 1), 0.0))
            index = next((i for i, b in enumerate(TASK_BUCKETS) if seconds <= b), -1)
            counts[index] += 1
            self._hist[(app_id, status)] = (counts, total + seconds)
        if self._since is not None:
            horizon = self._since - timedelta(minutes=2)
            self._counted = {pk: at for pk, at in self._counted.items() if at >= horizon}


class RolloutStats:
    """A prometheus collector over the publisher's rollouts: what is being rolled out, and how.

    - `agl_rollout_candidate_percent{app_id,policy,rollout_id,kind,status,baseline,candidate}`:
      the share of traffic on the candidate, for every running or paused rollout.
    - `agl_rollouts{app_id,policy,status}`: rollouts by status since the table began (how many
      were promoted, rolled back, aborted).

    Read at scrape time (cached `ttl` seconds); the table is small (one row per rollout).
    """

    def __init__(
        self, store: Store, *, ttl: float = 5.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._fresh_until = float("-inf")
        self._active: list[tuple[str, ...]] = []
        self._percent: list[float] = []
        self._by_status: list[tuple[str, str, str, int]] = []

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self.monotonic() >= self._fresh_until:
                try:
                    self._refresh()
                except Exception:  # noqa: BLE001 - a scrape must not fail because the DB did
                    log.warning("rollout stats refresh failed; serving the last values")
                self._fresh_until = self.monotonic() + self.ttl
            active = list(zip(self._active, self._percent, strict=True))
            by_status = list(self._by_status)
        percent = GaugeMetricFamily(
            "agl_rollout_candidate_percent",
            "Share of traffic (%) on the candidate of each running or paused rollout",
            labels=["app_id", "policy", "rollout_id", "kind", "status", "baseline", "candidate"],
        )
        for labels, value in active:
            percent.add_metric(list(labels), value)
        yield percent
        counts = GaugeMetricFamily(
            "agl_rollouts", "Rollouts by status", labels=["app_id", "policy", "status"]
        )
        for app_id, policy, status, n in by_status:
            counts.add_metric([app_id, policy, status], n)
        yield counts

    def _refresh(self) -> None:
        try:
            from agent_lightning.publisher.models import ACTIVE, Rollout
        except ImportError:  # pragma: no cover - the publisher ships with the package today
            return
        with self.store.session() as s:
            rows = s.execute(
                select(
                    Rollout.app_id,
                    Rollout.policy_name,
                    Rollout.id,
                    Rollout.kind,
                    Rollout.status,
                    Rollout.baseline_version,
                    Rollout.candidate_version,
                    Rollout.percent,
                ).where(Rollout.status.in_(ACTIVE))
            ).all()
            self._active = [tuple(str(v) for v in row[:7]) for row in rows]
            self._percent = [float(row[7]) for row in rows]
            self._by_status = [
                (app_id, policy, status, int(n))
                for app_id, policy, status, n in s.execute(
                    select(Rollout.app_id, Rollout.policy_name, Rollout.status, func.count())
                    .group_by(Rollout.app_id, Rollout.policy_name, Rollout.status)
                    .order_by(Rollout.app_id, Rollout.policy_name, Rollout.status)
                ).all()
            ]
