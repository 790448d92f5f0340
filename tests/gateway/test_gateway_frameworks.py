"""Agents built with LangChain, AutoGen and the OpenAI Agents SDK, pointed at the gateway.

Each agent is used as its framework documents it; the only change is the base URL (and the
agent-lightning token as API key). Each test checks that the agent got the upstream's answer and
that the spans stored for its session match what the upstream was sent and answered.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from gateway_harness import Harness, gw, harness  # noqa: F401


def session_spans(gw: Harness, session: str, expected: int = 2) -> list:  # noqa: F811
    # A streamed call's span is queued after its last byte is sent: wait for the agent's calls.
    spans = gw.spans(session_id=session, at_least=expected)
    assert spans, f"no spans for session {session}"
    return spans


def assert_spans_match_upstream(gw: Harness, spans: list) -> None:  # noqa: F811
    """Every span's request is what the upstream received, in order, and all went well."""
    received = [r.body for r in gw.upstream.requests[-len(spans) :]]
    assert [s.request["messages"] for s in spans] == [r["messages"] for r in received]
    assert all(s.status == "ok" and s.http_status == 200 for s in spans)


def test_langchain_chat_model_invoke_and_stream(gw: Harness) -> None:  # noqa: F811
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=gw.base_url,
        api_key=gw.token,
        default_headers={"X-AGL-Session": "lc-chat"},
        max_retries=0,
    )
    assert llm.invoke("what is the status of my ticket?").content == (
        "echo: what is the status of my ticket?"
    )
    streamed = "".join(chunk.content for chunk in llm.stream("stream please"))
    assert streamed == "echo: stream please"
    spans = session_spans(gw, "lc-chat")
    assert [s.stream for s in spans] == [False, True]
    assert spans[1].response["choices"][0]["message"]["content"] == "echo: stream please"
    assert_spans_match_upstream(gw, spans)


def test_langchain_agent_with_a_tool(gw: Harness) -> None:  # noqa: F811
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    calls = []

    @tool
    def lookup_order(order_id: int) -> str:
        """Look up the delivery status of an order."""
        calls.append(order_id)
        return f"order {order_id} ships tomorrow"

    llm = ChatOpenAI(
        model="gpt-4o",
        base_url=gw.base_url,
        api_key=gw.token,
        default_headers={"X-AGL-Session": "lc-agent"},
    )
    agent = create_agent(llm, tools=[lookup_order])
    result = agent.invoke({"messages": [{"role": "user", "content": "where is order 2?"}]})
    assert calls == [2]
    assert result["messages"][-1].content == "the tool said order 2 ships tomorrow"
    spans = session_spans(gw, "lc-agent")
    assert len(spans) == 2  # the tool call, then the answer
    first, second = spans
    assert first.response["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == (
        "lookup_order"
    )
    assert second.request["messages"][-1]["role"] == "tool"
    assert_spans_match_upstream(gw, spans)


# AutoGen resolves "gpt-4o-mini" to a dated name and warns when the answer names another.
@pytest.mark.filterwarnings("ignore:Resolved model mismatch")
def test_autogen_assistant_agent_with_a_tool(gw: Harness) -> None:  # noqa: F811
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def lookup_order(order_id: int) -> str:
        """Look up the delivery status of an order."""
        return f"order {order_id} is in the warehouse"

    async def run() -> str:
        client = OpenAIChatCompletionClient(
            model="gpt-4o-mini",
            base_url=gw.base_url,
            api_key=gw.token,
            default_headers={"X-AGL-Session": "autogen"},
        )
        agent = AssistantAgent(
            "support", model_client=client, tools=[lookup_order], reflect_on_tool_use=True
        )
        result = await agent.run(task="where is order 2?")
        await client.close()
        return result.messages[-1].content

    assert asyncio.run(run()) == "the tool said order 2 is in the warehouse"
    spans = session_spans(gw, "autogen")
    assert len(spans) == 2
    tool_call = spans[0].response["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(tool_call["function"]["arguments"]) == {"order_id": 2}
    assert_spans_match_upstream(gw, spans)


@pytest.mark.parametrize("streaming", [False, True])
def test_openai_agents_sdk_runner_with_a_tool(gw: Harness, streaming: bool) -> None:  # noqa: F811
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # the SDK would export traces to OpenAI otherwise
    session = f"agents-sdk-{streaming}"

    @function_tool
    def lookup_order(order_id: int) -> str:
        """Look up the delivery status of an order."""
        return f"order {order_id} was delivered"

    async def run() -> str:
        client = AsyncOpenAI(
            base_url=gw.base_url, api_key=gw.token, default_headers={"X-AGL-Session": session}
        )
        model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
        agent = Agent(
            name="support", instructions="Help with orders.", model=model, tools=[lookup_order]
        )
        if streaming:
            result = Runner.run_streamed(agent, "where is order 2?")
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, "where is order 2?")
        await client.close()
        return result.final_output

    assert asyncio.run(run()) == "the tool said order 2 was delivered"
    spans = session_spans(gw, session)
    assert len(spans) == 2 and all(s.stream is streaming for s in spans)
    assert spans[0].request["messages"][0] == {"role": "system", "content": "Help with orders."}
    assert spans[1].response["choices"][0]["message"]["content"] == (
        "the tool said order 2 was delivered"
    )
    assert_spans_match_upstream(gw, spans)


@pytest.mark.parametrize("streaming", [False, True])
def test_openai_agents_sdk_with_its_default_responses_api(gw: Harness, streaming: bool) -> None:  # noqa: F811
    """Only the client's base URL changes: the SDK talks to /v1/responses, as it does by default."""
    from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_provider import OpenAIProvider
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    session = f"agents-responses-{streaming}"

    @function_tool
    def lookup_order(order_id: int) -> str:
        """Look up the delivery status of an order."""
        return f"order {order_id} is late"

    async def run() -> str:
        client = AsyncOpenAI(
            base_url=gw.base_url, api_key=gw.token, default_headers={"X-AGL-Session": session}
        )
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client))
        agent = Agent(
            name="support", instructions="Help.", model="gpt-4o-mini", tools=[lookup_order]
        )
        if streaming:
            result = Runner.run_streamed(agent, "where is order 2?", run_config=config)
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, "where is order 2?", run_config=config)
        await client.close()
        return result.final_output

    assert asyncio.run(run()) == "the tool said order 2 is late"
    spans = session_spans(gw, session)
    assert [s.endpoint for s in spans] == ["responses", "responses"]
    assert all(s.status == "ok" and s.stream is streaming for s in spans)
    assert spans[0].response["output"][0]["name"] == "lookup_order"
    assert spans[1].response["output"][0]["content"][0]["text"] == "the tool said order 2 is late"
    assert spans[1].usage["total_tokens"] > 0
    received = [r.body for r in gw.upstream.requests[-2:]]
    assert [s.request["input"] for s in spans] == [r["input"] for r in received]
