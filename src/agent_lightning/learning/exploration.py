"""Exploration: turn a row of action scores into a probability for every action.

Each strategy is a pure function of the scores (no hidden state), so a logged probability can
always be recomputed. Sampling is done by the policy with its own seeded RNG.

- `Greedy`: all mass on the best action (ties split). No exploration: its logs cannot be
  evaluated off-policy, so use it for evaluation, not for serving.
- `EpsilonGreedy(epsilon)`: `1 - epsilon` on the best action, `epsilon` spread uniformly.
- `SquareCB(gamma)`: inverse-gap weighting (Foster & Rakhlin 2020): action `a` gets
  `1 / (k + gamma * (best - score_a))`, the best gets the rest. Near-ties are explored, clearly
  worse actions almost never.
- `Softmax(temperature)`: Boltzmann exploration.
- `Thompson(scale, draws)`: linear Thompson sampling. Each action's score is drawn from the
  learner's posterior (mean plus `scale` x posterior width x a standard normal draw) and the best
  draw wins; the probability of each action is the share of `draws` draws it wins. The draws come
  from an RNG seeded by the scores and widths themselves (rounded to 1e-6, so the last bits that
  differ between a batch and a single call, or before and after a save, do not change the seed):
  the same scores give the same probabilities. They are estimates from `draws` samples (256:
  about +-0.03), so off-policy evaluation of a Thompson policy is as noisy as that; prefer
  SquareCB, whose probabilities are exact, where the gate matters. Needs a learner with a
  posterior width (`LinUCB`); with any other, the widths are zero and it is greedy.

`min_probability` (all strategies but Greedy) floors every probability, so the logs support
off-policy evaluation of any candidate.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from agent_lightning.learning.errors import SpecError


class Exploration(ABC):
    """Scores (n, k) -> probabilities (n, k), rows summing to 1."""

    name: ClassVar[str]
    # Whether `probabilities` uses the learner's posterior widths (the policy computes them
    # only when asked: they cost a triangular solve per action).
    needs_widths: ClassVar[bool] = False

    def probabilities(self, scores: np.ndarray, widths: np.ndarray | None = None) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] == 0:
            raise SpecError("probabilities() needs scores of shape (n, k) with k >= 1")
        if not np.all(np.isfinite(s)):
            raise SpecError("probabilities() got non-finite scores")
        if self.needs_widths:
            w = np.zeros_like(s) if widths is None else np.asarray(widths, dtype=np.float64)
            if w.shape != s.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise SpecError("probabilities() needs finite widths >= 0 shaped like the scores")
            p = self._probabilities_with_widths(s, w)
        else:
            p = self._probabilities(s)
        return p / p.sum(axis=1, keepdims=True)

    def _probabilities_with_widths(self, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self._probabilities(s)

    @abstractmethod
    def _probabilities(self, s: np.ndarray) -> np.ndarray: ...

    def get_params(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.name, **self.get_params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _argmax_mass(s: np.ndarray) -> np.ndarray:
    best = s.max(axis=1, keepdims=True)
    top = np.isclose(s, best, rtol=0.0, atol=1e-12)
    return top / top.sum(axis=1, keepdims=True)


def _floor(p: np.ndarray, min_probability: float) -> np.ndarray:
    if min_probability <= 0:
        return p
    k = p.shape[1]
    floor = min(min_probability, 1.0 / k)
    # Mix with uniform so every action gets at least `floor` and rows still sum to one.
    return (1.0 - floor * k) * p + floor


class Greedy(Exploration):
    name = "greedy"

    def _probabilities(self, s: np.ndarray) -> np.ndarray:
        return _argmax_mass(s)


class EpsilonGreedy(Exploration):
    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.05, min_probability: float = 0.0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise SpecError("epsilon_greedy.epsilon must be in [0, 1]")
        if not 0.0 <= min_probability < 1.0:
            raise SpecError("epsilon_greedy.min_probability must be in [0, 1)")
        self.epsilon = float(epsilon)
        self.min_probability = float(min_probability)

    def get_params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "min_probability": self.min_probability}

    def _probabilities(self, s: np.ndarray) -> np.ndarray:
        k = s.shape[1]
        p = (1.0 - self.epsilon) * _argmax_mass(s) + self.epsilon / k
        return _floor(p, self.min_probability)


class SquareCB(Exploration):
    name = "squarecb"

    def __init__(self, gamma: float = 1000.0, min_probability: float = 0.0) -> None:
        if not gamma > 0:
            raise SpecError("squarecb.gamma must be > 0")
        if not 0.0 <= min_probability < 1.0:
            raise SpecError("squarecb.min_probability must be in [0, 1)")
        self.gamma = float(gamma)
        self.min_probability = float(min_probability)

    def get_params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "min_probability": self.min_probability}

    def _probabilities(self, s: np.ndarray) -> np.ndarray:
        n, k = s.shape
        best = s.argmax(axis=1)
        gap = s[np.arange(n), best][:, None] - s
        p = 1.0 / (k + self.gamma * gap)
        p[np.arange(n), best] = 0.0
        p[np.arange(n), best] = 1.0 - p.sum(axis=1)
        return _floor(p, self.min_probability)


class Softmax(Exploration):
    name = "softmax"

    def __init__(self, temperature: float = 0.05, min_probability: float = 0.0) -> None:
        if not temperature > 0:
            raise SpecError("softmax.temperature must be > 0")
        if not 0.0 <= min_probability < 1.0:
            raise SpecError("softmax.min_probability must be in [0, 1)")
        self.temperature = float(temperature)
        self.min_probability = float(min_probability)

    def get_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "min_probability": self.min_probability}

    def _probabilities(self, s: np.ndarray) -> np.ndarray:
        z = (s - s.max(axis=1, keepdims=True)) / self.temperature
        e = np.exp(z)
        return _floor(e / e.sum(axis=1, keepdims=True), self.min_probability)


class Thompson(Exploration):
    name = "thompson"
    needs_widths = True

    def __init__(self, scale: float = 0.05, draws: int = 256, min_probability: float = 0.0) -> None:
        # A small scale by default: an untried action's width is about 1.4 in reward units,
        # so scale 1 would make every decision close to uniform over 77 intents.
        if not scale >= 0:
            raise SpecError("thompson.scale must be >= 0")
        if not 1 <= int(draws) <= 100_000:
            raise SpecError("thompson.draws must be in [1, 100000]")
        if not 0.0 <= min_probability < 1.0:
            raise SpecError("thompson.min_probability must be in [0, 1)")
        self.scale = float(scale)
        self.draws = int(draws)
        self.min_probability = float(min_probability)

    def get_params(self) -> dict[str, Any]:
        return {"scale": self.scale, "draws": self.draws, "min_probability": self.min_probability}

    def _probabilities(self, s: np.ndarray) -> np.ndarray:
        return self._probabilities_with_widths(s, np.zeros_like(s))

    def _probabilities_with_widths(self, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        n, k = s.shape
        p = np.zeros((n, k))
        for i in range(n):
            # Seeded by the row itself: the same scores and widths always give the same answer
            # (rounded first: batch and single scoring may differ in the last bits).
            key = np.round(s[i], 6).tobytes() + np.round(w[i], 6).tobytes()
            seed = zlib.crc32(key)
            z = np.random.default_rng(seed).standard_normal((self.draws, k))
            winners = (s[i] + self.scale * w[i] * z).argmax(axis=1)
            p[i] = np.bincount(winners, minlength=k) / self.draws
        return _floor(p, self.min_probability)


EXPLORATIONS: dict[str, type[Exploration]] = {
    cls.name: cls for cls in (Greedy, EpsilonGreedy, SquareCB, Softmax, Thompson)
}


def make_exploration(spec: str | Mapping[str, Any] | Exploration) -> Exploration:
    """Build an exploration strategy from a name, a config dict, or pass one through."""
    if isinstance(spec, Exploration):
        return spec
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        raise SpecError("exploration: expected a name or a mapping with 'kind'")
    params = dict(spec)
    kind = params.pop("kind", None)
    if kind not in EXPLORATIONS:
        raise SpecError(
            f"exploration.kind: unknown exploration {kind!r}; known: {sorted(EXPLORATIONS)}"
        )
    try:
        return EXPLORATIONS[kind](**params)
    except TypeError as exc:
        raise SpecError(f"exploration: bad parameter for {kind!r}: {exc}") from exc
    except SpecError as exc:
        raise SpecError(f"exploration: {exc}") from exc
