"""What an incoming record may look like: Pydantic v2 models, strict at the boundary.

Unknown fields are refused (a typo must not silently drop data), NaN and infinity are refused,
strings have upper bounds, and ids have a safe alphabet so they can travel in URLs and logs.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and no real message needs one: refuse it everywhere.
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\x00) characters")
    return value


NoNul = AfterValidator(_no_nul)
RecordId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200), NoNul]
ShortText = Annotated[str, Field(max_length=200), NoNul]
# A policy's name as the server and runtimes give it: metrics label decisions by it, so free
# text here (a session id, say) would be an unbounded set of series.
PolicyName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")]
LongText = Annotated[str, Field(max_length=32_000), NoNul]

MAX_ATTRIBUTES_BYTES = 16_384
MAX_ACTIONS = 1_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)


def _check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError("attributes must be JSON (no NaN or infinity)") from exc
    if "\\u0000" in json.dumps(value):
        raise ValueError("attributes must not contain NUL (\\x00) characters")
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes are {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}")
    return value


class EventIn(_Strict):
    """The product's telemetry payload, plus an optional client id for idempotent retries."""

    id: RecordId | None = None
    user_id: ShortText | None = None
    session_id: ShortText | None = None
    text: LongText | None = None
    intent_prediction: ShortText | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    feedback_score: float | None = None
    policy_name: PolicyName | None = None
    policy_version: int | None = Field(default=None, ge=1)
    timestamp: datetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _attrs = field_validator("attributes")(_check_attributes)


class Context(_Strict):
    """What the agent knew when it decided: text (redacted before storage) and/or features."""

    text: LongText | None = None
    features: dict[Annotated[str, Field(max_length=200)], float] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _few_features(cls, value: dict[str, float]) -> dict[str, float]:
        if len(value) > 4_096:
            raise ValueError("at most 4096 features")
        return value


class ActionIn(_Strict):
    id: Name
    description: Annotated[str, Field(max_length=2_000)] = ""
    features: dict[Annotated[str, Field(max_length=200)], float] = Field(default_factory=dict)


def _unique_actions(actions: list[ActionIn]) -> list[ActionIn]:
    seen: set[str] = set()
    for action in actions:
        if action.id in seen:
            raise ValueError(f"action id {action.id!r} appears twice")
        seen.add(action.id)
    return actions


class RankRequest(_Strict):
    """A decide call: context and candidate actions in; the choice and its probability out."""

    id: RecordId | None = None
    decision_point: Name = "default"
    context: Context = Field(default_factory=Context)
    actions: list[ActionIn] = Field(min_length=1, max_length=MAX_ACTIONS)
    exclude: list[Name] = Field(default_factory=list)
    session_id: ShortText | None = None
    user_id: ShortText | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _attrs = field_validator("attributes")(_check_attributes)
    _actions = field_validator("actions")(_unique_actions)

    @model_validator(mode="after")
    def _something_left(self) -> RankRequest:
        if not {a.id for a in self.actions} - set(self.exclude):
            raise ValueError("every candidate action is excluded; nothing left to choose")
        return self


class DecisionIn(_Strict):
    """A decision made elsewhere (by a runtime's own policy) and logged for learning."""

    id: RecordId | None = None
    decision_point: Name = "default"
    context: Context = Field(default_factory=Context)
    actions: list[ActionIn] = Field(min_length=1, max_length=MAX_ACTIONS)
    action_id: Name
    propensity: float = Field(gt=0.0, le=1.0)
    probabilities: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    policy_name: PolicyName | None = None
    policy_version: int | None = Field(default=None, ge=1)
    session_id: ShortText | None = None
    user_id: ShortText | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _attrs = field_validator("attributes")(_check_attributes)
    _actions = field_validator("actions")(_unique_actions)

    @model_validator(mode="after")
    def _chosen_is_candidate(self) -> DecisionIn:
        if self.action_id not in {a.id for a in self.actions}:
            raise ValueError(f"action_id {self.action_id!r} is not one of the candidate actions")
        return self


class RewardSource(StrEnum):
    USER = "user"
    SYSTEM = "system"
    REWARD_FUNCTION = "reward_function"
    HUMAN_CORRECTION = "human_correction"


class RewardIn(_Strict):
    """Feedback for one decision, or for a whole session (a multi-step agent run)."""

    id: RecordId | None = None
    decision_id: RecordId | None = None
    session_id: ShortText | None = None
    user_id: ShortText | None = None
    value: float
    source: RewardSource = RewardSource.USER
    correct_action_id: Name | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _attrs = field_validator("attributes")(_check_attributes)

    @model_validator(mode="after")
    def _has_target(self) -> RewardIn:
        if not self.decision_id and not self.session_id:
            raise ValueError("a reward needs a decision_id or a session_id")
        return self
