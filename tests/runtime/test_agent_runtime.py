"""AgentRuntime: guardrails, actions through connectors, failures as escalations, records.

Connectors here are a small in-test fake (`FakeRegistry`) with the contract's interface
(`registry[name].call(endpoint, params=, json=, path_params=)` -> response with `.data`, failures
raise an error with `.kind`); `test_refservices_runtime.py` runs against the real reference service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from agent_lightning import learning
from agent_lightning.ingestion.schemas import RewardSource
from agent_lightning.runtime import (
    AgentRuntime,
    InMemoryRecorder,
    IntentChoice,
    LocalDecider,
    parse_policy_spec,
)

POLICY = """\
name: desk
confidence_threshold: 0.5
low_confidence: clarify
clarify_message: "Could you say more?"
escalation: {queue: tier1, message: "A colleague will take over."}
parameters: {maxRetries: 2, timeoutMs: 300}
intents:
  - name: CreateTicket
    description: The customer reports a problem that needs a ticket.
    utterances: [my printer is broken, please open a ticket, my laptop will not start]
    allowed_actions: [call_api, reply]
    actions:
      - {type: call_api, connector: tickets, endpoint: create, method: POST,
         payload: {subject: "{{message}}", user_id: "{{user_id}}"}}
      - {type: reply, template: "I opened ticket {{last.id}} for you."}
  - name: CheckStatus
    description: The customer asks about the status of a ticket.
    utterances: [what is the status of my ticket, any update on ticket 12]
    slots:
      ticket_id: {pattern: "(?i)ticket\\\\s*#?(\\\\d+)", ask: "Which ticket number?"}
    actions:
      - {type: call_api, connector: tickets, endpoint: get, method: GET,
         path_params: {id: "{{slots.ticket_id}}"}}
      - {type: reply, template: "Ticket {{last.id}} is {{last.status}}."}
  - name: KnowledgeQuestion
    description: The customer asks how to do something.
    utterances: [how do I reset my password, how can I set up the vpn]
    actions:
      - {type: fetch_kb, connector: kb, endpoint: search, query: "{{message}}", top_k: 2,
         on_empty: escalate}
      - {type: reply, template: "{{kb.0.title}}: {{kb.0.snippet}}"}
  - name: Tune
    description: Operators tune the agent.
    utterances: [be more patient]
    actions:
      - {type: update_policy, parameters: {maxRetries: 0, confidence_threshold: 0.2}}
      - {type: reply, template: "Tuned."}
  - name: Escalate
    description: The customer wants a person.
    utterances: [I want to talk to a person]
    actions:
      - {type: escalate, queue: humans, reason: "asked for a person"}
rules:
  - {contains: ["speak to a human"], intent: Escalate}
"""


class FakeError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class FakeResponse:
    def __init__(self, data: Any) -> None:
        self.status, self.data, self.latency_ms = 200, data, 1.0


class FakeConnector:
    """Answers from a function of (endpoint, kwargs); records every call."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, endpoint: str, *, params=None, json=None, path_params=None) -> FakeResponse:
        kwargs = {"params": params, "json": json, "path_params": path_params}
        self.calls.append((endpoint, kwargs))
        return FakeResponse(self.answer(endpoint, kwargs))


class FakeRegistry(dict):
    pass


def tickets_answer(endpoint: str, kwargs: dict[str, Any]) -> Any:
    if endpoint == "create":
        return {"id": 1001, **kwargs["json"]}
    return {"id": int(kwargs["path_params"]["id"]), "status": "open"}


def kb_answer(endpoint: str, kwargs: dict[str, Any]) -> Any:
    if "password" in kwargs["params"]["q"]:
        return {
            "results": [
                {"title": "Other", "body": "x", "score": 0.2},
                {"title": "Reset your password", "body": "Use the link.", "score": 3.0},
            ]
        }
    return {"results": []}  # fmt: skip


class FixedDecider:
    """Chooses what the test says, with the confidence the test says."""

    def __init__(self, intent: str, confidence: float = 0.9) -> None:
        self.intent, self.confidence = intent, confidence

    def choose(self, text, intents, *, user_id, session_id, attributes) -> IntentChoice:
        ids = [a.id for a in intents]
        probs = {i: (0.8 if i == self.intent else 0.2 / (len(ids) - 1)) for i in ids}
        return IntentChoice(self.intent, self.confidence, probs, 0.8, "desk", 3, "candidate", "r1")


@pytest.fixture
def spec():
    return parse_policy_spec(POLICY, "desk.yaml")


