"""The dashboard's JSON API, mounted by the server under `/v1` behind its RBAC check.

| route                                   | permission       | who                        |
| --------------------------------------- | ---------------- | -------------------------- |
| `GET /v1/dashboard/overview`            | `metrics:read`   | Analyst, Developer, Admin  |
| `GET /v1/dashboard/learning`            | `task:read`      | Analyst, Developer, Admin  |
| `GET /v1/dashboard/rollouts`            | `policy:read`    | Analyst, Developer, Admin  |
| `PUT /v1/dashboard/rollouts/pause`      | `policy:promote` | AgentAdmin                 |
| `GET /v1/dashboard/sessions`            | `telemetry:read` | Analyst, Developer, Admin  |
| `GET /v1/dashboard/session`             | `telemetry:read` | Analyst, Developer, Admin  |
| `GET /v1/dashboard/audit`               | `audit:read`     | AgentAdmin                 |

Everything else the browser needs (token, identity, switching the live version, the
publisher's rollout actions `POST /v1/rollouts/{id}/pause|resume|promote|rollback`, the audit
chain check) is the platform's own REST API, so the server's RBAC decides every change.
Like the other components, this module does not import the server: the server's `authorize`
dependency has already checked the caller and left the principal in `request.state.principal`.
Every query is scoped to the principal's app.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from agent_lightning.dashboard import learning, overview, rollouts, sessions
from agent_lightning.dashboard.buckets import BUCKETS, MAX_WINDOW, as_utc
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.store import utcnow

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

DEFAULT_WINDOW = {"minute": timedelta(hours=1), "hour": timedelta(hours=24), "day": timedelta(30)}
RESPONSE_TTL = 5.0  # seconds an overview answer is reused: a wall of open dashboards, one query
_lock = threading.Lock()


def dashboard_data(request: Request) -> DashboardData:
    """One DashboardData (with its rollup) per server process, created on first use."""
    extras = request.app.state.agl.extras
    data = extras.get("dashboard")
    if data is None:
        with _lock:
            data = extras.get("dashboard")
            if data is None:
                data = extras["dashboard"] = DashboardData(request.app.state.agl.store)
    return data


def _principal(request: Request) -> Any:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # pragma: no cover - the server's authorize always runs first
        raise HTTPException(401, "authentication required")
    return principal


class _ResponseCache:
    def __init__(self, ttl: float, max_entries: int = 512) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict[str, Any] | None:
        with self._lock:
            hit = self._entries.get(key)
            return hit[1] if hit and hit[0] > time.monotonic() else None

    def put(self, key: tuple, value: dict[str, Any]) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def response_cache(request: Request) -> _ResponseCache:
    extras = request.app.state.agl.extras
    with _lock:
        return extras.setdefault("dashboard_responses", _ResponseCache(RESPONSE_TTL))


def _window(
    bucket: str, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    now = utcnow()
    end = as_utc(until) if until else now
    start = as_utc(since) if since else end - DEFAULT_WINDOW[bucket]
    if start >= end:
        raise HTTPException(422, "since must be before until")
    if end - start > MAX_WINDOW[bucket]:
        longest = MAX_WINDOW[bucket]
        raise HTTPException(
            422,
            f"a window of {bucket} buckets can span at most {_span(longest)}; "
            "choose a larger bucket or a shorter window",
        )
    return start, end


def _span(delta: timedelta) -> str:
    return f"{delta.days} days" if delta.days else f"{int(delta.total_seconds() // 3600)} hours"


@router.get("/overview", summary="One app at a glance: volumes, outcomes by version, intents, SLA")
def get_overview(
    request: Request,
    since: datetime | None = Query(None, description="window start (ISO 8601); default by bucket"),
    until: datetime | None = Query(None, description="window end (ISO 8601); default now"),
    bucket: str = Query("hour", pattern="^(" + "|".join(BUCKETS) + ")$"),
) -> dict[str, Any]:
    principal = _principal(request)
    start, end = _window(bucket, since, until)
    data = dashboard_data(request)
    cache = response_cache(request)
    # Requests within one bucket share an answer: the key rounds the window to the bucket.
    key = ("overview", principal.app_id, bucket, start.isoformat()[:16], end.isoformat()[:16])
    hit = cache.get(key)
    if hit is not None:
        return {**hit, "cache": {**hit["cache"], "response": "hit"}}
    app = data.store.get_app(principal.app_id)
    result = overview.build_overview(data, app, bucket, start, end)
    result["cache"]["response"] = "miss"
    cache.put(key, result)
    return result


@router.get("/learning", summary="Learning tasks, off-policy estimates and versions per policy")
def get_learning(
    request: Request,
    policy: str | None = Query(None, max_length=200, description="one policy; default all"),
) -> dict[str, Any]:
    principal = _principal(request)
    return learning.build_learning(dashboard_data(request), principal.app_id, policy)


def _rollout_manager(request: Request) -> Any:
    """The server's RolloutManager when the publisher is installed (its settings, e.g. the
    guardrails' minimum sample, are then the ones the page reports); else a reader of our own."""
    publisher = request.app.state.agl.extras.get("publisher")
    return getattr(publisher, "manager", None)


