"""Off-policy estimators against a synthetic bandit whose true policy values are known."""

from __future__ import annotations

import numpy as np
import pytest

from agent_lightning.learning import (
    Action,
    Estimate,
    LoggedDecision,
    SpecError,
    direct_method,
    doubly_robust,
    evaluate,
    ips,
    snips,
)

K = 4
# Expected reward of each action in each of 3 context types.
MEANS = np.array([[0.9, 0.2, 0.1, 0.3], [0.1, 0.8, 0.3, 0.2], [0.2, 0.1, 0.3, 0.7]])
LOGGING = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
TARGET = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.05, 0.05, 0.1, 0.8]])
TRUE_VALUE = float(np.mean((TARGET * MEANS).sum(axis=1)))  # contexts are uniform


def simulate(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, 3, n)
    a = np.array([rng.choice(K, p=LOGGING[c]) for c in ctx])
    r = (rng.random(n) < MEANS[ctx, a]).astype(float)
    return ctx, a, r


def test_ips_snips_dr_are_close_to_truth_and_intervals_cover():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    seeds = range(40)
    for seed in seeds:
        ctx, a, r = simulate(2000, seed)
        pt, pl = TARGET[ctx, a], LOGGING[ctx, a]
        # A deliberately biased reward model: DR must still be right.
        q = np.clip(MEANS + 0.15, 0, 1)
        est = {
            "ips": ips(r, pt, pl),
            "snips": snips(r, pt, pl),
            "dr": doubly_robust(r, pt, pl, q[ctx, a], (TARGET * q).sum(axis=1)[ctx]),
        }
        for name, e in est.items():
            assert abs(e.value - TRUE_VALUE) < 0.06, (name, seed, e)
            covered[name] += e.ci_low <= TRUE_VALUE <= e.ci_high
    for name, hits in covered.items():
        # Nominal 95%: over 40 seeds expect ~38; far fewer means the interval is wrong.
        assert hits >= 33, (name, hits)


def test_direct_method_with_the_true_model_is_exact_and_biased_model_is_not():
    ctx, _, _ = simulate(3000, 1)
    exact = direct_method((TARGET * MEANS).sum(axis=1)[ctx])
    assert exact.value == pytest.approx(TRUE_VALUE, abs=0.02)
    biased = direct_method((TARGET * np.clip(MEANS + 0.15, 0, 1)).sum(axis=1)[ctx])
    assert biased.value - TRUE_VALUE > 0.1


def test_effective_sample_size_and_level():
    ctx, a, r = simulate(1000, 2)
    same = ips(r, LOGGING[ctx, a], LOGGING[ctx, a])
    assert same.ess == pytest.approx(1000)  # evaluating the logging policy: all weights 1
    assert same.value == pytest.approx(r.mean())
    other = ips(r, TARGET[ctx, a], LOGGING[ctx, a])
    assert other.ess < 1000
    wide = ips(r, TARGET[ctx, a], LOGGING[ctx, a], level=0.99)
    narrow = ips(r, TARGET[ctx, a], LOGGING[ctx, a], level=0.8)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    assert isinstance(other, Estimate) and other.n == 1000


def test_invalid_inputs_raise():
    with pytest.raises(SpecError):
        ips([1.0, 0.0], [0.5, 0.5], [0.0, 0.5])
    with pytest.raises(SpecError):
        ips([1.0], [0.5, 0.5], [0.5, 0.5])
    with pytest.raises(SpecError):
        ips([1.0], [0.5], [0.5], level=1.5)


class TablePolicy:
    """A policy given by a probability table over 3 context types (for `evaluate`)."""

    def __init__(self, table):
        self.table = table

    def probabilities(self, contexts, actions):
        return np.array([self.table[int(c["features"]["type"])] for c in contexts])

    def predict_rewards(self, contexts, actions):
        return np.array([MEANS[int(c["features"]["type"])] for c in contexts])


def logged(n: int, seed: int):
    ctx, a, r = simulate(n, seed)
    actions = tuple(Action(f"a{k}") for k in range(K))
    return [
        LoggedDecision({"features": {"type": float(c)}}, actions, f"a{k}", LOGGING[c, k], rr)
        for c, k, rr in zip(ctx, a, r, strict=True)
    ]


