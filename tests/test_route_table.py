"""The server refuses to start when a /v1 route has no access rule (checked once per router set)."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from agent_lightning.config import Settings
from agent_lightning.server.app import create_app
from agent_lightning.server.state import build_state


def _state(tmp_path):
    return build_state(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))


def test_a_route_without_an_access_rule_stops_startup(tmp_path) -> None:
    create_app(state=_state(tmp_path), start_background=False)  # the stock set passes, cached
    extra = APIRouter()

    @extra.get("/unguarded")
    def unguarded() -> dict:
        return {}

    state = _state(tmp_path)
    state.extras["routers"] = [extra]
    with pytest.raises(RuntimeError, match="GET /v1/unguarded"):
        create_app(state=state, start_background=False)
    # Refused sets are not remembered as checked: building again fails again.
    with pytest.raises(RuntimeError, match="without an access rule"):
        create_app(state=state, start_background=False)
