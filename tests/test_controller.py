"""LearningController through the real API: tasks, the off-policy gate, lineage, failures."""

from __future__ import annotations

import csv
import random
import threading

import pytest

from agent_lightning.cli.demo import banking77_dir
from agent_lightning.controller import LearningController, TaskError
from agent_lightning.controller.controller import LearnSettings
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import PolicyVersion, new_id
from tests.conftest import Api

INTENTS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked"]


def traffic(n: int, seed: int = 0) -> list[tuple[str, str]]:
    data = banking77_dir()
    if data is None:
        pytest.skip("Banking77 not found: set AGL_BANKING77 or keep shared/data beside the project")
    with (data / "train.csv").open() as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f) if r["category"] in INTENTS]
    random.Random(seed).shuffle(rows)
    return rows[:n]


ACTIONS = [{"id": i, "description": i.replace("_", " ")} for i in INTENTS]


@pytest.fixture
def controller(api: Api) -> LearningController:
    state = api.app.state.agl
    ctl = LearningController(
        state.store,
        state.audit,
        every_decisions=None,
        every_seconds=None,
        on_version=lambda app, _n, _v: state.decisions.invalidate(app),
        version_cache=state.decisions,
    )
    state.controller = ctl
    return ctl


def create_policy(api: Api, headers: dict):
    """The `intents` policy on hashing features, through the API."""
    return api.client.post(
        "/v1/policies",
        json={"name": "intents", "decision_point": "intent", "spec": {"featurizer": "hashing"}},
        headers=headers,
    )


def play(api: Api, headers: dict, rows: list[tuple[str, str]]) -> float:
    resolved = 0
    for text, label in rows:
        d = api.client.post(
            "/v1/decisions",
            json={"decision_point": "intent", "context": {"text": text}, "actions": ACTIONS},
            headers=headers,
        ).json()
        hit = d["action_id"] == label
        resolved += hit
        api.client.post(
            "/v1/rewards",
            json={"decision_id": d["decision_id"], "value": float(hit)},
            headers=headers,
        )
    return resolved / len(rows)


def test_learning_registers_gated_versions_with_lineage(api: Api, controller) -> None:
    dev = api.auth("acme", ("Developer",))
    agent = api.auth("acme", ("Agent",))
    created = create_policy(api, dev)
    assert created.status_code == 201 and created.json()["live_version"] == 1
    rows = traffic(900)  # the five intents have about 600 queries
    # A low-traffic decision point: hold out every 4th decision, so the gate has evidence sooner.
    controller.settings = LearnSettings(holdout_every=4)
    before = play(api, agent, rows[:150])
    # As the scheduler would: a task after every 150 rewards until one passes the gate. The
    # gate is a confidence bound, so a noisy batch may (rightly) not convince it at once.
    results, seen = [], 150
    task = controller.run("acme", {"task": "learn", "policy": "intents"})
    results.append(task)
    while not task.result.get("registered") and seen < 450:
        assert task.status == "succeeded", task.error
        gate = task.result["metrics"]["gate"]
        assert set(gate) >= {"passed", "difference_ci_low", "candidate_value", "live_value"}
        assert gate["passed"] is False and task.result["reason"]
        play(api, agent, rows[seen : seen + 150])
        seen += 150
        task = controller.run("acme", {"task": "learn", "policy": "intents"})
        results.append(task)
    assert task.result.get("registered"), [t.result.get("metrics") for t in results]
    assert task.result["metrics"]["gate"]["passed"] is True
    versions = api.client.get("/v1/policies/intents/versions", headers=dev).json()["items"]
    v2 = versions[-1]
    assert v2["version"] == 2 and v2["parent_version"] == 1
    assert v2["data_range"]["count"] == seen  # everything since the live version
    assert len(v2["data_hash"]) == 64 and v2["metrics"]["gate"]["passed"] is True
    # The registered version is better than the warm start on traffic neither has seen (greedy
    # choices on the same 300 rows: no sampling noise in the comparison).
    from agent_lightning.learning import Action, load_policy

    acts = [Action(a["id"], a["description"]) for a in ACTIONS]
    unseen = rows[seen : seen + 300]

    def accuracy(version: int) -> float:
        row = api.store.get_policy_version("acme", "intents", version)
        policy = load_policy(row.artifact)
        preds = policy.greedy_many([{"text": t} for t, _ in unseen], acts)
        return sum(p == y for p, (_, y) in zip(preds, unseen, strict=True)) / len(unseen)

    assert accuracy(2) > accuracy(1)
    assert task.result["metrics"]["held_out"] > 0 and task.result["metrics"]["evaluated_on"] >= 30
    assert before < 1.0 and len(unseen) >= 150
    play(api, agent, rows[seen : seen + 150])
    # Forced, so that it registers whatever the gate makes of 150 rows (served decisions sample
    # with fresh randomness, so the gate's verdict on a batch this small is not repeatable).
    forced = controller.run("acme", {"task": "learn", "policy": "intents", "force": True})
    assert forced.status == "succeeded" and forced.result["registered"] is True
    # Nothing new since: no version, and a clear reason.
    again = controller.run("acme", {"task": "learn", "policy": "intents"})
    assert again.status == "succeeded" and again.result["registered"] is False
    assert again.result["reason"] == "no new decisions since the live version"
    audit = [e.action for e in AuditLog(api.store).entries("acme")]
    assert audit.count("task.create") == len(results) + 2 and "task.finish" in audit


