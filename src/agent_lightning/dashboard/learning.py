"""The learning view: each policy's learning tasks, their off-policy estimates, its versions.

A learning task trains a candidate and estimates, off-policy on held-out logged decisions, what
it would earn compared with the live version (`metrics.ope`, with confidence intervals); the gate
registers it only if the candidate's lower bound beats the live estimate (`metrics.gate`). The
learning curve is that estimate task after task, next to what each version actually earned once
live (observed rewards, from the rollup).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent_lightning.dashboard._json import clean, ratio, version_label
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.store import Policy, Task, utcnow

OBSERVED_WINDOW = timedelta(days=30)
MAX_TASKS = 500


def estimate(raw: Any) -> dict[str, Any] | None:
    """One estimate as {value, ci_low, ci_high, n?, level?}, whatever shape it was stored in."""
    if hasattr(raw, "to_dict"):
        raw = raw.to_dict()
    if not isinstance(raw, dict) or "value" not in raw:
        return None
    out = {k: raw.get(k) for k in ("value", "ci_low", "ci_high", "n", "ess", "level") if k in raw}
    return clean(out)


def estimates(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The off-policy estimates of a task or version, normalised for the browser.

    Shapes seen: one estimator (`{"estimator", "candidate": Estimate, "live" (or "baseline"),
    "difference"}`, as the controller stores `learning.ope.evaluate`), or several
    (`{"candidate": {"snips": Estimate, ...}, "baseline": {...}}`, the gate naming the one it
    used). All come out as `{"estimator", "n", "candidate", "baseline", "difference"}`, plus
    `estimators` with every estimator's candidate and baseline when there were several.
    """
    metrics = metrics or {}
    ope = metrics.get("ope")
    gate = metrics.get("gate") if isinstance(metrics.get("gate"), dict) else {}
    if not isinstance(ope, dict):
        return None
    name = ope.get("estimator") or gate.get("estimator")
    candidate = ope.get("candidate")
    baseline = ope.get("baseline", ope.get("live"))
    several: dict[str, Any] = {}
    if isinstance(candidate, dict) and "value" not in candidate:
        names = [k for k in candidate if isinstance(candidate[k], dict)]
        base = baseline if isinstance(baseline, dict) else {}
        several = {
            k: {"candidate": estimate(candidate[k]), "baseline": estimate(base.get(k))}
            for k in names
        }
        if name not in candidate:
            name = names[0] if names else None
        candidate = candidate.get(name) if name else None
        baseline = base.get(name) if name else None
    out = {
        "estimator": name,
        "n": ope.get("n", metrics.get("held_out", metrics.get("evaluated_on"))),
        "candidate": estimate(candidate),
        "baseline": estimate(baseline),
        "difference": estimate(ope.get("difference")),
    }
    if several:
        out["estimators"] = several
    if out["candidate"] is None and out["baseline"] is None:
        return None
    return out


def _gate(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    gate = (metrics or {}).get("gate")
    return clean(dict(gate)) if isinstance(gate, dict) else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    from agent_lightning.dashboard.buckets import as_utc

    return as_utc(value).isoformat()


def task_row(task: Task) -> dict[str, Any]:
    result = task.result or {}
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    return clean(
        {
            "id": task.id,
            "status": task.status,
            "created_at": _iso(task.created_at),
            "finished_at": _iso(task.finished_at),
            "created_by": task.created_by,
            "examples": result.get("examples"),
            "train": metrics.get("train", metrics.get("trained_on")),
            "held_out": metrics.get("held_out", metrics.get("evaluated_on")),
            "registered": result.get("registered"),
            "version": result.get("version"),
            "parent_version": result.get("parent_version"),
            "forced": result.get("forced"),
            "reason": result.get("reason"),
            "error": task.error,
            "duration_seconds": result.get("duration_seconds"),
            "gate": _gate(metrics),
            "estimates": estimates(metrics),
        }
    )


def version_row(row: dict[str, Any], live: int | None) -> dict[str, Any]:
    metrics = row["metrics"] or {}
    data_range = row["data_range"] or {}
    return clean(
        {
            "version": row["version"],
            "parent_version": row["parent_version"],
            "live": row["version"] == live,
            "created_at": row["created_at"],
            "created_by": row["created_by"],
            "notes": row["notes"],
            "artifact_sha256": row["artifact_sha256"],
            "artifact_bytes": row["artifact_bytes"],
            "artifact_pruned_at": row.get("artifact_pruned_at"),
            "data_hash": row["data_hash"],
            "examples": data_range.get("count"),
            "data_from": data_range.get("from"),
            "data_to": data_range.get("to"),
            "gate": _gate(metrics),
            "estimates": estimates(metrics),
        }
    )


def observed_by_version(
    data: DashboardData, app_id: str, policy: str, now: datetime | None = None
) -> list[dict[str, Any]]:
    """What each version of `policy` earned once live: rewards of its decisions, last 30 days."""
    now = now or utcnow()
    fetched = data.rewards(app_id, "day", now - OBSERVED_WINDOW, now)
    totals: dict[int, list[float]] = {}
    for summary in fetched.buckets.values():
        for (name, version), (n, positive, total) in summary.items():
            if name != policy or version is None:
                continue
            acc = totals.setdefault(int(version), [0.0, 0.0, 0.0])
            acc[0] += n
            acc[1] += positive
            acc[2] += total
    return clean(
        [
            {
                "version": version,
                "label": version_label(policy, version),
                "rewards": int(n),
                "rate": ratio(positive, n),
                "mean": ratio(total, n),
            }
            for version, (n, positive, total) in sorted(totals.items())
        ]
    )


def policy_tasks(data: DashboardData, app_id: str, policy: str) -> list[Task]:
    """This policy's learning tasks, oldest first (the newest MAX_TASKS of the app's tasks)."""
    page = data.store.list_tasks(app_id, limit=MAX_TASKS, order="desc")
    mine = [t for t in page.items if (t.params or {}).get("policy") == policy]
    return list(reversed(mine))


def learning_curve(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per task that produced estimates, in order: the candidate against live."""
    points = []
    seen = 0
    for task in tasks:
        seen += task.get("examples") or 0
        est = task.get("estimates")
        if task["status"] != "succeeded" or not est or not est.get("candidate"):
            continue
        points.append(
            {
                "task_id": task["id"],
                "at": task["finished_at"],
                "examples_seen": seen,
                "candidate": est["candidate"],
                "baseline": est.get("baseline"),
                "estimator": est.get("estimator"),
                "passed": (task.get("gate") or {}).get("passed"),
                "registered": task.get("registered"),
                "version": task.get("version"),
            }
        )
    return points


def build_learning(data: DashboardData, app_id: str, policy: str | None) -> dict[str, Any]:
    policies: list[Policy] = data.policies(app_id, policy)
    if policy is not None and not policies:
        from agent_lightning.store import NotFound

        raise NotFound(f"policy {policy!r} not found")
    out = []
    for row in policies:
        tasks = [task_row(t) for t in policy_tasks(data, app_id, row.name)]
        out.append(
            {
                "name": row.name,
                "decision_point": row.decision_point,
                "description": row.description,
                "live_version": row.live_version,
                "versions": [version_row(v, row.live_version) for v in data.versions(row.id)],
                "tasks": tasks,
                "curve": learning_curve(tasks),
                "observed": observed_by_version(data, app_id, row.name),
            }
        )
    return {"app": app_id, "policies": out}
