"""The unmodified `openai` SDK against the gateway: sync, async, streaming, tools, and the spans."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from gateway_harness import AZURE_KEY, UPSTREAM_KEY, Harness, gw, harness  # noqa: F401

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by its number",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "integer"}},
                "required": ["order_id"],
            },
        },
    }
]


def client(gw: Harness, **kwargs) -> openai.OpenAI:  # noqa: F811
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.token, max_retries=0, **kwargs)


def test_chat_completion_reaches_the_upstream_and_is_recorded(gw: Harness) -> None:  # noqa: F811
    messages = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "where is my parcel?"},
    ]
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, extra_headers={"X-AGL-Session": "run-1"}
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: where is my parcel?"
    span_id = raw.headers["x-agl-span-id"]

    sent = gw.upstream.requests[-1]
    assert sent.body["messages"] == messages
    # The upstream sees the gateway's own key, never the agent's platform token.
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert gw.token not in json.dumps(sent.headers)

    span = gw.span(span_id)
    assert span.session_id == "run-1"
    assert span.endpoint == "chat/completions" and span.model == "gpt-4o-mini"
    assert span.status == "ok" and span.http_status == 200 and span.stream is False
    assert span.upstream == "primary" and span.retries == 0
    assert span.request["messages"] == messages
    assert span.response["choices"][0]["message"]["content"] == "echo: where is my parcel?"
    assert span.usage == answer.usage.model_dump(exclude_none=True)
    assert span.latency_ms > 0 and span.ttft_ms is not None


def test_request_bytes_pass_through_unchanged_without_a_policy(gw: Harness) -> None:  # noqa: F811
    body = b'{"model":  "gpt-4o-mini",\n "messages": [{"role": "user", "content": "hi \\u00e9"}],'
    body += b' "temperature": 0.25, "seed": 7, "vendor_extension": {"x": [1, 2]}}'
    response = httpx.post(
        gw.base_url + "/chat/completions",
        content=body,
        headers={**gw.auth(), "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert gw.upstream.requests[-1].raw == body


def test_async_streaming_passes_chunks_and_stores_the_assembled_answer(gw: Harness) -> None:  # noqa: F811
    async def run() -> tuple[list[str], str]:
        async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=gw.token) as aclient:
            raw = await aclient.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "stream this answer"}],
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"X-AGL-Session": "stream-session"},
            )
            stream = raw.parse()
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return pieces, raw.headers["x-agl-span-id"]

    pieces, span_id = asyncio.run(run())
    assert len(pieces) > 3  # chunk by chunk, not one buffered answer
    assert "".join(pieces) == "echo: stream this answer"
    span = gw.span(span_id)
    assert span.stream is True and span.status == "ok" and span.error is None
    assert span.response["choices"][0]["message"]["content"] == "echo: stream this answer"
    assert span.response["choices"][0]["finish_reason"] == "stop"
    assert span.usage["completion_tokens"] == 4
    assert 0 < span.ttft_ms <= span.latency_ms


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_pass_through(gw: Harness, stream: bool) -> None:  # noqa: F811
    kwargs = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "where is order 2?"}],
        "tools": TOOLS,
        "tool_choice": "auto",
    }
    api = client(gw).chat.completions
    if stream:
        raw = api.with_raw_response.create(**kwargs, stream=True)
        name, arguments = "", ""
        for chunk in raw.parse():
            for call in chunk.choices[0].delta.tool_calls or []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""
    else:
        raw = api.with_raw_response.create(**kwargs)
        call = raw.parse().choices[0].message.tool_calls[0]
        name, arguments = call.function.name, call.function.arguments
    assert name == "lookup_order" and json.loads(arguments) == {"order_id": 2}
    assert gw.upstream.requests[-1].body["tools"] == TOOLS
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.request["tools"] == TOOLS
    stored = span.response["choices"][0]["message"]["tool_calls"][0]
    assert stored["function"] == {"name": "lookup_order", "arguments": arguments}
    assert span.response["choices"][0]["finish_reason"] == "tool_calls"


def test_n_logprobs_response_format_and_token_ids_pass_through(gw: Harness) -> None:  # noqa: F811
    answer = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "two answers"}],
        n=2,
        logprobs=True,
        response_format={"type": "json_object"},
        extra_body={"return_token_ids": True},
    )
    assert len(answer.choices) == 2
    assert json.loads(answer.choices[1].message.content) == {"answer": "echo: two answers"}
    assert [t.token for t in answer.choices[0].logprobs.content][0] == '{"answer":'
    assert answer.choices[0].model_extra["token_ids"]
    sent = gw.upstream.requests[-1].body
    assert sent["n"] == 2 and sent["logprobs"] is True and sent["return_token_ids"] is True
    assert sent["response_format"] == {"type": "json_object"}


def test_embeddings_completions_and_models(gw: Harness) -> None:  # noqa: F811
    api = client(gw)
    embedded = api.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedded.data) == 2 and len(embedded.data[0].embedding) == 8
    completion = api.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    assert completion.choices[0].text == " echo: say hi"
    # No default runtime to ask: the gateway lists the model names it routes.
    listed = [m.id for m in api.models.list()]
    assert listed[:2] == ["support-bot", "with-fallback"] and "backup-model" in listed
    endpoints = [s.endpoint for s in gw.spans()[-3:]]
    assert endpoints == ["embeddings", "completions", "models"]
    assert gw.spans()[-3].response["data"][0]["embedding"] == {"dimensions": 8}


def test_session_from_path_prefix_and_from_user_field(gw: Harness) -> None:  # noqa: F811
    by_path = openai.OpenAI(base_url=f"{gw.url}/s/rollout-42/v1", api_key=gw.token)
    raw = by_path.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert gw.span(raw.headers["x-agl-span-id"]).session_id == "rollout-42"
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], user="customer-7"
    )
    span = gw.span(raw.headers["x-agl-span-id"])
    assert span.session_id == "customer-7" and span.user_id == "customer-7"


def test_azure_deployment_url_api_version_and_key(gw: Harness) -> None:  # noqa: F811
    answer = client(gw).chat.completions.create(
        model="azure-model", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert answer.choices[0].message.content == "echo: hello azure"
    sent = gw.upstream.requests[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == AZURE_KEY and "Authorization" not in sent.headers


def test_pii_is_redacted_before_storage(gw: Harness) -> None:  # noqa: F811
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "mail me at jane.doe@example.com"}],
        logprobs=True,
    )
    # The agent gets the real answer; the store keeps it redacted, token data dropped.
    assert raw.parse().choices[0].message.content == "echo: mail me at jane.doe@example.com"
    span = gw.span(raw.headers["x-agl-span-id"])
    assert "jane.doe@example.com" not in json.dumps([span.request, span.response])
    assert "<EMAIL>" in span.request["messages"][0]["content"]
    assert span.response["choices"][0]["logprobs"] == {"dropped": "the text held personal data"}
    assert span.pii_counts == {"EMAIL": 2}


def test_rest_api_still_served_beside_the_gateway(gw: Harness) -> None:  # noqa: F811
    assert httpx.get(gw.url + "/v1/me", headers=gw.auth()).json()["app"] == "acme"
    before = len(gw.spans())
    api = client(gw)
    for i in range(20):
        api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{i}"}]
        )
    assert len(gw.spans()) == before + 20