def test_a_refused_candidate_goes_on_learning_instead_of_starting_over(
    api: Api, controller, learn_calls, monkeypatch
) -> None:
    taught = learn_calls
    # Which decisions each task reads from the store (the evaluation window's reads aside).
    reads: list[int] = []
    real_read = api.store.training_examples

    def counting_read(*args, **kwargs):
        out = real_read(*args, **kwargs)
        if not kwargs.get("newest"):
            reads.append(len(out[0]))
        return out

    monkeypatch.setattr(api.store, "training_examples", counting_read)
    dev = api.auth("acme", ("Developer",))
    agent = api.auth("acme", ("Agent",))
    create_policy(api, dev)
    # A gate that can never be convinced: every task is refused.
    controller.settings = LearnSettings(holdout_every=4, min_eval=10**6)
    rows = traffic(300)
    play(api, agent, rows[:100])
    first = controller.run("acme", {"task": "learn", "policy": "intents"}).result
    play(api, agent, rows[100:200])
    second = controller.run("acme", {"task": "learn", "policy": "intents"}).result
    assert first["registered"] is False and second["registered"] is False
    # The second candidate covers all the data since the live version (75 + 75 rows; every
    # 4th decision is held out) but was taught only the 75 that arrived since the first.
    assert (first["metrics"]["trained_on"], second["metrics"]["trained_on"]) == (75, 150)
    assert taught == [75, 75]
    assert reads == [100, 100]  # and it read only the 100 new decisions from the store
    forced = controller.run("acme", {"task": "learn", "policy": "intents", "force": True}).result
    assert forced["registered"] is True and forced["metrics"]["trained_on"] == 150
    assert taught == [75, 75, 0]  # nothing new arrived: nothing more to teach
    version = api.client.get("/v1/policies/intents/versions", headers=dev).json()["items"][-1]
    assert version["data_range"]["count"] == 200 and reads[-1] == 0
    # Once it is a version it is never taught again: the next task starts from a fresh clone.
    play(api, agent, rows[200:300])
    taught.clear()
    after = controller.run("acme", {"task": "learn", "policy": "intents"}).result
    assert after["metrics"]["trained_on"] == 75 and taught == [75]


def test_force_registers_and_rollback_through_the_api(api: Api, controller) -> None:
    dev = api.auth("acme", ("Developer",))
    admin = api.auth("acme")
    create_policy(api, dev)
    play(api, api.auth("acme", ("Agent",)), traffic(60))
    task = controller.run("acme", {"task": "learn", "policy": "intents", "force": True})
    assert task.result["registered"] is True and task.result["version"] == 2
    assert api.store.get_policy("acme", "intents").live_version == 2
    # Developers cannot promote; admins roll back, audited with the reason.
    assert (
        api.client.put("/v1/policies/intents/live", json={"version": 1}, headers=dev).status_code
        == 403
    )
    back = api.client.put(
        "/v1/policies/intents/live",
        json={"version": 1, "reason": "regression in CSAT"},
        headers=admin,
    )
    assert back.status_code == 200 and back.json()["live_version"] == 1
    entry = [e for e in AuditLog(api.store).entries("acme") if e.action == "policy.set_live"][-1]
    assert entry.before == {"live_version": 2} and entry.after["reason"] == "regression in CSAT"


def test_forcing_a_version_live_through_a_task_needs_the_promote_right(
    api: Api, controller
) -> None:
    # Developers may run learning tasks but not promote by hand: forcing past the gate and
    # serving the result used to be a way around `PUT /policies/{name}/live`.
    dev = api.auth("acme", ("Developer",))
    create_policy(api, dev)
    forced = {"task": "learn", "policy": "intents", "force": True}
    refused = api.client.post("/v1/tasks", json=forced, headers=dev)
    assert refused.status_code == 403 and "policy:promote" in refused.json()["error"]["message"]
    assert api.store.list_tasks("acme").items == []  # nothing queued
    registered_only = api.client.post("/v1/tasks", json={**forced, "make_live": False}, headers=dev)
    assert registered_only.status_code == 202
    admin = api.client.post("/v1/tasks", json=forced, headers=api.auth("acme"))
    assert admin.status_code == 202
    ordinary = api.client.post(
        "/v1/tasks", json={"task": "learn", "policy": "intents"}, headers=dev
    )
    assert ordinary.status_code == 202  # the gate decides what goes live


