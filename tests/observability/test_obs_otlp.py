"""OTLP/HTTP trace ingest, end to end: the real exporter over a socket, JSON, gzip, limits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from google.rpc.status_pb2 import Status
from obs_harness import ObsApi, ServerThread, build_api, metric_value, obs_api_fixture  # noqa: F401
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select

from agent_lightning.observability import ObservabilitySettings, TraceSpan

CARD = "4111 1111 1111 1111"
TRACE = "5b8efff798038103d269b633813fc60c"


def _agent_spans(session_id: str) -> list:
    """Spans as an OpenInference-instrumented LangChain agent makes them (session on the root)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("openinference.instrumentation.langchain")
    with tracer.start_as_current_span(
        "AgentExecutor",
        attributes={"session.id": session_id, "openinference.span.kind": "CHAIN"},
    ):
        with tracer.start_as_current_span(
            "ChatOpenAI",
            attributes={
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "input.value": f"my card is {CARD}, email me at ann@example.com",
                "llm.token_count.total": 42,
            },
        ) as llm:
            llm.add_event("retry", {"reason": f"card {CARD} declined"})
    provider.shutdown()
    return list(memory.get_finished_spans())


def _stored(api: ObsApi, app_id: str = "acme") -> list[TraceSpan]:
    with api.store.session() as s:
        return list(s.scalars(select(TraceSpan).where(TraceSpan.app_id == app_id)))


def _json_request(spans: list[dict], service: str = "js-agent") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "openllmetry"}, "spans": spans}],
            }
        ]
    }


def _json_span(span_id: str, trace_id: str = TRACE, **extra: object) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "openai.chat",
        "kind": 3,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001500000000",
        **extra,
    }


def test_real_exporter_spans_are_stored_redacted_and_on_the_timeline(obs_api: ObsApi) -> None:
    agent = obs_api.auth("acme", ("Agent",))
    assert obs_api.client.post(
        "/v1/events", json={"text": "hello", "session_id": "sess-1"}, headers=agent
    ).is_success
    decision = obs_api.client.post(
        "/v1/decisions",
        json={"actions": [{"id": "reply"}, {"id": "escalate"}], "session_id": "sess-1"},
        headers=agent,
    ).json()
    spans = _agent_spans("sess-1")
    with ServerThread(obs_api.app) as server:
        exporter = OTLPSpanExporter(
            endpoint=f"{server.url}/v1/traces",
            headers={"Authorization": f"Bearer {obs_api.token('acme', ('Agent',))}"},
            compression=Compression.Gzip,
        )
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # a retry: stored once
        exporter.shutdown()
    assert obs_api.client.post(
        "/v1/rewards",
        json={"decision_id": decision["decision_id"], "value": 1.0, "session_id": "sess-1"},
        headers=agent,
    ).is_success

    stored = {row.name: row for row in _stored(obs_api)}
    assert set(stored) == {"AgentExecutor", "ChatOpenAI"}
    root, llm = stored["AgentExecutor"], stored["ChatOpenAI"]
    assert root.trace_id == format(spans[0].context.trace_id, "032x")
    assert llm.parent_span_id == root.span_id and root.parent_span_id is None
    assert llm.session_id == "sess-1"  # inherited from its trace's root
    assert llm.service_name == "support-agent" and llm.kind == "internal"
    assert llm.attributes["input.value"] == "my card is <CREDIT_CARD>, email me at <EMAIL>"
    assert llm.attributes["llm.token_count.total"] == 42
    assert llm.events[0]["attributes"]["reason"] == "card <CREDIT_CARD> declined"
    assert llm.pii_counts == {"CREDIT_CARD": 2, "EMAIL": 1}
    assert llm.duration_ms >= 0

    timeline = obs_api.client.get(
        "/v1/sessions/sess-1/timeline", headers=obs_api.auth("acme", ("Analyst",))
    ).json()
    kinds = [item["type"] for item in timeline["items"]]
    assert kinds[:2] == ["event", "decision"] and kinds[-1] == "reward"
    assert kinds.count("span") == 2
    assert timeline["counts"] == {"event": 1, "decision": 1, "reward": 1, "span": 2}
    times = [item["time"] for item in timeline["items"]]
    assert times == sorted(times)
    made = next(i for i in timeline["items"] if i["type"] == "decision")
    assert made["probabilities"] == {"reply": 0.5, "escalate": 0.5}
    assert CARD not in json.dumps(timeline)

    text = obs_api.client.get("/v1/metrics", headers=obs_api.auth("acme", ("Analyst",))).text
    assert metric_value(text, "agl_otlp_spans_total", app_id="acme", outcome="stored") == 2
    assert metric_value(text, "agl_otlp_spans_total", app_id="acme", outcome="duplicate") == 2
    assert metric_value(text, "agl_ingested_records_total", kind="trace_spans") == 2
    assert metric_value(text, "agl_pii_redactions_total", kind="trace_spans", pii_type="EMAIL") == 1

    # Tenancy: another app sees nothing of this session.
    other = obs_api.client.get(
        "/v1/sessions/sess-1/timeline", headers=obs_api.auth("globex", ("Analyst",))
    )
    assert other.status_code == 200 and other.json()["items"] == []


