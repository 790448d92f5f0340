"""The sequential test behind automatic rollback, on synthetic data with known differences.

The evaluator looks at the data every few seconds, so these simulations look often too (every
25 decisions) and stop at the first regression, exactly as a rollout would.
"""

from __future__ import annotations

import math
import random

import pytest

from agent_lightning.publisher.guardrails import (
    DEFAULT_GUARDRAILS,
    ArmStats,
    Guardrail,
    ab_verdict,
    check_guardrail,
    check_guardrails,
    cs_radius,
    quantile,
)

ALPHA = 0.05
RUNS = 200


def _simulate(
    p_candidate: float,
    p_baseline: float,
    seed: int,
    *,
    share: float = 0.5,
    n_max: int = 3000,
    look_every: int = 25,
    guardrails: list[Guardrail] | None = None,
) -> int | None:
    """Traffic split `share` to the candidate; the candidate's n at the first rollback, or None."""
    rng = random.Random(seed)
    rails = guardrails or [Guardrail.parse(g) for g in DEFAULT_GUARDRAILS]
    candidate, baseline = ArmStats(), ArmStats()
    for i in range(1, n_max + 1):
        on_candidate = rng.random() < share
        p = p_candidate if on_candidate else p_baseline
        arm = candidate if on_candidate else baseline
        arm.add(1.0 if rng.random() < p else 0.0, error=rng.random() < 0.02)
        if i % look_every == 0:
            if any(r.regression for r in check_guardrails(rails, candidate, baseline, ALPHA)):
                return candidate.decisions
    return None


def test_an_equal_candidate_is_rarely_rolled_back_despite_repeated_looks() -> None:
    # 120 looks per run: a fixed-n test at each look would reject far more often than alpha.
    rollbacks = sum(_simulate(0.6, 0.6, seed) is not None for seed in range(RUNS))
    assert rollbacks <= ALPHA * RUNS, f"{rollbacks}/{RUNS} equal candidates rolled back"


def test_a_clear_regression_is_caught_within_a_bounded_number_of_decisions() -> None:
    caught = [_simulate(0.4, 0.6, seed) for seed in range(RUNS)]
    assert all(n is not None for n in caught), "a 20-point drop in reward went unnoticed"
    assert max(n for n in caught if n is not None) <= 800


def test_a_small_canary_share_still_catches_the_regression() -> None:
    caught = [_simulate(0.4, 0.6, seed, share=0.1, n_max=8000) for seed in range(50)]
    assert all(n is not None and n <= 800 for n in caught), caught


def test_an_allowed_drop_is_not_a_regression() -> None:
    # The candidate is 5 points worse but the guardrail tolerates 10: never a rollback.
    rails = [Guardrail("mean_reward", max_drop=0.10)]
    outcomes = [_simulate(0.55, 0.6, seed, guardrails=rails) for seed in range(50)]
    assert all(n is None for n in outcomes)


def test_a_worse_error_rate_is_caught_and_reported_with_both_values() -> None:
    candidate, baseline = ArmStats(), ArmStats()
    for i in range(600):
        candidate.add(1.0, error=i % 10 == 0)  # 10% errors
        baseline.add(1.0, error=i % 100 == 0)  # 1%
    result = check_guardrail(Guardrail("error_rate"), candidate, baseline, ALPHA)
    assert result.regression and result.test == "difference"
    reason = result.reason()
    assert reason.startswith("error_rate regressed: candidate 0.1 vs baseline 0.01 (n=600 vs 600)")
    assert result.upper is not None and result.lower is not None and result.lower > 0


def test_latency_p99_regression_and_no_false_alarm() -> None:
    rng = random.Random(3)
    same_c, same_b, slow_c = ArmStats(), ArmStats(), ArmStats()
    for _ in range(2000):
        same_c.add(latency_ms=rng.lognormvariate(5, 0.3))
        same_b.add(latency_ms=rng.lognormvariate(5, 0.3))
        slow_c.add(latency_ms=rng.lognormvariate(5, 0.3) * (3 if rng.random() < 0.05 else 1))
    rail = Guardrail("latency_p99", max_drop=0.0)
    assert not check_guardrail(rail, same_c, same_b, ALPHA).regression
    slow = check_guardrail(rail, slow_c, same_b, ALPHA)
    assert slow.regression and slow.test == "tail_share"
    assert slow.candidate > slow.baseline
    # An absolute limit works without a baseline at all.
    limit = Guardrail("latency_p99", threshold=200.0)
    assert check_guardrail(limit, slow_c, ArmStats(), ALPHA).regression


def test_a_threshold_is_tested_on_the_candidate_alone() -> None:
    candidate = ArmStats()
    for i in range(400):
        candidate.add(1.0, error=i % 10 == 0)  # 10% errors
    assert check_guardrail(Guardrail("error_rate", threshold=0.05), candidate, ArmStats(), 0.05)
    loose = check_guardrail(Guardrail("error_rate", threshold=0.2), candidate, ArmStats(), 0.05)
    assert not loose.regression


def test_too_little_data_never_rolls_back() -> None:
    candidate, baseline = ArmStats(), ArmStats()
    for _ in range(10):
        candidate.add(0.0)
        baseline.add(1.0)
    result = check_guardrail(Guardrail("mean_reward"), candidate, baseline, ALPHA)
    assert not result.regression and result.test == "insufficient_data"


def test_ab_verdict_names_the_winner_only_when_significant() -> None:
    rng = random.Random(11)
    better, worse, same = ArmStats(), ArmStats(), ArmStats()
    for _ in range(500):
        better.add(float(rng.random() < 0.75))
        worse.add(float(rng.random() < 0.45))
        same.add(float(rng.random() < 0.45))
    assert ab_verdict(better, worse, ALPHA)["winner"] == "candidate"
    assert ab_verdict(worse, better, ALPHA)["winner"] == "baseline"
    verdict = ab_verdict(same, worse, ALPHA)
    assert verdict["winner"] is None and verdict["interval"][0] < 0 < verdict["interval"][1]


def test_the_always_valid_interval_is_wider_than_a_fixed_n_one_and_shrinks() -> None:
    variance = 0.25
    for n in (50, 500, 5000):
        z_half_width = 1.96 * math.sqrt(variance / n)
        assert cs_radius(variance / n, variance / 100, ALPHA) > z_half_width
    assert cs_radius(0.25 / 5000, 0.0025, ALPHA) < cs_radius(0.25 / 500, 0.0025, ALPHA)


def test_guardrail_declarations_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown guardrail metric 'latency'"):
        Guardrail.parse({"metric": "latency"})
    with pytest.raises(ValueError, match="max_drop must be a finite number >= 0"):
        Guardrail.parse({"metric": "error_rate", "max_drop": -1})
    with pytest.raises(ValueError, match="unknown guardrail field"):
        Guardrail.parse({"metric": "error_rate", "max": 1})
    assert Guardrail.parse({"metric": "escalation_rate"}).direction == "lower_is_better"
    assert quantile([5, 1, 3, 2, 4], 0.99) == 5 and quantile([], 0.5) is None