def test_a_decision_still_waiting_for_its_reward_is_named_as_what_holds_learning(
    api: Api, controller
) -> None:
    dev, agent = api.auth("acme", ("Developer",)), api.auth("acme", ("Agent",))
    create_policy(api, dev)
    body = {"decision_point": "intent", "context": {"text": "card?"}, "actions": ACTIONS}
    first = api.client.post("/v1/decisions", json=body, headers=agent).json()  # never rewarded
    play(api, agent, traffic(40))
    task = controller.run("acme", {"task": "learn", "policy": "intents"})
    assert task.status == "succeeded" and task.result["examples"] == 0
    assert task.result["waiting"] == 41
    reason = task.result["reason"]
    assert first["decision_id"] in reason and "waits for its reward until" in reason
    assert "3600 s" in reason  # the app's reward window


def test_a_failed_task_says_why_and_leaves_live_untouched(api: Api, controller) -> None:
    dev = api.auth("acme", ("Developer",))
    create_policy(api, dev)
    policy = api.store.get_policy("acme", "intents")
    api.store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=b"AGLP-garbage"),
        make_live=True,
    )
    task = controller.run("acme", {"task": "learn", "policy": "intents"})
    assert task.status == "failed" and "cannot load the live version" in task.error
    assert api.store.get_policy("acme", "intents").live_version == 2
    response = api.client.get(f"/v1/tasks/{task.id}", headers=dev).json()
    assert response["status"] == "failed" and response["error"]


def test_a_task_for_an_unknown_app_is_refused_as_such(controller) -> None:
    # Before, the store's foreign key failed and the task read as "task id None is taken".
    with pytest.raises(TaskError, match="no app 'acme-typo'"):
        controller.run("acme-typo", {"task": "learn", "policy": "intents"})


def test_tasks_through_the_api_run_in_the_background_and_serving_goes_on(
    api: Api, controller
) -> None:
    dev = api.auth("acme", ("Developer",))
    agent = api.auth("acme", ("Agent",))
    create_policy(api, dev)
    play(api, agent, traffic(200))
    controller.start()
    try:
        queued = api.client.post(
            "/v1/tasks", json={"task": "learn", "policy": "intents", "id": "learn-1"}, headers=dev
        )
        assert queued.status_code == 202 and queued.json()["id"] == "learn-1"
        retry = api.client.post(
            "/v1/tasks", json={"task": "learn", "policy": "intents", "id": "learn-1"}, headers=dev
        )
        assert retry.json()["id"] == "learn-1"  # a retried trigger is the same task
        # Decisions keep being answered while the task runs.
        served = [
            api.client.post(
                "/v1/decisions",
                json={"decision_point": "intent", "context": {"text": "card?"}, "actions": ACTIONS},
                headers=agent,
            ).status_code
            for _ in range(5)
        ]
        assert served == [201] * 5
        done = threading.Event()
        for _ in range(300):
            status = api.client.get("/v1/tasks/learn-1", headers=dev).json()["status"]
            if status in ("succeeded", "failed"):
                done.set()
                break
            threading.Event().wait(0.1)
        assert done.is_set() and status == "succeeded"
        unknown = api.client.post(
            "/v1/tasks", json={"task": "learn", "policy": "nope"}, headers=dev
        )
        assert unknown.status_code == 404
    finally:
        controller.stop()


def test_scheduler_starts_a_task_after_enough_decisions(api: Api) -> None:
    state = api.app.state.agl
    ctl = LearningController(
        state.store, state.audit, every_decisions=50, every_seconds=None, poll_seconds=0.05
    )
    create_policy(api, api.auth("acme", ("Developer",)))
    play(api, api.auth("acme", ("Agent",)), traffic(60))
    assert ctl.due() == [("acme", "intents")]
    ctl.start()
    try:
        for _ in range(200):
            tasks = state.store.list_tasks("acme").items
            if tasks and tasks[0].status in ("succeeded", "failed"):
                break
            threading.Event().wait(0.05)
        assert tasks and tasks[0].status == "succeeded" and tasks[0].created_by == "system"
    finally:
        ctl.stop()


def test_the_gate_clips_weights_as_the_settings_say(controller, monkeypatch) -> None:
    from agent_lightning.learning import ope

    assert LearnSettings().max_weight == ope.GATE_MAX_WEIGHT
    for bad in (0.5, 0.0, float("nan")):
        with pytest.raises(ValueError, match="max_weight"):
            LearnSettings(max_weight=bad)
    seen = []
    real_gate = ope.gate
    monkeypatch.setattr(ope, "gate", lambda *a, **kw: seen.append(kw) or real_gate(*a, **kw))
    for settings in (LearnSettings(), LearnSettings(max_weight=None), LearnSettings(max_weight=5)):
        controller.settings = settings
        controller._gate(object(), object(), [])
    assert [kw["max_weight"] for kw in seen] == [20.0, None, 5]
