"""Prompt-variant policies made the way users make them: through `POST /v1/policies`, then
applied by the gateway and learned from by a task (the store-level fixture of
test_gateway_policy.py skips that first step, which once refused the `variants` key)."""

from __future__ import annotations

import httpx
import openai
from gateway_harness import Harness, harness  # noqa: F401

VARIANTS = [
    {"id": "concise", "system_prompt": "Answer in one sentence.\n{original}"},
    {"id": "careful", "system_prompt": "You are careful.", "lessons": ["Ask for the order."]},
]


def test_variants_policy_created_through_the_api_is_applied_and_learns(harness: Harness) -> None:  # noqa: F811
    gw = harness
    dev = gw.auth(gw.new_token(roles=("Developer",)))
    policies = gw.base_url + "/policies"
    bad = [{"id": "concise"}, {"id": "concise"}]
    for variants, says in (
        ([], "variants: must be a non-empty list"),
        ([{"id": "x"}, {"system_prompt": "no id"}], "variants[1]: each variant needs a string id"),
        (bad, "variants[1]: id 'concise' appears twice"),
    ):
        refused = httpx.post(
            policies,
            json={"name": "support-prompts", "decision_point": "gateway.support",
                  "spec": {"variants": variants}},
            headers=dev,
        )  # fmt: skip
        assert refused.status_code == 422 and says in refused.json()["error"]["message"]
    created = httpx.post(
        policies,
        json={"name": "support-prompts", "decision_point": "gateway.support",
              "spec": {"variants": VARIANTS}},
        headers=dev,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["live_version"] == 1  # a learned scorer over the variants

    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.token, max_retries=0)
    chosen = []
    for run in range(6):
        answer = api.chat.completions.with_raw_response.create(
            model="support-bot",
            messages=[{"role": "user", "content": "where is my order?"}],
            extra_headers={"X-AGL-Session": f"api-run-{run}"},
        )
        chosen.append(answer.headers["x-agl-variant"])
        decision_id = answer.headers["x-agl-decision-id"]
        decision = gw.state.store.get_record("decisions", "acme", decision_id)
        assert decision.policy_version == 1 and decision.propensity == 0.5  # no prior: uniform
        reward = httpx.post(
            gw.base_url + "/rewards",
            json={"session_id": f"api-run-{run}", "value": 1.0},
            headers=gw.auth(),
        )
        assert reward.status_code == 201
    assert set(chosen) <= {"concise", "careful"}

    # The harness runs no scheduler: run the task as the controller's worker would.
    from agent_lightning.controller import LearningController
    from agent_lightning.security.audit import AuditLog

    controller = LearningController(
        gw.state.store, AuditLog(gw.state.store), every_decisions=None, every_seconds=None
    )
    task = controller.run("acme", {"task": "learn", "policy": "support-prompts"})
    assert task.status == "succeeded", task.error
    assert task.result["examples"] == 6