def test_json_encoding_with_hex_ids_session_keys_and_partial_success(obs_api: ObsApi) -> None:
    agent = obs_api.auth("acme", ("Agent",))
    spans = [
        _json_span(
            "eee19b7ec3c1b174",
            attributes=[
                {
                    "key": "traceloop.association.properties.session_id",
                    "value": {"stringValue": "s-json"},
                },
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
            ],
            status={"code": 2, "message": "upstream 500"},
            events=[{"timeUnixNano": "1700000000500000000", "name": "exception"}],
        ),
        _json_span("eee19b7ec3c1b175", parentSpanId="eee19b7ec3c1b174"),
        _json_span("eee19b7ec3c1b176", trace_id="0" * 32),  # invalid: refused, others kept
    ]
    response = obs_api.client.post("/v1/traces", json=_json_request(spans), headers=agent)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "trace_id" in partial["errorMessage"]

    stored = sorted(_stored(obs_api), key=lambda r: r.span_id)
    assert [r.span_id for r in stored] == ["eee19b7ec3c1b174", "eee19b7ec3c1b175"]
    first, second = stored
    assert first.trace_id == TRACE and first.kind == "client"
    assert first.status_code == "error" and first.status_message == "upstream 500"
    assert first.attributes["gen_ai.usage.input_tokens"] == 12
    assert first.attributes["tags"] == ["a"]
    assert first.duration_ms == 1500.0 and first.service_name == "js-agent"
    assert first.start_time.year == 2023
    assert second.parent_span_id == first.span_id and second.session_id == "s-json"

    clean = obs_api.client.post(
        "/v1/traces", json=_json_request([_json_span("aaa19b7ec3c1b174")]), headers=agent
    )
    assert clean.status_code == 200 and clean.json() == {}


def test_gzip_json_and_spans_of_a_known_trace_inherit_its_session(obs_api: ObsApi) -> None:
    agent = obs_api.auth("acme", ("Agent",))
    first = _json_span(
        "1111111111111111",
        attributes=[{"key": "gen_ai.conversation.id", "value": {"stringValue": "conv-9"}}],
    )
    late = _json_span("2222222222222222", parentSpanId="1111111111111111")
    for span in (first, late):  # the child arrives in a later request
        body = gzip.compress(json.dumps(_json_request([span])).encode())
        response = obs_api.client.post(
            "/v1/traces",
            content=body,
            headers={**agent, "content-type": "application/json", "content-encoding": "gzip"},
        )
        assert response.status_code == 200, response.text
    assert {r.span_id: r.session_id for r in _stored(obs_api)} == {
        "1111111111111111": "conv-9",
        "2222222222222222": "conv-9",
    }


