"""Generic checks run over every registered featurizer x learner x exploration combination.

A new learner, featurizer or exploration strategy gets all of these for free: add it to the
tables below.
"""

from __future__ import annotations

import copy
import itertools
import tempfile

import numpy as np
import pytest
from learning_helpers import ACTIONS, HAS_MINILM, DenseHashing, make_examples

from agent_lightning.learning import (
    Action,
    EpsilonGreedy,
    HashingFeaturizer,
    IWRegression,
    KNNMemory,
    LinUCB,
    LoggedDecision,
    MiniLMFeaturizer,
    Policy,
    Softmax,
    SquareCB,
    StaticEmbeddingFeaturizer,
    Thompson,
    UnionFeaturizer,
    register_featurizer,
)

register_featurizer(DenseHashing)
# A private embedding cache: tests never write into the user's ~/.cache.
MINILM_CACHE = tempfile.mkdtemp(prefix="agl-test-embeddings-")

FEATURIZERS = {
    "hashing": lambda: HashingFeaturizer(n_features=2**12),
    "dense": lambda: DenseHashing(64),
    "static": lambda: StaticEmbeddingFeaturizer(dims=64),
    "hybrid": lambda: UnionFeaturizer(
        [HashingFeaturizer(n_features=2**12), StaticEmbeddingFeaturizer(dims=64)]
    ),
}
if HAS_MINILM:
    FEATURIZERS["minilm"] = lambda: MiniLMFeaturizer(cache_dir=MINILM_CACHE)


@pytest.fixture(autouse=True)
def _private_embedding_cache(monkeypatch):
    # A policy loaded from bytes finds the cache through $AGL_CACHE_DIR (where the cache lives
    # is the machine's business, not the policy's). Pointing it at the same private cache means
    # a loaded policy reads the vectors its original wrote: recomputing them in another batch
    # can move a MiniLM embedding by ~1e-8, which the exact round-trip checks below would see.
    monkeypatch.setenv("AGL_CACHE_DIR", MINILM_CACHE)


LEARNERS = {
    "linucb": lambda: LinUCB(l2=0.5, budget=64),
    "linucb_ucb": lambda: LinUCB(l2=0.5, alpha=0.2, budget=64),
    "iw_regression": lambda: IWRegression(table_bits=14),
    "knn": lambda: KNNMemory(LinUCB(l2=0.5, budget=64), k=5, capacity=500),
}
EXPLORATIONS = {
    "epsilon_greedy": lambda: EpsilonGreedy(0.1),
    "squarecb": lambda: SquareCB(gamma=100.0),
    "softmax": lambda: Softmax(temperature=0.1),
    "thompson": lambda: Thompson(scale=0.5, draws=128, min_probability=0.01),
}
# Every featurizer x learner pair; explorations rotate over the pairs (they are stateless
# functions of the scores) and all of them get the probability checks with every learner.
_PAIRS = list(itertools.product(FEATURIZERS, LEARNERS))
_EXPL = list(EXPLORATIONS)
COMBOS = [(f, lr, _EXPL[i % len(_EXPL)]) for i, (f, lr) in enumerate(_PAIRS)]
IDS = ["-".join(c) for c in COMBOS]
PROB_COMBOS = [("hashing", lr, ex) for lr in LEARNERS for ex in EXPLORATIONS]
PROB_IDS = ["-".join(c) for c in PROB_COMBOS]


def build(combo, seed: int = 0) -> Policy:
    f, lr, ex = combo
    return Policy(
        featurizer=FEATURIZERS[f](),
        learner=LEARNERS[lr](),
        exploration=EXPLORATIONS[ex](),
        warm_start="zero_shot",
        seed=seed,
    )


def uniform_logs(examples, seed: int = 0, correction: bool = False):
    """Cheap logs: actions drawn uniformly (propensity 1/k), rewards from the labels."""
    rng = np.random.default_rng(seed)
    out = []
    for ctx, label in examples:
        a = ACTIONS[int(rng.integers(len(ACTIONS)))].id
        out.append(
            LoggedDecision(
                ctx,
                tuple(ACTIONS),
                a,
                1.0 / len(ACTIONS),
                1.0 if a == label else 0.0,
                label if correction else None,
            )  # fmt: skip
        )
    return out


