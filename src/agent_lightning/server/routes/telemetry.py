"""Events, decisions and rewards: the write path agents use, and the redacted read path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from agent_lightning.ingestion import BatchResult, RankRequest
from agent_lightning.policy_engine.service import DecisionRejected
from agent_lightning.server import serializers
from agent_lightning.server.auth import Principal, current_principal
from agent_lightning.server.errors import APIError, error_body
from agent_lightning.store import Filters

router = APIRouter(tags=["telemetry"])


def _state(request: Request):
    return request.app.state.agl


def _single(request: Request, result: BatchResult) -> JSONResponse:
    """One record in, one answer out: 201 created, 200 duplicate, 4xx rejected."""
    if result.rejected:
        rejected = result.rejected[0]
        status = {"id_conflict": 409, "unknown_decision": 404}.get(rejected.reason, 422)
        body = error_body(rejected.reason, rejected.message, request, rejected.errors or None)
        return JSONResponse(body, status_code=status)
    accepted = result.accepted[0]
    return JSONResponse(
        {"id": accepted.id, "status": accepted.status},
        status_code=201 if accepted.status == "created" else 200,
    )


def _batch(result: BatchResult) -> JSONResponse:
    # 200 even with rejections: the accepted part is stored and the caller reads per-record reasons.
    return JSONResponse(result.as_dict(), status_code=200)


def _records(body: Any) -> list[Any]:
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        return body["records"]
    if isinstance(body, list):
        return body
    raise APIError(422, "invalid_request", 'send a JSON array of records or {"records": [...]}')


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError(422, "invalid_request", "send one JSON object")
    return body


def _filters(
    since: datetime | None = Query(None, description="created at or after (ISO 8601)"),
    until: datetime | None = Query(None, description="created before (ISO 8601)"),
    session_id: str | None = Query(None, max_length=200),
    user_id: str | None = Query(None, max_length=200),
    decision_point: str | None = Query(None, max_length=200),
    decision_id: str | None = Query(None, max_length=64),
    policy_name: str | None = Query(None, max_length=200),
    policy_version: int | None = Query(None, ge=1),
) -> Filters:
    return Filters(
        since=since,
        until=until,
        session_id=session_id,
        user_id=user_id,
        decision_point=decision_point,
        decision_id=decision_id,
        policy_name=policy_name,
        policy_version=policy_version,
    )


APPLICABLE_FILTERS = {
    "events": {"since", "until", "session_id", "user_id", "policy_name", "policy_version"},
    "decisions": {
        "since",
        "until",
        "session_id",
        "user_id",
        "decision_point",
        "policy_name",
        "policy_version",
    },
    "rewards": {"since", "until", "session_id", "user_id", "decision_id"},
}


def _listing(
    request: Request, kind: str, principal: Principal, filters: Filters, cursor, limit, order
):
    given = {k for k, v in filters.__dict__.items() if v is not None}
    wrong = sorted(given - APPLICABLE_FILTERS[kind])
    if wrong:
        raise APIError(422, "invalid_filter", f"{kind} cannot be filtered by {', '.join(wrong)}")
    page = _state(request).store.list_records(
        kind, principal.app_id, filters, cursor=cursor, limit=limit, order=order
    )
    convert = {
        "events": serializers.event,
        "decisions": serializers.decision,
        "rewards": serializers.reward,
    }[kind]
    return serializers.page(page, convert)


Cursor = Query(None, max_length=200, description="next_cursor from the previous page")
Limit = Query(100, ge=1, le=1000)
Order = Query("asc", pattern="^(asc|desc)$")


# -- events ----------------------------------------------------------------------------------


@router.post("/events", status_code=201, summary="Log one event")
def post_event(
    request: Request, body: Any = Body(...), principal: Principal = Depends(current_principal)
):
    return _single(
        request, _state(request).pipeline.ingest_events(principal.app_id, [_object(body)])
    )


@router.post("/events/batch", summary="Log a batch of events (per-record results)")
def post_events(
    request: Request, body: Any = Body(...), principal: Principal = Depends(current_principal)
):
    return _batch(_state(request).pipeline.ingest_events(principal.app_id, _records(body)))


@router.get("/events", summary="List events (redacted), newest last; cursor-paginated")
def list_events(
    request: Request,
    filters: Filters = Depends(_filters),
    cursor: str | None = Cursor,
    limit: int = Limit,
    order: str = Order,
    principal: Principal = Depends(current_principal),
):
    return _listing(request, "events", principal, filters, cursor, limit, order)


@router.get("/events/{event_id}", summary="One event")
def get_event(request: Request, event_id: str, principal: Principal = Depends(current_principal)):
    return serializers.event(_state(request).store.get_record("events", principal.app_id, event_id))


# -- decisions -------------------------------------------------------------------------------


@router.post("/decisions", status_code=201, summary="Decide: rank candidate actions for a context")
def decide(request: Request, body: RankRequest, principal: Principal = Depends(current_principal)):
    try:
        outcome = _state(request).decisions.decide(principal.app_id, body)
    except DecisionRejected as exc:
        raise APIError(
            409 if exc.reason == "id_conflict" else 422, exc.reason, exc.message
        ) from None
    return JSONResponse(outcome.as_dict(), status_code=201 if outcome.status == "created" else 200)


@router.post("/decisions/batch", summary="Log decisions made elsewhere (with their propensities)")
def log_decisions(
    request: Request, body: Any = Body(...), principal: Principal = Depends(current_principal)
):
    return _batch(_state(request).pipeline.ingest_decisions(principal.app_id, _records(body)))


@router.get("/decisions", summary="List decisions (redacted); cursor-paginated")
def list_decisions(
    request: Request,
    filters: Filters = Depends(_filters),
    cursor: str | None = Cursor,
    limit: int = Limit,
    order: str = Order,
    principal: Principal = Depends(current_principal),
):
    return _listing(request, "decisions", principal, filters, cursor, limit, order)


@router.get("/decisions/{decision_id}", summary="One decision")
def get_decision(
    request: Request, decision_id: str, principal: Principal = Depends(current_principal)
):
    store = _state(request).store
    return serializers.decision(store.get_record("decisions", principal.app_id, decision_id))


@router.post("/decisions/{decision_id}/rewards", status_code=201, summary="Reward one decision")
def reward_decision(
    request: Request,
    decision_id: str,
    body: Any = Body(...),
    principal: Principal = Depends(current_principal),
):
    record = {**_object(body), "decision_id": decision_id}
    return _single(request, _state(request).pipeline.ingest_rewards(principal.app_id, [record]))


# -- rewards ---------------------------------------------------------------------------------


@router.post("/rewards", status_code=201, summary="Log one reward (for a decision or a session)")
def post_reward(
    request: Request, body: Any = Body(...), principal: Principal = Depends(current_principal)
):
    return _single(
        request, _state(request).pipeline.ingest_rewards(principal.app_id, [_object(body)])
    )


@router.post("/rewards/batch", summary="Log a batch of rewards (per-record results)")
def post_rewards(
    request: Request, body: Any = Body(...), principal: Principal = Depends(current_principal)
):
    return _batch(_state(request).pipeline.ingest_rewards(principal.app_id, _records(body)))


@router.get("/rewards", summary="List rewards; cursor-paginated")
def list_rewards(
    request: Request,
    filters: Filters = Depends(_filters),
    cursor: str | None = Cursor,
    limit: int = Limit,
    order: str = Order,
    principal: Principal = Depends(current_principal),
):
    return _listing(request, "rewards", principal, filters, cursor, limit, order)
