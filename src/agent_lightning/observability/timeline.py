"""One session's story in time order: what the user said, what was decided, what it earned.

The dashboard draws a session as a timeline: events, decisions (with the probability of every
candidate action), rewards, the LLM calls the gateway forwarded, and the spans the agent's own
instrumentation exported. Each kind is read through its `(app_id, session_id)` index, at most
`limit` rows each, ordered by what that index already holds (the row id; a trace span's start
time) so the planner never walks all of an app's rows to sort them, then merged; `truncated`
says whether anything was left out. Rewards that point at the session's decisions without naming
the session (the SDK's `reward(decision_id, value)`) are part of the story too.

This is the one timeline: the REST route and the dashboard both draw it.

Everything shown was redacted before it was stored. A session is not a record of its own, so an
unknown session (or another app's) is simply empty, never an error that would confirm it exists.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent_lightning.observability.models import TraceSpan
from agent_lightning.store import Decision, Event, Reward, Store

# Order of kinds at the same instant: cause before effect.
_ORDER = {"event": 0, "span": 1, "llm_call": 2, "decision": 3, "reward": 4}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event(row: Event) -> tuple[datetime, dict[str, Any]]:
    at = _utc(row.occurred_at or row.created_at)
    return at, {
        "type": "event",
        "id": row.id,
        "text": row.text,
        "intent_prediction": row.intent_prediction,
        "confidence": row.confidence,
        "feedback_score": row.feedback_score,
        "policy": {"name": row.policy_name, "version": row.policy_version},
        "attributes": row.attributes,
    }


def _decision(row: Decision) -> tuple[datetime, dict[str, Any]]:
    return _utc(row.created_at), {
        "type": "decision",
        "id": row.id,
        "decision_point": row.decision_point,
        "action_id": row.action_id,
        "propensity": row.propensity,
        "probabilities": row.probabilities,
        "actions": row.actions,
        "context": row.context,
        "policy": {"name": row.policy_name, "version": row.policy_version},
        "attributes": row.attributes,
    }


def _reward(row: Reward) -> tuple[datetime, dict[str, Any]]:
    return _utc(row.created_at), {
        "type": "reward",
        "id": row.id,
        "decision_id": row.decision_id,
        "value": row.value,
        "source": row.source,
        "correct_action_id": row.correct_action_id,
        "attributes": row.attributes,
    }


def _span(row: TraceSpan) -> tuple[datetime, dict[str, Any]]:
    return _utc(row.start_time), {
        "type": "span",
        "id": f"{row.trace_id}:{row.span_id}",
        "trace_id": row.trace_id,
        "span_id": row.span_id,
        "parent_span_id": row.parent_span_id,
        "name": row.name,
        "kind": row.kind,
        "end_time": _utc(row.end_time).isoformat(),
        "duration_ms": row.duration_ms,
        "status": {"code": row.status_code, "message": row.status_message},
        "service_name": row.service_name,
        "scope_name": row.scope_name,
        "attributes": row.attributes,
        "events": row.events,
        "resource": row.resource,
    }


def _llm_call(row: Any) -> tuple[datetime, dict[str, Any]]:
    start = _utc(row.created_at)
    return start, {
        "type": "llm_call",
        "id": row.id,
        "endpoint": row.endpoint,
        "model": row.model,
        "upstream": row.upstream,
        "upstream_model": row.upstream_model,
        "stream": row.stream,
        "status": row.status,
        "http_status": row.http_status,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "end_time": (start + timedelta(milliseconds=row.latency_ms or 0)).isoformat(),
        "usage": row.usage,
        "policy_name": row.policy_name,
        "decision_id": row.decision_id,
        "variant_id": row.variant_id,
        "request": row.request,
        "response": row.response,
        "error": row.error,
    }


def _sources() -> list[tuple[Any, tuple[Any, ...], Any]]:
    sources: list[tuple[Any, tuple[Any, ...], Any]] = [
        (Event, (Event.pk,), _event),
        (Decision, (Decision.pk,), _decision),
        (Reward, (Reward.pk,), _reward),
        (TraceSpan, (TraceSpan.start_time, TraceSpan.pk), _span),
    ]
    try:  # the gateway is optional; without it there are no LLM calls to show
        from agent_lightning.gateway.models import GatewaySpan
    except ImportError:
        return sources
    sources.append((GatewaySpan, (GatewaySpan.pk,), _llm_call))
    return sources


def _decision_rewards(s: Any, app_id: str, decision_ids: list[str]) -> list[Reward]:
    """Rewards that point at these decisions (they need not name the session)."""
    out: list[Reward] = []
    for start in range(0, len(decision_ids), 500):
        chunk = decision_ids[start : start + 500]
        # Unordered here: ORDER BY pk would make SQLite walk the (app_id, pk) index instead.
        out.extend(
            s.scalars(select(Reward).where(Reward.app_id == app_id, Reward.decision_id.in_(chunk)))
        )
    return out


def session_timeline(store: Store, app_id: str, session_id: str, limit: int = 500) -> dict:
    """The session's items, oldest first: `{"session_id", "items", "counts", "truncated"}`."""
    collected: list[tuple[datetime, int, int, dict[str, Any]]] = []
    counts: dict[str, int] = {}
    truncated = False
    with store.session() as s:
        for model, order, convert in _sources():
            rows = list(
                s.scalars(
                    select(model)
                    .where(model.app_id == app_id, model.session_id == session_id)
                    .order_by(*order)
                    .limit(limit + 1)
                )
            )
            if len(rows) > limit:
                truncated, rows = True, rows[:limit]
            for row in rows:
                when, item = convert(row)
                collected.append((when, _ORDER[item["type"]], row.pk, item))
        have = {item["id"] for *_, item in collected if item["type"] == "reward"}
        decision_ids = [item["id"] for *_, item in collected if item["type"] == "decision"]
        for reward in _decision_rewards(s, app_id, decision_ids):
            if reward.id not in have:
                when, item = _reward(reward)
                collected.append((when, _ORDER["reward"], reward.pk, item))
    collected.sort(key=lambda entry: entry[:3])
    if len(collected) > limit:
        truncated, collected = True, collected[:limit]
    items = [{"time": when.isoformat(), **item} for when, _, _, item in collected]
    for item in items:
        counts[item["type"]] = counts.get(item["type"], 0) + 1
    return {"session_id": session_id, "items": items, "counts": counts, "truncated": truncated}
