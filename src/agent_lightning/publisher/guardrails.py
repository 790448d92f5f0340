"""Guardrails: compare a rollout's candidate with its baseline on live data, safely under peeking.

Metrics per arm (decisions with the rollout's policy name and that arm's version, created since
the rollout started, joined with their rewards):

- ``mean_reward``: mean of the per-decision reward (rewards on one decision combined as the app's
  ``reward_aggregation`` says), over rewarded decisions;
- ``resolution_rate``: share of rewarded decisions whose reward is above zero;
- ``escalation_rate``: share of decisions with ``attributes.escalated`` true, or whose chosen
  action is one of the app's escalation actions (``settings.dashboard.escalation_actions``);
- ``error_rate``: share of decisions with a truthy ``attributes.error``;
- ``latency_p99``: 99th percentile of ``attributes.latency_ms``.

**The sequential test.** The evaluator looks at the data every few seconds, so a fixed-n test
(a t-test at each look) would roll back equal candidates far more often than its nominal alpha.
We use an *always-valid confidence sequence* for the difference of means instead: the
normal-mixture boundary of the mSPRT (Robbins 1970; Johari et al., "Always Valid Inference",
2017; Howard et al. 2021), with the variance of the difference estimated from the data (the
asymptotic confidence sequences of Waudby-Smith et al. 2023 justify the plug-in). With ``V`` the
variance of the estimated difference and ``tau2`` the mixing variance, the interval

    diff ± sqrt( V (V + tau2) / tau2 * log((V + tau2) / (V alpha²)) )

covers the true difference *at every look simultaneously* with probability ≥ 1 - alpha, so
stopping at the first look where it excludes "no regression" keeps the false rollback rate
under alpha however often we look. ``tau2 = pooled variance / rho`` puts the boundary's tightest
point near ``rho`` effective samples. Alpha is split evenly (Bonferroni) across a rollout's
guardrails, so the whole set stays under alpha. We chose this over a Bonferroni-spent alpha per
look because it needs no maximum number of looks and loses little power over long rollouts.

A regression on a "higher is better" metric: the upper end of the interval for
``candidate - baseline`` is below ``-max_drop``. Lower is better: the lower end is above
``max_drop``. With a ``threshold``, the candidate alone is tested against the absolute limit the
same way (e.g. error rate confidently above 5%). ``latency_p99`` becomes a rate: the candidate's
share of decisions slower than the limit (baseline p99 + max_drop, or the threshold), which is
1% when the candidate's p99 sits at the limit; a confidently higher share is a regression.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

METRICS: dict[str, str] = {
    "mean_reward": "higher_is_better",
    "resolution_rate": "higher_is_better",
    "escalation_rate": "lower_is_better",
    "error_rate": "lower_is_better",
    "latency_p99": "lower_is_better",
}
DIRECTIONS = ("higher_is_better", "lower_is_better")
DEFAULT_GUARDRAILS: tuple[dict[str, Any], ...] = (
    {"metric": "mean_reward", "max_drop": 0.0},
    {"metric": "error_rate", "max_drop": 0.0},
)
MIN_SAMPLES = 30  # per arm before a test may conclude (the CLT plug-in needs some data)
RHO = 100.0  # effective sample size where the boundary is tightest
P99_TAIL = 0.01


@dataclass(frozen=True)
class Guardrail:
    """One declared guardrail: which metric, how much worse is tolerated, or an absolute limit."""

    metric: str
    max_drop: float = 0.0
    threshold: float | None = None
    direction: str = ""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(
                f"unknown guardrail metric {self.metric!r}; choose from {', '.join(METRICS)}"
            )
        if not self.direction:
            object.__setattr__(self, "direction", METRICS[self.metric])
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if self.max_drop < 0 or not math.isfinite(self.max_drop):
            raise ValueError(f"{self.metric}: max_drop must be a finite number >= 0")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"{self.metric}: threshold must be a finite number")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Guardrail:
        unknown = set(raw) - {"metric", "max_drop", "threshold", "direction"}
        if unknown:
            raise ValueError(f"unknown guardrail field(s): {', '.join(sorted(unknown))}")
        if "metric" not in raw:
            raise ValueError("a guardrail needs a metric")
        return cls(
            metric=str(raw["metric"]),
            max_drop=float(raw.get("max_drop") or 0.0),
            threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
            direction=str(raw.get("direction") or ""),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "max_drop": self.max_drop,
            "threshold": self.threshold,
            "direction": self.direction,
        }


@dataclass
class ArmStats:
    """Running sums for one arm: enough for every metric and its variance."""

    decisions: int = 0
    rewarded: int = 0
    reward_sum: float = 0.0
    reward_sumsq: float = 0.0
    positive: int = 0
    escalated: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(
        self,
        reward: float | None = None,
        *,
        escalated: bool = False,
        error: bool = False,
        latency_ms: float | None = None,
    ) -> None:
        self.decisions += 1
        if reward is not None:
            self.rewarded += 1
            self.reward_sum += reward
            self.reward_sumsq += reward * reward
            self.positive += reward > 0
        self.escalated += bool(escalated)
        self.errors += bool(error)
        if latency_ms is not None:
            self.latencies.append(float(latency_ms))

    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewarded if self.rewarded else None

    def reward_var(self) -> float:
        if self.rewarded < 2:
            return 0.0
        mean = self.reward_sum / self.rewarded
        return max(0.0, (self.reward_sumsq - self.rewarded * mean * mean) / (self.rewarded - 1))

    def p99(self) -> float | None:
        return quantile(self.latencies, 0.99)

    def sample(self, metric: str) -> tuple[int, float | None, float]:
        """(n, mean, variance) of the per-decision observations behind `metric`."""
        if metric == "mean_reward":
            return self.rewarded, self.mean_reward(), self.reward_var()
        if metric == "resolution_rate":
            return _rate(self.positive, self.rewarded)
        if metric == "escalation_rate":
            return _rate(self.escalated, self.decisions)
        if metric == "error_rate":
            return _rate(self.errors, self.decisions)
        raise ValueError(f"{metric} is not a mean")

    def value(self, metric: str) -> float | None:
        if metric == "latency_p99":
            return self.p99()
        return self.sample(metric)[1]

    def summary(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "rewarded": self.rewarded,
            "mean_reward": _round(self.mean_reward()),
            "resolution_rate": _round(self.value("resolution_rate")),
            "escalation_rate": _round(self.value("escalation_rate")),
            "error_rate": _round(self.value("error_rate")),
            "latency_p99": _round(self.p99()),
            "latency_samples": len(self.latencies),
        }


def _rate(part: int, n: int) -> tuple[int, float | None, float]:
    if not n:
        return 0, None, 0.0
    # Variance from a shrunk estimate, so an arm with no errors yet still has a usable width.
    shrunk = (part + 0.5) / (n + 1.0)
    return n, part / n, shrunk * (1.0 - shrunk)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: the value of a real observation)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# -- the confidence sequence ----------------------------------------------------------------


def cs_radius(variance_of_estimate: float, tau2: float, alpha: float) -> float:
    """Half-width of the normal-mixture always-valid confidence sequence at level 1 - alpha."""
    v = max(variance_of_estimate, 1e-18)
    t = max(tau2, 1e-18)
    return math.sqrt(v * (v + t) / t * math.log((v + t) / (v * alpha * alpha)))


def difference_cs(
    n_c: int,
    mean_c: float,
    var_c: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    alpha: float,
    rho: float = RHO,
) -> tuple[float, float, float]:
    """(candidate - baseline, lower, upper): an always-valid interval for the difference."""
    diff = mean_c - mean_b
    v = var_c / n_c + var_b / n_b
    dof = max(1, n_c + n_b - 2)
    pooled = ((n_c - 1) * var_c + (n_b - 1) * var_b) / dof
    radius = cs_radius(v, max(pooled, 1e-12) / rho, alpha)
    return diff, diff - radius, diff + radius


def mean_cs(
    n: int, mean: float, var: float, alpha: float, rho: float = RHO
) -> tuple[float, float, float]:
    """(mean, lower, upper): an always-valid interval for one arm's mean."""
    radius = cs_radius(var / n, max(var, 1e-12) / rho, alpha)
    return mean, mean - radius, mean + radius