def make(spec, decider, **connectors) -> tuple[AgentRuntime, InMemoryRecorder, FakeRegistry]:
    registry = FakeRegistry(
        tickets=connectors.get("tickets", FakeConnector(tickets_answer)),
        kb=connectors.get("kb", FakeConnector(kb_answer)),
    )
    recorder = InMemoryRecorder()
    return AgentRuntime(spec, decider, recorder, registry), recorder, registry


def test_actions_run_through_connectors_and_the_decision_is_recorded(spec) -> None:
    runtime, recorder, registry = make(spec, FixedDecider("CreateTicket"))
    response = runtime.handle("my printer is broken", user_id="u1", session_id="s1")
    assert response.text == "I opened ticket 1001 for you."
    assert response.resolved and not response.escalated and response.error is None
    assert registry["tickets"].calls == [
        ("create", {"params": None, "json": {"subject": "my printer is broken", "user_id": "u1"},
                    "path_params": None})
    ]  # fmt: skip
    (decision,) = recorder.decisions
    assert decision.id == response.decision_id and decision.action_id == "CreateTicket"
    assert decision.decision_point == "intent" and decision.context.text == "my printer is broken"
    assert [a.id for a in decision.actions] == spec.intent_names
    assert "printer is broken" in decision.actions[0].description
    assert decision.propensity == 0.8 and decision.policy_version == 3
    assert decision.session_id == "s1" and decision.user_id == "u1"
    attrs = decision.attributes
    assert set(attrs) == {"confidence", "escalated", "clarified", "error", "latency_ms",
                          "actions", "rollout_id", "arm"}  # fmt: skip
    assert attrs["actions"] == ["call_api", "reply"] and attrs["confidence"] == 0.9
    assert attrs["arm"] == "candidate" and attrs["rollout_id"] == "r1"
    assert attrs["escalated"] is False and attrs["error"] is None and attrs["latency_ms"] >= 0


def test_low_confidence_clarifies_without_running_anything(spec) -> None:
    runtime, recorder, registry = make(spec, FixedDecider("CreateTicket", confidence=0.3))
    response = runtime.handle("printer?")
    assert response.clarified and not response.escalated and response.text == "Could you say more?"
    assert response.actions == [] and registry["tickets"].calls == []
    assert recorder.decisions[0].attributes["clarified"] is True


def test_low_confidence_escalates_when_the_policy_says_so(spec) -> None:
    spec = spec.model_copy(update={"low_confidence": "escalate"})
    runtime, recorder, registry = make(spec, FixedDecider("CreateTicket", confidence=0.3))
    response = runtime.handle("printer?")
    assert response.escalated and response.escalation["queue"] == "tier1"
    assert "low confidence 0.30 < 0.50" in response.escalation["reason"]
    assert response.text == "A colleague will take over." and registry["tickets"].calls == []


def test_a_disallowed_action_never_runs(spec) -> None:
    # The loader refuses such a policy; a spec changed in code still cannot run the action.
    spec.intent("CreateTicket").allowed_actions = ["reply"]
    runtime, recorder, registry = make(spec, FixedDecider("CreateTicket"))
    response = runtime.handle("my printer is broken")
    assert registry["tickets"].calls == []
    blocked = response.actions[0]
    assert blocked.type == "call_api" and blocked.blocked and not blocked.ok
    assert response.error == "guardrail: action 'call_api' is not allowed for intent 'CreateTicket'"
    assert response.escalated and len(response.actions) == 1
    assert recorder.decisions[0].attributes["actions"] == []


@pytest.mark.parametrize("kind", ["unreachable", "http_error", "invalid_response"])
def test_a_connector_error_escalates_with_a_clear_error(spec, kind: str) -> None:
    def broken(endpoint: str, kwargs: dict[str, Any]) -> Any:
        raise FakeError(kind, "connection refused" if kind == "unreachable" else "bad")

    failing = FakeConnector(broken)
    runtime, recorder, _ = make(spec, FixedDecider("CreateTicket"), tickets=failing)
    response = runtime.handle("my printer is broken")  # no exception
    assert response.escalated and not response.resolved
    assert response.error.startswith(f"connector 'tickets' endpoint 'create': {kind}")
    assert response.escalation == {"queue": "tier1", "reason": "call_api failed"}
    assert response.text == "A colleague will take over."
    # Only failures that may pass are retried, maxRetries (2) times.
    assert len(failing.calls) == (3 if kind == "unreachable" else 1)
    attrs = recorder.decisions[0].attributes
    assert attrs["escalated"] is True and attrs["error"] == response.error


def test_a_slow_connector_times_out_at_timeout_ms(spec) -> None:
    spec = spec.model_copy(
        update={"parameters": spec.parameters.model_copy(update={"maxRetries": 0})}
    )

    def slow(endpoint: str, kwargs: dict[str, Any]) -> Any:
        time.sleep(1.5)
        return {"id": 1}

    runtime, _, _ = make(spec, FixedDecider("CreateTicket"), tickets=FakeConnector(slow))
    started = time.monotonic()
    response = runtime.handle("my printer is broken")
    assert time.monotonic() - started < 1.2
    assert response.escalated and "timeout: no answer within 300 ms" in response.error
    runtime.close()


