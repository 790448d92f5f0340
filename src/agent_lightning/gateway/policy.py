"""Applying the live policy to a call: pick a prompt variant, rewrite the request, log why.

A route may name a policy (`routes[].policy` in runtime.yaml). The policy's `spec["variants"]`
lists the arms the learning engine chooses between:

```json
{"variants": [
  {"id": "baseline"},
  {"id": "concise", "system_prompt": "Answer in one sentence.\\n{original}"},
  {"id": "lessons", "system_prompt": "You are a support agent.\\n{lessons}",
   "lessons": ["Ask for the order number before looking up an order."], "model": "gpt-4o"}
]}
```

`system_prompt` replaces the agent's own system message; `{original}` puts the agent's text back
where it stands and `{lessons}` places the lessons block (appended at the end when absent).
A variant without `system_prompt` keeps the agent's message (plus lessons, if any). `model`
sends the call to another model (routed like any other name).

The choice goes through the DecisionService, so it is logged as a decision with its propensity
and learned from like any other. Within one session the choice is sticky: the decision id is
derived from (policy, session), so every call of a multi-step run uses the same variant, and a
reward for the session scores the variant that produced it (also across gateway replicas, since
the decision service returns the decision already stored under that id).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agent_lightning.gateway")

LESSONS_HEADER = "Lessons from past mistakes:"
MAX_CONTEXT_CHARS = 4_000


@dataclass(frozen=True)
class Variant:
    id: str
    system_prompt: str | None = None
    lessons: tuple[str, ...] = ()
    model: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Variant:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ValueError("each variant needs a string id")
        lessons = raw.get("lessons") or ()
        if isinstance(lessons, str):
            lessons = (lessons,)
        prompt = raw.get("system_prompt")
        model = raw.get("model")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"variant {raw['id']!r}: system_prompt must be text")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"variant {raw['id']!r}: model must be a name")
        return cls(raw["id"], prompt, tuple(str(x) for x in lessons), model)

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """A new request with this variant's system message and model; the input is untouched."""
        out = dict(request)
        if self.system_prompt is not None or self.lessons:
            messages = list(request.get("messages") or [])
            first = messages[0] if messages and isinstance(messages[0], dict) else None
            has_system = first is not None and first.get("role") in ("system", "developer")
            original = _text(first.get("content")) if has_system and first else ""
            content = self.render(original)
            if has_system and first is not None:
                messages[0] = {**first, "content": content}
            else:
                messages.insert(0, {"role": "system", "content": content})
            out["messages"] = messages
        if self.model:
            out["model"] = self.model
        return out

    def render(self, original: str) -> str:
        template = self.system_prompt if self.system_prompt is not None else "{original}"
        block = ""
        if self.lessons:
            block = LESSONS_HEADER + "\n" + "\n".join(f"- {lesson}" for lesson in self.lessons)
        text = template.replace("{original}", original)
        if "{lessons}" in text:
            return text.replace("{lessons}", block).strip()
        return f"{text}\n\n{block}".strip() if block else text


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def parse_variants(raw: Any) -> tuple[Variant, ...]:
    """A policy spec's `variants`: a list of variants with distinct ids (ValueError otherwise,
    naming the entry). Checked when the policy is created and again when a call applies it."""
    if not isinstance(raw, list):
        raise ValueError("variants: must be a list")
    out: list[Variant] = []
    for index, item in enumerate(raw):
        try:
            variant = Variant.parse(item)
        except ValueError as exc:
            raise ValueError(f"variants[{index}]: {exc}") from None
        if any(v.id == variant.id for v in out):
            raise ValueError(f"variants[{index}]: id {variant.id!r} appears twice")
        out.append(variant)
    return tuple(out)


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))[:MAX_CONTEXT_CHARS]
    return ""


@dataclass(frozen=True)
class Choice:
    policy_name: str
    variant: Variant
    decision_id: str
    propensity: float


