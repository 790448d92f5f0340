"""One conversation as a timeline: messages, decisions with probabilities, rewards, model calls
and the agent's own trace spans, plus the session's summary line.

The timeline itself is observability's (`GET /v1/sessions/{session_id}/timeline` draws the same
items); the dashboard adds the summary its header shows.
"""

from __future__ import annotations

from agent_lightning.dashboard._json import clean
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.observability.timeline import session_timeline


def build_timeline(data: DashboardData, app_id: str, session_id: str, limit: int) -> dict:
    timeline = session_timeline(data.store, app_id, session_id, limit)
    timeline["summary"] = data.session_summaries(app_id, [session_id]).get(session_id)
    return clean(timeline)