@pytest.mark.parametrize("estimator", ["ips", "snips", "dm", "dr"])
def test_evaluate_candidate_against_baseline(estimator):
    logs = logged(3000, 3)
    out = evaluate(TablePolicy(TARGET), logs, baseline=TablePolicy(LOGGING), estimator=estimator)
    base_value = float(np.mean((LOGGING * MEANS).sum(axis=1)))
    assert out["n"] == 3000
    assert out["candidate"].value == pytest.approx(TRUE_VALUE, abs=0.05)
    assert out["baseline"].value == pytest.approx(base_value, abs=0.05)
    d = out["difference"]
    assert d.value == pytest.approx(TRUE_VALUE - base_value, abs=0.05)
    assert d.ci_low > 0  # the better policy is detected
    # The paired difference is tighter than the candidate's own interval.
    assert d.ci_high - d.ci_low <= out["candidate"].ci_high - out["candidate"].ci_low + 1e-12


def test_evaluate_skips_unrewarded_rows_and_rejects_unknown_estimator():
    logs = logged(50, 4)
    pending = LoggedDecision(logs[0].context, logs[0].actions, "a0", 0.5)
    out = evaluate(TablePolicy(TARGET), [*logs, pending], estimator="ips")
    assert out["n"] == 50 and out["baseline"] is None
    with pytest.raises(SpecError, match="estimator"):
        evaluate(TablePolicy(TARGET), logs, estimator="magic")


def test_corrections_make_the_doubly_robust_estimate_exact():
    # Each context type has one right action; a correction names it on every logged row.
    right = np.array([0, 1, 3])
    ctx, a, _ = simulate(400, 5)
    actions = tuple(Action(f"a{k}") for k in range(K))
    logs = [
        LoggedDecision(
            {"features": {"type": float(c)}},
            actions,
            f"a{k}",
            LOGGING[c, k],
            float(k == right[c]),
            f"a{right[c]}",
        )  # fmt: skip
        for c, k in zip(ctx, a, strict=True)
    ]
    # The true value of TARGET on these very contexts: its probability of the right action.
    exact = float(np.mean(TARGET[ctx, right[ctx]]))
    with_labels = evaluate(TablePolicy(TARGET), logs, baseline=TablePolicy(LOGGING))
    assert with_labels["candidate"].value == pytest.approx(exact, abs=1e-9)
    # Without the labels the same rows give a noisy estimate with a wider interval.
    bare = [LoggedDecision(x.context, x.actions, x.action_id, x.propensity, x.reward) for x in logs]
    without = evaluate(TablePolicy(TARGET), bare, baseline=TablePolicy(LOGGING))
    width = lambda e: e.ci_high - e.ci_low  # noqa: E731
    assert width(with_labels["difference"]) < width(without["difference"])
    assert with_labels["candidate"].value != pytest.approx(without["candidate"].value, abs=1e-6)


def test_corrections_for_some_rows_only_leave_the_estimate_unbiased():
    # People correct the wrong answers: whether a row has a label depends on its outcome. Exact
    # labels on those rows alone biased DR (here 1.11 for a truth near 0.73).
    right = np.array([0, 1, 3])

    class Underconfident(TablePolicy):
        def predict_rewards(self, contexts, actions):
            return np.full((len(contexts), K), 0.3)

    estimates = []
    for seed in range(20):
        ctx, a, _ = simulate(1500, seed)
        actions = tuple(Action(f"a{k}") for k in range(K))
        logs = [
            LoggedDecision(
                {"features": {"type": float(c)}},
                actions,
                f"a{k}",
                LOGGING[c, k],
                float(k == right[c]),
                None if k == right[c] else f"a{right[c]}",
            )  # fmt: skip
            for c, k in zip(ctx, a, strict=True)
        ]
        exact = float(np.mean(TARGET[ctx, right[ctx]]))
        out = evaluate(Underconfident(TARGET), logs)["candidate"]
        estimates.append(out.value - exact)
        assert out.value <= 1.0
    assert abs(float(np.mean(estimates))) < 0.02, np.mean(estimates)