CONTEXTS = [ctx for ctx, _ in make_examples(20, seed=99)]


@pytest.fixture(scope="module")
def logs():
    """Logged decisions from a uniform-ish policy (shared, never mutated by the tests)."""
    return uniform_logs(make_examples(300, seed=2), seed=4)


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_predicts_before_any_learning(combo):
    policy = build(combo)
    P = policy.probabilities(CONTEXTS, ACTIONS)
    assert P.shape == (len(CONTEXTS), len(ACTIONS))
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    d = policy.decide(CONTEXTS[0], ACTIONS)
    assert d.action_id in {a.id for a in ACTIONS}
    assert set(d.probabilities) == set(d.scores) == {a.id for a in ACTIONS}


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_seeded_determinism(combo, logs):
    a, b = build(combo, seed=7), build(combo, seed=7)
    a.learn(logs)
    b.learn(logs)
    seq_a = [a.decide(c, ACTIONS).action_id for c in CONTEXTS]
    seq_b = [b.decide(c, ACTIONS).action_id for c in CONTEXTS]
    assert seq_a == seq_b
    np.testing.assert_array_equal(
        a.probabilities(CONTEXTS, ACTIONS), b.probabilities(CONTEXTS, ACTIONS)
    )
    # An explicit seed overrides the policy's own RNG, and reproduces.
    assert a.decide(CONTEXTS[0], ACTIONS, seed=5) == b.decide(CONTEXTS[0], ACTIONS, seed=5)


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_save_load_round_trip(combo, logs):
    policy = build(combo)
    policy.learn(logs)
    policy.version = 3
    loaded = Policy.from_bytes(policy.to_bytes())
    assert loaded.version == 3
    assert loaded.get_params() == policy.get_params()
    np.testing.assert_allclose(
        loaded.probabilities(CONTEXTS, ACTIONS), policy.probabilities(CONTEXTS, ACTIONS),
        rtol=0, atol=1e-9,
    )  # fmt: skip
    # The RNG travels too: the next sampled decisions agree.
    assert [loaded.decide(c, ACTIONS).action_id for c in CONTEXTS] == [
        policy.decide(c, ACTIONS).action_id for c in CONTEXTS
    ]
    # And learning continues identically after a round trip.
    more = logs[:50]
    np.testing.assert_allclose(
        loaded.clone().learn(more).probabilities(CONTEXTS, ACTIONS),
        policy.clone().learn(more).probabilities(CONTEXTS, ACTIONS),
        rtol=0, atol=1e-6,
    )  # fmt: skip


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_bounded_memory(combo):
    policy = build(combo)
    # 5,000 examples drawn from a pool of 300 texts (embedding featurizers cache them).
    pool = make_examples(300, seed=5)
    data = [pool[i] for i in np.random.default_rng(5).integers(0, len(pool), 5000)]
    policy.learn(uniform_logs(data[:1000], seed=1, correction=True))
    size_1k = policy.learner.state_nbytes()
    policy.learn(uniform_logs(data[1000:], seed=2, correction=True))
    size_5k = policy.learner.state_nbytes()
    X = policy._encoder.contexts([c for c, _ in data[:200]])
    nnz = int(np.diff(X.indptr).max()) if hasattr(X, "indptr") else None
    bound = policy.learner.state_bound(len(ACTIONS), X.shape[1], row_nnz=nnz)
    assert size_1k <= bound and size_5k <= bound
    if isinstance(policy.learner, IWRegression):
        assert size_5k == size_1k
    # The bound is meaningful: far below storing every example.
    row_bytes = (nnz * 8) if nnz else X.shape[1] * 4
    assert bound < 5000 * 2 * row_bytes


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_inputs_not_mutated(combo, logs):
    policy = build(combo)
    contexts = copy.deepcopy(CONTEXTS)
    actions = list(ACTIONS)
    logs_before = copy.deepcopy(logs)
    policy.learn(logs)
    policy.decide(contexts[0], actions, exclude=[actions[0].id])
    policy.probabilities(contexts, actions)
    assert contexts == CONTEXTS
    assert actions == ACTIONS
    assert logs == logs_before
    X = policy._encoder.contexts(contexts[:5])
    X_before = X.copy()
    t = np.linspace(-1, 1, 5)
    t_before = t.copy()
    policy.learner.learn(X, [a.id for a in ACTIONS], t, np.ones(5))
    assert (abs(X - X_before)).max() == 0
    np.testing.assert_array_equal(t, t_before)


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_clone_independence(combo, logs):
    policy = build(combo)
    before = policy.probabilities(CONTEXTS, ACTIONS)
    candidate = policy.clone()
    candidate.learn(logs)
    np.testing.assert_array_equal(policy.probabilities(CONTEXTS, ACTIONS), before)
    assert not np.allclose(candidate.scores(CONTEXTS, ACTIONS), policy.scores(CONTEXTS, ACTIONS))
    # ...and the other way round: learning on the original leaves the clone alone.
    snapshot = candidate.probabilities(CONTEXTS, ACTIONS)
    policy.learn(logs[:100])
    np.testing.assert_array_equal(candidate.probabilities(CONTEXTS, ACTIONS), snapshot)


