"""The gateway itself: a lean ASGI app for the OpenAI routes agents call.

No framework routing, no middleware stack, no request objects: the hot path is a dictionary
lookup on (method, path), a cached token check, one `json.loads` of the request, the upstream
call, and an append to the span queue. Everything slow (redaction, storage, token and policy
lookups on a cache miss) happens in threads or in the background writer.

Sessions: `X-AGL-Session: <id>` header, else a `/s/<id>/v1/...` path prefix (for clients that
cannot set headers), else the request's `user` field; control characters are removed from the id,
and the answer echoes it in `X-AGL-Session`, percent-encoded beyond printable ASCII. The answer
carries `X-AGL-Span-Id`, and `X-AGL-Decision-Id` / `X-AGL-Variant` when a policy chose a variant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import sys
import time
import uuid
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import aiohttp

from agent_lightning.gateway.auth import GatewayAuthenticator
from agent_lightning.gateway.capture import SpanRecord, SpanWriter, parse_json
from agent_lightning.gateway.config import RoutePlan, Router, RuntimeConfig, Target
from agent_lightning.gateway.errors import GatewayError, UpstreamFailure, error_json, sse_error
from agent_lightning.gateway.policy import Choice, PolicyApplier
from agent_lightning.gateway.sse import SSEGuard
from agent_lightning.gateway.upstream import (
    FORWARDED_REQUEST_HEADERS,
    HOP_HEADERS,
    UpstreamClient,
)

log = logging.getLogger("agent_lightning.gateway")

ENDPOINTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "chat/completions",
    ("POST", "/v1/completions"): "completions",
    ("POST", "/v1/embeddings"): "embeddings",
    ("POST", "/v1/responses"): "responses",  # the OpenAI Agents SDK's default API
    ("GET", "/v1/models"): "models",
}
GATEWAY_PATHS = frozenset(path for _, path in ENDPOINTS)
MAX_SESSION_CHARS = 200
SWITCH_INTERVAL = 0.001

_JSON = (b"content-type", b"application/json")
_perf = time.perf_counter
# Control characters (C0, DEL, C1) in a session or user id: never meant, and a header cannot
# carry them (echoing one made the server drop the answer the upstream had already billed).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# What an echoed id keeps as it is: printable ASCII but `%`, so `unquote` gives the id back.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


# Span ids need to be unique and time-ordered (like `store.new_id`), not unguessable: a seeded
# PRNG is ten times cheaper than reading the kernel's entropy on every call.
_ids = random.Random(os.urandom(16))


def span_id() -> str:
    """A UUIDv7-layout id: 48 bits of milliseconds, then 74 random bits."""
    rand = _ids.getrandbits(74)
    value = (time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76
    value |= (rand >> 62) << 64 | 0b10 << 62 | (rand & 0x3FFFFFFFFFFFFFFF)
    return str(uuid.UUID(int=value))


def is_gateway_path(path: str) -> bool:
    """True for the paths the gateway answers (the rest belong to the REST API)."""
    return path in GATEWAY_PATHS or path.startswith(("/s/", "/v1/models/"))


class Gateway:
    """The ASGI app. `state` is the server's ServerState (store, token issuer, decisions)."""

    def __init__(
        self,
        state: Any,
        config: RuntimeConfig,
        *,
        writer: SpanWriter | None = None,
        upstream: UpstreamClient | None = None,
    ) -> None:
        options = config.gateway
        self.state = state
        self.config = config
        self.router = Router(config)
        self.upstream = upstream or UpstreamClient(config)
        self.writer = writer or SpanWriter(
            state.store,
            queue_size=options.queue_size,
            batch_size=options.batch_size,
            capture_bodies=options.capture_bodies,
        )
        self.auth = GatewayAuthenticator(state)
        self.policies = PolicyApplier(state)
        self.max_body = options.max_body_bytes

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the span writer (the upstream session is opened lazily, on its event loop)."""
        # The writer thread redacts and inserts batches while holding the GIL; with Python's
        # default 5 ms switch interval a call arriving meanwhile can wait that long, which is
        # the whole p99 budget. 1 ms bounds that wait at a negligible cost in switches.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self.writer.start()

    def stop(self) -> None:
        """Flush every captured span to the store."""
        self.writer.stop()

    async def aclose(self) -> None:
        await self.upstream.aclose()
        await asyncio.to_thread(self.writer.stop)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: dict, receive: Any, send: Any) -> None:
        started = _perf()
        method = scope["method"]
        path = scope["path"]
        session_id: str | None = None
        if path.startswith("/s/"):
            session_id, path = _session_path(scope)
        endpoint = ENDPOINTS.get((method, path))
        if endpoint is None:
            if method == "GET" and path.startswith("/v1/models/") and len(path) > 11:
                endpoint = "models/" + path[11:]
            else:
                status = 405 if path in GATEWAY_PATHS else 404
                code = "method_not_allowed" if status == 405 else "not_found"
                await _respond(
                    send,
                    status,
                    error_json(
                        f"{method} {path} is not a gateway route", "invalid_request_error", code
                    ),
                )
                return
        auth_header = session_header = None
        forward: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth_header = value
            elif name == b"x-agl-session":
                session_header = value
            elif name in FORWARDED_REQUEST_HEADERS:
                forward[name.decode()] = value.decode("latin-1")
        try:
            caller = await self.auth.authenticate(auth_header)
        except GatewayError as exc:
            await _respond(send, exc.status, exc.body(), _auth_headers(exc.status))
            return
        if session_header:
            session_id = _clean_id(_decode(session_header))
        span = SpanRecord(span_id(), caller.app_id, endpoint, started)
        span.session_id = session_id
        try:
            await self._call(span, scope, receive, send, forward)
        except ConnectionResetError as exc:
            span.status = "client_disconnected"
            span.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the gateway answers and stays up, whatever happens
            log.exception("gateway call %s failed", span.id)
            span.status = "error"
            span.error = f"internal error: {type(exc).__name__}"
            if span.http_status is None:
                span.http_status = 500
                await _respond(
                    send,
                    500,
                    error_json(
                        "the gateway failed on this call; it has been logged",
                        "api_error",
                        "internal_error",
                    ),
                )
        span.latency_ms = (_perf() - started) * 1000.0
        self.writer.submit(span)

    async def _call(
        self, span: SpanRecord, scope: dict, receive: Any, send: Any, forward: dict[str, str]
    ) -> None:
        method = scope["method"]
        endpoint = span.endpoint
        body = b""
        request: dict[str, Any] | None = None
        if method == "POST":
            body = await self._read_body(receive, span)
            if body is None:
                return await self._refuse(send, span, _body_too_large(self.max_body))
            try:
                request = _parse_request(body)
            except ValueError:
                span.request_raw = body
                return await self._refuse(
                    send,
                    span,
                    GatewayError(400, "invalid_json", "the request body is not valid JSON"),
                )
            if not isinstance(request, dict):
                span.request_raw = body
                return await self._refuse(
                    send,
                    span,
                    GatewayError(400, "invalid_request", "the request body must be a JSON object"),
                )
            span.request = request
            span.request_raw = body
            model = request.get("model")
            if not isinstance(model, str) or not model:
                return await self._refuse(
                    send,
                    span,
                    GatewayError(400, "missing_model", "`model` is required (a model name)"),
                )
            span.model = model
            user = request.get("user")
            if isinstance(user, str) and user:
                span.user_id = _clean_id(user)
                if span.session_id is None:
                    span.session_id = span.user_id
            span.stream = endpoint != "embeddings" and request.get("stream") is True
            forward.setdefault("content-type", "application/json")
            plan = self.router.resolve(model)
            if plan is None:
                return await self._refuse(
                    send,
                    span,
                    GatewayError(
                        404,
                        "model_not_found",
                        f"The model `{model}` does not exist or you do not have access to it.",
                    ),
                )
            choice = None
            if plan.policy and endpoint == "chat/completions":
                choice = await self._choose(span, plan.policy, request)
                if choice is not None:
                    request, body, plan = self._apply(choice, request, plan)
                    span.request, span.request_raw = request, body
        else:
            plan = self._models_plan()
            if plan is None:
                return await self._models_from_config(send, span)
            choice = None
        try:
            attempted = await self.upstream.send(
                plan, endpoint, method, body or None, request, forward, stream=span.stream
            )
        except UpstreamFailure as failure:
            span.upstream = failure.upstream
            span.retries = failure.retries
            return await self._refuse(send, span, failure.as_gateway_error())
        response = attempted.response
        span.upstream = attempted.target.runtime
        span.upstream_model = attempted.target.model or span.model
        span.retries = attempted.retries
        headers = _response_headers(response, span, choice)
        if attempted.body is None:
            if response.content_type == "text/event-stream" and response.status < 400:
                return await self._stream(span, response, headers, receive, send)
            # Asked to stream but got a plain answer (an error, mostly): pass it on whole.
            try:
                attempted.body = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return await self._refuse(send, span, _lost(exc, span.upstream))
            finally:
                response.release()
        data = attempted.body
        span.response_raw = data
        if response.status >= 400:
            span.status = "upstream_error"
            span.error = f"the upstream answered HTTP {response.status}"
        elif span.stream:
            span.status = "error"
            span.error = "the upstream did not stream"
        else:
            try:
                span.response = parse_json(data)
            except ValueError:
                return await self._refuse(
                    send,
                    span,
                    GatewayError(
                        502,
                        "bad_upstream_response",
                        f"the upstream {span.upstream!r} answered with something that is not JSON",
                    ),
                )
        span.ttft_ms = (_perf() - span.started) * 1000.0
        headers.append((b"content-length", str(len(data)).encode()))
        span.http_status = response.status  # from here on, the answer has started
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    # -- streaming --------------------------------------------------------------------------

    async def _stream(
        self,
        span: SpanRecord,
        response: aiohttp.ClientResponse,
        headers: list[tuple[bytes, bytes]],
        receive: Any,
        send: Any,
    ) -> None:
        """Pass chunks on as they come; stop the upstream when the client goes away."""
        span.http_status = response.status
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        pump = asyncio.ensure_future(self._pump(span, response, send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if pump.done():
                response.release()
            else:  # the client left (or we are being cancelled): stop generating for nobody
                pump.cancel()
                response.close()
                span.status = "client_disconnected"
                span.error = "the client closed the connection before the answer was complete"
                try:
                    await pump
                except asyncio.CancelledError:
                    pass
        if not pump.cancelled():
            pump.result()  # an unexpected error in the pump is the caller's to report

    async def _pump(self, span: SpanRecord, response: aiohttp.ClientResponse, send: Any) -> None:
        chunks: list[bytes] = []
        span.chunks = chunks
        guard = SSEGuard()
        failure: bytes | None = None
        try:
            async for chunk in response.content.iter_any():
                if not chunks:
                    span.ttft_ms = (_perf() - span.started) * 1000.0
                chunks.append(chunk)
                if not guard.ok(chunk):
                    span.status = "error"
                    span.error = "the upstream's stream turned into something that is not events"
                    failure = sse_error(span.error, "upstream_error", "bad_upstream_response")
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, aiohttp.ServerTimeoutError):
            span.status = "error"
            span.error = f"the upstream {span.upstream!r} went silent mid-stream"
            failure = sse_error(span.error, "timeout", "upstream_timeout")
        except (aiohttp.ClientError, OSError) as exc:
            span.status = "error"
            span.error = f"the upstream {span.upstream!r} broke the stream ({type(exc).__name__})"
            failure = sse_error(span.error, "upstream_error", "upstream_reset")
        if failure is not None:
            await send({"type": "http.response.body", "body": failure, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- helpers ----------------------------------------------------------------------------

    async def _read_body(self, receive: Any, span: SpanRecord) -> bytes | None:
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self.max_body else None
        parts = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("the client left while sending its request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def _refuse(self, send: Any, span: SpanRecord, error: GatewayError) -> None:
        span.status = "error"
        span.http_status = error.status
        span.error = error.message
        await _respond(send, error.status, error.body(), [(b"x-agl-span-id", span.id.encode())])

    async def _choose(
        self, span: SpanRecord, policy: str, request: dict[str, Any]
    ) -> Choice | None:
        try:
            choice = await self.policies.choose(
                span.app_id, policy, request, span.session_id, span.user_id
            )
        except Exception as exc:  # noqa: BLE001 - learning must never take the agent down
            log.warning("policy %r not applied to %s: %s", policy, span.id, exc)
            return None
        if choice is not None:
            span.policy_name = choice.policy_name
            span.decision_id = choice.decision_id
            span.variant_id = choice.variant.id
        return choice

    def _apply(
        self, choice: Choice, request: dict[str, Any], plan: RoutePlan
    ) -> tuple[dict[str, Any], bytes, RoutePlan]:
        applied = choice.variant.apply(request)
        if choice.variant.model and choice.variant.model != request.get("model"):
            rerouted = self.router.resolve(choice.variant.model)
            if rerouted is not None:
                plan = RoutePlan(rerouted.targets, plan.policy)
            else:
                primary = Target(plan.targets[0].runtime, choice.variant.model)
                plan = RoutePlan((primary, *plan.targets[1:]), plan.policy)
        return applied, json.dumps(applied).encode(), plan

    def _models_plan(self) -> RoutePlan | None:
        name = self.config.default_runtime
        if name is None or self.config.runtimes[name].kind != "openai":
            return None
        return RoutePlan((Target(name, None),), None)

    async def _models_from_config(self, send: Any, span: SpanRecord) -> None:
        """No single OpenAI-style upstream to ask: list the names this gateway routes."""
        names = [r.model for r in self.config.routes if not any(c in r.model for c in "*?[")]
        names += [rt.model for rt in self.config.runtimes.values() if rt.model]
        data = [
            {"id": n, "object": "model", "created": 0, "owned_by": "agent-lightning"}
            for n in dict.fromkeys(names)
        ]
        span.response = {"object": "list", "data": data}
        span.http_status = 200
        await _respond(send, 200, json.dumps(span.response).encode())


async def _disconnected(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _response_headers(
    response: aiohttp.ClientResponse, span: SpanRecord, choice: Choice | None
) -> list[tuple[bytes, bytes]]:
    headers = [
        (name, value)
        for name, value in response.raw_headers
        if name.decode("latin-1").lower() not in HOP_HEADERS
    ]
    headers.append((b"x-agl-span-id", span.id.encode()))
    if span.session_id:
        headers.append((b"x-agl-session", _header_value(span.session_id)))
    if choice is not None:
        headers.append((b"x-agl-decision-id", choice.decision_id.encode()))
        headers.append((b"x-agl-variant", _header_value(choice.variant.id)))
    return headers


def _header_value(value: str) -> bytes:
    # Percent-encoded beyond printable ASCII (and `%` itself): any id fits in a header, whatever
    # it holds, and ASCII ids without `%` are echoed exactly as they were sent.
    return quote(value, safe=_HEADER_SAFE).encode("ascii")


def _clean_id(value: str) -> str | None:
    """A session or user id as stored and echoed: no control characters, trimmed, capped."""
    return _CONTROL.sub("", value).strip()[:MAX_SESSION_CHARS] or None


def _decode(raw: bytes) -> str:
    # UTF-8, as clients send it (the same id then matches its `/s/<id>/` form); latin-1, which
    # decodes any bytes, only for a header that is not valid UTF-8.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _session_path(scope: dict) -> tuple[str | None, str]:
    """`/s/<id>/v1/...` -> (id, `/v1/...`), split before percent-decoding so the id may hold `/`."""
    raw = scope.get("raw_path")
    if raw is None:  # a server that does not give the raw path: only `path`, decoded already
        session, _, rest = scope["path"][3:].partition("/")
        return _clean_id(session), "/" + rest
    session_raw, _, rest_raw = raw[3:].partition(b"/")
    session = _decode(unquote_to_bytes(session_raw))
    return _clean_id(session), "/" + unquote(rest_raw.decode("latin-1"))


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON, but no number Python or PostgreSQL can hold
        raise ValueError(f"{text} is out of range")
    return value


def _parse_request(body: bytes) -> Any:
    # NaN and Infinity are not JSON (OpenAI refuses them, PostgreSQL cannot store them), and
    # nesting deeper than the parser can follow is bad input, not a gateway failure.
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc


def _auth_headers(status: int) -> list[tuple[bytes, bytes]]:
    if status == 401:
        return [(b"www-authenticate", b'Bearer realm="agent-lightning"')]
    return []


def _body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, "payload_too_large", f"the request body is larger than {limit} bytes")


def _lost(exc: BaseException, upstream: str | None) -> GatewayError:
    if isinstance(exc, TimeoutError):
        return GatewayError(
            504, "upstream_timeout", f"the upstream {upstream!r} did not answer in time"
        )
    return GatewayError(502, "upstream_reset", f"the upstream {upstream!r} closed the connection")


async def _respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})
