"""`LocalDecider`: picks the intent in-process, from the YAML's rules and a `learning.Policy`.

Without a learned bundle it serves a zero-shot policy built from the YAML
(`make_policy(spec.learner)` over the intents, each described by its description and sample
utterances), so a fresh agent
answers sensibly on day one and every decision it logs is learnable.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent_lightning import learning
from agent_lightning.runtime.spec import PolicySpec
from agent_lightning.runtime.types import IntentChoice

DEFAULT_TEMPERATURE = 0.05


def calibrated_confidence(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of the scores at a fixed temperature: the confidence the threshold is compared to.

    Why not the exploration probabilities: SquareCB (the default) puts nearly all mass on the
    top-scoring intent whatever the margin, so its probability says how greedy the policy is, not
    how sure it is; a threshold on it would almost never fire. Scores (zero-shot cosine similarity
    plus the learned reward residual) live on a stable [0, 1]-ish scale, so a softmax at a fixed
    temperature turns the *margin* between the best intent and the others into a number: with
    T = 0.05 a lead of 0.05 gives the top intent e (2.7x) the weight of the runner-up, a lead of
    0.15 gives 20x. A message that resembles no intent (or two equally) gets a low confidence, and
    `confidence_threshold` then means "ask or hand over when the best intent is not clearly ahead".
    """
    z = np.asarray(scores, dtype=np.float64) / float(temperature)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


class LocalDecider:
    """A `Decider` over one policy: YAML rules first, then the (zero-shot or learned) scorer.

    `explore=True` samples from the policy's exploration distribution (what a live agent does, so
    logged propensities support off-policy learning); `explore=False` takes the best-scoring intent
    (evaluation). Thread-safe: scoring and the random generator are guarded by a lock.
    """

    def __init__(
        self,
        spec: PolicySpec,
        policy: learning.Policy | learning.UniformPolicy | None = None,
        *,
        policy_name: str | None = None,
        policy_version: int | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        explore: bool = True,
        seed: int = 0,
    ) -> None:
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        self.spec = spec
        self.policy = policy if policy is not None else learning.make_policy(spec.learner)
        self.policy_name = policy_name or spec.name
        if policy_version is None and policy is not None and policy.version > 0:
            policy_version = policy.version
        self.policy_version = policy_version  # None: zero-shot from the YAML
        self.temperature = float(temperature)
        self.explore = explore
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @classmethod
    def from_bundle_bytes(
        cls, spec: PolicySpec, data: bytes, *, policy_version: int | None = None, **kwargs: Any
    ) -> LocalDecider:
        """A decider serving a learned policy (`Policy.to_bytes()` as shipped in a bundle)."""
        policy = learning.Policy.from_bytes(data)
        return cls(spec, policy, policy_version=policy_version, **kwargs)

    def choose(
        self,
        text: str,
        intents: Sequence[learning.Action],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> IntentChoice:
        ids = [a.id for a in intents]
        if not ids:
            raise ValueError("no intents to choose from")
        rule = self.spec.match_rule(text)
        if rule is not None and rule in ids:
            return IntentChoice(
                intent=rule,
                confidence=1.0,
                probabilities={i: float(i == rule) for i in ids},
                propensity=1.0,
                policy_name=self.policy_name,
                policy_version=None,
            )
        context = {"text": text}
        with self._lock:
            if isinstance(self.policy, learning.Policy):
                scores = self.policy.scores([context], intents)[0]
                served = self.policy.exploration.probabilities(scores[None, :])[0]
            else:  # UniformPolicy: nothing learned, nothing to rank by
                scores = np.zeros(len(ids))
                served = np.full(len(ids), 1.0 / len(ids))
            if self.explore:
                j = int(min(np.searchsorted(np.cumsum(served), self._rng.random()), len(ids) - 1))
            else:
                j = int(np.argmax(scores))
                served = np.eye(len(ids))[j]
        confidence = calibrated_confidence(scores, self.temperature)
        probabilities = {i: float(p) for i, p in zip(ids, served, strict=True)}
        return IntentChoice(
            intent=ids[j],
            confidence=float(confidence[j]),
            probabilities=probabilities,
            propensity=max(float(served[j]), 1e-9),
            policy_name=self.policy_name,
            policy_version=self.policy_version,
        )
