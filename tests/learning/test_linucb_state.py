"""LinUCB's saved state: a loaded version serves from stored coefficients and factors lazily."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import ACTIONS, logged_from, make_examples

from agent_lightning.learning import PolicyFormatError, _serialize, make_policy
from agent_lightning.learning.policy import Policy

CONTEXTS = [ctx for ctx, _ in make_examples(30, seed=5)]


@pytest.fixture(scope="module", params=["hashing", "hybrid"])
def trained(request) -> Policy:
    policy = make_policy({"featurizer": request.param, "learner": {"kind": "linucb", "budget": 64}})
    # 400 corrections over 5 actions: every arm passes its budget, so folded means are saved too.
    policy.learn(logged_from(policy, make_examples(400, seed=1), seed=2, correction=True))
    return policy


def _scores(policy: Policy) -> np.ndarray:
    return policy.predict_rewards(CONTEXTS, ACTIONS)


def test_a_loaded_version_serves_without_factorising(trained):
    loaded = Policy.from_bytes(trained.to_bytes())
    arms = loaded.learner._arms
    assert arms and all(arm.chol is None for arm in arms.values() if arm.n)
    np.testing.assert_array_equal(_scores(loaded), _scores(trained))
    # Learning on the loaded copy factors on demand and agrees with learning on the original.
    more = logged_from(trained, make_examples(60, seed=9), seed=3, correction=True)
    np.testing.assert_allclose(
        _scores(loaded.clone().learn(more)), _scores(trained.clone().learn(more)), atol=1e-5
    )


def _without_coefficients(data: bytes) -> bytes:
    meta, arrays = _serialize.load(data)
    return _serialize.dump(meta, {k: v for k, v in arrays.items() if ".coef." not in k})


def test_an_artifact_without_stored_coefficients_still_loads(trained):
    # Versions saved before coefficients were stored: solved again on load, same scores.
    older = Policy.from_bytes(_without_coefficients(trained.to_bytes()))
    np.testing.assert_allclose(_scores(older), _scores(trained), atol=1e-6)


def test_stored_coefficients_that_do_not_fit_are_refused(trained):
    meta, arrays = _serialize.load(trained.to_bytes())
    key = next(k for k in arrays if k.endswith(".coef.indices") and arrays[k].size)
    arrays[key] = arrays[key].copy()
    arrays[key][-1] = 10**9  # a column far past the feature dimension
    with pytest.raises(PolicyFormatError, match="coefficients"):
        Policy.from_bytes(_serialize.dump(meta, arrays))


def _held_and_stored(policy: Policy) -> tuple[int, int]:
    """(rows the arms hold, distinct rows the saved version stores)."""
    _, arrays = _serialize.load(policy.to_bytes())
    held = sum(arm.n for arm in policy.learner._arms.values())
    return held, arrays["learner/pool.X.indptr"].shape[0] - 1


def test_a_row_taught_to_several_actions_is_stored_once(trained):
    # A correction teaches its row to the right action and to the wrong ones it implies (the
    # chosen one and three hard negatives): a saved version keeps one copy of each row.
    held, stored = _held_and_stored(trained)
    assert stored < 0.75 * held  # 74 of 134 rows on hashing (five actions, windows of 64)
    # Bandit rewards teach each row to one action only: nothing to share, nothing lost.
    bandit = make_policy({"featurizer": "hashing", "learner": {"kind": "linucb", "budget": 64}})
    bandit.learn(logged_from(bandit, make_examples(200, seed=1), seed=2))
    held, stored = _held_and_stored(bandit)
    assert stored == held == 200


def _as_format_1(data: bytes) -> bytes:
    """The same version in the layout written before rows were pooled (one matrix per arm)."""
    from scipy import sparse

    meta, arrays = _serialize.load(data)
    state = meta["learner_state"]
    assert state.pop("row_pool") is True
    pool = sparse.csr_matrix(
        (arrays["learner/pool.X.data"], arrays["learner/pool.X.indices"],
         arrays["learner/pool.X.indptr"]),
        shape=(arrays["learner/pool.X.indptr"].shape[0] - 1, state["dim"]),
    )  # fmt: skip
    old = {k: v for k, v in arrays.items() if ".pool." not in k and "/pool." not in k}
    for i, arm in enumerate(state["arms"]):
        refs = old.pop(f"learner/arm{i}.X.rows", None)
        if arm["n"]:
            X = pool[refs]
            old[f"learner/arm{i}.X.data"] = X.data
            old[f"learner/arm{i}.X.indices"] = X.indices
            old[f"learner/arm{i}.X.indptr"] = X.indptr
    return _serialize.dump(meta, old)


def test_a_version_saved_before_rows_were_pooled_still_loads(trained):
    older = Policy.from_bytes(_as_format_1(trained.to_bytes()))
    np.testing.assert_array_equal(_scores(older), _scores(trained))
    more = logged_from(trained, make_examples(60, seed=9), seed=3, correction=True)
    np.testing.assert_allclose(
        _scores(older.clone().learn(more)), _scores(trained.clone().learn(more)), atol=1e-5
    )


def test_row_references_outside_the_stored_rows_are_refused(trained):
    meta, arrays = _serialize.load(trained.to_bytes())
    key = next(k for k in arrays if k.endswith(".X.rows") and arrays[k].size)
    arrays[key] = arrays[key].copy()
    arrays[key][0] = 10**6
    with pytest.raises(PolicyFormatError, match="stored row table"):
        Policy.from_bytes(_serialize.dump(meta, arrays))
