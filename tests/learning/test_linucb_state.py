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
