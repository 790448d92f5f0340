"""The rollouts view: the live version of each policy, its rollouts (canary, A/B, blue/green,
feature flag) with their steps and guardrails, the candidates waiting, and every promotion and
rollback with its reason.

Rollouts themselves belong to the UpdatePublisher (`agent_lightning.publisher.rollouts`): this
module only reads them, asks the publisher's `RolloutManager.report` for the live guardrail
metrics of both arms (so the page shows exactly the numbers the automatic rollback acts on), and
merges their history with the audit log. The buttons call the publisher's own routes.

One switch stays here: "pause automatic promotion". While it is on, learning tasks register new
versions as candidates instead of making them live (and the publisher starts no automatic
rollout). It lives in the app's settings next to the publisher's own per-policy options
(`settings.rollouts.<policy>` = `{paused, reason, by, at, auto}`), so `set_paused` merges into
that entry; `promotion_paused` is what the learning controller checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from agent_lightning.dashboard._json import clean, ratio
from agent_lightning.dashboard.buckets import as_utc
from agent_lightning.dashboard.learning import version_row
from agent_lightning.dashboard.queries import DashboardData
from agent_lightning.publisher.models import ACTIVE, Rollout
from agent_lightning.publisher.rollouts import RolloutManager, auto_rollout_config
from agent_lightning.store import App, Store, outcome_settings, utcnow

GUARDRAIL_WINDOW = timedelta(days=7)
PAST_ROLLOUTS = 20  # ended rollouts shown per policy
PAUSE_FIELDS = ("paused", "reason", "by", "at")
# What the publisher's RolloutManager writes to the audit log (`rollout.<action>`).
ROLLOUT_ACTIONS = (
    "rollout.start",
    "rollout.advance",
    "rollout.pause",
    "rollout.resume",
    "rollout.promote",
    "rollout.rollback",
    "rollout.abort",
    "rollout.switch_back",
)
# The automatic-promotion switch. Before rollouts existed it was audited as rollout.pause /
# rollout.resume on the policy; those old entries are still read (told apart by target type).
PROMOTION_ACTIONS = ("promotion.pause", "promotion.resume")
HISTORY_ACTIONS = (
    "policy.create",
    "policy.set_live",
    "policy_version.create",
    *PROMOTION_ACTIONS,
    *ROLLOUT_ACTIONS,
)
ENDED_LABEL = {"promoted": "promote", "rolled_back": "rollback", "aborted": "abort"}


def pause_state(app: App, policy: str) -> dict[str, Any] | None:
    """The pause fields of `settings.rollouts.<policy>` (None if never switched)."""
    state = ((app.settings or {}).get("rollouts") or {}).get(policy)
    if not isinstance(state, dict) or not any(k in state for k in PAUSE_FIELDS):
        return None
    return {k: state.get(k) for k in PAUSE_FIELDS}


def promotion_paused(store: Store, app_id: str, policy: str) -> bool:
    """True while an operator has paused automatic promotion of `policy`'s new versions."""
    state = pause_state(store.get_app(app_id), policy)
    return bool(state and state.get("paused"))


