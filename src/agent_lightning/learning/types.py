"""Plain data types shared by the learning library: actions, contexts, decisions, logs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_lightning.learning.errors import SpecError

# A context is a plain dict: {"text": str, "features": {name: float}}; both keys optional.
Context = Mapping[str, Any]


@dataclass(frozen=True)
class Action:
    """One choice at a decision point.

    `description` and `features` let a policy score an action it has never tried: the id itself
    is featurized too (`card_arrival` reads as "card arrival").
    """

    id: str
    description: str = ""
    features: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise SpecError("Action.id must be a non-empty string")
        if self.features is not None:
            for name, value in self.features.items():
                if not isinstance(name, str) or not math.isfinite(float(value)):
                    raise SpecError(f"Action {self.id!r}: feature {name!r} must map to a number")

        feats = tuple(sorted((self.features or {}).items()))
        object.__setattr__(self, "_key", (self.id, self.description, feats))

    def key(self) -> tuple:
        """Hashable identity of everything that is featurized (used for caching)."""
        return self._key  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Decision:
    """What `Policy.decide` returns: the sampled action and the full distribution it came from."""

    action_id: str
    probabilities: dict[str, float]
    scores: dict[str, float]

    @property
    def propensity(self) -> float:
        """Probability with which `action_id` was chosen (log it for off-policy learning)."""
        return self.probabilities[self.action_id]


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as it was logged, with the outcome that came back.

    `reward` is the bandit reward of `action_id` (None when only a correction is known);
    `correct_action_id` names the action that would have been right (a full label).
    """

    context: Context
    actions: tuple[Action, ...]
    action_id: str
    propensity: float
    reward: float | None = None
    correct_action_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))
        ids = {a.id for a in self.actions}
        if self.action_id not in ids:
            raise SpecError(f"LoggedDecision.action_id {self.action_id!r} is not among its actions")
        if not 0.0 < float(self.propensity) <= 1.0:
            raise SpecError(f"LoggedDecision.propensity must be in (0, 1], got {self.propensity!r}")
        if self.correct_action_id is not None and self.correct_action_id not in ids:
            raise SpecError(
                f"LoggedDecision.correct_action_id {self.correct_action_id!r} "
                "is not among its actions"
            )

    @property
    def observed_reward(self) -> float | None:
        """Reward of the logged action, inferring it from a correction when only that is known."""
        if self.reward is not None:
            return float(self.reward)
        if self.correct_action_id is not None:
            return 1.0 if self.correct_action_id == self.action_id else 0.0
        return None


def context_text(context: Context) -> str:
    """The free text of a context ('' when absent)."""
    text = context.get("text", "") if isinstance(context, Mapping) else ""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise SpecError("context['text'] must be a string")
    return text


def context_features(context: Context) -> Mapping[str, float]:
    """The structured features of a context ({} when absent)."""
    feats = context.get("features") if isinstance(context, Mapping) else None
    if feats is None:
        return {}
    if not isinstance(feats, Mapping):
        raise SpecError("context['features'] must be a mapping of name -> number")
    return feats
