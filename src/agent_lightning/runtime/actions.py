"""The five action types: a JSON schema each (the policy YAML's contract) and an executor each.

    reply          {template | generate: {prompt, max_tokens?}}    say something to the user
    fetch_kb       {connector, endpoint, query, top_k?, min_score?, on_empty?}
    call_api       {connector, endpoint, method?, payload?, path_params?}
    escalate       {queue, reason?}                                hand over to a human queue
    update_policy  {parameters: {maxRetries?, timeoutMs?, confidence_threshold?}}

Schemas are checked with `jsonschema` when the policy is loaded (`validate_action` turns each
failure into a sentence a policy author can act on). Executors run one action against an
`ExecutionContext`; a connector failure becomes an `ActionError`, which the runtime turns into an
escalation with a readable error instead of an exception.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from agent_lightning.runtime.templating import TemplateError, render, render_value
from agent_lightning.runtime.tracing import NO_TRACING, RuntimeTracer, set_attributes
from agent_lightning.runtime.types import ActionResult

# Bounds shared by the YAML's `parameters` and by `update_policy` (a policy may tune itself, but
# never into a state where a call can hang for minutes or retry without end).
PARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "maxRetries": (0, 10),
    "timeoutMs": (100, 60_000),
    "confidence_threshold": (0.0, 1.0),
}
RETRYABLE_KINDS = frozenset({"unreachable", "timeout", "rate_limited"})

_STR = {"type": "string", "minLength": 1}
_NAME = {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_.\-]+$"}


def _action(name: str, properties: dict[str, Any], required: list[str], **extra: Any) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "type": "object",
        "properties": {"type": {"const": name}, **properties},
        "required": ["type", *required],
        "additionalProperties": False,
        **extra,
    }


ACTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "reply": _action(
        "reply",
        {
            "template": _STR,
            "generate": {
                "type": "object",
                "properties": {
                    "prompt": _STR,
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
                },
                "required": ["prompt"],
                "additionalProperties": False,
            },
        },
        [],
        anyOf=[{"required": ["template"]}, {"required": ["generate"]}],
        **{"x-error": "a reply needs 'template' or 'generate: {prompt}' (or both)"},
    ),
    "fetch_kb": _action(
        "fetch_kb",
        {
            "connector": _NAME,
            "endpoint": _NAME,
            "query": _STR,
            "top_k": {"type": "integer", "minimum": 1, "maximum": 50},
            "min_score": {"type": "number"},
            "on_empty": {"enum": ["continue", "clarify", "escalate"]},
        },
        ["connector", "endpoint", "query"],
    ),
    "call_api": _action(
        "call_api",
        {
            "connector": _NAME,
            "endpoint": _NAME,
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "payload": {"type": "object"},
            "path_params": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        ["connector", "endpoint"],
    ),
    "escalate": _action("escalate", {"queue": _NAME, "reason": _STR}, ["queue"]),
    "update_policy": _action(
        "update_policy",
        {
            "parameters": {
                "type": "object",
                "properties": {
                    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 10},
                    "timeoutMs": {"type": "integer", "minimum": 100, "maximum": 60_000},
                    "confidence_threshold": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "additionalProperties": False,
                "minProperties": 1,
            }
        },
        ["parameters"],
    ),
}
ACTION_TYPES: tuple[str, ...] = tuple(sorted(ACTION_SCHEMAS))
_VALIDATORS = {
    name: jsonschema.Draft202012Validator(schema) for name, schema in ACTION_SCHEMAS.items()
}


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "mapping"
    return names.get(type(value), type(value).__name__)


def _sentence(error: jsonschema.ValidationError, action_type: str) -> str:
    """One jsonschema error as a sentence a policy author can act on."""
    custom = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    if custom and error.validator == "anyOf":
        return custom
    v, value = error.validator, error.instance
    if v == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        return f"missing required field '{missing[0]}'" if missing else error.message
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        known = ", ".join(a for a in allowed if a != "type")
        return f"unknown field '{extra[0]}' for {action_type} (allowed: {known})"
    if v == "type":
        want = str(error.validator_value)
        article = "an" if want[:1] in "aeiou" else "a"
        return f"must be {article} {want}, got {_type_name(value)} {value!r}"
    if v == "minLength":
        return "must not be empty"
    if v == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))}, got {value!r}"
    if v == "minimum":
        return f"must be >= {error.validator_value}, got {value!r}"
    if v == "maximum":
        return f"must be <= {error.validator_value}, got {value!r}"
    if v == "pattern":
        return f"must use only letters, digits, '.', '_' and '-', got {value!r}"
    if v == "minProperties":
        return "must set at least one field"
    return error.message


def validate_action(action: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with one action mapping: (relative path, sentence); [] when it is valid."""
    if not isinstance(action, Mapping):
        return [((), f"an action must be a mapping with a 'type', got {_type_name(action)}")]
    kind = action.get("type")
    if kind is None:
        return [((), f"missing required field 'type' (one of {', '.join(ACTION_TYPES)})")]
    if kind not in _VALIDATORS:
        return [
            (
                ("type",),
                f"unknown action type {kind!r} (expected one of {', '.join(ACTION_TYPES)})",
            )
        ]
    problems = []
    for error in sorted(_VALIDATORS[kind].iter_errors(dict(action)), key=lambda e: list(e.path)):
        problems.append((tuple(error.path), _sentence(error, kind)))
    return problems