@router.get(
    "/rollouts",
    summary="Per policy: the active rollout with live guardrails, past rollouts, versions, history",
)
def get_rollouts(request: Request) -> dict[str, Any]:
    from agent_lightning.security.rbac import Permission

    principal = _principal(request)
    return rollouts.build_rollouts(
        dashboard_data(request),
        principal.app_id,
        show_actor=principal.can(Permission.AUDIT_READ),
        enforced=rollouts.pause_enforced(request.app.state.agl.controller),
        manager=_rollout_manager(request),
    )


class PauseChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(..., min_length=1, max_length=200)
    paused: bool
    reason: str = Field("", max_length=2000)


@router.put(
    "/rollouts/pause",
    summary="Pause or resume automatic promotion of a policy's new versions (audited)",
)
def put_pause(request: Request, body: PauseChange) -> dict[str, Any]:
    principal = _principal(request)
    state = request.app.state.agl
    before, after = rollouts.set_paused(
        state.store, principal.app_id, body.policy, body.paused, body.reason, principal.subject
    )
    state.audit.record(
        principal.actor,
        "promotion.pause" if body.paused else "promotion.resume",
        "policy",
        body.policy,
        app_id=principal.app_id,
        before=before,
        after=after,
    )
    return {"policy": body.policy, **after}


@router.get("/sessions", summary="Sessions with the most recent activity, newest first")
def get_sessions(
    request: Request,
    limit: int = Query(50, ge=1, le=200),
    user_id: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    principal = _principal(request)
    items = dashboard_data(request).recent_sessions(principal.app_id, limit, user_id)
    return {"items": items}


@router.get("/session", summary="One session's timeline: messages, decisions, rewards, calls")
def get_session(
    request: Request,
    session_id: str = Query(..., min_length=1, max_length=200),
    limit: int = Query(500, ge=1, le=2000),
) -> dict[str, Any]:
    principal = _principal(request)
    return sessions.build_timeline(dashboard_data(request), principal.app_id, session_id, limit)


@router.get("/audit", summary="This app's audit entries, newest first")
def get_audit(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    before_seq: int | None = Query(None, ge=1),
    action: str | None = Query(None, max_length=100),
) -> dict[str, Any]:
    from agent_lightning.security.audit import to_dict

    principal = _principal(request)
    entries = dashboard_data(request).audit(
        principal.app_id,
        limit=limit,
        before_seq=before_seq,
        actions=[action] if action else None,
    )
    items = [to_dict(e) for e in entries]
    return {"items": items, "next_before_seq": items[-1]["seq"] if len(items) == limit else None}
