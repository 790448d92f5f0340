"""The observability API, mounted by the server under `/v1` behind its RBAC check.

| route                                  | permission        | who                  |
| -------------------------------------- | ----------------- | -------------------- |
| `GET /v1/metrics`                      | `metrics:read`    | Analyst and up       |
| `POST /v1/traces`                      | `telemetry:write` | agents (OTLP/HTTP)   |
| `GET /v1/sessions/{session_id}/timeline` | `telemetry:read`  | Analyst and up       |
| `GET /v1/alerts/rules`, `PUT ...`      | `settings:write`  | AgentAdmin           |
| `GET /v1/alerts`                       | `metrics:read`    | Analyst and up       |

The server's `authorize` dependency has already authenticated the caller and checked the
permission when a handler runs; it leaves the principal in `request.state.principal`, which is
all this module needs from the server (components do not import it). Tenancy: every read and
write is scoped to the principal's app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from agent_lightning.observability import otlp_ingest
from agent_lightning.observability.alert_rules import RulesIn
from agent_lightning.observability.firings import public_firing

router = APIRouter(tags=["observability"])


def _obs(request: Request) -> Any:
    return request.app.state.agl.extras["observability"]


def _principal(request: Request) -> Any:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # pragma: no cover - the server's authorize always runs first
        raise HTTPException(401, "authentication required")
    return principal


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format) for your app and the server",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    obs = _obs(request)
    body = obs.metrics.exposition(_principal(request).app_id)
    return Response(body, media_type=obs.metrics.content_type)


_OTLP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
        "description": "An OTLP ExportTraceServiceRequest (optionally Content-Encoding: gzip)",
    }
}


@router.post(
    "/traces",
    summary="OTLP/HTTP trace export (protobuf or JSON, gzip allowed)",
    response_class=Response,
    openapi_extra=_OTLP_BODY,
)
async def export_traces(request: Request) -> Response:
    obs = _obs(request)
    app_id = _principal(request).app_id
    fmt = otlp_ingest.JSON
    try:
        fmt = otlp_ingest.request_format(request.headers.get("content-type"))
        raw = await request.body()
        body = otlp_ingest.decompress(
            raw, request.headers.get("content-encoding"), obs.settings.otlp_max_inflated_bytes
        )
        message = otlp_ingest.decode(body, fmt)
    except otlp_ingest.OtlpError as exc:
        content, media = otlp_ingest.error_body(
            exc, fmt, getattr(request.state, "request_id", None)
        )
        return Response(content, status_code=exc.status, media_type=media)
    result = await run_in_threadpool(obs.ingest_traces, app_id, message)
    content, media = otlp_ingest.response_body(result, fmt)
    return Response(content, status_code=200, media_type=media)


@router.get(
    "/sessions/{session_id}/timeline",
    summary="A session's events, decisions, rewards and spans in time order",
)
def session_timeline(
    request: Request,
    session_id: str,
    limit: int = Query(500, ge=1, le=5000, description="most items returned"),
) -> dict:
    from agent_lightning.observability.timeline import session_timeline as build

    if len(session_id) > 200:
        raise HTTPException(404, "no such session")
    return build(_obs(request).store, _principal(request).app_id, session_id, limit)


@router.get("/alerts/rules", summary="This app's alert rules and webhook (secret never shown)")
def get_alert_rules(request: Request) -> dict:
    rules = _obs(request).alert_rules
    return rules.public(rules.get(_principal(request).app_id))


@router.put("/alerts/rules", summary="Replace this app's alert rules (and webhook)")
def put_alert_rules(request: Request, body: RulesIn) -> dict:
    obs = _obs(request)
    principal = _principal(request)
    before, after = obs.alert_rules.put(principal.app_id, body, principal.subject)
    obs.audit.record(
        principal.actor,
        "alerts.rules.update",
        "alert_rules",
        principal.app_id,
        app_id=principal.app_id,
        before=before,
        after=after,
    )
    return after


@router.get("/alerts", summary="Alert firings, newest first (firing and resolved)")
def list_alerts(
    request: Request,
    status: str | None = Query(None, pattern="^(firing|resolved)$"),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
) -> JSONResponse:
    page = _obs(request).firings.list(
        _principal(request).app_id, status=status, cursor=cursor, limit=limit
    )
    return JSONResponse(
        {"items": [public_firing(row) for row in page.items], "next_cursor": page.next_cursor}
    )
