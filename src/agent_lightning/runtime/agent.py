"""`AgentRuntime`: one agent answering messages on a policy, safely, and leaving a learnable trace.

    runtime = AgentRuntime(spec, LocalDecider(spec), recorder, connectors)
    response = runtime.handle("my printer is broken", user_id="u1")
    runtime.feedback(response.decision_id, resolved=True)

For each message: the decider picks an intent (rules, then the learned scorer) -> guardrails
(confidence below the threshold: clarify or escalate; a slot the intent needs is missing: ask for
it) -> the intent's actions run in order, only those in its `allowed_actions` -> any failure
(an unreachable connector, a timeout, a template naming a missing value) ends in an escalation with
the reason in `response.error`, never in an exception -> the decision is recorded with a client id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent_lightning.ingestion.schemas import (
    ActionIn,
    Context,
    DecisionIn,
    EventIn,
    RewardIn,
    RewardSource,
)
from agent_lightning.runtime.actions import ExecutionContext, Generator, execute
from agent_lightning.runtime.outbox import OutboxFullError
from agent_lightning.runtime.spec import PolicySpec
from agent_lightning.runtime.tracing import NO_TRACING, RuntimeTracer, set_attributes
from agent_lightning.runtime.types import (
    ActionResult,
    AgentResponse,
    Decider,
    IntentChoice,
    Recorder,
)
from agent_lightning.store import new_id

log = logging.getLogger(__name__)

MAX_TEXT = 32_000  # DecisionIn.context.text
MAX_ERROR = 500
_REMEMBERED_DECISIONS = 10_000


class DecisionNotRecorded(ValueError):
    """Feedback on a decision this runtime answered but could not record (e.g. the outbox was
    full): the server never got the decision, so it would refuse the reward."""


class AgentRuntime:
    """Runs one agent. Thread-safe: `handle` and `feedback` may be called from many threads.

    `connectors` is a `connectors.ConnectorRegistry` (anything with `registry[name].call(...)`);
    None with `dry_run=True` evaluates policy and guardrails without calling anything.
    `generator(prompt, max_tokens) -> str` backs `reply.generate` (see `actions.openai_generator`);
    without it a reply uses its `template`.
    """

    def __init__(
        self,
        spec: PolicySpec,
        decider: Decider,
        recorder: Recorder,
        connectors: Any | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        generator: Generator | None = None,
        dry_run: bool = False,
        max_workers: int = 8,
        tracer: RuntimeTracer = NO_TRACING,
    ) -> None:
        self._lock = threading.Lock()
        self.tracer = tracer
        self._spec = spec
        self._decider = decider
        self._candidates = spec.candidate_actions()
        self._parameters = spec.runtime_parameters()
        self.recorder = recorder
        self.connectors = connectors
        self.clock = clock
        self.generator = generator
        self.dry_run = dry_run
        # Connector calls run on a pool so `timeoutMs` is a real deadline for the caller.
        self._executor = (
            ThreadPoolExecutor(max_workers, thread_name_prefix="agl-action")
            if connectors is not None
            else None
        )
        # decision id -> (intent, session id, recorded)
        self._decisions: OrderedDict[str, tuple[str, str | None, bool]] = OrderedDict()

    # -- state ---------------------------------------------------------------------------------

    @property
    def spec(self) -> PolicySpec:
        return self._spec

    @property
    def decider(self) -> Decider:
        return self._decider

    @property
    def parameters(self) -> dict[str, Any]:
        """Current maxRetries, timeoutMs, confidence_threshold (`update_policy` may change them)."""
        with self._lock:
            return dict(self._parameters)

    def swap(self, *, spec: PolicySpec | None = None, decider: Decider | None = None) -> None:
        """Serve a new policy spec and/or decider from the next message on (no restart).

        A new spec resets the parameters to its own; messages in flight finish on the old ones.
        """
        with self._lock:
            if spec is not None:
                self._spec = spec
                self._candidates = spec.candidate_actions()
                self._parameters = spec.runtime_parameters()
            if decider is not None:
                self._decider = decider

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- handling ------------------------------------------------------------------------------

    def handle(
        self,
        text: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> AgentResponse:
        """Answer one message. Failures become an escalation with `error` set, not an exception."""
        with self.tracer.span("agent.message", {"agl.session_id": session_id}) as span:
            response = self._handle(text, session_id, user_id, attributes)
            set_attributes(
                span,
                {
                    "agl.decision_id": response.decision_id,
                    "agl.intent": response.intent,
                    "agl.confidence": response.confidence,
                    "agl.policy": response.policy_name,
                    "agl.policy_version": response.policy_version,
                    "agl.arm": response.arm,
                    "agl.escalated": response.escalated,
                    "agl.clarified": response.clarified,
                    "agl.error": response.error,
                    "agl.recorded": response.recorded,
                },
            )
            return response

    def _handle(
        self,
        text: str,
        session_id: str | None,
        user_id: str | None,
        attributes: Mapping[str, Any] | None,
    ) -> AgentResponse:
        if not isinstance(text, str):
            raise TypeError("text must be a string")
        for label, value in (("session_id", session_id), ("user_id", user_id)):
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
                raise ValueError(f"{label} must be a string of 1 to 200 characters")
        start = self.clock()
        text = text.replace("\x00", "")[:MAX_TEXT]
        attrs = dict(attributes or {})
        with self._lock:
            spec, decider, candidates = self._spec, self._decider, self._candidates
            params = dict(self._parameters)
        decision_id = new_id()

        try:
            with self.tracer.span("agent.decide", {"agl.policy": spec.name}) as span:
                choice = decider.choose(
                    text, candidates, user_id=user_id, session_id=session_id, attributes=attrs
                )
                set_attributes(
                    span,
                    {
                        "agl.intent": choice.intent,
                        "agl.confidence": choice.confidence,
                        "agl.propensity": choice.propensity,
                        "agl.policy_version": choice.policy_version,
                        "agl.arm": choice.arm,
                        "agl.rollout_id": choice.rollout_id,
                    },
                )
            spec.intent(choice.intent)
        except Exception as exc:  # noqa: BLE001 - a broken decider must not take the agent down
            log.exception("decider failed")
            error = f"decider: {type(exc).__name__}: {exc}"[:MAX_ERROR]
            if isinstance(exc, KeyError):
                error = f"decider chose an intent the policy does not have: {exc}"[:MAX_ERROR]
            return self._failed_decision(spec, decision_id, text, session_id, user_id, start, error)

        response = AgentResponse(
            decision_id=decision_id,
            text="",
            intent=choice.intent,
            confidence=float(choice.confidence),
            probabilities=dict(choice.probabilities),
            policy_name=choice.policy_name or spec.name,
            policy_version=choice.policy_version,
            arm=choice.arm,
            rollout_id=choice.rollout_id,
            session_id=session_id,
            user_id=user_id,
        )
        replies = self._run(spec, choice, params, response, text, attrs)
        if response.escalated:
            replies.append(spec.escalation.message)
        elif response.clarified and not replies:
            replies.append(spec.clarify_message)
        response.text = " ".join(r for r in replies if r)
        response.latency_ms = round((self.clock() - start) * 1000.0, 3)
        self._record_decision(spec, choice, response, text, candidates)
        return response

    def _run(
        self,
        spec: PolicySpec,
        choice: IntentChoice,
        params: dict[str, Any],
        response: AgentResponse,
        text: str,
        attrs: dict[str, Any],
    ) -> list[str]:
        """Guardrails, then the intent's actions; fills `response`, returns the reply texts."""
        intent = spec.intent(choice.intent)
        if choice.confidence < float(params["confidence_threshold"]):
            reason = (
                f"low confidence {choice.confidence:.2f} < {params['confidence_threshold']:.2f}"
            )
            if spec.low_confidence == "clarify":
                response.clarified = True
                return [spec.clarify_message]
            self._escalate(spec, response, reason)
            return []
        slots: dict[str, str] = {}
        for name, slot in intent.slots.items():
            value = slot.extract(text)
            if value is None:
                response.clarified = True
                return [slot.ask]
            slots[name] = value

        ctx = ExecutionContext(
            scope={
                "message": text,
                "user_id": response.user_id,
                "session_id": response.session_id,
                "intent": intent.name,
                "last": None,
                "kb": [],
                "slots": slots,
                "attributes": attrs,
            },
            connectors=self.connectors,
            parameters=params,
            executor=self._executor,
            generator=self.generator,
            clock=self.clock,
            dry_run=self.dry_run,
            tracer=self.tracer,
        )
        replies: list[str] = []
        for action in intent.actions:
            if action.type not in intent.allowed:
                # Guardrail: the spec loader refuses this, but a spec built or changed in code
                # could still carry it; it never runs.
                response.actions.append(
                    ActionResult(
                        action.type,
                        ok=False,
                        blocked=True,
                        error=f"guardrail: action '{action.type}' is not allowed "
                        f"for intent '{intent.name}'",
                    )
                )
                # The rest of the sequence may depend on it: hand over instead of half-serving.
                response.error = response.actions[-1].error
                self._escalate(spec, response, "guardrail: disallowed action")
                break
            step = {"agl.action": action.type}
            with self.tracer.span(f"agent.action {action.type}", step) as span:
                result = execute(action.type, action.params, ctx)
                set_attributes(span, {"agl.ok": result.ok, "agl.error": result.error})
            response.actions.append(result)
            if not result.ok:
                response.error = (result.error or "action failed")[:MAX_ERROR]
                self._escalate(spec, response, f"{action.type} failed")
                break
            if result.type == "reply" and isinstance(result.data, dict):
                replies.append(str(result.data.get("text", "")))
            elif result.type == "escalate":
                response.escalated = True
                response.escalation = dict(result.data)
            if ctx.halt is not None:
                kind, reason = ctx.halt
                if kind == "escalate":
                    self._escalate(spec, response, reason)
                else:
                    response.clarified = True
                    replies.append(spec.clarify_message)
                break
        if ctx.parameter_updates:
            self._update_parameters(spec, ctx.parameter_updates, response)
        return replies

    @staticmethod
    def _escalate(spec: PolicySpec, response: AgentResponse, reason: str) -> None:
        response.escalated = True
        if response.escalation is None:
            response.escalation = {"queue": spec.escalation.queue, "reason": reason}

    def _update_parameters(
        self, spec: PolicySpec, updates: dict[str, Any], response: AgentResponse
    ) -> None:
        with self._lock:
            if self._spec is not spec:  # a new policy arrived meanwhile; its parameters win
                return
            self._parameters.update(updates)
        self._safe(
            self.recorder.record_event,
            EventIn(
                id=new_id(),
                session_id=response.session_id,
                user_id=response.user_id,
                intent_prediction=response.intent,
                policy_name=spec.name,
                attributes={"kind": "runtime.parameters_updated", "parameters": updates},
            ),
        )

    # -- records -------------------------------------------------------------------------------

    def _record_decision(
        self,
        spec: PolicySpec,
        choice: IntentChoice,
        response: AgentResponse,
        text: str,
        candidates: list[Any],
    ) -> None:
        ran = [a.type for a in response.actions if not a.blocked and not a.dry_run]
        probabilities = {k: min(max(float(v), 0.0), 1.0) for k, v in choice.probabilities.items()}
        try:
            decision = self._decision(spec, choice, response, text, candidates, ran, probabilities)
        except ValueError:  # e.g. an id longer than the schema allows: log it, still answer
            log.exception("decision %s could not be recorded", response.decision_id)
            response.recorded = False
        else:
            response.recorded = self._safe(self.recorder.record_decision, decision)
        with self._lock:
            self._decisions[response.decision_id] = (
                choice.intent,
                response.session_id,
                response.recorded,
            )
            while len(self._decisions) > _REMEMBERED_DECISIONS:
                self._decisions.popitem(last=False)

    @staticmethod
    def _decision(
        spec: PolicySpec,
        choice: IntentChoice,
        response: AgentResponse,
        text: str,
        candidates: list[Any],
        ran: list[str],
        probabilities: dict[str, float],
    ) -> DecisionIn:
        return DecisionIn(
            id=response.decision_id,
            decision_point=spec.decision_point,
            context=Context(text=text),
            actions=[ActionIn(id=a.id, description=a.description) for a in candidates],
            action_id=choice.intent,
            propensity=min(max(float(choice.propensity), 1e-9), 1.0),
            probabilities=probabilities,
            policy_name=response.policy_name,
            policy_version=choice.policy_version,
            session_id=response.session_id,
            user_id=response.user_id,
            attributes={
                "confidence": round(response.confidence, 6),
                "escalated": response.escalated,
                "clarified": response.clarified,
                "error": response.error,
                "latency_ms": response.latency_ms,
                "actions": ran,
                "rollout_id": choice.rollout_id,
                "arm": choice.arm,
            },
        )

    def _failed_decision(
        self,
        spec: PolicySpec,
        decision_id: str,
        text: str,
        session_id: str | None,
        user_id: str | None,
        start: float,
        error: str,
    ) -> AgentResponse:
        """No intent could be chosen: escalate, and log an event (not a decision to learn from)."""
        response = AgentResponse(
            decision_id=decision_id,
            text=spec.escalation.message,
            intent="",
            confidence=0.0,
            escalated=True,
            error=error,
            escalation={"queue": spec.escalation.queue, "reason": "no intent could be chosen"},
            policy_name=spec.name,
            session_id=session_id,
            user_id=user_id,
            latency_ms=round((self.clock() - start) * 1000.0, 3),
        )
        response.recorded = self._safe(
            self.recorder.record_event,
            EventIn(
                id=decision_id,
                session_id=session_id,
                user_id=user_id,
                text=text,
                policy_name=spec.name,
                attributes={"kind": "runtime.decider_error", "error": error, "escalated": True},
            ),
        )
        return response

    @staticmethod
    def _safe(record: Callable[[Any], None], item: Any) -> bool:
        """Record `item`; False if it was not kept. The customer gets an answer either way."""
        try:
            record(item)
        except OutboxFullError:
            return False  # the outbox logs once when it fills up and counts what it drops
        except Exception:  # noqa: BLE001
            log.exception("recording %s failed", type(item).__name__)
            return False
        return True

    # -- feedback ------------------------------------------------------------------------------

    def feedback(
        self,
        decision_id: str,
        *,
        resolved: bool | None = None,
        value: float | None = None,
        correct_intent: str | None = None,
        session_id: str | None = None,
    ) -> RewardIn:
        """Record the outcome of a decision as a `RewardIn` and return it.

        `resolved` becomes reward 1.0 / 0.0; `value` is an explicit reward (it wins over
        `resolved`); `correct_intent` is a human correction (the intent that would have been
        right) and, alone, scores the decision 1.0 if it chose that intent, else 0.0.
        """
        with self._lock:
            spec = self._spec
            known = self._decisions.get(decision_id)
        if known is not None and not known[2]:
            raise DecisionNotRecorded(
                f"decision {decision_id!r} was answered but not recorded (the outbox was full, "
                "or the record was refused: see the runtime's log), so the server cannot take "
                "feedback on it"
            )
        if correct_intent is not None and correct_intent not in spec.intent_names:
            raise ValueError(
                f"correct_intent {correct_intent!r} is not an intent of policy {spec.name!r} "
                f"({', '.join(spec.intent_names)})"
            )
        if value is not None:
            reward = float(value)
        elif resolved is not None:
            reward = 1.0 if resolved else 0.0
        elif correct_intent is not None:
            if known is None:
                raise ValueError(
                    f"decision {decision_id!r} is not known to this runtime; "
                    "give resolved= or value= with the correction"
                )
            reward = 1.0 if known[0] == correct_intent else 0.0
        else:
            raise ValueError("feedback needs resolved=, value= or correct_intent=")
        attributes: dict[str, Any] = {}
        if resolved is not None:
            attributes["resolved"] = bool(resolved)
        record = RewardIn(
            id=new_id(),
            decision_id=decision_id,
            session_id=session_id or (known[1] if known else None),
            value=reward,
            source=RewardSource.HUMAN_CORRECTION if correct_intent else RewardSource.USER,
            correct_action_id=correct_intent,
            attributes=attributes,
        )
        self.recorder.record_reward(record)
        return record
