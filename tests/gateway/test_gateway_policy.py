"""Applying the live policy: prompt variants chosen per session, logged as decisions, rewarded."""

from __future__ import annotations

import httpx
import openai
import pytest
from gateway_harness import Harness, gw, harness  # noqa: F401

from agent_lightning.gateway.policy import LESSONS_HEADER, Variant
from agent_lightning.store import Policy, new_id

VARIANTS = [
    {"id": "concise", "system_prompt": "Answer in one sentence.\n{original}"},
    {
        "id": "careful",
        "system_prompt": "You are a careful support agent.",
        "lessons": ["Ask for the order number first."],
        "model": "gpt-4o",
    },
]
AGENT_PROMPT = "You are the agent's own prompt."


@pytest.fixture(scope="module", autouse=True)
def policy(harness: Harness) -> None:  # noqa: F811
    harness.state.store.create_policy(
        Policy(
            id=new_id(),
            app_id="acme",
            name="support-prompts",
            decision_point="gateway.support",
            spec={"variants": VARIANTS},
        )
    )


def call(gw: Harness, session: str | None, text: str = "where is my order?"):  # noqa: F811, ANN201
    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.token, max_retries=0)
    headers = {"X-AGL-Session": session} if session else {}
    return api.chat.completions.with_raw_response.create(
        model="support-bot",
        messages=[{"role": "system", "content": AGENT_PROMPT}, {"role": "user", "content": text}],
        extra_headers=headers,
    )


def expected_upstream(variant: str) -> tuple[str, str]:
    if variant == "concise":
        return "gpt-4o-mini", f"Answer in one sentence.\n{AGENT_PROMPT}"
    lessons = f"{LESSONS_HEADER}\n- Ask for the order number first."
    return "gpt-4o", f"You are a careful support agent.\n\n{lessons}"


def test_variant_applied_logged_as_decision_and_sticky_per_session(gw: Harness) -> None:  # noqa: F811
    first = call(gw, "policy-run-1")
    assert first.parse().choices[0].message.content == "echo: where is my order?"
    variant = first.headers["x-agl-variant"]
    decision_id = first.headers["x-agl-decision-id"]
    model, system = expected_upstream(variant)
    sent = gw.upstream.requests[-1].body
    assert sent["model"] == model and sent["messages"][0] == {"role": "system", "content": system}
    assert sent["messages"][1]["content"] == "where is my order?"

    second = call(gw, "policy-run-1", "and my refund?")
    assert second.headers["x-agl-decision-id"] == decision_id  # one choice per agent run
    assert second.headers["x-agl-variant"] == variant

    decision = gw.state.store.get_record("decisions", "acme", decision_id)
    assert decision.session_id == "policy-run-1" and decision.action_id == variant
    assert decision.decision_point == "gateway.support" and decision.propensity == 0.5
    assert {a["id"] for a in decision.actions} == {"concise", "careful"}
    assert decision.context["text"] == "where is my order?"

    spans = gw.spans(session_id="policy-run-1")
    assert [s.decision_id for s in spans] == [decision_id, decision_id]
    assert {s.variant_id for s in spans} == {variant}
    assert {s.policy_name for s in spans} == {"support-prompts"}
    assert spans[0].request["messages"][0]["content"] == system  # stored as sent upstream


def test_rewards_for_the_session_and_its_decision(gw: Harness) -> None:  # noqa: F811
    decision_id = call(gw, "policy-run-2").headers["x-agl-decision-id"]
    rewards = gw.base_url + "/rewards"
    by_session = httpx.post(
        rewards, json={"session_id": "policy-run-2", "value": 1.0}, headers=gw.auth()
    )
    assert by_session.status_code == 201, by_session.text
    by_decision = httpx.post(rewards, json={"decision_id": decision_id, "value": 0.5},
                             headers=gw.auth())  # fmt: skip
    assert by_decision.status_code == 201, by_decision.text
    stored = httpx.get(
        rewards,
        params={"session_id": "policy-run-2"},
        headers=gw.auth(gw.new_token(roles=("Analyst",))),
    ).json()
    assert [r["value"] for r in stored["items"]] == [1.0]


def test_each_call_without_a_session_is_its_own_decision(gw: Harness) -> None:  # noqa: F811
    ids = {call(gw, None).headers["x-agl-decision-id"] for _ in range(3)}
    assert len(ids) == 3


def test_both_variants_get_explored(gw: Harness) -> None:  # noqa: F811
    seen = {call(gw, f"explore-{i}").headers["x-agl-variant"] for i in range(30)}
    assert seen == {"concise", "careful"}


def test_no_policy_for_the_app_passes_through(gw: Harness) -> None:  # noqa: F811
    other = gw.new_token(app_id="no-policy-app")
    api = openai.OpenAI(base_url=gw.base_url, api_key=other, max_retries=0)
    raw = api.chat.completions.with_raw_response.create(
        model="support-bot", messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-agl-decision-id" not in raw.headers
    sent = gw.upstream.requests[-1].body
    assert sent == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_variant_rendering() -> None:
    keep = Variant("keep", lessons=("Check the order id.",))
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    applied = keep.apply(request)
    assert applied["messages"][0] == {
        "role": "system",
        "content": f"{LESSONS_HEADER}\n- Check the order id.",
    }
    assert request["messages"] == [{"role": "user", "content": "hi"}]  # input untouched
    placed = Variant("placed", system_prompt="Intro.\n{lessons}\nOutro: {original}", lessons=("x",))
    with_parts = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Mine."}]},
            {"role": "user", "content": "q"},
        ]
    }
    assert placed.apply(with_parts)["messages"][0] == {
        "role": "developer",
        "content": f"Intro.\n{LESSONS_HEADER}\n- x\nOutro: Mine.",
    }
    assert Variant("model-only", model="big").apply(request) == {**request, "model": "big"}
    with pytest.raises(ValueError):
        Variant.parse({"system_prompt": "no id"})
