"""The rollouts view's data: real rollouts started and moved by the publisher (SQLite, PostgreSQL).

Rollouts are seeded through the publisher's RolloutManager (`dash_seed.seed_canaries`) and
changed through its HTTP routes; the dashboard must show what the publisher decided, with the
same numbers its automatic rollback acts on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pytest
from dash_app import dashboard_app, module_settings
from dash_seed import CANARY_GUARDRAILS, Canaries, seed, seed_canaries
from fastapi.testclient import TestClient
from tests.conftest import Api

from agent_lightning.config import Settings
from agent_lightning.dashboard.rollouts import HISTORY_ACTIONS, ROLLOUT_ACTIONS
from agent_lightning.publisher.rollouts import RolloutManager, auto_rollout, auto_rollout_config
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import Decision, Store
from agent_lightning.store.store import as_utc

APP = "support-bot"


@contextlib.contextmanager
def _seeded_app(settings: Settings) -> Iterator[Api]:
    store = Store(settings.database_url)
    seed(store, sessions=60)
    canaries = seed_canaries(store)
    client = TestClient(dashboard_app(settings, store), base_url="http://testserver")
    api = Api(client.app, store, client)
    api.canaries = canaries  # type: ignore[attr-defined]
    try:
        yield api
    finally:
        client.close()
        store.close()


@pytest.fixture
def rapi(database_url: str, settings: Settings) -> Iterator[Api]:
    """A freshly seeded app per test, for the tests that change rollouts or settings."""
    with _seeded_app(replace(settings, database_url=database_url)) as api:
        yield api


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rapi_read(request, tmp_path_factory) -> Iterator[Api]:
    """Seeded once per database for the tests that only read (as test_dash_api's `dash`)."""
    with module_settings(request.param, tmp_path_factory, "rollouts") as settings:
        with _seeded_app(settings) as api:
            yield api


def _view(api: Api, role: str = "Analyst") -> dict:
    response = api.client.get("/v1/dashboard/rollouts", headers=api.auth(APP, (role,)))
    assert response.status_code == 200, response.text
    (policy,) = response.json()["policies"]
    return policy


def _decisions(store: Store, version: int, since: datetime) -> int:
    with store.session() as s:
        rows = s.query(Decision).filter_by(
            app_id=APP, policy_name="intents", policy_version=version
        )
        return sum(1 for d in rows if as_utc(d.created_at) >= as_utc(since))


def test_running_canary_shows_steps_arms_and_the_publishers_guardrails(rapi_read: Api) -> None:
    rapi = rapi_read
    canaries: Canaries = rapi.canaries  # type: ignore[attr-defined]
    policy = _view(rapi)
    ro = policy["rollout"]
    assert ro["id"] == canaries.running and ro["kind"] == "canary" and ro["status"] == "running"
    assert (ro["baseline_version"], ro["candidate_version"]) == (4, canaries.candidate)
    assert ro["percent"] == 25.0
    assert [(s["percent"], s["state"]) for s in ro["schedule"]] == [
        (5.0, "done"),
        (25.0, "current"),
        (50.0, "pending"),
        (100.0, "pending"),
    ]
    assert ro["schedule"][1]["reached_at"] and ro["schedule"][2]["reached_at"] is None
    # Decisions per arm are the rows each version wrote since the rollout started.
    manager = RolloutManager(rapi.store, AuditLog(rapi.store))
    row = manager.get(APP, canaries.running)
    metrics = ro["metrics"]
    assert metrics["candidate"]["decisions"] == _decisions(rapi.store, 6, row.started_at) == 94
    assert metrics["baseline"]["decisions"] == _decisions(rapi.store, 4, row.started_at) == 260
    assert metrics["step_decisions"] == 24 and metrics["min_decisions_per_step"] == 60
    # Every guardrail exactly as the publisher's sequential test sees it, plus a one-word verdict.
    report = manager.report(row)
    shown = [{k: v for k, v in g.items() if k != "decision"} for g in metrics["guardrails"]]
    assert shown == report["guardrails"]
    assert [g["metric"] for g in shown] == [g["metric"] for g in CANARY_GUARDRAILS]
    assert {g["decision"] for g in metrics["guardrails"]} == {"ok"}
    mean = metrics["guardrails"][0]
    assert mean["interval"][0] < mean["estimate"] < mean["interval"][1] and mean["limit"] == -0.1
    # The step that was taken, with its evidence.
    assert [h["action"] for h in ro["history"]] == ["start", "advance"]
    assert ro["history"][1]["evidence"]["candidate"]["decisions"] == 70
    assert ro["history"][1]["reason"].startswith("step 1 passed: 5% → 25%")
    # Who did it is audit information; the arm-assignment salt is the runtimes' business.
    assert ro["created_by"] is None and all(h["actor"] is None for h in ro["history"])
    assert "salt" not in ro
    roles = {v["version"]: v["live"] for v in policy["versions"]}
    assert roles[4] is True and roles[canaries.candidate] is False


def test_past_rollouts_say_why_they_ended_and_who_ended_them(rapi_read: Api) -> None:
    rapi = rapi_read
    canaries: Canaries = rapi.canaries  # type: ignore[attr-defined]
    (past,) = _view(rapi)["past_rollouts"]
    assert past["id"] == canaries.rolled_back and past["status"] == "rolled_back"
    outcome = past["outcome"]
    assert outcome["action"] == "rollback" and outcome["max_percent"] == 5.0
    assert outcome["reason"].startswith("automatic rollback: mean_reward regressed")
    failed = [g["metric"] for g in outcome["guardrails"] if g["decision"] == "regression"]
    assert "mean_reward" in failed and "latency_p99" not in failed
    assert outcome["actor"] is None  # an Analyst does not see names
    assert [(s["percent"], s["state"]) for s in past["schedule"]][:2] == [
        (5.0, "stopped"),
        (25.0, "pending"),
    ]
    admin = _view(rapi, "AgentAdmin")
    assert admin["past_rollouts"][0]["outcome"]["actor"] == "system"
    assert admin["rollout"]["created_by"] == "ops-admin"
    # The audit log's side of the same story, newest first, grouped under the policy.
    kinds = [h["kind"] for h in admin["history"] if h["kind"].startswith("rollout_")]
    assert kinds == ["rollout_advance", "rollout_start", "rollout_rollback", "rollout_start"]
    rollback = next(h for h in admin["history"] if h["kind"] == "rollout_rollback")
    assert rollback["rollout_id"] == canaries.rolled_back and rollback["to_version"] == 5
    assert rollback["reason"] == outcome["reason"] and rollback["actor"] == "system"
    # Every rollout action the publisher audited is one the history reads.
    written = {
        e.action for e in AuditLog(rapi.store).entries(APP) if e.action.startswith("rollout.")
    }
    assert written and written <= set(ROLLOUT_ACTIONS) <= set(HISTORY_ACTIONS)


def test_admin_pauses_then_rolls_back_through_the_publisher(rapi: Api) -> None:
    canaries: Canaries = rapi.canaries  # type: ignore[attr-defined]
    base = f"/v1/rollouts/{canaries.running}"
    for role in ("Analyst", "Developer"):
        denied = rapi.client.post(
            f"{base}/pause", json={"reason": "no"}, headers=rapi.auth(APP, (role,))
        )
        assert denied.status_code == 403, role
    admin = rapi.auth(APP, ("AgentAdmin",))
    paused = rapi.client.post(f"{base}/pause", json={"reason": "look first"}, headers=admin)
    assert paused.status_code == 200, paused.text
    ro = _view(rapi)["rollout"]
    assert ro["status"] == "paused" and ro["percent"] == 25.0
    assert ro["schedule"][1]["state"] == "current"  # paused where it was
    assert ro["history"][-1]["action"] == "pause" and ro["history"][-1]["reason"] == "look first"

    no_reason = rapi.client.post(f"{base}/rollback", json={"reason": ""}, headers=admin)
    assert no_reason.status_code == 422
    why = "escalations up on the candidate"
    done = rapi.client.post(f"{base}/rollback", json={"reason": why}, headers=admin)
    assert done.status_code == 200, done.text
    policy = _view(rapi, "AgentAdmin")
    assert policy["rollout"] is None and policy["live_version"] == 4
    newest = policy["past_rollouts"][0]
    assert newest["id"] == canaries.running and newest["status"] == "rolled_back"
    (entry,) = [e for e in AuditLog(rapi.store).entries(APP) if e.action == "rollout.rollback"][1:]
    assert newest["outcome"]["reason"] == why and newest["outcome"]["actor"] == entry.actor
    assert newest["outcome"]["max_percent"] == 25.0
    assert policy["history"][0]["kind"] == "rollout_rollback"
    assert policy["history"][0]["reason"] == why
    assert [p["id"] for p in policy["past_rollouts"]] == [canaries.running, canaries.rolled_back]


def test_pausing_promotion_keeps_the_publishers_auto_rollout_settings(rapi: Api) -> None:
    store = rapi.store
    app = store.get_app(APP)
    auto = {"kind": "canary", "steps": [10, 50, 100]}
    store.update_app(
        APP, settings={**(app.settings or {}), "rollouts": {"intents": {"auto": auto}}}
    )
    assert _view(rapi)["auto_rollout"] == auto and _view(rapi)["pause"] is None

    admin = rapi.auth(APP, ("AgentAdmin",))
    body = {"policy": "intents", "paused": True, "reason": "holiday freeze"}
    assert rapi.client.put("/v1/dashboard/rollouts/pause", json=body, headers=admin).is_success
    entry = store.get_app(APP).settings["rollouts"]["intents"]
    assert entry["auto"] == auto and entry["paused"] is True  # merged, not replaced
    shown = _view(rapi)
    assert shown["pause"]["paused"] is True and shown["auto_rollout"] == auto
    (audited,) = [e for e in AuditLog(store).entries(APP) if e.action == "promotion.pause"]
    assert audited.before == {"auto": auto} and audited.after["auto"] == auto
    # The publisher honours the merged entry: no automatic rollout while paused ...
    audit = AuditLog(store)
    rollouts = RolloutManager(store, audit)
    running = rollouts.active(APP, "intents")
    rollouts.rollback(APP, running.id, Actor("ops-admin"), "make room for the automatic one")
    assert auto_rollout(store, audit, APP, "intents", 5) is None

    resume = {**body, "paused": False, "reason": ""}
    assert rapi.client.put("/v1/dashboard/rollouts/pause", json=resume, headers=admin).is_success
    assert auto_rollout_config(store, APP, "intents") == auto
    started = auto_rollout(store, audit, APP, "intents", 5)  # ... and one once resumed
    assert started is not None and list(started.steps) == [10.0, 50.0, 100.0]
    kinds = [h["kind"] for h in _view(rapi)["history"]]
    assert kinds[:3] == ["rollout_start", "promotion_resume", "rollout_rollback"]


def test_old_pause_entries_still_read_as_promotion_pauses(rapi: Api) -> None:
    """Before rollouts existed, the switch was audited as rollout.pause on the policy."""
    AuditLog(rapi.store).record(
        Actor("ops-admin"),
        "rollout.pause",
        "policy",
        "intents",
        app_id=APP,
        after={"paused": True, "reason": "old freeze"},
    )
    newest = _view(rapi)["history"][0]
    assert newest["kind"] == "promotion_pause" and newest["reason"] == "old freeze"
