"""KNNMemory: a base learner plus a nearest-neighbour vote of recent outcomes.

The generic checks (determinism, save/load, bounded memory, inputs not mutated) run in
test_conformance.py; these are the memory's own behaviours.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from agent_lightning.learning import (
    Action,
    HashingFeaturizer,
    IWRegression,
    KNNMemory,
    LinUCB,
    LoggedDecision,
    Policy,
    SpecError,
    SquareCB,
    Thompson,
    make_learner,
    make_policy,
)

ACTIONS = [
    Action("order_card", description="order a new card"),
    Action("card_pin", description="card pin number"),
]


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def policy(weight: float) -> Policy:
    # A base that learns next to nothing (huge ridge penalty): what changes is the memory's.
    return Policy(
        featurizer=HashingFeaturizer(n_features=2**12),
        learner=KNNMemory(LinUCB(l2=1e6), k=5, weight=weight),
        exploration=SquareCB(gamma=1000.0),
        warm_start="zero_shot",
        seed=0,
    )


def test_a_paraphrase_of_a_resolved_query_is_answered_as_it_was():
    text = {"text": "how do I order a new card with a pin"}
    paraphrase = {"text": "how can I order a new card with a pin"}
    resolved = LoggedDecision(text, tuple(ACTIONS), "card_pin", 0.5, 1.0)
    for weight, expected in ((0.0, "order_card"), (1.0, "card_pin")):
        p = policy(weight)
        assert p.greedy(paraphrase, ACTIONS) == "order_card"  # the prior's choice
        p.learn([resolved])
        assert p.greedy(paraphrase, ACTIONS) == expected
    # A query unlike the remembered one keeps the prior's answer.
    assert p.greedy({"text": "order card"}, ACTIONS) == "order_card"


def test_a_failure_pushes_the_failed_action_down_near_its_query():
    text = {"text": "how do I order a new card"}
    p = policy(1.0)
    before = p.predict_rewards([text], ACTIONS)[0]
    p.learn([LoggedDecision(text, tuple(ACTIONS), "order_card", 0.9, 0.0)])
    after = p.predict_rewards([text], ACTIONS)[0]
    assert after[0] < before[0] - 0.1
    assert after[1] == pytest.approx(before[1])


def test_memory_keeps_the_newest_capacity_rows():
    X = unit_rows(6)
    m = KNNMemory(LinUCB(l2=1e6), k=1, capacity=3)
    m.learn(X[:1], ["a"], [1.0])
    assert m.predict(X[:1], ["a"])[0, 0] > 0.3
    m.learn(X[1:5], ["b"] * 4, [1.0] * 4)
    meta, arrays = m.get_state()
    assert meta["rows"] == 3 and arrays["targets"].shape == (3,)
    # The first row was forgotten: "a" gets no vote at its own context any more.
    assert m.predict(X[:1], ["a"])[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_votes_follow_the_actions_offered_in_any_order():
    X = unit_rows(40, seed=1)
    ids = [("a", "b", "c")[i % 3] for i in range(40)]
    t = np.random.default_rng(2).uniform(-1, 1, 40)
    m = KNNMemory(IWRegression(table_bits=12), k=7)
    m.learn(X, ids, t)
    full = m.predict(X[:5], ["a", "b", "c"])
    np.testing.assert_allclose(m.predict(X[:5], ["c", "a"]), full[:, [2, 0]])
    # An action the memory has never seen gets only the base's prediction.
    new = m.predict(X[:5], ["d"])[:, 0]
    np.testing.assert_allclose(new, m.base.predict(X[:5], ["d"])[:, 0])


def test_clone_is_independent():
    X = unit_rows(10, seed=3)
    m = KNNMemory(LinUCB(l2=1.0), k=3)
    m.learn(X[:5], ["a"] * 5, [1.0] * 5)
    before = m.predict(X, ["a", "b"])
    twin = m.clone()
    twin.learn(X[5:], ["b"] * 5, [1.0] * 5)
    np.testing.assert_array_equal(m.predict(X, ["a", "b"]), before)
    assert not np.allclose(twin.predict(X, ["a", "b"]), before)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"k": 0}, "k must be >= 1"),
        ({"weight": -1}, "weight must be >= 0"),
        ({"shrinkage": 0}, "shrinkage must be > 0"),
        ({"capacity": 0}, "capacity must be >= 1"),
        ({"base": {"kind": "knn"}}, "must not itself be a knn learner"),
        ({"base": {"kind": "nope"}}, "unknown learner 'nope'"),
        ({"k": "ten"}, "bad parameter for 'knn'"),
    ],
)
def test_bad_parameters_are_refused(spec, message):
    with pytest.raises(SpecError, match=message):
        make_learner({"kind": "knn", **spec})


def test_a_spec_round_trips_through_its_config():
    m = make_learner({"kind": "knn", "base": {"kind": "iw_regression", "table_bits": 12}, "k": 3})
    assert isinstance(m.base, IWRegression) and m.base.table_bits == 12
    assert make_learner(m.to_config()).to_config() == m.to_config()


def test_features_of_another_width_are_refused():
    m = KNNMemory(LinUCB(l2=1.0))
    m.learn(unit_rows(3, dim=16), ["a"] * 3, [1.0] * 3)
    with pytest.raises(SpecError, match="16 features, got 8"):
        m.predict(unit_rows(2, dim=8), ["a"])
    with pytest.raises(SpecError, match="16 features, got 8"):
        m.learn(unit_rows(2, dim=8), ["a"] * 2, [1.0] * 2)


def test_an_inconsistent_stored_memory_is_refused():
    m = KNNMemory(LinUCB(l2=1.0))
    m.learn(unit_rows(3), ["a", "b", "a"], [1.0, 0.0, 1.0])
    meta, arrays = m.get_state()
    broken = dict(arrays, actions=np.array([0, 5, 1], dtype=np.int32))  # 5: no such action
    with pytest.raises(SpecError, match="inconsistent"):
        KNNMemory(LinUCB(l2=1.0)).set_state(meta, broken)


def test_width_is_the_base_learners_so_thompson_sampling_works():
    assert KNNMemory(IWRegression(table_bits=12)).width is None
    p = Policy(
        featurizer=HashingFeaturizer(n_features=2**12),
        learner=KNNMemory(LinUCB(l2=1.0), k=3),
        exploration=Thompson(scale=0.5, draws=64),
        warm_start="zero_shot",
        seed=0,
    )
    ctx = {"text": "order a card"}
    p.learn([LoggedDecision(ctx, tuple(ACTIONS), "order_card", 0.5, 1.0)])
    X = p._encoder.contexts([ctx])
    np.testing.assert_allclose(
        p.learner.width(X, ["order_card"]), p.learner.base.width(X, ["order_card"])
    )
    P = p.probabilities([ctx], ACTIONS)
    assert P.shape == (1, 2) and P.sum() == pytest.approx(1.0)


def test_sparse_memory_with_a_dense_block_gives_the_exact_similarities():
    # Hybrid-like rows: a block of columns every row has, and rare columns.
    rng = np.random.default_rng(4)
    n, d = 200, 500
    dense_part = rng.standard_normal((n, 20))
    rare = sparse.random(n, d - 20, density=0.01, random_state=5, format="csr")
    X = sparse.hstack([sparse.csr_matrix(dense_part), rare], format="csr")
    m = KNNMemory(LinUCB(l2=1.0), k=4)
    m.learn(X[:150], [("a", "b")[i % 2] for i in range(150)], rng.uniform(-1, 1, 150))
    queries = X[150:]
    expected = (queries @ m._rows.T).toarray()
    np.testing.assert_allclose(m._similarities(queries), expected, rtol=1e-5, atol=1e-5)
    # And the votes equal those of the same memory held densely.
    dense = KNNMemory(LinUCB(l2=1.0), k=4)
    dense.learn(X[:150].toarray(), [("a", "b")[i % 2] for i in range(150)], m._targets)
    np.testing.assert_allclose(
        m._votes(queries, ["a", "b"]), dense._votes(queries.toarray(), ["a", "b"]), atol=1e-5
    )
    # A decision scores one row at a time: its rare columns are read by their postings, which
    # must give the batch product's sums, also for a row with only dense columns or none.
    singles = [queries[i] for i in range(queries.shape[0])]
    singles += [X[[0]].multiply(np.r_[np.ones(20), np.zeros(d - 20)]).tocsr()]
    singles += [sparse.csr_matrix((1, d))]
    for q in singles:
        np.testing.assert_allclose(
            m._similarities(q), (q @ m._rows.T).toarray(), rtol=1e-5, atol=1e-5
        )


def test_inferred_rows_teach_the_base_but_stay_out_of_the_memory():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 8))
    ids = ["a", "b", "c", "a", "b", "c"]
    targets = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    observed = np.array([True, False, False, True, True, False])
    knn = KNNMemory(LinUCB(l2=0.5), k=3)
    knn.learn(X, ids, targets, observed=observed)
    # Only the observed rows are remembered, with their own targets.
    assert knn._rows.shape[0] == 3
    np.testing.assert_array_equal(knn._targets, [1.0, 1.0, 0.0])
    # The base learned from every row, the hard negatives included.
    alone = LinUCB(l2=0.5)
    alone.learn(X, ids, targets)
    abc = ["a", "b", "c"]
    np.testing.assert_allclose(knn.base.predict(X, abc), alone.predict(X, abc))
    # A batch of inferred rows only changes the base, not the memory.
    knn.learn(X[:2], ["b", "c"], [0.0, 0.0], observed=[False, False])
    assert knn._rows.shape[0] == 3
    with pytest.raises(SpecError, match="same length"):
        knn.learn(X, ids, targets, observed=[True])


def test_policy_learn_marks_hard_negatives_as_inferred():
    policy = make_policy(
        {
            "featurizer": {"kind": "hashing", "n_features": 1024},
            "learner": {"kind": "knn", "k": 3},
            "hard_negatives": 3,
        }
    )
    actions = tuple(Action(a) for a in ("card_arrival", "lost_card", "refund", "top_up", "pin"))
    logs = [
        LoggedDecision({"text": f"where is my card {i}"}, actions, "refund", 0.2, reward=0.0,
                       correct_action_id="card_arrival")
        for i in range(4)
    ]  # fmt: skip
    policy.learn(logs)
    # Each correction: the chosen action's 0 and the right action's 1 are remembered; its
    # three hard negatives are learned by the base but not remembered.
    assert policy.learner._rows.shape[0] == 8
    assert policy.learner.base._arms.keys() >= {"card_arrival", "refund"}
    assert sum(arm.n for arm in policy.learner.base._arms.values()) == 4 * 5


def _sparse_rows(n: int, dim: int = 64, seed: int = 0) -> sparse.csr_matrix:
    X = sparse.random(n, dim, density=0.2, format="csr", dtype=np.float32, random_state=seed)
    X.data = X.data / 3.0  # values float16 cannot hold exactly: sharing must round like learning
    return X


def _learned(base: LinUCB, X, n_actions: int = 3) -> KNNMemory:
    m = KNNMemory(base, k=3)
    ids = [f"a{i % n_actions}" for i in range(X.shape[0])]
    targets = np.linspace(-0.5, 0.5, X.shape[0])
    for lo in range(0, X.shape[0], 10):  # several learns, as a policy's tasks do
        m.learn(X[lo : lo + 10], ids[lo : lo + 10], targets[lo : lo + 10])
    return m


def _reloaded(m: KNNMemory) -> KNNMemory:
    twin = KNNMemory(LinUCB(), k=m.k)
    twin.set_state(*m.get_state())
    return twin


def _assert_same_memory(a: KNNMemory, b: KNNMemory) -> None:
    if sparse.issparse(a._rows):
        assert (a._rows != b._rows).nnz == 0
        np.testing.assert_array_equal(a._rows.indptr, b._rows.indptr)
    else:
        np.testing.assert_array_equal(a._rows, b._rows)
    np.testing.assert_array_equal(a._actions, b._actions)
    np.testing.assert_array_equal(a._targets, b._targets)


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_a_saved_memory_refers_to_the_rows_its_base_already_stores(layout):
    X = _sparse_rows(40) if layout == "sparse" else unit_rows(40) / 3.0
    m = _learned(LinUCB(budget=512), X)
    meta, arrays = m.get_state()
    # Every remembered row is in LinUCB's row table: none is stored twice.
    assert meta["rows_source"] is True
    assert (arrays["rows.source"] >= 0).all()
    stored = arrays["rows.data"] if layout == "sparse" else arrays["rows"]
    assert stored.shape[0] == 0
    twin = _reloaded(m)
    _assert_same_memory(twin, m)
    probe = X[:7]
    np.testing.assert_array_equal(twin.predict(probe, ["a0", "a1", "a2"]),
                                  m.predict(probe, ["a0", "a1", "a2"]))  # fmt: skip


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_rows_the_base_has_folded_away_are_stored_with_the_memory(layout):
    # A window of 8 per action: LinUCB folds older rows into its prior mean and no longer
    # stores them, while the memory still remembers them.
    X = _sparse_rows(60, seed=3) if layout == "sparse" else unit_rows(60, seed=3) / 3.0
    m = _learned(LinUCB(budget=8), X)
    _, arrays = m.get_state()
    source = arrays["rows.source"]
    assert 0 < (source < 0).sum() < source.size
    _assert_same_memory(_reloaded(m), m)


def test_a_memory_saved_before_rows_were_shared_still_loads():
    X = _sparse_rows(30, seed=4)
    m = _learned(LinUCB(), X)
    meta, arrays = m.get_state()
    # Policy format 2: the memory stored all its rows itself.
    del meta["rows_source"]
    arrays = {k: v for k, v in arrays.items() if k != "rows.source"}
    arrays.update({"rows.data": m._rows.data.astype(np.float16),
                   "rows.indices": m._rows.indices, "rows.indptr": m._rows.indptr})  # fmt: skip
    twin = KNNMemory(LinUCB(), k=m.k)
    twin.set_state(meta, arrays)
    _assert_same_memory(twin, m)


@pytest.mark.parametrize("bad", [10**6, -2])
def test_a_shared_row_reference_outside_the_base_table_is_refused(bad):
    m = _learned(LinUCB(), _sparse_rows(20, seed=5))
    meta, arrays = m.get_state()
    source = arrays["rows.source"].copy()
    source[3] = bad
    with pytest.raises(SpecError, match="inconsistent"):
        KNNMemory(LinUCB()).set_state(meta, dict(arrays, **{"rows.source": source}))
