"""Server-sent events as OpenAI streams them: checking them in flight, assembling them after.

`SSEGuard` runs on the hot path, so it only looks at line prefixes (is this still an event
stream?) and never parses JSON. `assemble` runs in the background writer: it rebuilds the one
answer a non-streaming call would have returned (content, tool calls, logprobs, usage) from the
chunks, so a streamed call is stored like any other (`final_response` does the same for the
Responses API, whose last event carries the whole answer).
"""

from __future__ import annotations

from typing import Any

from agent_lightning.gateway.capture import parse_json

_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


class SSEGuard:
    """Says whether the bytes seen so far still look like an event stream (cheap prefix test)."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def ok(self, chunk: bytes) -> bool:
        lines = (self._partial + chunk).split(b"\n")
        # Only a line's start is ever checked, so an unfinished line is kept short.
        self._partial = lines.pop()[:256]
        for line in lines:
            if line and line != b"\r" and not _line_ok(line):
                return False
        partial = self._partial
        return len(partial) < 6 or partial.startswith(_FIELDS)


def _line_ok(line: bytes) -> bool:
    if line.startswith(b"data:"):
        payload = line[5:].lstrip()
        return not payload or payload[:1] in (b"{", b"[")
    return line.startswith(_FIELDS)


def events(raw: bytes) -> tuple[list[dict[str, Any]], bool, list[str]]:
    """Parse `data:` events into JSON objects: (objects, saw [DONE], problems)."""
    objects: list[dict[str, Any]] = []
    problems: list[str] = []
    done = False
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if not data:
            continue
        payload = b"\n".join(data)
        if payload.strip() == b"[DONE]":
            done = True
            continue
        try:
            value = parse_json(payload)
        except ValueError:
            problems.append("an event is not JSON")
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects, done, problems


def assemble(raw: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """The answer a stream amounts to: (response object, usage, problems)."""
    chunks, done, problems = events(raw)
    if not chunks:
        return None, None, problems or ["the stream held no events"]
    usage = None
    error = None
    choices: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    for chunk in chunks:
        if "error" in chunk and "choices" not in chunk:
            error = chunk["error"]
            continue
        for key in ("id", "model", "created", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None and key not in head:
                head[key] = chunk[key]
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            _merge_choice(choices.setdefault(choice.get("index", 0), {}), choice)
    kind = "chat.completion" if any("message" in c for c in choices.values()) else "text_completion"
    response: dict[str, Any] = {
        **head,
        "object": kind,
        "choices": [choices[i] for i in sorted(choices)],
    }
    if usage is not None:
        response["usage"] = usage
    if error is not None:
        response["error"] = error
    if not done:
        problems.append("the stream ended without [DONE]")
    return response, usage, problems


def final_response(raw: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """A Responses API stream ends with an event carrying the whole response: keep that one."""
    objects, _, problems = events(raw)
    final = None
    for event in objects:
        if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
            final = event.get("response")
        elif event.get("type") == "error" and final is None:
            final = {"error": event}
    if not isinstance(final, dict):
        return None, None, [*problems, "the stream ended before the response was complete"]
    usage = final.get("usage")
    return final, usage if isinstance(usage, dict) else None, problems


def _merge_choice(into: dict[str, Any], choice: dict[str, Any]) -> None:
    into.setdefault("index", choice.get("index", 0))
    if choice.get("finish_reason") is not None:
        into["finish_reason"] = choice["finish_reason"]
    if "text" in choice:  # legacy completions
        into["text"] = into.get("text", "") + (choice.get("text") or "")
    delta = choice.get("delta")
    if delta is not None:
        message = into.setdefault("message", {"role": "assistant", "content": None})
        if delta.get("role"):
            message["role"] = delta["role"]
        for key in ("content", "refusal", "reasoning_content"):
            if delta.get(key):
                message[key] = (message.get(key) or "") + delta[key]
        for call in delta.get("tool_calls") or ():
            _merge_tool_call(message.setdefault("tool_calls", []), call)
        if delta.get("function_call"):
            fc = message.setdefault("function_call", {"name": "", "arguments": ""})
            fc["name"] += delta["function_call"].get("name") or ""
            fc["arguments"] += delta["function_call"].get("arguments") or ""
    logprobs = choice.get("logprobs")
    if logprobs:
        merged = into.setdefault("logprobs", {})
        for key, value in logprobs.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif value is not None:
                merged[key] = value
    for key in ("token_ids", "prompt_token_ids"):  # vLLM returns these when asked
        if choice.get(key):
            into.setdefault(key, []).extend(choice[key])


def _merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
