"""RolloutManager and RolloutSelector on a real store (each test on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from pub_seed import ACTIONS, ADMIN, APP, POLICY, record, seed_policy

from agent_lightning.ingestion import DataIngestionPipeline, RankRequest
from agent_lightning.policy_engine import DecisionService
from agent_lightning.publisher.rollouts import (
    RolloutError,
    RolloutManager,
    auto_rollout,
)
from agent_lightning.publisher.selector import RolloutSelector
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Conflict, Store


@pytest.fixture
def manager(store: Store) -> RolloutManager:
    seed_policy(store)
    return RolloutManager(store, AuditLog(store))


def _decider(store: Store, manager: RolloutManager) -> DecisionService:
    """The server's decide path, with the publisher plugged in exactly as the server does it."""
    service = DecisionService(store, DataIngestionPipeline(store), seed=0)
    selector = RolloutSelector(store)
    service.version_selector = selector
    manager.add_listener(selector.invalidate)
    manager.add_listener(service.invalidate)
    return service


def _decide(service: DecisionService, user: str, **attributes: object) -> int | None:
    request = RankRequest(
        decision_point="intent",
        context={"text": "my printer is broken"},
        actions=ACTIONS,
        user_id=user,
        attributes=attributes,
    )
    return service.decide(APP, request).policy_version


def _actions(store: Store) -> list[str]:
    return [e.action for e in AuditLog(store).entries(APP)]


def test_canary_advances_step_by_step_then_promotes(store: Store, manager: RolloutManager):
    ro = manager.start(
        APP,
        ADMIN,
        policy=POLICY,
        candidate_version=2,
        steps=[10, 50, 100],
        min_decisions_per_step=40,
    )
    assert (ro.percent, ro.status, ro.baseline_version) == (10.0, "running", 1)
    assert manager.evaluate(APP, ro.id).action == "none"  # no decisions yet

    for step, (expected_action, expected_percent) in enumerate(
        [("advance", 50.0), ("advance", 100.0), ("promote", 100.0)]
    ):
        record(store, 2, 40, p_success=0.7, seed=step, prefix=f"c{step}")
        record(store, 1, 40, p_success=0.7, seed=100 + step, prefix=f"b{step}")
        result = manager.evaluate(APP, ro.id)
        assert result.action == expected_action, result.evidence
        assert result.rollout.percent == expected_percent
        assert result.evidence["step_decisions"] == 40

    done = manager.get(APP, ro.id)
    assert done.status == "promoted" and done.active_key is None and done.ended_at is not None
    assert store.get_policy(APP, POLICY).live_version == 2
    assert [h["action"] for h in done.history] == ["start", "advance", "advance", "promote"]
    evidence = done.history[-1]["evidence"]
    assert {g["metric"] for g in evidence["guardrails"]} == {"mean_reward", "error_rate"}
    assert evidence["candidate"]["rewarded"] == 120 and evidence["baseline"]["rewarded"] == 120
    actions = _actions(store)
    assert actions.count("rollout.advance") == 2
    assert {"rollout.start", "rollout.promote", "policy.set_live"} <= set(actions)
    assert AuditLog(store).verify().ok


def test_a_worse_candidate_is_rolled_back_automatically_with_the_reason(
    store: Store, manager: RolloutManager
):
    ro = manager.start(APP, ADMIN, policy=POLICY, candidate_version=3, min_decisions_per_step=1000)
    record(store, 3, 150, p_success=0.2, seed=1, prefix="bad")
    record(store, 1, 150, p_success=0.8, seed=2, prefix="good")
    result = manager.evaluate(APP, ro.id)
    assert result.action == "rollback"
    row = manager.get(APP, ro.id)
    assert row.status == "rolled_back" and row.percent == 0.0
    assert row.reason.startswith("automatic rollback: mean_reward regressed: candidate 0.")
    assert "(n=150 vs 150)" in row.reason and "always-valid interval" in row.reason
    assert store.get_policy(APP, POLICY).live_version == 1  # the baseline never stopped
    entry = [e for e in AuditLog(store).entries(APP) if e.action == "rollout.rollback"][-1]
    assert entry.actor == "system" and entry.after["reason"] == row.reason
    assert any(g["regression"] for g in entry.after["evidence"]["guardrails"])
    # A finished rollout frees the policy for the next one.
    assert manager.start(APP, ADMIN, policy=POLICY, candidate_version=2).status == "running"


