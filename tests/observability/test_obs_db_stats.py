"""Per-policy-version and learning-task metrics read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from obs_harness import Ticker, metric_value
from prometheus_client import CollectorRegistry, generate_latest
from tests.publisher.pub_seed import seed_policy

from agent_lightning.observability import PolicyStats, TaskStats
from agent_lightning.observability.alerts import resolution_rate
from agent_lightning.store import Store, Task, new_id


def decision(
    ident: str,
    version: int | None,
    action: str = "reply",
    attributes: dict | None = None,
    policy: str | None = "router",
    created_at: datetime | None = None,
) -> dict[str, Any]:
    row = {
        "id": ident,
        "decision_point": "support",
        "context": {},
        "actions": [{"id": action}],
        "action_id": action,
        "propensity": 0.5,
        "probabilities": {action: 0.5},
        "policy_name": policy,
        "policy_version": version,
        "attributes": attributes or {},
        "content_hash": ident,
    }
    if created_at is not None:
        row["created_at"] = created_at
    return row


def reward(ident: str, decision_id: str, value: float) -> dict[str, Any]:
    return {"id": ident, "decision_id": decision_id, "value": value, "content_hash": ident}


def _fresh(stats: PolicyStats, ticker: Ticker) -> dict:
    """Past the cache; twice, because PostgreSQL reads one refresh behind the newest key."""
    ticker.value += 60
    stats.snapshot()
    ticker.value += 60
    return stats.snapshot()


def test_version_stats_match_their_definitions(store: Store) -> None:
    store.ensure_app("acme")
    store.ensure_app("globex")
    store.insert_records(
        "decisions",
        "acme",
        [
            decision("d1", 1),
            decision("d2", 1, action="escalate"),
            decision("d3", 1, attributes={"escalated": True}),
            decision("d4", 1, attributes={"escalated": False}),
            decision("d5", 2),
            decision("d6", 2),
            decision("d7", None, policy=None),
        ],
    )
    store.insert_records("decisions", "globex", [decision("d1", 1)])
    store.insert_records(
        "rewards",
        "acme",
        [
            reward("r1", "d1", 1.0),
            reward("r2", "d1", 0.5),  # a second reward: counted in the mean, not twice resolved
            reward("r3", "d2", 0.0),  # rewarded, not resolved
            reward("r4", "d3", -1.0),
            reward("r5", "d3", 1.0),  # resolved by its second reward
            reward("r6", "d5", 1.0),
        ],
    )
    ticker = Ticker()
    stats = PolicyStats(store, ttl=5, monotonic=ticker)
    snap = _fresh(stats, ticker)
    v1 = snap[("acme", "router", 1)]
    assert (v1.decisions, v1.escalations, v1.rewards, v1.rewarded, v1.resolved) == (4, 2, 5, 3, 2)
    assert v1.escalation_rate == 0.5
    assert v1.mean_reward == pytest.approx(0.3)
    assert v1.resolution_rate == pytest.approx(2 / 3)
    v2 = snap[("acme", "router", 2)]
    assert (v2.decisions, v2.rewarded, v2.resolution_rate, v2.escalation_rate) == (2, 1, 1.0, 0.0)
    assert snap[("acme", "", None)].decisions == 1
    assert snap[("globex", "router", 1)].decisions == 1

    # Cached within the TTL, incremental after it.
    store.insert_records("rewards", "acme", [reward("r7", "d4", 1.0), reward("r8", "d2", 1.0)])
    store.insert_records("decisions", "acme", [decision("d8", 1, action="escalate")])
    assert stats.snapshot()[("acme", "router", 1)].rewarded == 3
    v1 = _fresh(stats, ticker)[("acme", "router", 1)]
    assert (v1.decisions, v1.escalations, v1.rewarded, v1.resolved) == (5, 3, 4, 4)

    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    labels = {"app_id": "acme", "policy": "router", "version": "1"}
    assert metric_value(text, "agl_policy_decisions", **labels) == 5
    assert metric_value(text, "agl_policy_escalation_rate", **labels) == pytest.approx(0.6)
    assert metric_value(text, "agl_policy_resolution_rate", **labels) == 1.0
    assert metric_value(text, "agl_policy_mean_reward", **labels) == pytest.approx(3.5 / 7)
    assert metric_value(text, "agl_policy_decisions", version="none") == 1
    # No rewards yet: no mean or rate is invented.
    assert metric_value(text, "agl_policy_mean_reward", version="none") is None


def test_only_the_newest_versions_are_exposed(store: Store) -> None:
    store.ensure_app("acme")
    store.insert_records("decisions", "acme", [decision(f"d{v}", v) for v in range(1, 8)])
    ticker = Ticker()
    stats = PolicyStats(store, monotonic=ticker, max_versions=5)
    _fresh(stats, ticker)
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    exposed = {v for v in range(1, 8) if metric_value(text, "agl_policy_decisions", version=str(v))}
    assert exposed == {3, 4, 5, 6, 7}


def test_task_counts_and_durations(store: Store) -> None:
    store.ensure_app("acme")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for status, seconds in (("succeeded", 3), ("succeeded", 40), ("failed", 100), ("running", 0)):
        store.create_task(
            Task(
                id=new_id(),
                app_id="acme",
                kind="learn",
                status=status,
                started_at=start,
                finished_at=start + timedelta(seconds=seconds) if status != "running" else None,
            )
        )
    ticker = Ticker()
    stats = TaskStats(store, monotonic=ticker)
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    assert metric_value(text, "agl_learning_tasks", app_id="acme", status="succeeded") == 2
    assert metric_value(text, "agl_learning_tasks", status="running") == 1
    name = "agl_learning_task_duration_seconds"
    assert metric_value(text, name + "_count", outcome="succeeded") == 2
    assert metric_value(text, name + "_sum", outcome="succeeded") == 43
    assert metric_value(text, name + "_bucket", outcome="succeeded", le="5.0") == 1
    assert metric_value(text, name + "_bucket", outcome="failed", le="60.0") == 0
    assert metric_value(text, name + "_bucket", outcome="failed", le="120.0") == 1
    # Each finished task is counted once, however often it is scraped.
    ticker.value += 60
    text = generate_latest(registry).decode()
    assert metric_value(text, name + "_count", outcome="succeeded") == 2


def test_refresh_cost_follows_new_rows_not_table_size(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.ensure_app("acme")
    now = datetime.now(UTC)
    rows = [decision(f"d{i}", 1 + i % 3, created_at=now) for i in range(30_000)]
    with store.session() as s:
        from agent_lightning.store import Decision, Reward

        s.execute(Decision.__table__.insert(), [{**r, "app_id": "acme"} for r in rows])
        s.execute(
            Reward.__table__.insert(),
            [
                {**reward(f"r{i}", f"d{i}", float(i // 2 % 2)), "app_id": "acme", "source": "user"}
                for i in range(0, 30_000, 2)
            ],
        )
    ticker = Ticker()
    stats = PolicyStats(store, monotonic=ticker)
    stats.snapshot()
    store.insert_records("decisions", "acme", [decision("late", 1)])
    ticker.value += 60
    started = time.perf_counter()
    snap = stats.snapshot()
    assert time.perf_counter() - started < 0.25
    assert sum(s.decisions for s in snap.values()) == 30_001
    assert snap[("acme", "router", 1)].rewarded == 5_000

    # The windowed query behind the resolution-drop alert reads decisions by time, by index.
    with store.engine.connect() as connection:
        from sqlalchemy import text

        plan = connection.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT id FROM decisions WHERE app_id = 'acme' "
                "AND created_at >= '2026-01-01' AND created_at < '2026-01-02'"
            )
        ).all()
    assert any("ix_obs_decisions_app_created" in str(row) for row in plan), plan
    rate, n = resolution_rate(
        store, "acme", "router", 1, now - timedelta(minutes=1), now + timedelta(minutes=1)
    )
    assert n == 5_000 and rate == 0.5
    store.close()


def test_rollout_state_is_exposed(store: Store) -> None:
    from agent_lightning.observability.db_stats import RolloutStats
    from agent_lightning.publisher.rollouts import RolloutManager
    from agent_lightning.security.audit import Actor, AuditLog

    store.ensure_app("acme")
    seed_policy(store, "acme", "support", versions=3)
    manager = RolloutManager(store, AuditLog(store))
    admin = Actor("alice", "client", "acme")
    first = manager.start("acme", admin, policy="support", candidate_version=2, steps=[5, 50, 100])
    manager.rollback("acme", first.id, admin, "worse")
    running = manager.start("acme", admin, policy="support", candidate_version=3, steps=[25, 100])
    ticker = Ticker()
    registry = CollectorRegistry()
    registry.register(RolloutStats(store, monotonic=ticker))
    text = generate_latest(registry).decode()
    name = "agl_rollout_candidate_percent"
    assert metric_value(text, name, rollout_id=running.id, status="running", candidate="3") == 25
    assert metric_value(text, name, rollout_id=first.id) is None  # ended: no longer a share
    assert metric_value(text, "agl_rollouts", policy="support", status="rolled_back") == 1
    assert metric_value(text, "agl_rollouts", policy="support", status="running") == 1
    manager.pause("acme", running.id, admin, "looking")
    ticker.value += 60  # past the cache
    text = generate_latest(registry).decode()
    assert metric_value(text, name, rollout_id=running.id, status="paused") == 25
