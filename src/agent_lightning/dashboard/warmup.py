"""Fill the dashboard's rollup in the background when the server starts.

Why: the rollup keeps closed buckets in memory, so the first page load after a restart has to
aggregate the whole window from the database (seconds, on a store with a million events), while
every later load reads only the open bucket. Computing the default windows of every app once, at
start-up and off the request path, moves that cost to where nobody waits for it. A failure here
is logged and forgotten: the first request then simply computes what it needs, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agent_lightning.dashboard import overview
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.store import utcnow

log = logging.getLogger(__name__)

WARM_BUCKETS = ("hour", "day")  # the overview's default and its long view
MAX_APPS = 50


def warm_dashboard(state: Any) -> DashboardData:
    """Compute each app's default overview windows once; returns the (shared) DashboardData."""
    from agent_lightning.dashboard.routes import DEFAULT_WINDOW

    data = state.extras.get("dashboard")
    if data is None:
        data = state.extras.setdefault("dashboard", DashboardData(state.store))
    for app in state.store.list_apps()[:MAX_APPS]:
        for bucket in WARM_BUCKETS:
            end = utcnow()
            overview.build_overview(data, app, bucket, end - DEFAULT_WINDOW[bucket], end)
    return data


def install_warmup(state: Any) -> None:
    """Run `warm_dashboard` on a daemon thread when the server starts."""

    def start() -> None:
        def run() -> None:
            try:
                warm_dashboard(state)
            except Exception:  # noqa: BLE001 - a cold cache is a slow page, not an outage
                log.warning("dashboard warm-up failed; the first page load will compute it")

        threading.Thread(target=run, name="agl-dashboard-warmup", daemon=True).start()

    state.extras.setdefault("on_startup", []).append(start)
