"""The rollouts view: which version is live, which candidates wait, how they compare, and the
history of promotions and rollbacks with their reasons.

There is no canary publisher yet (it is its own piece of work): switching the live version moves
all traffic at once, through `PUT /v1/policies/{name}/live`, which the server audits with the
operator's reason. What this module adds is a pause switch: while a policy's rollout is paused,
learning tasks should register new versions as candidates without making them live. The flag
lives in the app's settings (`settings.rollouts.<policy>.paused`); `promotion_paused` is the one
function the learning controller needs to honour it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent_lightning.dashboard._json import clean, ratio
from agent_lightning.dashboard.buckets import as_utc
from agent_lightning.dashboard.learning import version_row
from agent_lightning.dashboard.overview import dashboard_settings
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.store import App, Store, utcnow

GUARDRAIL_WINDOW = timedelta(days=7)
HISTORY_ACTIONS = (
    "policy.create",
    "policy.set_live",
    "policy_version.create",
    "rollout.pause",
    "rollout.resume",
)


def pause_state(app: App, policy: str) -> dict[str, Any] | None:
    state = ((app.settings or {}).get("rollouts") or {}).get(policy)
    return dict(state) if isinstance(state, dict) else None


def promotion_paused(store: Store, app_id: str, policy: str) -> bool:
    """True while an operator has paused automatic promotion of `policy`'s new versions."""
    state = pause_state(store.get_app(app_id), policy)
    return bool(state and state.get("paused"))


def set_paused(
    store: Store, app_id: str, policy: str, paused: bool, reason: str, by: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Record the pause switch in the app's settings; returns (before, after) for the audit."""
    store.get_policy(app_id, policy)  # 404 for an unknown policy
    app = store.get_app(app_id)
    settings = dict(app.settings or {})
    rollouts = dict(settings.get("rollouts") or {})
    before = rollouts.get(policy)
    after = {"paused": paused, "reason": reason, "by": by, "at": utcnow().isoformat()}
    rollouts[policy] = after
    settings["rollouts"] = rollouts
    store.update_app(app_id, settings=settings)
    return before, after


def _observed(
    data: DashboardData, app: App, now: datetime
) -> dict[tuple[str | None, int | None], dict[str, float]]:
    """Per (policy, version), last 7 days: rewards, positive, sum, decisions, escalated."""
    escalation, _ = dashboard_settings(app)
    since = now - GUARDRAIL_WINDOW
    out: dict[tuple[str | None, int | None], dict[str, float]] = {}

    def slot(name: Any, version: Any) -> dict[str, float]:
        key = (name, None if version is None else int(version))
        return out.setdefault(
            key, {"rewards": 0.0, "positive": 0.0, "sum": 0.0, "decisions": 0.0, "escalated": 0.0}
        )

    for summary in data.rewards(app.id, "hour", since, now).buckets.values():
        for (name, version), (n, positive, total) in summary.items():
            acc = slot(name, version)
            acc["rewards"] += n
            acc["positive"] += positive
            acc["sum"] += total
    for summary in data.decisions(app.id, "hour", since, now, escalation).buckets.values():
        for (name, version), (n, escalated) in summary.items():
            acc = slot(name, version)
            acc["decisions"] += n
            acc["escalated"] += escalated
    return out


def _history(entries: list[Any], show_actor: bool) -> dict[str, list[dict[str, Any]]]:
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        name = (entry.target_id or "").split("@")[0]
        before, after = entry.before or {}, entry.after or {}
        item: dict[str, Any] = {
            "seq": entry.seq,
            "at": as_utc(entry.ts).isoformat(),
            "action": entry.action,
            "outcome": entry.outcome,
            "actor": entry.actor if show_actor else None,
            "reason": after.get("reason") or None,
        }
        if entry.action == "policy.set_live":
            old, new = before.get("live_version"), after.get("live_version")
            item.update(from_version=old, to_version=new)
            backwards = old is not None and (new is None or new < old)
            item["kind"] = "rollback" if backwards else "promote"
        elif entry.action == "policy_version.create":
            item.update(
                to_version=after.get("version"),
                from_version=after.get("parent"),
                kind="register_live" if after.get("live") else "register",
                gate=after.get("gate"),
            )
        elif entry.action.startswith("rollout."):
            item["kind"] = entry.action.split(".", 1)[1]
        else:
            item["kind"] = "create"
        by_policy.setdefault(name, []).append(item)
    return by_policy


def _without_actor(state: dict[str, Any] | None, show_actor: bool) -> dict[str, Any] | None:
    if state is None or show_actor:
        return state
    return {**state, "by": None}


def pause_enforced(controller: Any) -> bool:
    """Whether pausing holds here: no learning controller, or one that checks the flag.

    A controller that reads `settings.rollouts.<policy>.paused` before making a version live
    says so with a class attribute `honours_pause = True`; until then the page says the pause
    is only recorded.
    """
    return controller is None or bool(getattr(controller, "honours_pause", False))


def build_rollouts(
    data: DashboardData, app_id: str, *, show_actor: bool, enforced: bool = True
) -> dict[str, Any]:
    app = data.store.get_app(app_id)
    now = utcnow()
    observed = _observed(data, app, now)
    history = _history(data.audit(app_id, limit=500, actions=HISTORY_ACTIONS), show_actor)
    policies = []
    for policy in data.policies(app_id):
        versions = []
        for raw in data.versions(policy.id):
            row = version_row(raw, policy.live_version)
            seen = observed.get((policy.name, row["version"]))
            row["observed"] = (
                {
                    "decisions": int(seen["decisions"]),
                    "rewards": int(seen["rewards"]),
                    "resolution": ratio(seen["positive"], seen["rewards"]),
                    "mean_reward": ratio(seen["sum"], seen["rewards"]),
                    "escalation": ratio(seen["escalated"], seen["decisions"]),
                }
                if seen
                else None
            )
            versions.append(row)
        by_number = {v["version"]: v for v in versions}
        live = by_number.get(policy.live_version) if policy.live_version else None
        rollback_to = live["parent_version"] if live else None
        if rollback_to not in by_number:
            rollback_to = None
        candidates = [
            v for v in versions if policy.live_version is None or v["version"] > policy.live_version
        ]
        policies.append(
            {
                "name": policy.name,
                "decision_point": policy.decision_point,
                "live_version": policy.live_version,
                "rollback_to": rollback_to,
                "pause": _without_actor(pause_state(app, policy.name), show_actor),
                "live": live,
                "baseline": by_number.get(rollback_to) if rollback_to else None,
                "candidates": list(reversed(candidates)),
                "versions": list(reversed(versions)),
                "history": history.get(policy.name, [])[:100],
            }
        )
    return clean(
        {
            "app": app_id,
            "guardrail_window_days": GUARDRAIL_WINDOW.days,
            "strategy": "all-at-once",
            "pause_enforced": enforced,
            "policies": policies,
        }
    )