def test_assignment_is_sticky_while_the_share_rises(store: Store, manager: RolloutManager):
    service = _decider(store, manager)
    ro = manager.start(
        APP,
        ADMIN,
        policy=POLICY,
        candidate_version=2,
        steps=[10, 40, 100],
        # One candidate decision moves a step on: how many users land on the candidate depends
        # on the rollout's random salt, and the bounds below hold for all but ~1 in 10,000.
        min_decisions_per_step=1,
    )
    users = [f"user-{i}" for i in range(100)]
    on_candidate: list[set[str]] = []
    for _ in range(3):
        served = {u: _decide(service, u) for u in users}
        assert set(served.values()) <= {1, 2}
        on_candidate.append({u for u, v in served.items() if v == 2})
        # The same user asking again, at the same share, gets the same version.
        assert all(_decide(service, u) == served[u] for u in users[:20])
        manager.evaluate(APP, ro.id)
    first, second, third = on_candidate
    assert first < second < third == set(users)  # users only ever move onto the candidate
    assert 1 <= len(first) <= 25 and 20 <= len(second) <= 62
    assert manager.get(APP, ro.id).status == "promoted"


def test_ab_test_concludes_with_the_winner(store: Store, manager: RolloutManager):
    ro = manager.start(
        APP, ADMIN, policy=POLICY, candidate_version=2, kind="ab", min_decisions_per_step=100
    )
    assert ro.percent == 50.0 and ro.steps == [50.0]
    record(store, 2, 60, p_success=0.8, seed=3, prefix="a0")
    record(store, 1, 60, p_success=0.4, seed=4, prefix="b0")
    assert manager.evaluate(APP, ro.id).action == "none"  # significant, but under the minimum
    record(store, 2, 140, p_success=0.8, seed=5, prefix="a1")
    record(store, 1, 140, p_success=0.4, seed=6, prefix="b1")
    result = manager.evaluate(APP, ro.id)
    assert result.action == "promote", result.evidence
    assert result.evidence["ab"]["winner"] == "candidate"
    assert result.rollout.reason.startswith("A/B test concluded: the candidate wins")
    assert store.get_policy(APP, POLICY).live_version == 2


def test_ab_test_keeps_the_baseline_when_it_wins(store: Store, manager: RolloutManager):
    ro = manager.start(
        APP,
        ADMIN,
        policy=POLICY,
        candidate_version=3,
        kind="ab",
        min_decisions_per_step=50,
        guardrails=[{"metric": "error_rate"}],  # reward is judged by the A/B test alone
    )
    record(store, 3, 200, p_success=0.3, seed=7, prefix="a")
    record(store, 1, 200, p_success=0.7, seed=8, prefix="b")
    result = manager.evaluate(APP, ro.id)
    assert result.action == "rollback"
    assert result.rollout.reason.startswith("A/B test concluded: the baseline wins")
    assert store.get_policy(APP, POLICY).live_version == 1


def test_a_flag_serves_the_candidate_to_its_segment_only(store: Store, manager: RolloutManager):
    service = _decider(store, manager)
    ro = manager.start(
        APP,
        ADMIN,
        policy=POLICY,
        candidate_version=3,
        kind="flag",
        segment={"attribute": "plan", "values": ["pro", "enterprise"]},
        min_decisions_per_step=1,
    )
    assert ro.percent == 100.0
    for i in range(15):
        assert _decide(service, f"pro-{i}", plan="pro") == 3
        assert _decide(service, f"ent-{i}", plan="enterprise") == 3
        assert _decide(service, f"free-{i}", plan="free") == 1
        assert _decide(service, f"anon-{i}") == 1
    # A flag is a targeting decision: it never promotes itself.
    assert manager.evaluate(APP, ro.id).action == "none"
    assert store.get_policy(APP, POLICY).live_version == 1


def test_blue_green_switches_everyone_and_back(store: Store, manager: RolloutManager):
    service = _decider(store, manager)
    ro = manager.start(APP, ADMIN, policy=POLICY, candidate_version=2, kind="blue_green")
    assert {_decide(service, f"u{i}") for i in range(20)} == {2}
    manager.rollback(APP, ro.id, ADMIN, "switch back: support reports confusion")
    assert {_decide(service, f"u{i}") for i in range(20)} == {1}

    again = manager.start(APP, ADMIN, policy=POLICY, candidate_version=2, kind="blue_green")
    manager.promote(APP, again.id, ADMIN, "looks good")
    assert store.get_policy(APP, POLICY).live_version == 2
    assert {_decide(service, f"u{i}") for i in range(20)} == {2}
    back = manager.rollback(APP, again.id, ADMIN, "instant switch back after promotion")
    assert back is not None and back.status == "rolled_back"
    assert store.get_policy(APP, POLICY).live_version == 1
    assert {_decide(service, f"u{i}") for i in range(20)} == {1}
    switches = [e for e in AuditLog(store).entries(APP) if e.action == "policy.set_live"]
    assert [(e.before["live_version"], e.after["live_version"]) for e in switches] == [
        (1, 2),
        (2, 1),
    ]


