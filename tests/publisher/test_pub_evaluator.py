"""The background evaluator of the full server rolls a bad canary back with no one asking."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pub_seed import ADMIN, APP, POLICY, record, seed_policy

from agent_lightning.config import Settings
from agent_lightning.server.app import create_app
from agent_lightning.server.wiring import with_components
from agent_lightning.store import Store


def test_the_server_evaluates_rollouts_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGL_ROLLOUT_EVAL_SECONDS", "0.2")
    url = f"sqlite:///{tmp_path / 'agl.db'}"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
    )
    store = Store(url)
    seed_policy(store)
    state = with_components(settings, store)
    manager = state.extras["publisher"].manager
    assert state.decisions.version_selector is state.extras["publisher"].selector
    with TestClient(create_app(settings, store=store, state=state)):  # runs on_startup hooks
        ro = manager.start(APP, ADMIN, policy=POLICY, candidate_version=2)
        record(store, 2, 120, p_success=0.1, seed=1, prefix="bad")
        record(store, 1, 120, p_success=0.9, seed=2, prefix="good")
        deadline = time.monotonic() + 10
        while manager.get(APP, ro.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        row = manager.get(APP, ro.id)
        assert row.status == "rolled_back", row.status
        assert row.history[-1]["actor"] == "system"
    assert state.extras["publisher"].evaluator._thread is None  # stopped on shutdown
    store.close()