# -- execution ---------------------------------------------------------------------------------


class ActionError(Exception):
    """An action could not do its job; the runtime escalates and reports `str(self)`."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


Generator = Callable[[str, int | None], str]


@dataclass
class ExecutionContext:
    """What actions of one message share: the template scope, connectors, parameters."""

    scope: dict[str, Any]
    connectors: Any | None  # a connectors.ConnectorRegistry (registry[name].call(...)); None: off
    parameters: dict[str, Any]
    executor: Executor | None = None
    generator: Generator | None = None
    clock: Callable[[], float] = time.monotonic
    dry_run: bool = False
    halt: tuple[str, str] | None = None  # ("escalate" | "clarify", reason): stop the sequence
    parameter_updates: dict[str, Any] = field(default_factory=dict)
    tracer: RuntimeTracer = NO_TRACING


def call_connector(
    ctx: ExecutionContext,
    connector: str,
    endpoint: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    path_params: Mapping[str, str] | None = None,
) -> Any:
    """Call one connector endpoint with the policy's `timeoutMs` (per attempt) and `maxRetries`.

    A connector that takes `timeout_ms=` / `retries=` (the REST connector does) retries with its
    own back-off; for one that does not, the runtime retries the failures that may pass
    (unreachable, timeout, rate limited). Either way the caller never waits longer than every
    attempt's timeout plus a little back-off, and every failure ends as an `ActionError` naming
    the connector, the endpoint and the kind.
    """
    if ctx.connectors is None:
        raise ActionError(f"connector '{connector}' is not available: no connectors configured")
    try:
        conn = ctx.connectors[connector]
    except KeyError:
        raise ActionError(f"connector '{connector}' is not configured", kind="config") from None
    except Exception as exc:  # noqa: BLE001 - a registry raises its own ConnectorError
        raise ActionError(f"connector '{connector}': {_message(exc)}", kind=_kind(exc)) from exc
    timeout_ms = int(ctx.parameters["timeoutMs"])
    retries = int(ctx.parameters["maxRetries"])
    kwargs: dict[str, Any] = {"params": params, "json": json, "path_params": path_params}
    if _takes_overrides(conn):
        kwargs.update(timeout_ms=timeout_ms, retries=retries)
        attempts, wait = 1, (timeout_ms / 1000.0) * (1 + retries) + 0.5 * retries + 0.5
    else:
        attempts, wait = 1 + retries, timeout_ms / 1000.0
    where = f"connector '{connector}' endpoint '{endpoint}'"
    attributes = {"agl.connector": connector, "agl.endpoint": endpoint}
    # On the caller's thread: the pool thread that makes the call has no current span.
    with ctx.tracer.span(f"connector {connector}.{endpoint}", attributes, client=True) as span:
        try:
            data = _call_with_retries(ctx, conn, endpoint, kwargs, attempts, wait, where)
        except ActionError as exc:
            set_attributes(span, {"agl.error_kind": exc.kind})
            raise
        return data


def _call_with_retries(
    ctx: ExecutionContext,
    conn: Any,
    endpoint: str,
    kwargs: dict[str, Any],
    attempts: int,
    wait: float,
    where: str,
) -> Any:
    timeout_ms = int(ctx.parameters["timeoutMs"])
    for attempt in range(attempts):
        try:
            if ctx.executor is None:
                response = conn.call(endpoint, **kwargs)
            else:
                response = ctx.executor.submit(conn.call, endpoint, **kwargs).result(wait)
        except FutureTimeout:
            message = f"{where}: timeout: no answer within {timeout_ms} ms"
            raise ActionError(message, "timeout") from None
        except Exception as exc:  # noqa: BLE001 - ConnectorError, or a bug in a connector
            kind = _kind(exc)
            if kind in RETRYABLE_KINDS and attempt + 1 < attempts:
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            tries = f" (after {attempt + 1} attempts)" if attempt else ""
            raise ActionError(f"{where}: {kind}{tries}: {_message(exc)}", kind) from exc
        return getattr(response, "data", response)
    raise AssertionError("unreachable")  # pragma: no cover


def _takes_overrides(conn: Any) -> bool:
    try:
        names = inspect.signature(conn.call).parameters
    except (TypeError, ValueError):
        return False
    return "timeout_ms" in names and "retries" in names


def _kind(exc: BaseException) -> str:
    kind = getattr(exc, "kind", None)
    return str(kind) if kind else type(exc).__name__


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc) or type(exc).__name__


def _reply(params: Mapping[str, Any], ctx: ExecutionContext) -> Any:
    gen = params.get("generate")
    if gen is not None and ctx.generator is not None:
        prompt = render(gen["prompt"], ctx.scope)
        try:
            return {"text": ctx.generator(prompt, gen.get("max_tokens")), "generated": True}
        except Exception as exc:  # noqa: BLE001 - any LLM failure falls back or escalates
            if "template" not in params:
                raise ActionError(f"reply generation failed: {exc}", "llm_error") from exc
    if "template" not in params:
        raise ActionError("reply.generate needs an LLM (none configured) and has no template")
    return {"text": render(params["template"], ctx.scope), "generated": False}


def _normalise_hit(hit: Any) -> dict[str, Any]:
    out = dict(hit) if isinstance(hit, Mapping) else {"text": str(hit)}
    body = next(
        (out[k] for k in ("snippet", "body", "content", "text", "answer") if out.get(k)), ""
    )
    out.setdefault("title", "")
    out["snippet"] = str(body)[:400]
    return out


def _fetch_kb(params: Mapping[str, Any], ctx: ExecutionContext) -> Any:
    query = render(params["query"], ctx.scope)
    top_k = int(params.get("top_k", 3))
    data = call_connector(
        ctx, params["connector"], params["endpoint"], params={"q": query, "limit": top_k}
    )
    raw = data.get("results") if isinstance(data, Mapping) else data
    if not isinstance(raw, list):
        raise ActionError(
            f"connector '{params['connector']}' endpoint '{params['endpoint']}': "
            "invalid_response: expected a list of results",
            "invalid_response",
        )
    hits = [_normalise_hit(h) for h in raw]
    if "min_score" in params:
        floor = float(params["min_score"])
        hits = [h for h in hits if float(h.get("score", 0.0) or 0.0) >= floor]
    hits.sort(key=lambda h: float(h.get("score", 0.0) or 0.0), reverse=True)
    hits = hits[:top_k]
    ctx.scope["kb"] = hits
    if not hits and params.get("on_empty", "continue") != "continue":
        ctx.halt = (params["on_empty"], "no knowledge-base article matches")
    return {"results": hits, "count": len(hits), "query": query}


def _call_api(params: Mapping[str, Any], ctx: ExecutionContext) -> Any:
    payload = render_value(params.get("payload"), ctx.scope)
    path_params = render_value(params.get("path_params"), ctx.scope)
    if path_params is not None:
        path_params = {k: str(v) for k, v in path_params.items()}
    method = params.get("method", "POST")
    query, body = (payload, None) if method in ("GET", "DELETE") else (None, payload)
    return call_connector(
        ctx,
        params["connector"],
        params["endpoint"],
        params=query,
        json=body,
        path_params=path_params,
    )


def _escalate(params: Mapping[str, Any], ctx: ExecutionContext) -> Any:
    reason = render(params.get("reason", "the policy escalates this intent"), ctx.scope)
    return {"queue": params["queue"], "reason": reason}


def _update_policy(params: Mapping[str, Any], ctx: ExecutionContext) -> Any:
    updates = dict(params["parameters"])
    for name, value in updates.items():  # the schema checked these; checked again for safety
        low, high = PARAMETER_BOUNDS[name]
        if not low <= value <= high:
            raise ActionError(f"update_policy: {name}={value} is outside [{low}, {high}]")
    ctx.parameter_updates.update(updates)
    ctx.parameters.update(updates)
    return {"parameters": updates}


EXECUTORS: dict[str, Callable[[Mapping[str, Any], ExecutionContext], Any]] = {
    "reply": _reply,
    "fetch_kb": _fetch_kb,
    "call_api": _call_api,
    "escalate": _escalate,
    "update_policy": _update_policy,
}
_NEEDS_CONNECTOR = {"fetch_kb", "call_api"}


def execute(action_type: str, params: Mapping[str, Any], ctx: ExecutionContext) -> ActionResult:
    """Run one action; failures come back as a result with `error` set, never as an exception."""
    start = ctx.clock()
    if ctx.dry_run and action_type in _NEEDS_CONNECTOR:
        ctx.scope["last"] = {}
        return ActionResult(action_type, ok=True, dry_run=True)
    try:
        data = EXECUTORS[action_type](params, ctx)
    except TemplateError as exc:
        if ctx.dry_run:  # the data a template reads came from a connector that did not run
            return ActionResult(action_type, ok=True, dry_run=True, data={"text": ""})
        result = ActionResult(action_type, ok=False, error=f"{action_type}: template: {exc}")
    except ActionError as exc:
        result = ActionResult(action_type, ok=False, error=str(exc))
    else:
        ctx.scope["last"] = data
        result = ActionResult(action_type, ok=True, data=data)
    result.latency_ms = round((ctx.clock() - start) * 1000.0, 3)
    return result


def openai_generator(
    model: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 20.0
) -> Generator:
    """A `reply.generate` backend on any OpenAI-compatible endpoint (the `openai` SDK)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=1)

    def generate(prompt: str, max_tokens: int | None) -> str:
        out = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens or 300,
        )
        return (out.choices[0].message.content or "").strip()

    return generate