# -- checking guardrails --------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailResult:
    metric: str
    direction: str
    candidate: float | None
    baseline: float | None
    n_candidate: int
    n_baseline: int
    regression: bool
    estimate: float | None = None  # the compared quantity (difference, or candidate's value)
    lower: float | None = None
    upper: float | None = None
    limit: float | None = None  # what the interval was compared with
    test: str = "difference"  # difference | threshold | tail_share | insufficient_data
    alpha: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "direction": self.direction,
            "candidate": _round(self.candidate),
            "baseline": _round(self.baseline),
            "n_candidate": self.n_candidate,
            "n_baseline": self.n_baseline,
            "regression": self.regression,
            "estimate": _round(self.estimate),
            "interval": None if self.lower is None else [_round(self.lower), _round(self.upper)],
            "limit": _round(self.limit),
            "test": self.test,
            "alpha": _round(self.alpha),
        }

    def reason(self) -> str:
        """One sentence an operator can act on: which metric, both values, n, the interval."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4g}"

        interval = f"[{fmt(self.lower)}, {fmt(self.upper)}]"
        what = {
            "difference": f"{1 - self.alpha:.4g} always-valid interval of candidate - baseline "
            f"{interval} is beyond the allowed change {fmt(self.limit)}",
            "threshold": f"{1 - self.alpha:.4g} always-valid interval of the candidate's value "
            f"{interval} is beyond the threshold {fmt(self.limit)}",
            "tail_share": f"share of candidate decisions slower than {fmt(self.limit)} ms has "
            f"the {1 - self.alpha:.4g} always-valid interval {interval}, above {P99_TAIL:.0%}",
        }.get(self.test, self.test)
        return (
            f"{self.metric} regressed: candidate {fmt(self.candidate)} vs baseline "
            f"{fmt(self.baseline)} (n={self.n_candidate} vs {self.n_baseline}); {what}"
        )


def check_guardrail(
    guardrail: Guardrail,
    candidate: ArmStats,
    baseline: ArmStats,
    alpha: float,
    *,
    min_samples: int = MIN_SAMPLES,
    rho: float = RHO,
) -> GuardrailResult:
    """Test one guardrail at level `alpha` (already split across the rollout's guardrails)."""
    g = guardrail
    higher = g.direction == "higher_is_better"
    if g.metric == "latency_p99":
        return _check_latency(g, candidate, baseline, alpha, min_samples, rho)
    n_c, mean_c, var_c = candidate.sample(g.metric)
    n_b, mean_b, var_b = baseline.sample(g.metric)
    base = GuardrailResult(
        g.metric, g.direction, mean_c, mean_b, n_c, n_b, False, alpha=alpha, test="difference"
    )
    if g.threshold is not None:
        if n_c < min_samples or mean_c is None:
            return _insufficient(base)
        est, lo, hi = mean_cs(n_c, mean_c, var_c, alpha, rho)
        regression = hi < g.threshold if higher else lo > g.threshold
        return _with(base, est, lo, hi, g.threshold, regression, "threshold")
    if n_c < min_samples or n_b < min_samples or mean_c is None or mean_b is None:
        return _insufficient(base)
    est, lo, hi = difference_cs(n_c, mean_c, var_c, n_b, mean_b, var_b, alpha, rho)
    limit = -g.max_drop if higher else g.max_drop
    regression = hi < limit if higher else lo > limit
    return _with(base, est, lo, hi, limit, regression, "difference")


def _check_latency(
    g: Guardrail,
    candidate: ArmStats,
    baseline: ArmStats,
    alpha: float,
    min_samples: int,
    rho: float,
) -> GuardrailResult:
    c_p99, b_p99 = candidate.p99(), baseline.p99()
    n_c, n_b = len(candidate.latencies), len(baseline.latencies)
    base = GuardrailResult(
        g.metric, g.direction, c_p99, b_p99, n_c, n_b, False, alpha=alpha, test="tail_share"
    )
    if g.threshold is not None:
        limit = g.threshold
    elif b_p99 is None or n_b < min_samples:
        return _insufficient(base)
    else:
        limit = b_p99 + g.max_drop
    if n_c < min_samples:
        return _insufficient(base)
    slow = sum(1 for x in candidate.latencies if x > limit)
    n, share, var = _rate(slow, n_c)
    est, lo, hi = mean_cs(n, share or 0.0, var, alpha, rho)
    # The limit is stored, not the tail share, so the reason can say "slower than X ms".
    return GuardrailResult(
        g.metric,
        g.direction,
        c_p99,
        b_p99,
        n_c,
        n_b,
        lo > P99_TAIL,
        est,
        lo,
        hi,
        limit,
        "tail_share",
        alpha,
    )


def _insufficient(base: GuardrailResult) -> GuardrailResult:
    return GuardrailResult(
        base.metric,
        base.direction,
        base.candidate,
        base.baseline,
        base.n_candidate,
        base.n_baseline,
        False,
        test="insufficient_data",
        alpha=base.alpha,
    )


def _with(
    base: GuardrailResult,
    est: float,
    lo: float,
    hi: float,
    limit: float,
    regression: bool,
    test: str,
) -> GuardrailResult:
    return GuardrailResult(
        base.metric,
        base.direction,
        base.candidate,
        base.baseline,
        base.n_candidate,
        base.n_baseline,
        regression,
        est,
        lo,
        hi,
        limit,
        test,
        base.alpha,
    )


def check_guardrails(
    guardrails: Sequence[Guardrail],
    candidate: ArmStats,
    baseline: ArmStats,
    alpha: float,
    *,
    min_samples: int = MIN_SAMPLES,
    rho: float = RHO,
) -> list[GuardrailResult]:
    """Every guardrail at alpha / len(guardrails): the set as a whole errs at most alpha."""
    if not guardrails:
        return []
    each = alpha / len(guardrails)
    return [
        check_guardrail(g, candidate, baseline, each, min_samples=min_samples, rho=rho)
        for g in guardrails
    ]


def ab_verdict(
    candidate: ArmStats,
    baseline: ArmStats,
    alpha: float,
    *,
    min_samples: int = MIN_SAMPLES,
    rho: float = RHO,
) -> dict[str, Any]:
    """A/B on mean reward with the same always-valid interval: winner or not yet."""
    n_c, mean_c, var_c = candidate.sample("mean_reward")
    n_b, mean_b, var_b = baseline.sample("mean_reward")
    out: dict[str, Any] = {
        "metric": "mean_reward",
        "candidate": _round(mean_c),
        "baseline": _round(mean_b),
        "n_candidate": n_c,
        "n_baseline": n_b,
        "alpha": alpha,
        "winner": None,
    }
    if n_c < min_samples or n_b < min_samples or mean_c is None or mean_b is None:
        return out
    diff, lo, hi = difference_cs(n_c, mean_c, var_c, n_b, mean_b, var_b, alpha, rho)
    out.update(difference=_round(diff), interval=[_round(lo), _round(hi)])
    if lo > 0:
        out["winner"] = "candidate"
    elif hi < 0:
        out["winner"] = "baseline"
    return out


# -- reading arms from the store --------------------------------------------------------------


def _truthy_error(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return bool(value)


def _latency(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def arm_stats(
    store: Any,
    app_id: str,
    policy_name: str,
    version: int,
    since: datetime,
    *,
    until: datetime | None = None,
    escalation_actions: Iterable[str] = ("escalate",),
    aggregation: str = "sum",
    max_decisions: int = 50_000,
) -> ArmStats:
    """Metrics of one arm from stored decisions (newest `max_decisions`) and their rewards."""
    from sqlalchemy import select

    from agent_lightning.store import Decision, Reward

    escalation = set(escalation_actions)
    with store.session() as s:
        query = select(Decision.id, Decision.action_id, Decision.attributes).where(
            Decision.app_id == app_id,
            Decision.policy_name == policy_name,
            Decision.policy_version == version,
            Decision.created_at >= since,
        )
        if until is not None:
            query = query.where(Decision.created_at < until)
        rows = list(s.execute(query.order_by(Decision.pk.desc()).limit(max_decisions)))
        rewards: dict[str, list[float]] = {}
        ids = [r.id for r in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for decision_id, value in s.execute(
                select(Reward.decision_id, Reward.value)
                .where(Reward.app_id == app_id, Reward.decision_id.in_(chunk))
                .order_by(Reward.pk)
            ):
                rewards.setdefault(decision_id, []).append(float(value))
    stats = ArmStats()
    for row in reversed(rows):
        attributes = row.attributes if isinstance(row.attributes, dict) else {}
        values = rewards.get(row.id)
        reward = None
        if values:
            if aggregation == "earliest":
                reward = values[0]
            elif aggregation == "last":
                reward = values[-1]
            else:
                reward = float(sum(values))
        stats.add(
            reward,
            escalated=attributes.get("escalated") is True or row.action_id in escalation,
            error=_truthy_error(attributes.get("error")),
            latency_ms=_latency(attributes.get("latency_ms")),
        )
    return stats


__all__ = [
    "DEFAULT_GUARDRAILS",
    "METRICS",
    "ArmStats",
    "Guardrail",
    "GuardrailResult",
    "ab_verdict",
    "arm_stats",
    "check_guardrail",
    "check_guardrails",
    "cs_radius",
    "difference_cs",
    "mean_cs",
    "quantile",
]
