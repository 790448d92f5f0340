"""One conversation as a timeline: messages, decisions with probabilities, rewards, model calls
and, when observability is installed, the agent's own trace spans.

Items have the shape of `GET /v1/sessions/{session_id}/timeline` (observability's timeline), so
the browser draws either. The dashboard reads them itself because it needs two things that one
does not do (yet): the rewards that point at the session's decisions without naming the session
(the SDK's `reward(decision_id, value)`), and reads that stay on the `(app_id, session_id)`
indexes on SQLite too. Each kind is ordered by what its index already holds (the row id; a trace
span's start time), so the planner never walks all of an app's rows to sort them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from agent_lightning.dashboard._json import clean
from agent_lightning.dashboard.buckets import as_utc
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.store import Decision, Event, Reward

_ORDER = {"event": 0, "span": 1, "llm_call": 2, "decision": 3, "reward": 4}


def _event(row: Event) -> tuple[datetime, dict[str, Any]]:
    return as_utc(row.occurred_at or row.created_at), {
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
    return as_utc(row.created_at), {
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
    return as_utc(row.created_at), {
        "type": "reward",
        "id": row.id,
        "decision_id": row.decision_id,
        "value": row.value,
        "source": row.source,
        "correct_action_id": row.correct_action_id,
        "attributes": row.attributes,
    }


def _llm_call(row: Any) -> tuple[datetime, dict[str, Any]]:
    return as_utc(row.created_at), {
        "type": "llm_call",
        "id": row.id,
        "model": row.model,
        "upstream": row.upstream,
        "status": row.status,
        "http_status": row.http_status,
        "latency_ms": row.latency_ms,
        "usage": row.usage,
        "decision_id": row.decision_id,
        "variant_id": row.variant_id,
        "request": row.request,
        "response": row.response,
        "error": row.error,
    }


def _span(row: Any) -> tuple[datetime, dict[str, Any]]:
    return as_utc(row.start_time), {
        "type": "span",
        "id": f"{row.trace_id}:{row.span_id}",
        "trace_id": row.trace_id,
        "span_id": row.span_id,
        "parent_span_id": row.parent_span_id,
        "name": row.name,
        "kind": row.kind,
        "duration_ms": row.duration_ms,
        "status": {"code": row.status_code, "message": row.status_message},
        "service_name": row.service_name,
        "attributes": row.attributes,
    }


def _sources() -> list[tuple[Any, tuple[Any, ...], Any]]:
    sources: list[tuple[Any, tuple[Any, ...], Any]] = [
        (Event, (Event.pk,), _event),
        (Decision, (Decision.pk,), _decision),
        (Reward, (Reward.pk,), _reward),
    ]
    try:  # optional components: the gateway's model calls, observability's trace spans
        from agent_lightning.gateway.models import GatewaySpan

        sources.append((GatewaySpan, (GatewaySpan.pk,), _llm_call))
    except ImportError:  # pragma: no cover - the gateway ships with the package today
        pass
    try:
        from agent_lightning.observability.models import TraceSpan

        sources.append((TraceSpan, (TraceSpan.start_time, TraceSpan.pk), _span))
    except ImportError:  # pragma: no cover - observability ships with the package today
        pass
    return sources


def _collect(data: DashboardData, app_id: str, session_id: str, limit: int) -> tuple[list, bool]:
    collected: list[tuple[datetime, int, int, dict[str, Any]]] = []
    truncated = False
    with data.store.session() as s:
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
    return collected, truncated


def build_timeline(data: DashboardData, app_id: str, session_id: str, limit: int) -> dict:
    collected, truncated = _collect(data, app_id, session_id, limit)
    have = {item["id"] for _, _, _, item in collected if item["type"] == "reward"}
    decision_ids = [item["id"] for _, _, _, item in collected if item["type"] == "decision"]
    for reward in data.decision_rewards(app_id, decision_ids):
        if reward.id not in have:
            when, item = _reward(reward)
            collected.append((when, _ORDER["reward"], reward.pk, item))
    collected.sort(key=lambda entry: entry[:3])
    if len(collected) > limit:
        truncated, collected = True, collected[:limit]
    items = [{"time": when.isoformat(), **item} for when, _, _, item in collected]
    counts: dict[str, int] = {}
    for item in items:
        counts[item["type"]] = counts.get(item["type"], 0) + 1
    summary = data.session_summaries(app_id, [session_id]).get(session_id)
    return clean(
        {
            "session_id": session_id,
            "summary": summary,
            "items": items,
            "counts": counts,
            "truncated": truncated,
        }
    )
