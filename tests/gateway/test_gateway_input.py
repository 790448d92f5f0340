"""Odd input from agents: ids with control characters, NaN, deep nesting, over-long names.

Each must be answered cleanly and the call stored: a failure after the upstream was called
costs the agent a billed answer it never receives (and its SDK retries, paying again).
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from gateway_harness import Harness, gw, harness  # noqa: F401

from agent_lightning.gateway.app import span_id
from agent_lightning.gateway.capture import SpanRecord, list_spans
from agent_lightning.gateway.sink import SpanSink
from agent_lightning.store import Store

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(gw: Harness, path: str, body: bytes | dict, **headers: str | bytes) -> httpx.Response:  # noqa: F811
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        gw.url + path,
        content=content,
        headers={**gw.auth(), "content-type": "application/json", **headers},
        timeout=20,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_control_characters_in_the_user_field_are_dropped_and_the_answer_arrives(
    gw: Harness,  # noqa: F811
    stream: bool,
) -> None:
    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.token, max_retries=0)
    raw = api.chat.completions.with_raw_response.create(
        **CHAT, user="alice\n\x00\x7f", stream=stream
    )
    answer = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    else:
        text = answer.choices[0].message.content
    assert text == "echo: hi"
    assert raw.headers["x-agl-session"] == "alice"
    assert len(gw.upstream.requests) == 1
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.user_id == span.session_id == "alice"
    assert span.status == "ok" and span.http_status == 200


def test_session_path_segment_is_split_raw_and_decoded_once(gw: Harness) -> None:  # noqa: F811
    cases = [
        # (path segment, session stored, header echoed)
        ("abc%0d%0aSet-Cookie:%20x=1", "abcSet-Cookie: x=1", "abcSet-Cookie:%20x=1"),
        ("thread%2F42", "thread/42", "thread/42"),
        ("%2541", "%41", "%2541"),
        ("caf%C3%A9", "café", "caf%C3%A9"),
    ]
    for segment, stored, echoed in cases:
        response = post(gw, f"/s/{segment}/v1/chat/completions", CHAT)
        assert response.status_code == 200, (segment, response.text)
        assert response.headers["x-agl-session"] == echoed
        assert gw.span(response.headers["x-agl-span-id"]).session_id == stored


def test_session_header_is_utf8_like_the_path_form(gw: Harness) -> None:  # noqa: F811
    by_header = post(gw, "/v1/chat/completions", CHAT, **{"X-AGL-Session": "caf\té".encode()})
    by_path = post(gw, "/s/caf%C3%A9/v1/chat/completions", CHAT)
    for response in (by_header, by_path):
        assert response.status_code == 200
        assert response.headers["x-agl-session"] == "caf%C3%A9"
        assert gw.span(response.headers["x-agl-span-id"]).session_id == "café"
    # Not UTF-8: still taken (as latin-1) and echoed in a form a header can carry.
    odd = post(gw, "/v1/chat/completions", CHAT, **{"X-AGL-Session": b"caf\xe9"})
    assert odd.status_code == 200 and odd.headers["x-agl-session"] == "caf%C3%A9"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_before_the_upstream(gw: Harness, value: str) -> None:  # noqa: F811
    body = b'{"model": "gpt-4o-mini", "messages": [], "temperature": ' + value.encode() + b"}"
    response = post(gw, "/v1/chat/completions", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert gw.upstream.requests == []
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "error" and span.http_status == 400


def test_deeply_nested_json_is_invalid_json_not_an_internal_error(gw: Harness) -> None:  # noqa: F811
    depth = 100_000
    body = b'{"model": "gpt-4o-mini", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = post(gw, "/v1/chat/completions", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert gw.upstream.requests == []
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.http_status == 400 and "raw" in span.request


def test_deep_but_parseable_request_is_answered_and_stored(gw: Harness) -> None:  # noqa: F811
    # Deep enough that walking it for PII overflows the stack, shallow enough to parse.
    depth = 600
    nested = "[" * depth + '"mail jane.doe@example.com"' + "]" * depth
    body = json.dumps(CHAT)[:-1].encode() + b', "metadata": ' + nested.encode() + b"}"
    response = post(gw, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "ok"
    assert span.request["note"] == "nested too deeply"
    assert "jane.doe@example.com" not in json.dumps(span.request)


def test_over_long_names_are_cut_to_their_columns(gw: Harness) -> None:  # noqa: F811
    model = "gpt-" + "x" * 300
    response = post(gw, "/v1/chat/completions", {**CHAT, "model": model})
    assert response.status_code == 200
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.model == span.upstream_model == model[:200]
    before = len(gw.spans())
    assert httpx.get(gw.base_url + "/models/" + "m" * 300, headers=gw.auth()).status_code == 200
    assert gw.spans(at_least=before + 1)[-1].endpoint == ("models/" + "m" * 300)[:64]


def test_sink_stores_long_names_and_non_finite_numbers(store: Store) -> None:
    # On PostgreSQL either one used to fail the row (DataError), and the call was never stored.
    store.ensure_app("acme")
    span = SpanRecord(span_id(), "acme", "chat/completions", 0.0)
    span.model = span.upstream_model = "gpt-" + "x" * 300
    span.policy_name = span.variant_id = "v" * 300
    span.request_raw = b'{"model": "m", "messages": [], "temperature": NaN}'
    span.response_raw = (
        b'{"choices": [{"index": 0, "message": {"content": "ok"},'
        b' "logprobs": {"content": [{"token": "ok", "logprob": -Infinity}]}}]}'
    )
    span.http_status = 200
    assert SpanSink(store).write([span]) == (1, 0)
    (stored,) = list_spans(store, "acme")
    assert stored.model == stored.upstream_model == span.model[:200]
    assert stored.policy_name == stored.variant_id == "v" * 200
    assert stored.request["temperature"] == "NaN"
    assert stored.response["choices"][0]["logprobs"]["content"][0]["logprob"] == "-Infinity"
