"""The overview of one app: volumes over time, outcomes by policy version, intents, SLA.

Definitions, so the numbers mean the same thing everywhere:

- resolution rate: the share of rewards above zero, bucketed by when the reward arrived, split by
  the policy version of the rewarded decision (a reward for a whole session has no version);
- satisfaction: the mean `feedback_score` of events, split by the version the event names;
- escalation rate: the share of decisions whose chosen action is an escalation action (the app
  setting `settings.dashboard.escalation_actions`, default `["escalate"]`);
- SLA: the share of model calls through the gateway answered within the target latency
  (`settings.dashboard.sla_target_ms`, default 2000 ms).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from agent_lightning.dashboard._json import clean, ratio, version_label
from agent_lightning.dashboard.buckets import starts
from agent_lightning.dashboard.queries import OTHER, DashboardData
from agent_lightning.dashboard.rollup import Fetched
from agent_lightning.store import App, outcome_settings

TOP_INTENTS = 12
MAX_VERSION_SERIES = 8


def _version_series(
    fetched: Fetched,
    index: dict[datetime, int],
    size: int,
    count_at: int,
    part_at: int,
    sum_at: int,
) -> list[dict[str, Any]]:
    """Per (policy, version): a rate per bucket (part / count) and totals over the window."""
    by: dict[tuple[Any, Any], dict[str, Any]] = {}
    for at, summary in fetched.buckets.items():
        i = index.get(at)
        if i is None:
            continue
        for key, values in summary.items():
            name, version = key[0], key[1]
            series = by.setdefault(
                (name, version),
                {"n": [0.0] * size, "part": [0.0] * size, "sum": [0.0] * size},
            )
            series["n"][i] += values[count_at]
            series["part"][i] += values[part_at]
            series["sum"][i] += values[sum_at]
    out = []
    for (name, version), series in by.items():
        n_total, part_total = sum(series["n"]), sum(series["part"])
        if not n_total:
            continue
        out.append(
            {
                "policy": name,
                "version": None if version is None else int(version),
                "label": version_label(name, version),
                "n": int(n_total),
                "rate": ratio(part_total, n_total),
                "mean": ratio(sum(series["sum"]), n_total),
                "points": [ratio(p, n) for p, n in zip(series["part"], series["n"], strict=True)],
                "counts": [int(n) for n in series["n"]],
            }
        )
    # Newest versions first; unversioned last.
    out.sort(key=lambda s: (s["version"] is None, -(s["version"] or 0), s["policy"] or ""))
    return out


def build_overview(
    data: DashboardData, app: App, bucket: str, since: datetime, until: datetime
) -> dict[str, Any]:
    escalation, sla_target = outcome_settings(app)
    xs = starts(since, until, bucket)
    index = {at: i for i, at in enumerate(xs)}
    size = len(xs)

    events = data.events(app.id, bucket, since, until)
    decisions = data.decisions(app.id, bucket, since, until, escalation)
    rewards = data.rewards(app.id, bucket, since, until)
    calls = data.model_calls(app.id, bucket, since, until, sla_target)

    per = {
        name: [0.0] * size
        for name in (
            "events",
            "feedback_n",
            "feedback_sum",
            "decisions",
            "escalated",
            "rewards",
            "positive",
            "reward_sum",
            "calls",
            "within",
            "latency_sum",
            "call_errors",
        )
    }
    intents: Counter[str] = Counter()
    for at, summary in events.buckets.items():
        i = index.get(at)
        if i is None:
            continue
        for (_name, _version, intent), (n, fb_n, fb_sum) in summary.items():
            per["events"][i] += n
            per["feedback_n"][i] += fb_n
            per["feedback_sum"][i] += fb_sum
            intents[intent if intent is not None else "(none)"] += int(n)
    for at, summary in decisions.buckets.items():
        i = index.get(at)
        if i is None:
            continue
        for n, escalated in summary.values():
            per["decisions"][i] += n
            per["escalated"][i] += escalated
    for at, summary in rewards.buckets.items():
        i = index.get(at)
        if i is None:
            continue
        for n, positive, total in summary.values():
            per["rewards"][i] += n
            per["positive"][i] += positive
            per["reward_sum"][i] += total
    if calls is not None:
        for at, summary in calls.buckets.items():
            i = index.get(at)
            if i is None:
                continue
            for n, within, latency, errors in summary.values():
                per["calls"][i] += n
                per["within"][i] += within
                per["latency_sum"][i] += latency
                per["call_errors"][i] += errors

    totals = {name: sum(values) for name, values in per.items()}
    n_intents = sum(intents.values())
    top = [(k, n) for k, n in intents.most_common(TOP_INTENTS + 1) if k != OTHER][:TOP_INTENTS]
    other = n_intents - sum(n for _, n in top)
    intent_rows = [{"intent": k, "count": n, "share": ratio(n, n_intents)} for k, n in top]
    if other:
        intent_rows.append({"intent": OTHER, "count": other, "share": ratio(other, n_intents)})

    satisfaction = _satisfaction(events, index, size)
    resolution = _version_series(rewards, index, size, count_at=0, part_at=1, sum_at=2)
    resolution_shown = resolution[:MAX_VERSION_SERIES]
    stats = [events, decisions, rewards] + ([calls] if calls else [])
    return clean(
        {
            "app": app.id,
            "bucket": bucket,
            "since": xs[0].isoformat() if xs else since.isoformat(),
            "until": until.isoformat(),
            "buckets": [at.isoformat() for at in xs],
            "series": {
                "events": _ints(per["events"]),
                "decisions": _ints(per["decisions"]),
                "rewards": _ints(per["rewards"]),
                "escalated": _ints(per["escalated"]),
                "resolution": [
                    ratio(p, n) for p, n in zip(per["positive"], per["rewards"], strict=True)
                ],
                "satisfaction": [
                    ratio(s, n) for s, n in zip(per["feedback_sum"], per["feedback_n"], strict=True)
                ],
                "escalation": [
                    ratio(e, n) for e, n in zip(per["escalated"], per["decisions"], strict=True)
                ],
                "model_calls": _ints(per["calls"]),
                "sla": [ratio(w, n) for w, n in zip(per["within"], per["calls"], strict=True)],
            },
            "totals": {
                "events": int(totals["events"]),
                "decisions": int(totals["decisions"]),
                "rewards": int(totals["rewards"]),
                "escalated": int(totals["escalated"]),
                "feedback": int(totals["feedback_n"]),
                "model_calls": int(totals["calls"]),
            },
            "rates": {
                "resolution": ratio(totals["positive"], totals["rewards"]),
                "mean_reward": ratio(totals["reward_sum"], totals["rewards"]),
                "satisfaction": ratio(totals["feedback_sum"], totals["feedback_n"]),
                "escalation": ratio(totals["escalated"], totals["decisions"]),
                "sla": ratio(totals["within"], totals["calls"]),
            },
            "resolution_by_version": resolution_shown,
            "more_versions": max(0, len(resolution) - len(resolution_shown)),
            "satisfaction_by_version": satisfaction,
            "intents": intent_rows,
            "escalation": {"actions": list(escalation)},
            "sla": {
                "target_ms": sla_target,
                "available": calls is not None,
                "mean_latency_ms": ratio(totals["latency_sum"], totals["calls"]),
                "errors": int(totals["call_errors"]),
            },
            "cache": {
                "cached_buckets": sum(f.cached_buckets for f in stats),
                "queried_from": min(
                    (f.queried_from.isoformat() for f in stats if f.queried_from), default=None
                ),
                "stale": any(f.stale for f in stats),
            },
        }
    )


def _ints(values: list[float]) -> list[int]:
    return [int(v) for v in values]


def _satisfaction(events: Fetched, index: dict[datetime, int], size: int) -> list[dict[str, Any]]:
    """Mean feedback per bucket and version: events' values are [n, with feedback, sum]."""
    by: dict[tuple[Any, Any], list[list[float]]] = {}
    for at, summary in events.buckets.items():
        i = index.get(at)
        if i is None:
            continue
        for (name, version, _intent), (_n, fb_n, fb_sum) in summary.items():
            if not fb_n:
                continue
            series = by.setdefault((name, version), [[0.0] * size, [0.0] * size])
            series[0][i] += fb_n
            series[1][i] += fb_sum
    out = []
    for (name, version), (counts, sums) in by.items():
        n = sum(counts)
        out.append(
            {
                "policy": name,
                "version": None if version is None else int(version),
                "label": version_label(name, version) if version is not None else "all events",
                "n": int(n),
                "mean": ratio(sum(sums), n),
                "points": [ratio(s, c) for s, c in zip(sums, counts, strict=True)],
                "counts": _ints(counts),
            }
        )
    out.sort(key=lambda s: (s["version"] is None, -(s["version"] or 0)))
    return out[:MAX_VERSION_SERIES]