def test_unknown_connector_and_template_errors_escalate(spec) -> None:
    runtime = AgentRuntime(spec, FixedDecider("CreateTicket"), InMemoryRecorder(), FakeRegistry())
    response = runtime.handle("my printer is broken")
    assert response.escalated and response.error == "connector 'tickets' is not configured"
    untitled = FakeConnector(lambda e, k: {"results": [{"body": "no title"}]})
    runtime, _, _ = make(spec, FixedDecider("KnowledgeQuestion"), kb=untitled)
    assert runtime.handle("how do I reset my password").text.startswith(": no title")


def test_knowledge_base_ranks_answers_and_escalates_when_nothing_matches(spec) -> None:
    runtime, _, registry = make(spec, FixedDecider("KnowledgeQuestion"))
    answer = runtime.handle("how do I reset my password")
    assert answer.text == "Reset your password: Use the link." and answer.resolved
    assert registry["kb"].calls[0][1]["params"] == {"q": "how do I reset my password", "limit": 2}
    nothing = runtime.handle("how do I fly")
    assert nothing.escalated and nothing.error is None
    assert nothing.escalation["reason"] == "no knowledge-base article matches"


def test_missing_slot_asks_for_it_and_a_present_one_is_used(spec) -> None:
    runtime, _, registry = make(spec, FixedDecider("CheckStatus"))
    ask = runtime.handle("what is the status of my request")
    assert ask.clarified and ask.text == "Which ticket number?" and registry["tickets"].calls == []
    done = runtime.handle("any news on ticket #1042?")
    assert done.text == "Ticket 1042 is open."
    assert registry["tickets"].calls[0][1]["path_params"] == {"id": "1042"}


def test_escalate_action_and_update_policy(spec) -> None:
    runtime, recorder, _ = make(spec, FixedDecider("Escalate"))
    response = runtime.handle("I want to talk to a person")
    assert response.escalated and response.escalation == {
        "queue": "humans",
        "reason": "asked for a person",
    }
    runtime.swap(decider=FixedDecider("Tune"))
    assert runtime.parameters == {"maxRetries": 2, "timeoutMs": 300, "confidence_threshold": 0.5}
    assert runtime.handle("be more patient").text == "Tuned."
    assert runtime.parameters == {"maxRetries": 0, "timeoutMs": 300, "confidence_threshold": 0.2}
    assert recorder.events[-1].attributes["kind"] == "runtime.parameters_updated"
    runtime.swap(decider=FixedDecider("CreateTicket", confidence=0.3))
    assert runtime.handle("printer").resolved  # 0.3 now passes the tuned threshold
    runtime.swap(spec=spec)
    assert runtime.parameters["confidence_threshold"] == 0.5


def test_feedback_records_rewards(spec) -> None:
    runtime, recorder, _ = make(spec, FixedDecider("CreateTicket"))
    response = runtime.handle("my printer is broken", session_id="s9")
    reward = runtime.feedback(response.decision_id, resolved=True)
    assert reward.value == 1.0 and reward.decision_id == response.decision_id
    assert reward.session_id == "s9" and reward.id and reward.source == RewardSource.USER
    wrong = runtime.feedback(response.decision_id, correct_intent="CheckStatus")
    assert wrong.value == 0.0 and wrong.correct_action_id == "CheckStatus"
    assert wrong.source == RewardSource.HUMAN_CORRECTION
    right = runtime.feedback(response.decision_id, correct_intent="CreateTicket")
    assert right.value == 1.0
    assert runtime.feedback(response.decision_id, resolved=False).value == 0.0
    assert runtime.feedback(response.decision_id, value=0.25).value == 0.25
    assert len(recorder.rewards) == 5 and len({r.id for r in recorder.rewards}) == 5
    with pytest.raises(ValueError, match="not an intent"):
        runtime.feedback(response.decision_id, correct_intent="Nope")
    with pytest.raises(ValueError, match="needs resolved="):
        runtime.feedback(response.decision_id)
    with pytest.raises(ValueError, match="not known to this runtime"):
        runtime.feedback("unknown-id", correct_intent="CreateTicket")