def test_pause_freezes_the_share_but_guardrails_keep_watching(
    store: Store, manager: RolloutManager
):
    ro = manager.start(
        APP, ADMIN, policy=POLICY, candidate_version=2, steps=[20, 100], min_decisions_per_step=10
    )
    paused = manager.pause(APP, ro.id, ADMIN, "weekend freeze")
    assert paused.status == "paused"
    record(store, 2, 40, p_success=0.7, seed=9, prefix="p0")
    record(store, 1, 40, p_success=0.7, seed=10, prefix="p1")
    assert manager.evaluate(APP, ro.id).action == "none"  # enough data, but paused
    assert manager.get(APP, ro.id).percent == 20.0
    with pytest.raises(Conflict, match="is paused; it cannot be paused"):
        manager.pause(APP, ro.id, ADMIN)
    manager.resume(APP, ro.id, ADMIN, "back to work")
    assert manager.evaluate(APP, ro.id).action == "advance"

    manager.pause(APP, ro.id, ADMIN, "watching closely")
    record(store, 2, 200, p_success=0.1, seed=11, prefix="p2")
    record(store, 1, 200, p_success=0.9, seed=12, prefix="p3")
    assert manager.evaluate(APP, ro.id).action == "rollback"  # even though paused


def test_one_active_rollout_per_policy_and_clear_validation(store: Store, manager: RolloutManager):
    manager.start(APP, ADMIN, policy=POLICY, candidate_version=2)
    with pytest.raises(Conflict, match="already has an active rollout"):
        manager.start(APP, ADMIN, policy=POLICY, candidate_version=3)
    bad = [
        ({"steps": [25, 5]}, "steps must increase strictly"),
        ({"steps": [0, 50]}, r"percentage in \(0, 100\]"),
        ({"steps": [50, 150]}, r"percentage in \(0, 100\]"),
        ({"steps": []}, "at least one percentage"),
        ({"candidate_version": 1}, "is the baseline already"),
        ({"candidate_version": 9}, "has no version 9"),
        ({"kind": "flag"}, "a feature flag needs a segment"),
        ({"kind": "ab", "steps": [10]}, "an A/B test splits 50/50"),
        ({"guardrails": [{"metric": "vibes"}]}, "unknown guardrail metric 'vibes'"),
        ({"kind": "rainbow"}, "kind must be one of"),
    ]
    other = seed_policy(store, name="other")
    for changes, message in bad:
        options = {"policy": other.name, "candidate_version": 2, **changes}
        with pytest.raises(RolloutError, match=message):
            manager.start(APP, ADMIN, **options)


def test_a_live_change_outside_the_rollout_aborts_it(store: Store, manager: RolloutManager):
    ro = manager.start(APP, ADMIN, policy=POLICY, candidate_version=2)
    store.set_live_version(APP, POLICY, 3)  # an operator used PUT /live meanwhile
    result = manager.evaluate(APP, ro.id)
    assert result.action == "abort" and result.rollout.status == "aborted"
    assert "live version changed to 3" in result.rollout.reason


def test_auto_rollout_follows_the_app_settings(store: Store, manager: RolloutManager):
    audit = AuditLog(store)
    assert auto_rollout(store, audit, APP, POLICY, 2) is None  # off by default
    auto = {"kind": "canary", "steps": [10, 100], "min_decisions_per_step": 50}
    store.update_app(APP, settings={"rollouts": {POLICY: {"auto": auto}}})
    ro = auto_rollout(store, audit, APP, POLICY, 2, manager=manager)
    assert ro is not None and ro.steps == [10.0, 100.0] and ro.candidate_version == 2
    assert auto_rollout(store, audit, APP, POLICY, 3) is None  # one is running already
    manager.rollback(APP, ro.id, ADMIN, "test")
    store.update_app(APP, settings={"rollouts": {POLICY: {"auto": True, "paused": True}}})
    assert auto_rollout(store, audit, APP, POLICY, 3) is None  # promotion paused