def test_max_weight_clips_importance_weights():
    ctx, a, r = simulate(1000, 5)
    pt, pl = TARGET[ctx, a], LOGGING[ctx, a]  # the largest weight here is 0.8 / 0.1 = 8
    assert ips(r, pt, pl, max_weight=20.0) == ips(r, pt, pl)
    clipped = ips(r, pt, pl, max_weight=2.0)
    assert clipped.value < ips(r, pt, pl).value and clipped.ess > ips(r, pt, pl).ess
    q = np.clip(MEANS + 0.15, 0, 1)
    dr = doubly_robust(r, pt, pl, q[ctx, a], (TARGET * q).sum(axis=1)[ctx], max_weight=2.0)
    assert abs(dr.value - TRUE_VALUE) < 0.06  # still corrected, only less for rare actions
    for bad in (0.5, 0.0, float("nan")):
        with pytest.raises(SpecError, match="max_weight"):
            ips(r, pt, pl, max_weight=bad)
        with pytest.raises(SpecError, match="max_weight"):
            evaluate(TablePolicy(TARGET), logged(20, 6), max_weight=bad)


class ChoosesRareAction(TablePolicy):
    """Prefers the action a near-greedy logger tried once, by exploration, and failed with."""

    def probabilities(self, contexts, actions):
        return np.tile([0.0, 0.0, 0.0, 1.0], (len(contexts), 1))


def test_gate_clips_the_weight_of_one_rare_exploration_row():
    from agent_lightning.learning.ope import GATE_MAX_WEIGHT, gate

    rng = np.random.default_rng(7)
    actions = tuple(Action(f"a{k}") for k in range(K))
    ctx = {"features": {"type": 0.0}}
    # A near-greedy live version: a0 almost always (reward 0.9), a3 once with propensity 1e-4.
    logs = [
        LoggedDecision(ctx, actions, "a0", 0.9999, float(rng.random() < 0.9)) for _ in range(299)
    ]
    logs.append(LoggedDecision(ctx, actions, "a3", 1e-4, 0.0))
    live = TablePolicy(np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))
    raw = evaluate(ChoosesRareAction(TARGET), logs, baseline=live, max_weight=None)
    # Unclipped, the one row weighs 10,000: a value of about -10 for a reward in [0, 1].
    assert raw["candidate"].value < -5
    verdict = gate(ChoosesRareAction(TARGET), live, logs)
    assert GATE_MAX_WEIGHT == 20.0 and not verdict.passed
    # Clipped, the estimate stays readable and still says the candidate is worse (a3's true
    # mean is 0.3 and it failed once).
    assert -0.1 < verdict.candidate.value < 0.9 * 0.9999 and verdict.difference.value < 0


@pytest.mark.parametrize("estimator", ["dm", "dr"])
def test_a_policy_scored_once_for_both_views_gives_the_same_estimates(estimator):
    # evaluate() scores a real Policy's rows once for its probabilities and reward estimates
    # when it is its own reward model; passing it as an explicit reward model takes the
    # two-call path. Both must give the same estimates, with corrections on some rows too.
    from agent_lightning.learning import make_policy

    words = {"a0": "refund money back", "a1": "card lost stolen", "a2": "password login reset"}
    actions = tuple(Action(a, description=d) for a, d in words.items())
    rng = np.random.default_rng(5)

    def replay(policy, n: int, correction: bool) -> list[LoggedDecision]:
        logs = []
        for _ in range(n):
            label = str(rng.choice(list(words)))
            text = " ".join(rng.choice(words[label].split(), size=2)) + " please"
            d = policy.decide({"text": text}, actions, rng=rng)
            reward = 1.0 if d.action_id == label else 0.0
            logs.append(
                LoggedDecision(
                    {"text": text},
                    actions,
                    d.action_id,
                    d.propensity,
                    reward,
                    label if correction else None,
                )  # fmt: skip
            )
        return logs

    spec = {"featurizer": "hashing", "learner": {"kind": "linucb", "alpha": 0.3}, "seed": 3}
    live = make_policy(spec)
    logs = replay(live, 200, correction=False) + replay(live, 50, correction=True)
    candidate = live.clone().learn(logs[:120])
    joint = evaluate(candidate, logs, baseline=live, estimator=estimator)
    split = evaluate(candidate, logs, baseline=live, estimator=estimator, reward_model=candidate)
    for key in ("candidate", "baseline", "difference"):
        assert joint[key] == split[key]
    assert joint["difference"].value != 0.0  # the candidate learned something
