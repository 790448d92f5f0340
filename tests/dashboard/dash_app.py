"""The real app with the dashboard wired in, for the dashboard tests.

The server includes the dashboard's router and page itself; this only gives the tests one place
to build it.
"""

from __future__ import annotations

from fastapi import FastAPI

from agent_lightning.config import Settings
from agent_lightning.server.app import create_app
from agent_lightning.server.state import ServerState, build_state
from agent_lightning.store import Store


def dashboard_app(
    settings: Settings, store: Store, state: ServerState | None = None, **kwargs
) -> FastAPI:
    return create_app(settings, state=state or build_state(settings, store), **kwargs)
