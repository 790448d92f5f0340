"""What of a call is redacted before it is stored, and how.

Walking every string of a call through the PII detectors would cost more than the rest of the
capture (ids, roles, model names, JSON schemas of tools are not personal data). The fields that
carry what people wrote or what the model answered are redacted; token-level data of an answer
(logprobs tokens, token ids) spells its text out again, so it is dropped from any choice whose
text held PII. Inline (data:) images, audio and files are replaced by their size, in chat messages
and Responses API items alike, and embedding vectors by their dimension.
"""

from __future__ import annotations

from typing import Any

# Content parts that hold text (chat's and the Responses API's); any other part is an image, audio
# or a file, whose inline data is summarised before what is left of it (a URL, a name) is redacted.
_TEXT_PARTS = (
    None,
    "text",
    "input_text",
    "output_text",
    "refusal",
    "summary_text",
    "reasoning_text",
)


def _redact(redactor: Any, value: Any, totals: dict[str, int]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    redacted, counts = redactor.redact_value(value)
    for name, n in counts.items():
        totals[name] = totals.get(name, 0) + n
    return redacted


def _redact_content(redactor: Any, content: Any, totals: dict[str, int]) -> Any:
    if not isinstance(content, list):
        return _redact(redactor, content, totals)
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") not in _TEXT_PARTS:
            part = _without_inline_data(part)
        parts.append(_redact(redactor, part, totals))
    return parts


def _without_inline_data(part: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in part.items():
        if isinstance(value, dict):
            value = _without_inline_data(value)
        elif isinstance(value, str) and (value.startswith("data:") or len(value) > 4096):
            value = f"<inline data, {len(value)} chars>"
        out[key] = value
    return out


def _redact_message(redactor: Any, message: Any, totals: dict[str, int]) -> Any:
    if not isinstance(message, dict):
        return _redact(redactor, message, totals)
    out = dict(message)
    for key in ("content", "refusal", "reasoning_content"):
        if out.get(key) is not None:
            out[key] = _redact_content(redactor, out[key], totals)
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [_redact_call(redactor, call, totals) for call in out["tool_calls"]]
    if isinstance(out.get("function_call"), dict):
        out["function_call"] = _redact_function(redactor, out["function_call"], totals)
    audio = out.get("audio")
    if isinstance(audio, dict):
        out["audio"] = _without_inline_data(audio)
        if isinstance(audio.get("transcript"), str):  # what the audio says, in full, redacted
            out["audio"]["transcript"] = _redact(redactor, audio["transcript"], totals)
    if isinstance(out.get("annotations"), list):  # cited pages' titles and URLs
        out["annotations"] = _redact(redactor, out["annotations"], totals)
    return out


def _redact_call(redactor: Any, call: Any, totals: dict[str, int]) -> Any:
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        return {**call, "function": _redact_function(redactor, call["function"], totals)}
    return call


def _redact_function(redactor: Any, function: dict[str, Any], totals: dict[str, int]) -> Any:
    return {**function, "arguments": _redact(redactor, function.get("arguments"), totals)}


def _redact_tool(redactor: Any, tool: Any, totals: dict[str, int]) -> Any:
    # A description is free text (prompts inline customers' details there too); names and
    # JSON schemas are not redacted.
    if not isinstance(tool, dict):
        return tool
    out = dict(tool)
    if isinstance(out.get("function"), dict):
        out["function"] = _redact_tool(redactor, out["function"], totals)
    if isinstance(out.get("description"), str):
        out["description"] = _redact(redactor, out["description"], totals)
    return out


def _redact_items(redactor: Any, items: Any, totals: dict[str, int]) -> Any:
    """The Responses API's `input` or `output`: a string, or items (messages, tool calls, tool
    results) whose content parts are treated as a chat message's."""
    if not isinstance(items, list):
        return _redact(redactor, items, totals)
    out = []
    for item in items:
        if isinstance(item, dict):
            item = {
                key: _redact_content(redactor, value, totals)
                if key in ("content", "output")
                else _redact(redactor, value, totals)
                for key, value in item.items()
            }
        else:
            item = _redact(redactor, item, totals)
        out.append(item)
    return out


def redact_request(redactor: Any, request: Any, totals: dict[str, int]) -> Any:
    """A copy of a request with its free text redacted; the input is not changed."""
    if not isinstance(request, dict):
        return _redact(redactor, request, totals)
    out = dict(request)
    if isinstance(out.get("messages"), list):
        out["messages"] = [_redact_message(redactor, m, totals) for m in out["messages"]]
    if "input" in out:
        out["input"] = _redact_items(redactor, out["input"], totals)
    for key in ("tools", "functions"):
        if isinstance(out.get(key), list):
            out[key] = [_redact_tool(redactor, tool, totals) for tool in out[key]]
    # prediction: predicted outputs, the text the answer is expected to repeat
    for key in ("prompt", "prediction", "instructions", "user", "metadata", "suffix", "raw"):
        if key in out:
            out[key] = _redact(redactor, out[key], totals)
    return out


def redact_response(redactor: Any, response: Any, totals: dict[str, int]) -> Any:
    """A copy of an answer with its free text redacted (see the comment above)."""
    if not isinstance(response, dict):
        return _redact(redactor, response, totals)
    out = dict(response)
    if isinstance(out.get("choices"), list):
        out["choices"] = [_redact_choice(redactor, c, totals) for c in out["choices"]]
    if isinstance(out.get("data"), list):  # embeddings: keep the shape, not the vectors
        out["data"] = [_summarise_embedding(item) for item in out["data"]]
    if "output" in out:  # the Responses API's answer
        out["output"] = _redact_items(redactor, out["output"], totals)
    for key in ("instructions", "error", "raw"):
        if key in out:
            out[key] = _redact(redactor, out[key], totals)
    return out


def _redact_choice(redactor: Any, choice: Any, totals: dict[str, int]) -> Any:
    if not isinstance(choice, dict):
        return choice
    found: dict[str, int] = {}
    out = dict(choice)
    if "message" in out:
        out["message"] = _redact_message(redactor, out["message"], found)
    if "delta" in out:
        out["delta"] = _redact_message(redactor, out["delta"], found)
    if isinstance(out.get("text"), str):
        out["text"] = _redact(redactor, out["text"], found)
    if found:
        for key in ("logprobs", "token_ids"):
            if out.get(key):
                out[key] = {"dropped": "the text held personal data"}
    for name, n in found.items():
        totals[name] = totals.get(name, 0) + n
    return out


def _summarise_embedding(item: Any) -> Any:
    if isinstance(item, dict) and isinstance(item.get("embedding"), list):
        return {**item, "embedding": {"dimensions": len(item["embedding"])}}
    return item
