"""The web dashboard: JSON summaries under `/v1/dashboard/...` and the browser app at `/`.

Wiring (the server owns it): include `router` with the other `/v1` routers, then call
`mount_dashboard(app)` to serve the page and its assets. The learning controller can honour an
operator's pause with `promotion_paused(store, app_id, policy)`.
"""

from agent_lightning.dashboard.mount import STATIC_DIR, mount_dashboard
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.dashboard.rollouts import promotion_paused
from agent_lightning.dashboard.rollup import Rollup
from agent_lightning.dashboard.routes import router

__all__ = ["STATIC_DIR", "DashboardData", "Rollup", "mount_dashboard", "promotion_paused", "router"]
