"""The real app with the dashboard wired in, for the dashboard tests.

Until the server includes the dashboard router itself, it is added the way optional components
are (`state.extras["routers"]`); once the server serves it, this uses the server's own wiring.
"""

from __future__ import annotations

from fastapi import FastAPI

from agent_lightning.config import Settings
from agent_lightning.dashboard import mount_dashboard, router
from agent_lightning.server.app import create_app
from agent_lightning.server.state import ServerState, build_state
from agent_lightning.store import Store


def _paths(app: FastAPI) -> set[str]:
    return {getattr(route, "path", "") for route in app.routes}


def dashboard_app(
    settings: Settings, store: Store, state: ServerState | None = None, **kwargs
) -> FastAPI:
    app = create_app(settings, state=state or build_state(settings, store), **kwargs)
    if "/v1/dashboard/overview" not in _paths(app):
        state = state or build_state(settings, store)
        state.extras.setdefault("routers", []).append(router)
        app = create_app(settings, state=state, **kwargs)
    if "/" not in _paths(app):
        mount_dashboard(app)
    return app
