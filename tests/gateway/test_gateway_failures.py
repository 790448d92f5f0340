"""Bad input and bad upstreams: clear OpenAI-style errors, a gateway that stays up, honest spans."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from gateway_harness import Harness, gw, harness  # noqa: F401

CHAT = "/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


def client(gw: Harness, token: str | None = None) -> openai.OpenAI:  # noqa: F811
    return openai.OpenAI(base_url=gw.base_url, api_key=token or gw.token, max_retries=0)


def post(gw: Harness, body: bytes | dict, token: str | None = None, **kw) -> httpx.Response:  # noqa: F811
    headers = {**gw.auth(token), "content-type": "application/json"}
    if isinstance(body, dict):
        return httpx.post(gw.base_url + CHAT, json=body, headers=headers, timeout=20, **kw)
    return httpx.post(gw.base_url + CHAT, content=body, headers=headers, timeout=20, **kw)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    return error


def assert_still_up(gw: Harness) -> None:  # noqa: F811
    answer = client(gw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello"


# -- authentication ------------------------------------------------------------------------


def test_unauthenticated_calls_get_401_in_openai_shape(gw: Harness) -> None:  # noqa: F811
    missing = httpx.post(gw.base_url + CHAT, json={"model": "gpt-4o-mini", "messages": HELLO})
    assert_openai_error(missing, 401, "missing_api_key")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(openai.AuthenticationError):
        client(gw, "not-a-token").chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert_openai_error(post(gw, b"{}", token="a.b.c"), 401, "invalid_token")
    assert not gw.upstream.requests  # nothing reached the upstream


def test_roles_without_telemetry_write_are_refused(gw: Harness) -> None:  # noqa: F811
    analyst = gw.new_token(roles=("Analyst",))
    with pytest.raises(openai.PermissionDeniedError):
        client(gw, analyst).chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_api_keys_work_and_identify_the_app(gw: Harness) -> None:  # noqa: F811
    key = gw.new_api_key(app_id="keys-app")
    raw = client(gw, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO
    )
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert gw.span(raw.headers["x-agl-span-id"], app_id="keys-app").status == "ok"


def test_revoked_client_is_refused_once_the_cache_refreshes(gw: Harness) -> None:  # noqa: F811
    from agent_lightning.security.audit import Actor, AuditLog
    from agent_lightning.security.identities import revoke_client

    new = gw.new_client()
    token = gw.state.token_issuer.issue(new.client_id, "acme", ["Agent"]).access_token
    assert post(gw, {"model": "gpt-4o-mini", "messages": HELLO}, token).status_code == 200
    revoke_client(gw.state.store, AuditLog(gw.state.store), "acme", new.client_id, Actor("t"))
    ttl = gw.gateway.auth.revocation_ttl
    gw.gateway.auth.revocation_ttl = 0.0
    try:
        refused = post(gw, {"model": "gpt-4o-mini", "messages": HELLO}, token)
    finally:
        gw.gateway.auth.revocation_ttl = ttl
    assert_openai_error(refused, 401, "invalid_token")


def test_an_api_key_of_a_revoked_client_is_refused(gw: Harness) -> None:  # noqa: F811
    # The client is revoked in the store alone, as before keys were swept with their owner
    # (or by another process): the key itself is still unrevoked.
    from agent_lightning.security.audit import Actor, AuditLog
    from agent_lightning.security.identities import create_api_key

    owner = gw.new_client(roles=("Agent",))
    key = create_api_key(gw.state.store, AuditLog(gw.state.store), "acme", owner.client_id,
                         ["Agent"], Actor("t")).key  # fmt: skip
    body = {"model": "gpt-4o-mini", "messages": HELLO}
    assert post(gw, body, key).status_code == 200
    gw.state.store.revoke_client("acme", owner.client_id)
    ttl = gw.gateway.auth.revocation_ttl
    gw.gateway.auth.revocation_ttl = 0.0
    try:
        refused = post(gw, body, key)
    finally:
        gw.gateway.auth.revocation_ttl = ttl
    assert_openai_error(refused, 401, "invalid_token")


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', "invalid_json"),
        (b'["not", "an", "object"]', "invalid_request"),
        (b'{"messages": []}', "missing_model"),
    ],
)
def test_malformed_bodies_get_400_and_a_span(gw: Harness, body: bytes, code: str) -> None:  # noqa: F811
    response = post(gw, body)
    assert_openai_error(response, 400, code)
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "error" and span.http_status == 400 and span.error
    assert not gw.upstream.requests


def test_unknown_model_is_a_404_the_sdk_understands(gw: Harness) -> None:  # noqa: F811
    with pytest.raises(openai.NotFoundError) as caught:
        client(gw).chat.completions.create(model="no-such-model", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert gw.spans()[-1].http_status == 404


def test_body_over_the_limit_is_refused(gw: Harness) -> None:  # noqa: F811
    limit = gw.gateway.max_body
    gw.gateway.max_body = 1000
    try:
        response = post(gw, {"model": "gpt-4o-mini", "messages": HELLO, "pad": "x" * 2000})
    finally:
        gw.gateway.max_body = limit
    assert_openai_error(response, 413, "payload_too_large")


def test_wrong_method_and_unknown_path(gw: Harness) -> None:  # noqa: F811
    assert_openai_error(httpx.get(gw.base_url + CHAT, headers=gw.auth()), 405, "method_not_allowed")


# -- upstream trouble ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429, 503])
def test_retryable_statuses_are_retried(gw: Harness, status: int) -> None:  # noqa: F811
    gw.upstream.fail_next(f"status:{status}")
    raw = client(gw).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    assert raw.parse().choices[0].message.content == "echo: hello"
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.retries == 1 and span.status == "ok"
    assert len(gw.upstream.requests) == 2


def test_persistent_upstream_error_is_passed_on(gw: Harness) -> None:  # noqa: F811
    gw.upstream.fail_next("status:500", times=3)
    response = post(gw, {"model": "gpt-4o-mini", "messages": HELLO})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "fake upstream error 500"
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "upstream_error" and span.retries == 2 and span.http_status == 500


def test_client_errors_are_not_retried(gw: Harness) -> None:  # noqa: F811
    response = post(gw, {"model": "gpt-4o-mini"})  # the upstream requires messages
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "messages is required"
    assert len(gw.upstream.requests) == 1


def test_fallback_when_the_upstream_is_down(gw: Harness) -> None:  # noqa: F811
    raw = client(gw).chat.completions.with_raw_response.create(
        model="with-fallback", messages=HELLO
    )
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert gw.backup.requests[-1].body["model"] == "backup-model"
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.upstream == "backup" and span.upstream_model == "backup-model"
    assert span.retries == 2  # two tries on the dead upstream, then the fallback


def test_upstream_down_without_fallback_is_a_clear_502(gw: Harness) -> None:  # noqa: F811
    response = post(gw, {"model": "dead-model", "messages": HELLO})
    error = assert_openai_error(response, 502, "upstream_unreachable")
    assert "dead" in error["message"]
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "error" and span.upstream == "dead" and span.retries == 1


def test_hanging_upstream_times_out_with_504(gw: Harness) -> None:  # noqa: F811
    gw.upstream.fail_next("hang")
    started = time.monotonic()
    response = post(gw, {"model": "hang-model", "messages": HELLO})
    assert time.monotonic() - started < 5
    assert_openai_error(response, 504, "upstream_timeout")
    assert gw.span(response.headers["x-agl-span-id"]).http_status == 504
    assert_still_up(gw)


def test_garbage_from_the_upstream_is_a_502(gw: Harness) -> None:  # noqa: F811
    gw.upstream.fail_next("garbage")
    response = post(gw, {"model": "gpt-4o-mini", "messages": HELLO})
    assert_openai_error(response, 502, "bad_upstream_response")
    span = gw.span(response.headers["x-agl-span-id"])
    assert span.status == "error" and "502 Bad Gateway" in span.response["raw"]


@pytest.mark.parametrize("fault", ["reset", "garbage"])
def test_broken_stream_ends_with_an_error_the_sdk_raises(gw: Harness, fault: str) -> None:  # noqa: F811
    gw.upstream.fail_next(fault)
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            received.append(chunk.choices[0].delta.content)
    if fault == "reset":
        assert received  # the start of the answer arrived before the failure
    code = "upstream_reset" if fault == "reset" else "bad_upstream_response"
    assert caught.value.code == code
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.status == "error" and span.stream and span.error
    assert_still_up(gw)


def test_client_leaving_mid_stream_is_recorded_and_the_upstream_released(gw: Harness) -> None:  # noqa: F811
    gw.upstream.fail_next("slow")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a b c d e f"}],
            "stream": True}  # fmt: skip
    with httpx.stream("POST", gw.base_url + CHAT, json=body, headers=gw.auth()) as response:
        span_id = response.headers["x-agl-span-id"]
        next(response.iter_bytes())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stored = [s for s in gw.spans() if s.id == span_id]
        if stored:
            break
        time.sleep(0.05)
    assert stored and stored[0].status == "client_disconnected"
    assert stored[0].latency_ms < 1500  # it stopped, rather than waiting for the whole answer
    assert_still_up(gw)
