"""Store rows → JSON-ready dicts. The only place that decides what the API shows of a record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent_lightning.store import (
    ApiKey,
    Client,
    Decision,
    Event,
    Page,
    Policy,
    PolicyVersion,
    Reward,
    Task,
)


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.isoformat()


def event(row: Event) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "session_id": row.session_id,
        "text": row.text,
        "intent_prediction": row.intent_prediction,
        "confidence": row.confidence,
        "feedback_score": row.feedback_score,
        "policy_name": row.policy_name,
        "policy_version": row.policy_version,
        "attributes": row.attributes,
        "pii_counts": row.pii_counts,
        "timestamp": ts(row.occurred_at),
        "created_at": ts(row.created_at),
    }


def decision(row: Decision) -> dict[str, Any]:
    return {
        "id": row.id,
        "decision_point": row.decision_point,
        "session_id": row.session_id,
        "user_id": row.user_id,
        "context": row.context,
        "actions": row.actions,
        "action_id": row.action_id,
        "propensity": row.propensity,
        "probabilities": row.probabilities,
        "policy": {"name": row.policy_name, "version": row.policy_version},
        "attributes": row.attributes,
        "pii_counts": row.pii_counts,
        "created_at": ts(row.created_at),
    }


def reward(row: Reward) -> dict[str, Any]:
    return {
        "id": row.id,
        "decision_id": row.decision_id,
        "session_id": row.session_id,
        "user_id": row.user_id,
        "value": row.value,
        "source": row.source,
        "correct_action_id": row.correct_action_id,
        "attributes": row.attributes,
        "created_at": ts(row.created_at),
    }


def policy(row: Policy) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "decision_point": row.decision_point,
        "description": row.description,
        "spec": row.spec,
        "live_version": row.live_version,
        "created_by": row.created_by,
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
    }


def policy_version(row: PolicyVersion, policy_name: str | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "version": row.version,
        "parent_version": row.parent_version,
        "artifact_sha256": row.artifact_sha256,
        "artifact_bytes": row.artifact_bytes or 0,
        "artifact_pruned_at": ts(row.artifact_pruned_at) if row.artifact_pruned_at else None,
        "data_hash": row.data_hash,
        "data_range": row.data_range,
        "metrics": row.metrics,
        "notes": row.notes,
        "created_by": row.created_by,
        "created_at": ts(row.created_at),
    }
    if policy_name is not None:
        out["policy"] = policy_name
    return out


def task(row: Task) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "params": row.params,
        "status": row.status,
        "result": row.result,
        "error": row.error,
        "created_by": row.created_by,
        "created_at": ts(row.created_at),
        "started_at": ts(row.started_at),
        "finished_at": ts(row.finished_at),
    }


def client(row: Client) -> dict[str, Any]:
    # The secret hash is never shown, not even to admins.
    return {
        "client_id": row.id,
        "app": row.app_id,
        "name": row.name,
        "roles": list(row.roles),
        "created_at": ts(row.created_at),
        "created_by": row.created_by,
        "revoked_at": ts(row.revoked_at),
    }


def api_key(row: ApiKey) -> dict[str, Any]:
    return {
        "key_id": row.id,
        "app": row.app_id,
        "owner": row.owner,
        "name": row.name,
        "roles": list(row.roles),
        "created_at": ts(row.created_at),
        "last_used_at": ts(row.last_used_at),
        "revoked_at": ts(row.revoked_at),
    }


def page(result: Page, convert) -> dict[str, Any]:
    return {"items": [convert(item) for item in result.items], "next_cursor": result.next_cursor}
