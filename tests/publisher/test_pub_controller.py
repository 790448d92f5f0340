"""The learning controller hands new versions to the publisher instead of moving live under a
running rollout, and starts a canary by itself when the app asks for automatic rollouts."""

from __future__ import annotations

from pub_seed import ADMIN, APP, POLICY, record, seed_policy

from agent_lightning.controller import LearningController
from agent_lightning.publisher.rollouts import RolloutManager
from agent_lightning.publisher.service import ControllerRollouts
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Store


def _controller(store: Store, manager: RolloutManager) -> LearningController:
    audit = AuditLog(store)
    return LearningController(
        store,
        audit,
        every_decisions=None,
        every_seconds=None,
        rollouts=ControllerRollouts(store, audit, manager),
    )


def test_live_does_not_move_under_a_running_rollout(store: Store) -> None:
    seed_policy(store)
    manager = RolloutManager(store, AuditLog(store))
    running = manager.start(APP, ADMIN, policy=POLICY, candidate_version=3, steps=[10, 100])
    record(store, 1, 60, p_success=0.5, seed=1, prefix="a")
    result = _controller(store, manager).learn(APP, POLICY, force=True)
    assert result["registered"] and result["live"] is False and result["rollout"] is None
    assert store.get_policy(APP, POLICY).live_version == 1  # still the rollout's baseline
    assert manager.active(APP, POLICY).id == running.id


def test_automatic_rollouts_start_a_canary_for_a_learned_version(store: Store) -> None:
    seed_policy(store)
    manager = RolloutManager(store, AuditLog(store))
    auto = {"kind": "canary", "steps": [10, 50, 100], "min_decisions_per_step": 40}
    store.update_app(APP, settings={"rollouts": {POLICY: {"auto": auto}}})
    record(store, 1, 60, p_success=0.5, seed=2, prefix="b")
    result = _controller(store, manager).learn(APP, POLICY, force=True)
    assert result["registered"] and result["live"] is False and result["rollout"]
    rollout = manager.active(APP, POLICY)
    assert rollout.id == result["rollout"] and rollout.candidate_version == result["version"]
    assert rollout.percent == 10 and rollout.baseline_version == 1


def test_without_a_rollout_the_gate_still_decides(store: Store) -> None:
    seed_policy(store)
    manager = RolloutManager(store, AuditLog(store))
    record(store, 1, 60, p_success=0.5, seed=3, prefix="c")
    result = _controller(store, manager).learn(APP, POLICY, force=True)
    assert result["live"] is True and store.get_policy(APP, POLICY).live_version == 4