@pytest.mark.parametrize("combo", PROB_COMBOS, ids=PROB_IDS)
def test_probabilities_sum_to_one_and_respect_exclude(combo, logs):
    policy = build(combo).learn(logs)
    excluded = {ACTIONS[0].id, ACTIONS[2].id}
    for ctx in CONTEXTS:
        d = policy.decide(ctx, ACTIONS, exclude=excluded)
        assert d.action_id not in excluded
        assert set(d.probabilities) == {a.id for a in ACTIONS} - excluded
        assert sum(d.probabilities.values()) == pytest.approx(1.0)
        assert min(d.probabilities.values()) >= 0.0
    P = policy.probabilities(CONTEXTS, ACTIONS, exclude=excluded)
    assert np.all(P[:, [0, 2]] == 0.0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


@pytest.mark.parametrize("combo", PROB_COMBOS, ids=PROB_IDS)
def test_joint_scoring_equals_the_two_separate_calls(combo, logs):
    # Off-policy evaluation reads a candidate's probabilities and reward estimates in one pass;
    # they must be the numbers the two separate calls give, bonus or not (linucb_ucb).
    policy = build(combo).learn(logs)
    P, Q = policy.probabilities_and_rewards(CONTEXTS, ACTIONS)
    np.testing.assert_allclose(P, policy.probabilities(CONTEXTS, ACTIONS), rtol=1e-12)
    np.testing.assert_allclose(Q, policy.predict_rewards(CONTEXTS, ACTIONS), rtol=1e-12)
    X = policy._encoder.contexts(CONTEXTS)
    ids = [a.id for a in ACTIONS]
    mean, score = policy.learner.predict_and_score(X, ids)
    np.testing.assert_allclose(mean, policy.learner.predict(X, ids), rtol=1e-12)
    np.testing.assert_allclose(score, policy.learner.score(X, ids), rtol=1e-12)


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_cold_start_new_action(combo, logs):
    policy = build(combo).learn(logs)
    new = Action("freeze_my_card", description="freeze block card temporarily")
    actions = [*ACTIONS, new]
    ctx = {"text": "please freeze my card temporarily"}
    d = policy.decide(ctx, actions)
    assert new.id in d.probabilities
    # Untried action: scored by its zero-shot prior, which matches this text best.
    assert policy.greedy(ctx, actions) == new.id


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_learning_from_corrections_beats_zero_shot(combo):
    policy = build(combo)
    train = make_examples(600, seed=11)
    test = make_examples(300, seed=12)

    def acc(p):
        preds = p.greedy_many([c for c, _ in test], ACTIONS)
        return np.mean([y == pr for pr, (_, y) in zip(preds, test, strict=True)])

    zero = acc(policy)
    learned = policy.clone().learn(uniform_logs(train, seed=3, correction=True))
    assert acc(learned) >= max(min(zero + 0.1, 1.0), 0.8)
