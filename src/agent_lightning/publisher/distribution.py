"""Distribution: what a runtime should run (the manifest), and what runtimes say they run.

The manifest is small and changes only on a promotion or a rollout transition, so runtimes poll
it cheaply with `If-None-Match` (the ETag is a hash of its canonical JSON, identical on every
replica) or hold the server-sent-events stream, which pushes it when it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent_lightning.publisher.models import Rollout, RuntimeReport
from agent_lightning.store import Store, utcnow


def build_manifest(store: Store, app_id: str, policy_name: str) -> dict[str, Any]:
    """The version(s) runtimes of `policy_name` should hold, and the rollout assigning them.

    Shape (see docs/runtime-and-publisher.md, "Distribution")::

        {"policy", "decision_point", "live_version",
         "rollout": {id, kind, status, baseline_version, candidate_version, percent, salt,
                     segment} | None,
         "versions": [every version a unit may be served]}
    """
    policy = store.get_policy(app_id, policy_name)  # NotFound → 404
    with store.session() as s:
        row = s.scalar(
            select(Rollout).where(Rollout.app_id == app_id, Rollout.active_key == policy.id)
        )
    rollout = None
    versions = {policy.live_version} if policy.live_version is not None else set()
    if row is not None:
        rollout = {
            "id": row.id,
            "kind": row.kind,
            "status": row.status,
            "baseline_version": row.baseline_version,
            "candidate_version": row.candidate_version,
            "percent": float(row.percent),
            "salt": row.salt,
            "segment": row.segment,
        }
        versions |= {row.baseline_version, row.candidate_version}
    return {
        "policy": policy.name,
        "decision_point": policy.decision_point,
        "live_version": policy.live_version,
        "rollout": rollout,
        "versions": sorted(versions),
    }


def manifest_etag(manifest: Mapping[str, Any]) -> str:
    """A strong ETag: the same manifest gives the same tag on every replica."""
    blob = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(blob.encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*`, or any listed tag equal (weak comparison) to ours."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


def record_report(
    store: Store,
    app_id: str,
    runtime_id: str,
    policy: str,
    versions: Sequence[int],
    details: Mapping[str, Any],
    remote_addr: str | None = None,
) -> RuntimeReport:
    """Keep the latest report of one runtime for one policy (insert or replace)."""
    for attempt in range(3):
        try:
            with store.session() as s:
                row = s.scalar(
                    select(RuntimeReport).where(
                        RuntimeReport.app_id == app_id,
                        RuntimeReport.runtime_id == runtime_id,
                        RuntimeReport.policy == policy,
                    )
                )
                if row is None:
                    row = RuntimeReport(app_id=app_id, runtime_id=runtime_id, policy=policy)
                    s.add(row)
                row.versions = [int(v) for v in versions]
                row.details = dict(details)
                row.remote_addr = remote_addr
                row.reported_at = utcnow()
                return row
        except IntegrityError:
            if attempt == 2:  # two reports of a new runtime raced; the next one sees the row
                raise
    raise AssertionError("unreachable")


def list_reports(
    store: Store, app_id: str, *, policy: str | None = None, limit: int = 500
) -> list[RuntimeReport]:
    """Latest report per runtime, most recent first."""
    with store.session() as s:
        query = select(RuntimeReport).where(RuntimeReport.app_id == app_id)
        if policy is not None:
            query = query.where(RuntimeReport.policy == policy)
        return list(s.scalars(query.order_by(RuntimeReport.reported_at.desc()).limit(limit)))


def report_json(row: RuntimeReport) -> dict[str, Any]:
    from agent_lightning.store.store import as_utc

    return {
        "runtime_id": row.runtime_id,
        "policy": row.policy,
        "versions": list(row.versions or []),
        "details": dict(row.details or {}),
        "remote_addr": row.remote_addr,
        "reported_at": as_utc(row.reported_at).isoformat(),
    }


__all__ = [
    "build_manifest",
    "etag_matches",
    "list_reports",
    "manifest_etag",
    "record_report",
    "report_json",
]
