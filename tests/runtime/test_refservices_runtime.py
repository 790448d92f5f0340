"""The runtime on the shipped templates against the real reference service on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent_lightning.connectors import ConnectorRegistry
from agent_lightning.refservices.testing import RefServiceServer
from agent_lightning.runtime import AgentRuntime, InMemoryRecorder, LocalDecider, load_policy_spec
from agent_lightning.runtime.evaluate import load_transcripts, run_eval

TEMPLATES = Path(__file__).parents[2] / "src/agent_lightning/templates"
TOKEN = "ref-test-token"


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory):
    with RefServiceServer(tmp_path_factory.mktemp("ref") / "ref.db", token=TOKEN) as server:
        yield server


def registry_for(template: str, base_url: str) -> ConnectorRegistry:
    config = yaml.safe_load((TEMPLATES / template / "agent.yaml").read_text())
    connectors = config["connectors"]
    for conn in connectors.values():
        conn["base_url"] = base_url
    return ConnectorRegistry.from_config(connectors, env={"REFSERVICES_TOKEN": TOKEN})


def test_support_ticket_template_runs_for_real(ref: RefServiceServer) -> None:
    spec = load_policy_spec(TEMPLATES / "support-ticket/policies/support-ticket.yaml")
    turns = load_transcripts(TEMPLATES / "support-ticket/transcripts.jsonl", spec)
    with registry_for("support-ticket", ref.url) as registry:
        report = run_eval(spec, turns, connectors=registry)
    assert report.mode == "connectors" and report.error_rate == 0.0
    assert report.intent_accuracy > report.chance_accuracy and report.intent_accuracy >= 0.8
    assert report.outcome_accuracy >= 0.8 and report.satisfaction >= 0.8
    created = [r for r in report.results if r.intent == "CreateTicket" and r.outcome == "resolved"]
    assert created and ref.hits["POST /tickets"] == len(created)
    assert all(r.reply.startswith("I opened ticket 10") for r in created)
    status = [r for r in report.results if r.intent == "CheckStatus" and r.outcome == "resolved"]
    assert status and all(r.reply.endswith("is open.") for r in status)
    answers = {r.text: r.reply for r in report.results if r.intent == "KnowledgeQuestion"}
    assert answers["How do I reset my password?"].startswith("How to reset your password: ")


def test_kb_lookup_escalates_when_the_knowledge_base_has_nothing(ref: RefServiceServer) -> None:
    spec = load_policy_spec(TEMPLATES / "kb-lookup/policies/kb-lookup.yaml")
    with registry_for("kb-lookup", ref.url) as registry:
        decider = LocalDecider(spec, explore=False)
        runtime = AgentRuntime(spec, decider, InMemoryRecorder(), registry)
        answer = runtime.handle("how can I cancel my subscription")
        assert answer.resolved and answer.text.startswith("Cancelling your subscription: ")
        gap = runtime.handle("how do I recalibrate the zorblax")
        assert gap.intent == "Question" and gap.escalated and gap.error is None
        assert gap.escalation == {"queue": "kb-gaps", "reason": "no knowledge-base article matches"}
        runtime.close()


def test_an_unreachable_service_gives_an_escalation_not_a_crash(tmp_path: Path) -> None:
    spec = load_policy_spec(TEMPLATES / "support-ticket/policies/support-ticket.yaml")
    recorder = InMemoryRecorder()
    with registry_for("support-ticket", "http://127.0.0.1:9") as registry:  # nothing listens
        runtime = AgentRuntime(spec, LocalDecider(spec, explore=False), recorder, registry)
        response = runtime.handle("my laptop will not turn on", user_id="u1")
        runtime.close()
    assert response.intent == "CreateTicket" and response.escalated
    assert response.error.startswith("connector 'tickets' endpoint 'create': unreachable")
    assert recorder.decisions[0].attributes["error"] == response.error