class PolicyApplier:
    """Chooses variants through the DecisionService; policies are re-read every `ttl` seconds."""

    def __init__(self, state: Any, *, ttl: float = 5.0, max_sessions: int = 100_000) -> None:
        self.state = state
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._policies: dict[tuple[str, str], tuple[float, Any, tuple[Variant, ...]]] = {}
        self._sessions: OrderedDict[tuple[str, str, str], Choice] = OrderedDict()
        self._pending: dict[tuple[str, str, str], asyncio.Future[Choice | None]] = {}

    async def choose(
        self,
        app_id: str,
        policy_name: str,
        request: dict[str, Any],
        session_id: str | None,
        user_id: str | None,
    ) -> Choice | None:
        """The variant for this call, or None when the app has no such policy (pass through)."""
        if session_id is None:
            return await self._decide(app_id, policy_name, request, None, user_id)
        key = (app_id, policy_name, session_id)
        hit = self._sessions.get(key)
        if hit is not None:
            self._sessions.move_to_end(key)
            return hit
        pending = self._pending.get(key)
        if pending is not None:  # the session's first calls arrived together: decide once
            return await asyncio.shield(pending)
        future: asyncio.Future[Choice | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            choice = await self._decide(app_id, policy_name, request, session_id, user_id)
            future.set_result(choice)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters, if any, re-raise it themselves
            raise
        finally:
            del self._pending[key]
        if choice is not None:
            self._sessions[key] = choice
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return choice

    async def _decide(
        self,
        app_id: str,
        policy_name: str,
        request: dict[str, Any],
        session_id: str | None,
        user_id: str | None,
    ) -> Choice | None:
        loaded = await self._policy(app_id, policy_name)
        if loaded is None:
            return None
        policy, variants = loaded
        by_id = {v.id: v for v in variants}
        decision_id = None
        if session_id is not None:
            digest = hashlib.sha256(f"{app_id}\0{policy_name}\0{session_id}".encode()).hexdigest()
            decision_id = f"gw-{digest[:40]}"
        outcome = await asyncio.to_thread(
            self._decide_sync, app_id, policy, variants, request, decision_id, session_id, user_id
        )
        variant = by_id.get(outcome.action_id)
        if variant is None:  # the spec changed since the stored decision: keep its id, no rewrite
            variant = Variant(outcome.action_id)
        return Choice(policy_name, variant, outcome.decision_id, outcome.propensity)

    def _decide_sync(self, app_id, policy, variants, request, decision_id, session_id, user_id):  # noqa: ANN001, ANN202, E501
        from agent_lightning.ingestion import ActionIn, Context, RankRequest
        from agent_lightning.policy_engine.service import DecisionRejected

        rank = RankRequest(
            id=decision_id,
            decision_point=policy.decision_point,
            context=Context(text=last_user_text(request) or None),
            actions=[
                ActionIn(id=v.id, description=(v.system_prompt or "")[:2000]) for v in variants
            ],
            session_id=session_id[:200] if session_id else None,
            user_id=user_id[:200] if user_id else None,
            attributes={"source": "gateway", "model": str(request.get("model"))[:200]},
        )
        try:
            return self.state.decisions.decide(app_id, rank)
        except DecisionRejected as exc:
            if exc.reason != "id_conflict" or decision_id is None:
                raise
            # Another replica decided for this session first, or the variants changed since:
            # keep the session's decision.
            from agent_lightning.policy_engine import DecisionOutcome

            done = self.state.store.get_record("decisions", app_id, decision_id)
            return DecisionOutcome.stored(done)

    async def _policy(self, app_id: str, name: str) -> tuple[Any, tuple[Variant, ...]] | None:
        key = (app_id, name)
        now = time.monotonic()
        hit = self._policies.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return None if hit[1] is None else (hit[1], hit[2])
        policy = await asyncio.to_thread(self._load, app_id, name)
        variants: tuple[Variant, ...] = ()
        if policy is not None:
            try:
                variants = parse_variants((policy.spec or {}).get("variants", []))
            except ValueError as exc:
                log.warning(
                    "policy %r of app %r: bad variants (%s); not applied", name, app_id, exc
                )
            if not variants:
                policy = None
        self._policies[key] = (now, policy, variants)
        return None if policy is None else (policy, variants)

    def _load(self, app_id: str, name: str) -> Any:
        from agent_lightning.store import NotFound

        try:
            return self.state.store.get_policy(app_id, name)
        except NotFound:
            return None
