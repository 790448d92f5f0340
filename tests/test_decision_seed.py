"""`decision_seed` (AGL_DECISION_SEED) makes a replay of the same traffic make the same choices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent_lightning.config import ConfigError, Settings
from agent_lightning.store import Store
from tests.conftest import make_api

ACTIONS = [{"id": f"a{i}"} for i in range(6)]


def _choices(settings: Settings, tmp_path: Path, name: str) -> list[str]:
    settings = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / name}")
    store = Store(settings.database_url)
    api = make_api(settings, store)
    try:
        h = api.auth("acme", ("Agent",))
        out = []
        for i in range(20):
            body = {"decision_point": "intent", "context": {"text": f"q{i}"}, "actions": ACTIONS}
            response = api.client.post("/v1/decisions", json=body, headers=h)
            assert response.status_code == 201, response.text
            out.append(response.json()["action_id"])
        return out
    finally:
        api.client.close()
        store.close()


def test_a_seeded_server_replays_the_same_choices(settings: Settings, tmp_path: Path) -> None:
    seeded = dataclasses.replace(settings, decision_seed=7)
    first = _choices(seeded, tmp_path, "one.db")
    assert len(set(first)) > 1  # it samples (uniform over six actions without a policy)
    assert _choices(seeded, tmp_path, "two.db") == first
    assert _choices(dataclasses.replace(settings, decision_seed=8), tmp_path, "three.db") != first


def test_decision_seed_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("AGL_DECISION_SEED", "42")
    assert Settings.from_env().decision_seed == 42
    monkeypatch.delenv("AGL_DECISION_SEED")
    assert Settings.from_env().decision_seed is None
    for bad in ("-1", "seven"):
        monkeypatch.setenv("AGL_DECISION_SEED", bad)
        with pytest.raises(ConfigError, match="AGL_DECISION_SEED"):
            Settings.from_env()
