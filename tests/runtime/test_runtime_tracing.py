"""The runtime's traces: message → decide → actions → connector calls, with a real connector
against the reference service on loopback and the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_lightning.connectors import ConnectorRegistry
from agent_lightning.refservices.testing import RefServiceServer
from agent_lightning.runtime import AgentRuntime, InMemoryRecorder, LocalDecider, load_policy_spec
from agent_lightning.runtime.tracing import RuntimeTracer, tracer_from_env

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
TOKEN = "trace-test-token"


@pytest.fixture
def traced(tmp_path: Path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spec = load_policy_spec(TEMPLATE / "policies/support-ticket.yaml")
    connectors = yaml.safe_load((TEMPLATE / "agent.yaml").read_text())["connectors"]
    with RefServiceServer(tmp_path / "ref.db", token=TOKEN) as ref:
        for conn in connectors.values():
            conn["base_url"] = ref.url
        with ConnectorRegistry.from_config(connectors, env={"REFSERVICES_TOKEN": TOKEN}) as reg:
            runtime = AgentRuntime(
                spec,
                LocalDecider(spec, explore=False),
                InMemoryRecorder(),
                reg,
                tracer=RuntimeTracer(provider.get_tracer("test")),
            )
            yield runtime, exporter
            runtime.close()


def test_a_message_is_one_trace_from_decision_to_connector_call(traced) -> None:
    runtime, exporter = traced
    answer = runtime.handle("my laptop will not turn on", user_id="u-1001", session_id="s-1")
    assert answer.intent == "CreateTicket" and answer.resolved, answer
    spans = {span.name: span for span in exporter.get_finished_spans()}
    root = spans["agent.message"]
    assert root.parent is None
    assert root.attributes["agl.intent"] == "CreateTicket"
    assert root.attributes["agl.decision_id"] == answer.decision_id
    assert spans["agent.decide"].parent.span_id == root.context.span_id
    action = spans["agent.action call_api"]
    assert action.parent.span_id == root.context.span_id and action.attributes["agl.ok"] is True
    call = spans["connector tickets.create"]
    assert call.parent.span_id == action.context.span_id
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    # Message text may hold personal data: it is in no span.
    for span in spans.values():
        assert "laptop" not in str(dict(span.attributes or {}))


def test_a_failed_connector_call_is_marked_on_its_span(traced) -> None:
    runtime, exporter = traced
    broken = AgentRuntime(
        runtime.spec,
        runtime.decider,
        InMemoryRecorder(),
        ConnectorRegistry.from_config(
            {
                "tickets": {
                    "base_url": "http://127.0.0.1:9",
                    "retries": 0,
                    "endpoints": {"create": {"method": "POST", "path": "/tickets"}},
                }
            }
        ),  # fmt: skip
        tracer=runtime.tracer,
    )
    answer = broken.handle("my laptop will not turn on")
    broken.close()
    assert answer.escalated and "unreachable" in (answer.error or "")
    call = next(s for s in exporter.get_finished_spans() if s.name == "connector tickets.create")
    assert call.attributes["agl.error_kind"] == "unreachable"
    assert not call.status.is_ok


def test_tracing_is_off_unless_otel_variables_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    tracer, provider = tracer_from_env()
    assert provider is None and not tracer.enabled
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    tracer, provider = tracer_from_env()
    assert provider is not None and tracer.enabled
    assert provider.resource.attributes["service.name"] == "agent-lightning-runtime"
    provider.shutdown()