def test_a_failing_decider_or_recorder_never_raises(spec) -> None:
    class Broken:
        def choose(self, *a, **k):
            raise RuntimeError("model file missing")

    class BadRecorder(InMemoryRecorder):
        def record_decision(self, decision):
            raise OSError("disk full")

    recorder = InMemoryRecorder()
    response = AgentRuntime(spec, Broken(), recorder, FakeRegistry()).handle("hello")
    assert response.escalated and response.error == "decider: RuntimeError: model file missing"
    assert recorder.decisions == [] and recorder.events[0].attributes["escalated"] is True
    stale = AgentRuntime(spec, FixedDecider("Gone"), InMemoryRecorder()).handle("x")
    assert stale.escalated and "an intent the policy does not have" in stale.error
    runtime = AgentRuntime(spec, FixedDecider("Escalate"), BadRecorder())
    assert runtime.handle("a person please").escalated


def test_handle_is_thread_safe(spec) -> None:
    runtime, recorder, registry = make(spec, LocalDecider(spec, seed=1))
    texts = ["my printer is broken", "how do I reset my password", "speak to a human",
             "any update on ticket 12", "my laptop will not start"]  # fmt: skip
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                runtime.handle(texts[(n + i) % len(texts)], session_id=f"s{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runtime.close()
    assert errors == []
    assert len(recorder.decisions) == 160 and len({d.id for d in recorder.decisions}) == 160


# -- LocalDecider --------------------------------------------------------------------------------


def test_local_decider_rules_zero_shot_and_confidence(spec) -> None:
    decider = LocalDecider(spec, explore=False)
    intents = spec.candidate_actions()
    rule = decider.choose("Can I speak to a human?", intents)
    assert rule.intent == "Escalate" and rule.confidence == 1.0 and rule.propensity == 1.0
    assert rule.probabilities["Escalate"] == 1.0 and sum(rule.probabilities.values()) == 1.0
    assert rule.policy_version is None and rule.policy_name == "desk"
    assert decider.choose("my printer is broken again", intents).intent == "CreateTicket"
    status = decider.choose("any update on ticket 77?", intents)
    assert status.intent == "CheckStatus" and status.confidence > 0.5
    # A message like no intent: no clear winner, so confidence stays under the spec's 0.5
    # threshold (the runtime asks the customer to rephrase instead of guessing).
    vague = decider.choose("zzz qqq", intents)
    assert 1 / len(intents) <= vague.confidence < 0.5 < status.confidence


def test_local_decider_explores_with_logged_propensities_and_serves_learned_bundles(spec) -> None:
    intents = spec.candidate_actions()
    decider = LocalDecider(spec, explore=True, seed=3)
    choice = decider.choose("my laptop will not start", intents)
    assert choice.propensity == pytest.approx(choice.probabilities[choice.intent])
    assert sum(choice.probabilities.values()) == pytest.approx(1.0)

    policy = learning.make_policy(spec.learner)
    logged = [
        learning.LoggedDecision({"text": "the toner is empty"}, tuple(intents), "CreateTicket",
                                1.0, correct_action_id="CreateTicket")
        for _ in range(5)
    ]  # fmt: skip
    policy.learn(logged)
    policy.version = 4
    learned = LocalDecider.from_bundle_bytes(spec, policy.to_bytes(), explore=False)
    choice = learned.choose("the toner is empty", intents)
    assert choice.intent == "CreateTicket" and choice.policy_version == 4


def test_reply_generate_uses_the_llm_if_configured_else_the_template() -> None:
    spec = parse_policy_spec(
        "name: gen\nintents:\n  - name: Answer\n    actions:\n"
        "      - {type: reply, template: 'Fallback for {{message}}',\n"
        "         generate: {prompt: 'Answer briefly: {{message}}', max_tokens: 50}}\n"
        "  - name: OnlyLLM\n    actions:\n"
        "      - {type: reply, generate: {prompt: '{{message}}'}}\n"
    )
    prompts: list[tuple[str, int | None]] = []

    def llm(prompt: str, max_tokens: int | None) -> str:
        prompts.append((prompt, max_tokens))
        return "Generated."

    with_llm = AgentRuntime(spec, FixedDecider("Answer"), InMemoryRecorder(), generator=llm)
    assert with_llm.handle("hours?").text == "Generated."
    assert prompts == [("Answer briefly: hours?", 50)]
    without = AgentRuntime(spec, FixedDecider("Answer"), InMemoryRecorder())
    assert without.handle("hours?").text == "Fallback for hours?"

    def down(prompt: str, max_tokens: int | None) -> str:
        raise ConnectionError("LLM down")

    failing = AgentRuntime(spec, FixedDecider("Answer"), InMemoryRecorder(), generator=down)
    assert failing.handle("hours?").text == "Fallback for hours?"
    only = AgentRuntime(spec, FixedDecider("OnlyLLM"), InMemoryRecorder())
    response = only.handle("hours?")
    assert response.escalated and "needs an LLM (none configured)" in response.error
