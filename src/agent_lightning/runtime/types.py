"""The runtime's seams: who picks the intent (`Decider`), who keeps the records (`Recorder`).

`AgentRuntime` only talks to these protocols, so the same runtime runs on a zero-shot policy from
the YAML, on a signed bundle pulled from the server, in a test with an in-memory recorder, or on an
edge box with a durable outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from agent_lightning import learning
from agent_lightning.ingestion.schemas import DecisionIn, EventIn, RewardIn


@dataclass(frozen=True)
class IntentChoice:
    """What a `Decider` chose for one message, with what the learner needs to learn from it."""

    intent: str
    confidence: float  # probability of `intent` under the served version
    probabilities: dict[str, float]
    propensity: float
    policy_name: str | None
    policy_version: int | None  # None: zero-shot from the YAML (no learned version yet)
    arm: str | None = None  # "baseline" | "candidate" while a rollout runs
    rollout_id: str | None = None


@runtime_checkable
class Decider(Protocol):
    def choose(
        self,
        text: str,
        intents: Sequence[learning.Action],
        *,
        user_id: str | None,
        session_id: str | None,
        attributes: Mapping[str, Any],
    ) -> IntentChoice: ...


@runtime_checkable
class Recorder(Protocol):
    def record_decision(self, decision: DecisionIn) -> None: ...

    def record_reward(self, reward: RewardIn) -> None: ...

    def record_event(self, event: EventIn) -> None: ...


@dataclass
class ActionResult:
    """The outcome of one action; `data` is what `{{last.*}}` sees in the next action."""

    type: str
    ok: bool
    data: Any = None
    error: str | None = None
    latency_ms: float = 0.0
    blocked: bool = False  # refused by the allowed-actions guardrail; never ran
    dry_run: bool = False  # not executed (offline evaluation without connectors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AgentResponse:
    """The structured answer to one message (what `agent-lightning run` returns as JSON)."""

    decision_id: str
    text: str
    intent: str
    confidence: float
    escalated: bool = False
    clarified: bool = False
    error: str | None = None
    escalation: dict[str, Any] | None = None  # {"queue", "reason"} when escalated
    actions: list[ActionResult] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    policy_name: str | None = None
    policy_version: int | None = None
    arm: str | None = None
    rollout_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    latency_ms: float = 0.0
    # False when the decision could not be recorded (e.g. the outbox was full): the answer
    # stands, but the server will never know `decision_id`, so feedback on it is refused.
    recorded: bool = True

    @property
    def resolved(self) -> bool:
        """Handled by the agent itself: no escalation, no clarification, no error."""
        return not (self.escalated or self.clarified or self.error)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resolved"] = self.resolved
        return out
