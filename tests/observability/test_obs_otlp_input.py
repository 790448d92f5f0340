"""OTLP ingest of hostile input: NUL in a span's text (both databases), JSON nested too deep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from obs_harness import ObsApi, build_api, obs_api_fixture  # noqa: F401
from sqlalchemy import select

from agent_lightning.observability import TraceSpan

TRACE = "5b8efff798038103d269b633813fc60c"


def _span(span_id: str, name: str = "openai.chat", **extra: object) -> dict:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": name,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        **extra,
    }


def _resource(spans: list[dict], service: str = "agent", scope: str = "scope") -> dict:
    return {
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": scope}, "spans": spans}],
    }


def _attr(key: str, value: str) -> list[dict]:
    return [{"key": key, "value": {"stringValue": value}}]


@pytest.fixture
def api_on(database_url: str, tmp_path: Path) -> Iterator[ObsApi]:
    """The server with observability on SQLite, then on PostgreSQL (which cannot store NUL)."""
    api = build_api(tmp_path, database_url=database_url)
    yield api
    api.client.close()
    api.obs.stop()
    api.store.close()


def test_nul_in_span_text_refuses_that_span_and_keeps_the_others(api_on: ObsApi) -> None:
    body = {
        "resourceSpans": [
            _resource(
                [
                    _span("0000000000000001"),
                    _span("0000000000000002", name="bad\x00name"),
                    _span("0000000000000003", status={"code": 2, "message": "oops\x00"}),
                    _span("0000000000000004", attributes=_attr("session.id", "s\x001")),
                    _span("0000000000000005", attributes=_attr("user.id", "u\x001")),
                    # JSON columns escape NUL: an attribute value with one is stored as sent.
                    _span("0000000000000006", attributes=_attr("note", "a\x00b")),
                ]
            ),
            _resource([_span("0000000000000007")], service="svc\x00"),
            _resource([_span("0000000000000008")], scope="scope\x00"),
        ]
    }
    response = api_on.client.post("/v1/traces", json=body, headers=api_on.auth("acme", ("Agent",)))
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "6"
    for column in ("name", "status_message", "session_id", "user_id", "service_name"):
        assert f"{column} must not contain NUL" in partial["errorMessage"]
    with api_on.store.session() as s:
        stored = {row.span_id: row for row in s.scalars(select(TraceSpan))}
    assert set(stored) == {"0000000000000001", "0000000000000006"}
    assert stored["0000000000000006"].attributes["note"] == "a\x00b"


def test_json_nested_past_the_parser_limit_is_a_malformed_json_400(obs_api: ObsApi) -> None:
    headers = {**obs_api.auth("acme", ("Agent",)), "content-type": "application/json"}
    deep = '{"arrayValue":{"values":[' * 2000 + '{"stringValue":"x"}' + "]}}" * 2000
    span = _span("0000000000000001", attributes=[{"key": "k", "value": "DEEP"}])
    deep_attribute = json.dumps({"resourceSpans": [_resource([span])]}).replace('"DEEP"', deep)
    for body in (
        "[" * 5000 + "]" * 5000,
        '{"resourceSpans":' * 5000 + "[]" + "}" * 5000,
        deep_attribute,
    ):
        response = obs_api.client.post("/v1/traces", content=body.encode(), headers=headers)
        assert response.status_code == 400, response.text[:200]
        assert response.json()["error"]["code"] == "malformed_json"
        assert response.json()["code"] == 3
