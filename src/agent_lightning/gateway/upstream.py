"""Reaching the upstream: URLs and keys per runtime kind, timeouts, retries, fallbacks.

Why aiohttp and not httpx (the project's usual client): on this path the HTTP client is most
of the gateway's cost. The same bare pass-through measured 240 requests/s with httpx and 1,126
with aiohttp on a 2-core machine, so the gateway keeps one aiohttp session (connection pool) per
event loop and nothing else touches the network.

Retry rule: a model call has no side effect at the upstream beyond its bill, so it is safe to
repeat until the first byte has been passed to the client, and never after. Connection failures
and the statuses in `gateway.retry_statuses` (429, 5xx ...) are retried with exponential backoff
(honouring `Retry-After`, capped); a read timeout is not retried on the same runtime (it would
only hang again) but moves on to the fallback. When every attempt failed, the last upstream
answer is passed on as it is, or, if there was none, a 502/504 in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent_lightning.gateway.config import RoutePlan, Runtime, RuntimeConfig, Target
from agent_lightning.gateway.errors import UpstreamFailure

# Headers of the agent's request worth passing on; its Authorization is ours, never forwarded.
FORWARDED_REQUEST_HEADERS = frozenset(
    {b"content-type", b"accept", b"idempotency-key", b"openai-beta", b"x-request-id"}
)
# Response headers that describe the hop, not the answer: recomputed or dropped.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "proxy-connection",
        "upgrade",
    }
)


@dataclass
class Attempted:
    """The upstream answer chosen to pass on, and how we got it."""

    response: aiohttp.ClientResponse
    target: Target
    retries: int
    body: bytes | None = None  # read already (non-streaming calls only)
    errors: list[str] = field(default_factory=list)


class _Endpoint:
    """Precomputed per-runtime pieces: the hot path only formats a URL."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        headers = dict(runtime.headers)
        key = runtime.api_key()
        if key:
            if runtime.kind == "azure_openai":
                headers["api-key"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        self.headers = headers
        self.timeout = aiohttp.ClientTimeout(
            total=runtime.timeout,
            sock_connect=runtime.connect_timeout,
            sock_read=runtime.read_timeout,
        )
        # A stream may legitimately last longer than `timeout`; only silence ends it.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=runtime.connect_timeout, sock_read=runtime.read_timeout
        )

    def url(self, path: str, model: str | None) -> str:
        runtime = self.runtime
        if runtime.kind == "azure_openai":
            if path == "models":
                return f"{runtime.base_url}/openai/models?api-version={runtime.api_version}"
            deployment = runtime.deployments.get(model or "") or runtime.deployment or model
            return (
                f"{runtime.base_url}/openai/deployments/{deployment}/{path}"
                f"?api-version={runtime.api_version}"
            )
        return f"{runtime.base_url}/{path}"


class UpstreamClient:
    def __init__(self, config: RuntimeConfig, *, connections: int = 512) -> None:
        self.config = config
        self.connections = connections
        self.retry_statuses = frozenset(config.gateway.retry_statuses)
        self._endpoints = {name: _Endpoint(rt) for name, rt in config.runtimes.items()}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections, ttl_dns_cache=300, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def endpoint(self, runtime: str) -> _Endpoint:
        return self._endpoints[runtime]

    async def send(
        self,
        plan: RoutePlan,
        path: str,
        method: str,
        body: bytes | None,
        request: dict[str, Any] | None,
        headers: dict[str, str],
        *,
        stream: bool,
    ) -> Attempted:
        """Try the plan's targets in order, each with its retries; see the module docstring."""
        session = self.session()
        attempts = 0
        errors: list[str] = []
        failure: UpstreamFailure | None = None
        last: Attempted | None = None
        for target in plan.targets:
            endpoint = self._endpoints[target.runtime]
            runtime = endpoint.runtime
            payload = body
            if target.model is not None and request is not None:
                if request.get("model") != target.model:
                    payload = json.dumps({**request, "model": target.model}).encode()
            url = endpoint.url(path, target.model or (request or {}).get("model"))
            send_headers = {**headers, **endpoint.headers}
            timeout = endpoint.stream_timeout if stream else endpoint.timeout
            for attempt in range(runtime.retries + 1):
                if last is not None:  # a retryable answer we are about to replace
                    last.response.release()
                    last = None
                attempts += 1
                try:
                    response = await session.request(
                        method, url, data=payload, headers=send_headers, timeout=timeout
                    )
                    data = None if stream else await response.read()
                except (TimeoutError, aiohttp.ServerTimeoutError):
                    failure = UpstreamFailure(
                        504,
                        "upstream_timeout",
                        f"the upstream {target.runtime!r} did not answer in time",
                        target.runtime,
                    )
                    errors.append(f"{target.runtime}: timeout")
                    break  # a hang would hang again: go to the fallback
                except aiohttp.ClientConnectorError:
                    failure = UpstreamFailure(
                        502,
                        "upstream_unreachable",
                        f"the upstream {target.runtime!r} cannot be reached",
                        target.runtime,
                    )
                    errors.append(f"{target.runtime}: unreachable")
                except (aiohttp.ClientError, OSError) as exc:
                    failure = UpstreamFailure(
                        502,
                        "upstream_reset",
                        f"the upstream {target.runtime!r} closed the connection "
                        f"({type(exc).__name__})",
                        target.runtime,
                    )
                    errors.append(f"{target.runtime}: {type(exc).__name__}")
                else:
                    last = Attempted(response, target, attempts - 1, data, errors)
                    if response.status not in self.retry_statuses:
                        return last
                    errors.append(f"{target.runtime}: HTTP {response.status}")
                if attempt < runtime.retries:
                    await asyncio.sleep(self._delay(runtime, attempt, last))
        if last is not None:
            return last  # every attempt failed; the upstream's own last answer is passed on
        assert failure is not None
        failure.retries = attempts - 1
        raise failure

    def _delay(self, runtime: Runtime, attempt: int, last: Attempted | None) -> float:
        delay = runtime.backoff * (2**attempt) * (0.5 + self._rng.random())
        if last is not None:
            retry_after = last.response.headers.get("retry-after")
            if retry_after:
                try:
                    delay = max(delay, float(retry_after))
                except ValueError:
                    pass
        return min(delay, self.config.gateway.max_retry_after)
