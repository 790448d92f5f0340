"""Several servers on one database: each is a Store of its own here (two Stores = two processes).

Learning tasks of a policy run one at a time across servers, a version goes live only over the
version it was gated against, learning never skips a decision that commits late, a starting
server fails only the tasks of processes that are gone, and servers started together on an
empty PostgreSQL database all migrate it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from agent_lightning.controller import LearningController
from agent_lightning.controller import controller as controller_module
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import (
    NotFound,
    Policy,
    PolicyVersion,
    Store,
    Task,
    content_hash,
    new_id,
)
from agent_lightning.store.store import LiveMoved
from tests.conftest import postgres_schema_url, require_postgres

ACTIONS = [{"id": "a", "description": "card arrival"}, {"id": "b", "description": "pin blocked"}]


def _decision(i: int) -> dict:
    row = {
        "id": f"d{i}",
        "decision_point": "intent",
        "context": {"text": f"where is my card {i}" if i % 2 else f"my pin is blocked {i}"},
        "actions": ACTIONS,
        "action_id": "a" if i % 3 else "b",
        "propensity": 0.5,
        "probabilities": {"a": 0.5, "b": 0.5},
    }
    row["content_hash"] = content_hash(row)
    return row


def _reward(i: int) -> dict:
    row = {"id": f"r{i}", "decision_id": f"d{i}", "value": float(i % 2), "source": "user"}
    row["content_hash"] = content_hash(row)
    return row


def _policy(store: Store, *, live_artifact: bytes | None = None) -> Policy:
    """Policy `intents` with a live version 1 (an untrained policy unless bytes are given)."""
    from agent_lightning.learning import make_policy

    store.ensure_app("acme")
    policy = store.create_policy(
        Policy(
            id=new_id(),
            app_id="acme",
            name="intents",
            decision_point="intent",
            spec={"featurizer": "hashing"},
        )
    )
    artifact = live_artifact or make_policy({"featurizer": "hashing"}).to_bytes()
    store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=artifact), make_live=True
    )
    return policy


def _controller(store: Store) -> LearningController:
    return LearningController(store, AuditLog(store), every_decisions=None, every_seconds=None)


def _wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _running(store: Store, task_id: str) -> bool:
    try:
        return store.get_task("acme", task_id).status == "running"
    except NotFound:  # not created yet
        return False


@pytest.fixture
def postgres_url():
    require_postgres()
    with postgres_schema_url() as url:
        yield url


# -- 1. one version goes live at a time, over its parent --------------------------------------


def test_going_live_is_a_compare_and_set_over_the_parent(store: Store) -> None:
    policy = _policy(store, live_artifact=b"one")

    def version(parent: int | None) -> PolicyVersion:
        return PolicyVersion(id=new_id(), policy_id=policy.id, artifact=b"x", parent_version=parent)

    # Two servers trained candidates of v1; the first goes live over it...
    assert store.add_policy_version(version(1), make_live=True, over_parent=True).version == 2
    # ...the second was gated against v1, which is no longer live: refused, nothing written.
    with pytest.raises(LiveMoved) as moved:
        store.add_policy_version(version(1), make_live=True, over_parent=True)
    assert (moved.value.parent, moved.value.live) == (1, 2)
    assert [v.version for v in store.list_policy_versions("acme", "intents").items] == [1, 2]
    assert store.get_policy("acme", "intents").live_version == 2
    # A version of the live one goes live; without `over_parent` (an operator's upload), as asked.
    assert store.add_policy_version(version(2), make_live=True, over_parent=True).version == 3
    assert store.add_policy_version(version(None), make_live=True).version == 4
    assert store.get_policy("acme", "intents").live_version == 4


def test_a_candidate_whose_parent_is_no_longer_live_is_kept_but_not_made_live(
    store: Store, monkeypatch
) -> None:
    policy = _policy(store)
    store.insert_records("decisions", "acme", [_decision(i) for i in range(40)])
    store.insert_records("rewards", "acme", [_reward(i) for i in range(40)])
    controller = _controller(store)
    real_gate = controller._gate

    def gate_while_another_server_registers(*args, **kwargs):
        # Meanwhile another server's task made its own version of v1 live.
        store.add_policy_version(
            PolicyVersion(id=new_id(), policy_id=policy.id, artifact=b"v2", parent_version=1),
            make_live=True,
            over_parent=True,
        )
        return real_gate(*args, **kwargs)

    monkeypatch.setattr(controller, "_gate", gate_while_another_server_registers)
    task = controller.run("acme", {"task": "learn", "policy": "intents", "force": True})
    assert task.status == "succeeded", task.error
    result = task.result
    assert (result["registered"], result["version"], result["live"]) == (True, 3, False)
    assert result["parent_version"] == 1
    assert result["reason"] == "v2 went live meanwhile; the next task compares against it"
    assert store.get_policy("acme", "intents").live_version == 2  # not replaced unseen
    audit = [e for e in AuditLog(store).entries("acme") if e.action == "policy_version.create"]
    assert audit[-1].after["version"] == 3 and audit[-1].after["live"] is False


@pytest.mark.postgres
def test_two_servers_never_run_learning_tasks_of_one_policy_at_once(postgres_url: str) -> None:
    first_store, second_store = Store(postgres_url), Store(postgres_url)
    try:
        first_store.ensure_app("acme")
        first, second = _controller(first_store), _controller(second_store)
        release, learned = threading.Event(), []

        def slow_learn(app_id, name, **_):
            learned.append("first")
            release.wait(10)
            return {"registered": False, "reason": "test"}

        first.learn = slow_learn
        second.learn = lambda *a, **kw: learned.append("second") or {"registered": False}
        params = {"task": "learn", "policy": "intents"}
        running = threading.Thread(target=first.run, args=("acme", {**params, "id": "t1"}))
        running.start()
        try:
            _wait_for(lambda: _running(first_store, "t1"))
            started = time.monotonic()
            busy = second.run("acme", params)
            assert time.monotonic() - started < 5  # it did not wait for the other task
        finally:
            release.set()
            running.join(10)
        assert busy.status == "failed"
        assert "another learning task of this policy is running" in busy.error
        assert learned == ["first"]  # the second server trained nothing
        assert first_store.get_task("acme", "t1").status == "succeeded"
        # Once the first is done, the lock is free again.
        assert second.run("acme", params).status == "succeeded" and learned[-1] == "second"
    finally:
        first_store.close()
        second_store.close()


# -- 2. learning never skips a decision that commits after a later one -------------------------


@pytest.mark.postgres
def test_learning_never_skips_a_decision_whose_insert_commits_late(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        store.ensure_app("acme")
        store.update_app("acme", reward_wait_seconds=0)  # every decision settles at once
        inserted, release = threading.Event(), threading.Event()
        holder: list[threading.Thread] = []

        @event.listens_for(store.engine, "after_cursor_execute")
        def hold_open(conn, cursor, statement, *_):
            # Another server's ingestion transaction: its decision has a pk, and no commit yet.
            if threading.current_thread() in holder and statement.startswith("INSERT INTO decis"):
                inserted.set()
                release.wait(10)

        slow = threading.Thread(
            target=store.insert_records, args=("decisions", "acme", [_decision(0)])
        )
        holder.append(slow)
        slow.start()
        read: list = []
        reader = threading.Thread(
            target=lambda: read.append(store.training_examples("acme", "intent"))
        )
        try:
            assert inserted.wait(10)
            store.insert_records("decisions", "acme", [_decision(i) for i in range(1, 6)])
            reader.start()
            reader.join(0.5)
            assert reader.is_alive()  # it waits for the open insert instead of reading past it
        finally:
            release.set()
            slow.join(10)
        reader.join(10)
        (examples, last_pk) = read[0]
        assert sorted(e.decision.id for e in examples) == [f"d{i}" for i in range(6)]
        assert store.training_examples("acme", "intent", after_pk=last_pk)[0] == []
    finally:
        store.close()


# -- 3. a starting server fails only the tasks of processes that are gone ----------------------


def _task(store: Store, task_id: str, runner: dict | None, **extra) -> None:
    store.create_task(
        Task(
            id=task_id,
            app_id="acme",
            kind="learn",
            params={"policy": "intents"},
            status="running",
            result={"runner": runner} if runner is not None else {},
            **extra,
        )
    )


def test_a_starting_server_fails_only_tasks_whose_process_is_gone(store: Store) -> None:
    store.ensure_app("acme")
    controller = _controller(store)
    here = controller._runner()
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    _task(store, "gone-pid", {**here, "pid": exited.pid})  # this host, its process exited
    _task(store, "earlier-me", {**here, "boot": "an earlier process"})  # restarted as our pid
    _task(store, "other-pid", {**here, "pid": controller_module.os.getppid()})  # alive
    _task(store, "other-host", {**here, "host": "replica-2", "pid": 1})  # heartbeat is fresh
    _task(store, "silent-host", {**here, "host": "replica-3", "heartbeat": old})
    _task(store, "no-runner-new", None, started_at=datetime.now(UTC))  # an older server's
    _task(store, "no-runner-old", None, started_at=datetime.now(UTC) - timedelta(hours=1))
    controller.start()
    controller.stop()
    status = {t.id: t.status for t in store.list_tasks("acme").items}
    assert status == {
        "gone-pid": "failed",
        "earlier-me": "failed",
        "other-pid": "running",
        "other-host": "running",
        "silent-host": "failed",
        "no-runner-new": "running",
        "no-runner-old": "failed",
    }


def test_a_task_running_on_another_server_survives_its_start_and_ends_without_an_error(
    database_url: str,
) -> None:
    first_store, second_store = Store(database_url), Store(database_url)
    try:
        first_store.ensure_app("acme")
        first, second = _controller(first_store), _controller(second_store)
        release = threading.Event()

        def slow_learn(app_id, name, **_):
            release.wait(10)
            return {"registered": False, "reason": "test"}

        first.learn = slow_learn
        params = {"task": "learn", "policy": "intents", "id": "t1"}
        running = threading.Thread(target=first.run, args=("acme", params))
        running.start()
        try:
            _wait_for(lambda: _running(first_store, "t1"))
            second.start()  # another server starts (or restarts) meanwhile
            second.stop()
            task = first_store.get_task("acme", "t1")
            assert (task.status, task.error) == ("running", None)
            assert task.result["runner"]["pid"] == controller_module.os.getpid()
            # As a server of the previous release would have marked it:
            first_store.update_task("t1", status="failed", error="the server stopped ...")
        finally:
            release.set()
            running.join(10)
        task = first_store.get_task("acme", "t1")
        assert (task.status, task.error) == ("succeeded", None)
    finally:
        first_store.close()
        second_store.close()


def test_a_task_keeps_its_heartbeat_while_it_runs(store: Store) -> None:
    store.ensure_app("acme")
    controller = LearningController(
        store, AuditLog(store), every_decisions=None, every_seconds=None, heartbeat_seconds=0.05
    )
    release = threading.Event()
    controller.learn = lambda *a, **kw: release.wait(10) and {"registered": False}
    running = threading.Thread(
        target=controller.run, args=("acme", {"task": "learn", "policy": "p", "id": "t1"})
    )
    running.start()
    try:
        _wait_for(lambda: _running(store, "t1"))
        first = store.get_task("acme", "t1").result["runner"]["heartbeat"]
        _wait_for(lambda: store.get_task("acme", "t1").result["runner"]["heartbeat"] > first)
    finally:
        release.set()
        running.join(10)
    assert store.get_task("acme", "t1").status == "succeeded"


# -- 4. servers started together on an empty database --------------------------------------


OPEN_STORE = """
import sys, time
from agent_lightning.store import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all open at the same moment
Store(sys.argv[1]).close()
"""


@pytest.mark.postgres
def test_servers_started_together_on_an_empty_postgres_database_all_migrate(
    postgres_url: str,
) -> None:
    # Processes, as servers are (threads of one process share Python's import lock as well).
    at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, postgres_url, at],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode:
            failures.append(err.decode()[-300:])
    assert failures == []
    store = Store(postgres_url, migrate=False)
    try:
        with store.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
        store.ensure_app("acme")  # the schema is whole
    finally:
        store.close()


# -- 5. a missing driver ---------------------------------------------------------------------


def test_a_missing_postgres_driver_says_what_to_install(monkeypatch) -> None:
    from agent_lightning.store.engine import create_store_engine

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'agent-lightning\[postgres\]'") as err:
        create_store_engine("postgresql://postgres@127.0.0.1:5432/agl")
    assert isinstance(err.value, ValueError)  # the CLI reports it in one line
