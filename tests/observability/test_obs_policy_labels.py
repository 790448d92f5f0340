"""The `policy` label of the per-policy metrics is bounded: a client cannot mint series or memory.

Decisions may name any policy (`POST /v1/decisions/batch` takes free text), so only registered
policies and the first few other names of an app get a label; the rest fold into `<other>`.
"""

from __future__ import annotations

import re

from obs_harness import Ticker, metric_value
from prometheus_client import CollectorRegistry, generate_latest
from test_obs_db_stats import _fresh, decision

from agent_lightning.observability import PolicyStats
from agent_lightning.observability.db_stats import OTHER_POLICY
from agent_lightning.store import Policy, Store, new_id


def _register(store: Store, app_id: str, name: str) -> None:
    store.create_policy(
        Policy(id=new_id(), app_id=app_id, name=name, decision_point="intent", spec={})
    )


def _policies(stats: PolicyStats, app_id: str = "acme") -> set[str]:
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    return set(re.findall(rf'agl_policy_decisions\{{app_id="{app_id}",policy="([^"]*)"', text))


def test_unregistered_policy_names_past_the_cap_fold_into_other(store: Store) -> None:
    store.ensure_app("acme")
    store.ensure_app("globex")
    _register(store, "acme", "support")
    rows = [decision("d-support", 1, policy="support"), decision("d-none", None, policy=None)]
    rows += [decision(f"d-{i}", 1, policy=f"sess-{i:03d}") for i in range(200)]
    store.insert_records("decisions", "acme", rows)
    store.insert_records("decisions", "globex", [decision("g-1", 1, policy="sess-000")])
    ticker = Ticker()
    stats = PolicyStats(store, monotonic=ticker, max_policies=3)
    snap = _fresh(stats, ticker)

    # The registered policy, the decisions without one, three other names, and the rest.
    labels = _policies(stats)
    assert labels == {"support", "", "sess-000", "sess-001", "sess-002", OTHER_POLICY}
    assert snap[("acme", OTHER_POLICY, None)].decisions == 197
    assert sum(s.decisions for (app, _, _), s in snap.items() if app == "acme") == 202
    assert _policies(stats, "globex") == {"sess-000"}  # the cap is per app
    assert len(stats._stats) == 7  # memory too: one entry per label, not per name sent

    # A policy registered once the cap is reached still gets its own label.
    _register(store, "acme", "late")
    store.insert_records(
        "decisions", "acme", [decision("d-late", 2, policy="late"), decision("d-x", 1, "x")]
    )
    snap = _fresh(stats, ticker)
    assert snap[("acme", "late", 2)].decisions == 1
    assert snap[("acme", OTHER_POLICY, None)].decisions == 198
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    assert metric_value(text, "agl_policy_decisions", policy=OTHER_POLICY, version="none") == 198


def test_versions_past_the_newest_are_not_kept_in_memory(store: Store) -> None:
    store.ensure_app("acme")
    _register(store, "acme", "support")
    store.insert_records(
        "decisions", "acme", [decision(f"d-{v}", v, policy="support") for v in range(1, 101)]
    )
    ticker = Ticker()
    stats = PolicyStats(store, monotonic=ticker, max_versions=5)
    snap = _fresh(stats, ticker)
    assert sorted(version for _, _, version in snap) == [96, 97, 98, 99, 100]