def set_paused(
    store: Store, app_id: str, policy: str, paused: bool, reason: str, by: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Switch the pause in `settings.rollouts.<policy>`; returns (before, after) for the audit.

    Merges into the entry: the publisher keeps `auto` (automatic rollouts) there too, and
    pausing must not switch that configuration off for good.
    """
    store.get_policy(app_id, policy)  # 404 for an unknown policy
    app = store.get_app(app_id)
    settings = dict(app.settings or {})
    rollouts = dict(settings.get("rollouts") or {})
    current = rollouts.get(policy)
    before = dict(current) if isinstance(current, dict) else None
    after = {
        **(before or {}),
        "paused": paused,
        "reason": reason,
        "by": by,
        "at": utcnow().isoformat(),
    }
    rollouts[policy] = after
    settings["rollouts"] = rollouts
    store.update_app(app_id, settings=settings)
    return before, after


def _observed(
    data: DashboardData, app: App, now: datetime
) -> dict[tuple[str | None, int | None], dict[str, float]]:
    """Per (policy, version), last 7 days: rewards, positive, sum, decisions, escalated."""
    escalation, _ = outcome_settings(app)
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
    """Audit entries as history lines, grouped by policy (targets are "<policy>" or
    "<policy>@...", which is how the publisher names its rollouts)."""
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
        action = entry.action
        if action == "policy.set_live":
            if after.get("rollout"):
                continue  # the rollout's own promote / switch_back line says the same
            old, new = before.get("live_version"), after.get("live_version")
            item.update(from_version=old, to_version=new)
            backwards = old is not None and (new is None or new < old)
            item["kind"] = "rollback" if backwards else "promote"
        elif action == "policy_version.create":
            item.update(
                to_version=after.get("version"),
                from_version=after.get("parent"),
                kind="register_live" if after.get("live") else "register",
                gate=after.get("gate"),
            )
        elif action in PROMOTION_ACTIONS or (
            action in ("rollout.pause", "rollout.resume") and entry.target_type == "policy"
        ):
            item["kind"] = "promotion_" + action.split(".", 1)[1]
        elif action in ROLLOUT_ACTIONS:
            item.update(
                kind="rollout_" + action.split(".", 1)[1],
                rollout_id=after.get("id"),
                rollout_kind=after.get("kind"),
                from_version=after.get("baseline_version"),
                to_version=after.get("candidate_version"),
                percent=after.get("percent"),
            )
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


# -- rollouts ---------------------------------------------------------------------------------


def _brief_evidence(evidence: Any) -> dict[str, Any] | None:
    """The numbers of a step's evidence the page draws (the full record is in the audit log)."""
    if not isinstance(evidence, Mapping):
        return None
    arms = {}
    for arm in ("candidate", "baseline"):
        stats = evidence.get(arm)
        if isinstance(stats, Mapping):
            arms[arm] = {
                k: stats.get(k)
                for k in ("version", "decisions", "rewarded", "mean_reward", "error_rate")
            }
    return {
        **arms,
        "step_decisions": evidence.get("step_decisions"),
        "guardrails": [_guardrail(g) for g in evidence.get("guardrails") or []],
    }


def _guardrail(result: Mapping[str, Any]) -> dict[str, Any]:
    """A guardrail test result with its decision in one word: ok, regression or collecting."""
    decision = "ok"
    if result.get("regression"):
        decision = "regression"
    elif result.get("test") == "insufficient_data":
        decision = "collecting"
    return {**result, "decision": decision}


def _schedule(row: Rollout, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step of the share schedule: done, current or pending, and when it was reached."""
    reached: dict[int, str] = {}
    for entry in history:
        if entry.get("action") in ("start", "advance") and entry.get("step_index") is not None:
            reached.setdefault(int(entry["step_index"]), entry.get("at"))
    steps = list(row.steps or [])
    out = []
    for i, percent in enumerate(steps):
        if row.status == "promoted" or i < row.step_index:
            state = "done"
        elif i == row.step_index and row.status in ACTIVE:
            state = "current"
        elif i == row.step_index:
            state = "stopped"  # where a rollback or abort found it
        else:
            state = "pending"
        out.append({"percent": float(percent), "state": state, "reached_at": reached.get(i)})
    return out


def rollout_view(
    manager: RolloutManager, row: Rollout, *, show_actor: bool, with_metrics: bool
) -> dict[str, Any]:
    """One rollout for the page: settings, schedule, history (with evidence), and for an
    active one the publisher's live report of both arms and every guardrail."""
    from agent_lightning.publisher.rollouts import rollout_json

    raw = rollout_json(row)
    raw.pop("salt", None)  # the arm-assignment salt is the runtimes' business
    history = []
    for entry in raw.pop("history") or []:
        history.append(
            {
                "at": entry.get("at"),
                "action": entry.get("action"),
                "actor": entry.get("actor") if show_actor else None,
                "reason": entry.get("reason") or None,
                "percent": entry.get("percent"),
                "step_index": entry.get("step_index"),
                "evidence": _brief_evidence(entry.get("evidence")),
            }
        )
    out: dict[str, Any] = {
        **raw,
        "created_by": raw["created_by"] if show_actor else None,
        "schedule": _schedule(row, history),
        "history": history,
    }
    if row.status not in ACTIVE:
        last = history[-1] if history else {}
        out["outcome"] = {
            "status": row.status,
            "action": last.get("action") or ENDED_LABEL.get(row.status),
            "reason": last.get("reason") or row.reason or None,
            "actor": last.get("actor"),
            "at": last.get("at") or raw.get("ended_at"),
            "max_percent": max((h.get("percent") or 0.0 for h in history), default=0.0),
            "guardrails": (last.get("evidence") or {}).get("guardrails") or [],
        }
    if with_metrics:
        report = manager.report(row)
        report.pop("_regressions", None)
        report["guardrails"] = [_guardrail(g) for g in report.get("guardrails") or []]
        report["min_samples"] = manager.min_samples
        out["metrics"] = report
    return out


def _rollouts_by_policy(
    manager: RolloutManager, app_id: str, policy: str, show_actor: bool
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    rows = manager.list(app_id, policy=policy, limit=PAST_ROLLOUTS + 1)
    active = next((r for r in rows if r.status in ACTIVE), None)
    past = [r for r in rows if r.status not in ACTIVE][:PAST_ROLLOUTS]
    shown = None
    if active is not None:
        shown = rollout_view(manager, active, show_actor=show_actor, with_metrics=True)
    return shown, [
        rollout_view(manager, r, show_actor=show_actor, with_metrics=False) for r in past
    ]


def build_rollouts(
    data: DashboardData,
    app_id: str,
    *,
    show_actor: bool,
    enforced: bool = True,
    manager: RolloutManager | None = None,
) -> dict[str, Any]:
    app = data.store.get_app(app_id)
    if manager is None:
        from agent_lightning.security.audit import AuditLog

        manager = RolloutManager(data.store, AuditLog(data.store))
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
        active, past = _rollouts_by_policy(manager, app_id, policy.name, show_actor)
        policies.append(
            {
                "name": policy.name,
                "decision_point": policy.decision_point,
                "live_version": policy.live_version,
                "rollback_to": rollback_to,
                "pause": _without_actor(pause_state(app, policy.name), show_actor),
                "auto_rollout": auto_rollout_config(data.store, app_id, policy.name),
                "rollout": active,
                "past_rollouts": past,
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
            "pause_enforced": enforced,
            "policies": policies,
        }
    )
