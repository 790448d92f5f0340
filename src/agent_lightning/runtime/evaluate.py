"""`agent-lightning eval`: replay sample transcripts through the runtime and score what it did.

A transcript is JSON lines, one customer turn each:

    {"text": "my printer is broken", "user_id": "u1", "session_id": "s1",
     "expected_intent": "CreateTicket", "expected_outcome": "resolved"}

`expected_outcome` is what a good agent does with the turn: `resolved` (answers it itself),
`escalated` (hands over to a person) or `clarified` (asks a question back). Each turn runs through
a real `AgentRuntime` (greedy `LocalDecider`, no exploration) with the project's connectors, or,
offline, with none: then connector actions are counted as dry runs and the figures measure the
policy and its guardrails only.

Figures:
- intent accuracy: chosen intent == expected intent (rules included);
- resolution rate: turns the agent resolved itself (no escalation, clarification or error) on the
  right intent; a confident answer to the wrong intent is not a resolution;
- escalation rate, clarification rate, error rate: shares of turns;
- outcome accuracy: the agent's outcome == the expected outcome;
- satisfaction (simulated CSAT in [0, 1]): 1 when the agent did what the transcript expects
  (for `resolved`, on the right intent); 0.5 when it escalated or asked back where it could have
  resolved (the customer is still helped, only later); 0 when it acted on the wrong intent, or
  answered where it should have handed over or asked.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent_lightning.runtime.agent import AgentRuntime
from agent_lightning.runtime.local import LocalDecider
from agent_lightning.runtime.recorder import InMemoryRecorder
from agent_lightning.runtime.spec import PolicySpec
from agent_lightning.runtime.types import AgentResponse

OUTCOMES = ("resolved", "escalated", "clarified")


class TranscriptError(ValueError):
    """A transcript file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Turn:
    text: str
    expected_intent: str | None
    expected_outcome: str = "resolved"
    user_id: str | None = None
    session_id: str | None = None


def load_transcripts(path: str | Path, spec: PolicySpec | None = None) -> list[Turn]:
    """Read a JSONL transcript file; with `spec`, expected intents must be the policy's."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TranscriptError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"{path}: cannot read: {exc}") from None
    turns: list[Turn] = []
    known = set(spec.intent_names) if spec is not None else None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{path.name}:{n}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise TranscriptError(f"{path.name}:{n}: each line needs a 'text' string")
        outcome = row.get("expected_outcome", "resolved")
        if outcome not in OUTCOMES:
            raise TranscriptError(
                f"{path.name}:{n}: expected_outcome must be one of {', '.join(OUTCOMES)}, "
                f"got {outcome!r}"
            )
        intent = row.get("expected_intent")
        if known is not None and intent is not None and intent not in known:
            raise TranscriptError(
                f"{path.name}:{n}: expected_intent {intent!r} is not an intent of the policy "
                f"({', '.join(sorted(known))})"
            )
        turns.append(
            Turn(
                text=row["text"],
                expected_intent=intent,
                expected_outcome=outcome,
                user_id=_opt_str(row.get("user_id")),
                session_id=_opt_str(row.get("session_id")),
            )
        )
    if not turns:
        raise TranscriptError(f"{path.name}: no turns")
    return turns


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def outcome_of(response: AgentResponse) -> str:
    if response.escalated or response.error:
        return "escalated"
    if response.clarified:
        return "clarified"
    return "resolved"


def satisfaction(turn: Turn, response: AgentResponse) -> float:
    """Simulated CSAT of one turn (see the module docstring)."""
    outcome = outcome_of(response)
    right_intent = turn.expected_intent is None or response.intent == turn.expected_intent
    if outcome == turn.expected_outcome:
        return 1.0 if (outcome != "resolved" or right_intent) else 0.0
    if turn.expected_outcome == "resolved":
        return 0.5
    return 0.0


@dataclass
class TurnResult:
    text: str
    expected_intent: str | None
    expected_outcome: str
    intent: str
    confidence: float
    outcome: str
    satisfaction: float
    reply: str
    error: str | None


@dataclass
class EvalReport:
    policy: str
    mode: str  # "connectors" | "offline"
    turns: int
    intent_accuracy: float
    resolution_rate: float
    escalation_rate: float
    clarification_rate: float
    error_rate: float
    outcome_accuracy: float
    satisfaction: float
    chance_accuracy: float
    per_intent: dict[str, dict[str, float]] = field(default_factory=dict)
    results: list[TurnResult] = field(default_factory=list)

    def to_dict(self, *, with_turns: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not with_turns:
            out.pop("results")
        return out


def run_eval(
    spec: PolicySpec,
    turns: Sequence[Turn],
    *,
    connectors: Any | None = None,
    decider: Any | None = None,
) -> EvalReport:
    """Replay `turns` through an `AgentRuntime`; offline (dry-run actions) when no connectors."""
    offline = connectors is None
    runtime = AgentRuntime(
        spec,
        decider if decider is not None else LocalDecider(spec, explore=False),
        InMemoryRecorder(),
        connectors,
        dry_run=offline,
    )
    results: list[TurnResult] = []
    try:
        for turn in turns:
            response = runtime.handle(turn.text, session_id=turn.session_id, user_id=turn.user_id)
            results.append(
                TurnResult(
                    text=turn.text,
                    expected_intent=turn.expected_intent,
                    expected_outcome=turn.expected_outcome,
                    intent=response.intent,
                    confidence=round(response.confidence, 4),
                    outcome=outcome_of(response),
                    satisfaction=satisfaction(turn, response),
                    reply=response.text,
                    error=response.error,
                )
            )
    finally:
        runtime.close()
    return _report(spec, results, "offline" if offline else "connectors")


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def _report(spec: PolicySpec, results: list[TurnResult], mode: str) -> EvalReport:
    labelled = [r for r in results if r.expected_intent is not None]
    per_intent: dict[str, dict[str, float]] = {}
    counts = Counter(r.expected_intent for r in labelled)
    for name in spec.intent_names:
        mine = [r for r in labelled if r.expected_intent == name]
        if mine:
            per_intent[name] = {
                "turns": len(mine),
                "accuracy": _share([r.intent == name for r in mine]),
            }
    majority = counts.most_common(1)[0][1] / len(labelled) if labelled else 0.0
    return EvalReport(
        policy=spec.name,
        mode=mode,
        turns=len(results),
        intent_accuracy=_share([r.intent == r.expected_intent for r in labelled]),
        resolution_rate=_share(
            [
                r.outcome == "resolved"
                and (r.expected_intent is None or r.intent == r.expected_intent)
                for r in results
            ]
        ),
        escalation_rate=_share([r.outcome == "escalated" for r in results]),
        clarification_rate=_share([r.outcome == "clarified" for r in results]),
        error_rate=_share([r.error is not None for r in results]),
        outcome_accuracy=_share([r.outcome == r.expected_outcome for r in results]),
        satisfaction=round(sum(r.satisfaction for r in results) / len(results), 4)
        if results
        else 0.0,
        # What always answering the most common intent would score: the bar to beat.
        chance_accuracy=round(majority, 4),
        per_intent=per_intent,
        results=results,
    )
