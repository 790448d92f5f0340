"""OpenTelemetry traces out: off unless configured, and request → decide → ingest → store write."""

from __future__ import annotations

from pathlib import Path

import pytest
from obs_harness import ServerThread, build_api, wait_until
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from agent_lightning.observability import TraceSpan, configure_tracing, tracing_enabled

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_BSP_SCHEDULE_DELAY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
    ],
)
def test_tracing_is_on_only_when_configured(env: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(env) is enabled


def test_no_configuration_means_no_provider() -> None:
    assert configure_tracing() is None


def test_a_decide_request_is_one_trace_down_to_the_store_write(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    api = build_api(tmp_path, tracer_provider=provider)
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    response = api.client.post(
        "/v1/decisions",
        json={"actions": [{"id": "reply"}, {"id": "escalate"}], "decision_point": "support"},
        headers={
            **api.auth("acme", ("Agent",)),
            "traceparent": f"00-{caller_trace}-b7ad6b7169203331-01",
        },
    )
    assert response.status_code == 201, response.text
    spans = {s.name: s for s in memory.get_finished_spans()}
    request = spans["POST /v1/decisions"]
    decide, ingest, write = (
        spans["agl.decide"],
        spans["agl.ingest.decisions"],
        spans["agl.store.write"],
    )
    assert request.kind == SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == caller_trace  # continues the caller's
    assert request.parent.span_id == 0xB7AD6B7169203331
    assert decide.parent.span_id == request.context.span_id
    assert ingest.parent.span_id == decide.context.span_id
    assert write.parent.span_id == ingest.context.span_id
    assert request.attributes["http.route"] == "/v1/decisions"
    assert request.attributes["http.response.status_code"] == 201
    assert decide.attributes["agl.decision.id"] == response.json()["decision_id"]
    assert decide.attributes["agl.decision_point"] == "support"
    assert write.attributes["agl.record.kind"] == "decisions"
    assert write.attributes["db.system"] == "sqlite"
    api.client.close()
    api.store.close()


def test_env_configured_exporter_sends_the_servers_own_traces_over_otlp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dogfood: the server's traces, exported by OTLP/HTTP per the OTEL_* variables, to itself."""
    receiver = build_api(tmp_path / "receiver")
    token = receiver.token("ops", ("Agent",))
    with ServerThread(receiver.app) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "agl-under-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        traced = build_api(tmp_path / "traced")
        assert traced.obs.tracer_provider is not None
        response = traced.client.post(
            "/v1/events", json={"text": "hi"}, headers=traced.auth("acme", ("Agent",))
        )
        assert response.status_code == 201
        traced.obs.stop()  # flushes the batch processor

        def names() -> set[str]:
            with receiver.store.session() as s:
                return set(s.scalars(select(TraceSpan.name).where(TraceSpan.app_id == "ops")))

        assert wait_until(lambda: {"POST /v1/events", "agl.store.write"} <= names())
        with receiver.store.session() as s:
            row = s.scalar(select(TraceSpan).where(TraceSpan.name == "POST /v1/events"))
        assert row.service_name == "agl-under-test" and row.kind == "server"
    receiver.client.close()
    traced.client.close()
    receiver.store.close()
    traced.store.close()