def test_malformed_bodies_are_400_with_a_clear_message(obs_api: ObsApi) -> None:
    agent = obs_api.auth("acme", ("Agent",))
    protobuf = {**agent, "content-type": "application/x-protobuf"}
    broken = obs_api.client.post("/v1/traces", content=b"\x0a\xff\xff\xff", headers=protobuf)
    assert broken.status_code == 400
    assert broken.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(broken.content)
    assert status.code == 3 and "not a valid OTLP ExportTraceServiceRequest" in status.message

    not_json = obs_api.client.post(
        "/v1/traces", content=b"{oops", headers={**agent, "content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "malformed_json"

    bad_id = obs_api.client.post(
        "/v1/traces", json=_json_request([_json_span("not-hex!")]), headers=agent
    )
    assert bad_id.status_code == 400 and "spanId must be a hex string" in bad_id.json()["message"]

    bad_gzip = obs_api.client.post(
        "/v1/traces", content=b"nope", headers={**protobuf, "content-encoding": "gzip"}
    )
    assert bad_gzip.status_code == 400
    assert "gzip" in Status.FromString(bad_gzip.content).message

    wrong_type = obs_api.client.post(
        "/v1/traces", content=b"x", headers={**agent, "content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert "application/x-protobuf" in wrong_type.json()["error"]["message"]
    assert _stored(obs_api) == []


def test_protobuf_success_response_is_an_export_response(obs_api: ObsApi) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = encode_spans(_agent_spans("s-proto")).SerializeToString()
    response = obs_api.client.post(
        "/v1/traces",
        content=body,
        headers={**obs_api.auth("acme", ("Agent",)), "content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")
    forbidden = obs_api.client.post(
        "/v1/traces",
        content=body,
        headers={**obs_api.auth("acme", ("Analyst",)), "content-type": "application/x-protobuf"},
    )
    assert forbidden.status_code == 403


@pytest.fixture
def small_api(tmp_path: Path):
    api = build_api(
        tmp_path,
        settings=ObservabilitySettings(otlp_max_spans=2, otlp_max_inflated_bytes=20_000),
        max_body_bytes=8_000,
    )
    yield api
    api.client.close()
    api.store.close()


def test_span_count_body_size_and_inflated_size_are_bounded(small_api: ObsApi) -> None:
    agent = small_api.auth("acme", ("Agent",))
    spans = [_json_span(f"{i:016x}") for i in range(1, 4)]
    response = small_api.client.post("/v1/traces", json=_json_request(spans), headers=agent)
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "at most 2 spans per request" in response.json()["partialSuccess"]["errorMessage"]
    with small_api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(TraceSpan)) == 2

    huge = _json_span("00000000000000ff", name="x" * 9_000)
    too_big = small_api.client.post("/v1/traces", json=_json_request([huge]), headers=agent)
    assert too_big.status_code == 413

    bomb = gzip.compress(b" " * 100_000)  # a few hundred bytes that inflate to 100 kB
    assert len(bomb) < 8_000
    inflated = small_api.client.post(
        "/v1/traces",
        content=bomb,
        headers={**agent, "content-type": "application/json", "content-encoding": "gzip"},
    )
    assert inflated.status_code == 413 and "inflated" in inflated.json()["message"]


def test_user_attribution_erasure_and_retention(obs_api: ObsApi) -> None:
    from datetime import UTC, datetime, timedelta

    from agent_lightning.observability.otlp_ingest import (
        delete_spans_older_than,
        delete_user_spans,
    )

    agent = obs_api.auth("acme", ("Agent",))
    user = [{"key": "user.id", "value": {"stringValue": "u-42"}}]
    spans = [_json_span("0000000000000a01", attributes=user), _json_span("0000000000000a02")]
    assert obs_api.client.post("/v1/traces", json=_json_request(spans), headers=agent).is_success
    assert {r.span_id: r.user_id for r in _stored(obs_api)} == {
        "0000000000000a01": "u-42",
        "0000000000000a02": None,
    }
    assert delete_user_spans(obs_api.store, "globex", "u-42") == 0
    assert delete_user_spans(obs_api.store, "acme", "u-42") == 1
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert delete_spans_older_than(obs_api.store, "acme", later) == 1
    assert _stored(obs_api) == []
