"""``RestConnector``: one configured REST service behind a pooled ``httpx.Client``.

Retry policy (why each case is or is not retried):

- connect errors: always retried, the request never left.
- 429 and 503: always retried, the service says it did not process the request; a
  ``Retry-After`` is honoured when within ``backoff_max_ms``, otherwise the call fails at once.
- timeouts, other 5xx, dropped connections: retried only for idempotent endpoints (GET, PUT,
  DELETE, or ``idempotent: true``); a POST that timed out may have opened the ticket already.
  POST/PATCH calls carry one ``Idempotency-Key`` across their attempts, so a service that honours
  it (the reference service does) can be marked ``idempotent: true``.
- other 4xx: never retried, the request itself is wrong.
- 3xx: never retried, and an error: redirects are not followed (fix ``base_url`` or the path).

Delays grow exponentially from ``backoff_ms``, capped at ``backoff_max_ms``, with "equal jitter"
(half fixed, half random) so that many runtimes do not retry in lockstep.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from agent_lightning.connectors._auth import SecretSource, resolve_auth
from agent_lightning.connectors._schema import shape_problems
from agent_lightning.connectors.config import (
    ConnectorConfig,
    EndpointConfig,
    parse_connector_config,
)
from agent_lightning.connectors.errors import ConnectorConfigError, ConnectorError, ErrorKind
from agent_lightning.connectors.ratelimit import TokenBucket

log = logging.getLogger("agent_lightning.connectors")
_DETAIL_LIMIT = 200


@dataclass(frozen=True)
class ConnectorResponse:
    """A successful call. ``latency_ms`` covers the whole call, retries and back-off included."""

    status: int
    data: Any
    latency_ms: float
    attempts: int = 1
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ConnectorTestReport:
    """What ``connectors test`` shows: did the test endpoint answer, how fast, in what shape."""

    ok: bool
    latency_ms: float | None
    status: int | None
    problems: list[str]
    connector: str = ""
    endpoint: str | None = None


@dataclass
class _Failure:
    kind: ErrorKind
    message: str  # without the "after N attempts" suffix
    retryable: bool
    status: int | None = None
    retry_after_s: float | None = None


def _plural(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _connect_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if any(s in text for s in ("name or service", "nodename", "getaddrinfo", "name resolution")):
        return "unknown host"
    if "unreachable" in text:
        return "network unreachable"
    if "ssl" in text or "certificate" in text:
        return "TLS handshake failed"
    return str(exc) or type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(response: httpx.Response, redact: Callable[[str], str]) -> str:
    """A short reason from an error body (FastAPI's ``detail`` when there is one)."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if key in body:
                body = body[key]
                break
    text = body if isinstance(body, str) else str(body)
    # Redact before cutting: a secret cut in half no longer matches and its start would show.
    text = redact(" ".join(text.split()))
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."


class RestConnector:
    """Calls the endpoints of one connector config. Thread-safe; ``close()`` when done."""

    def __init__(
        self,
        name: str,
        config: ConnectorConfig,
        *,
        env: Mapping[str, str] | None = None,
        secrets: SecretSource | None = None,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.config = config
        auth, problems = resolve_auth(
            config.auth, f"connectors.{name}", os.environ if env is None else env, secrets
        )
        if problems:
            raise ConnectorConfigError(problems, name)
        self._auth = auth
        self._secret_values = [v for v in (auth.secret_values() if auth else []) if len(v) >= 4]
        self._rng = random.Random(seed)
        self._bucket = (
            TokenBucket(config.rate_limit_per_second) if config.rate_limit_per_second else None
        )
        self._client = httpx.Client(
            base_url=config.base_url,
            headers={"User-Agent": "agent-lightning-connector", **config.headers},
            auth=auth,
            timeout=config.timeout_ms / 1000,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_mapping(
        cls,
        name: str,
        raw: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        secrets: SecretSource | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> RestConnector:
        """Validate one connector's YAML mapping and build it (``ConnectorConfigError`` if bad)."""
        config = parse_connector_config(name, raw)
        return cls(name, config, env=env, secrets=secrets, transport=transport)

    def __repr__(self) -> str:
        return (
            f"RestConnector(name={self.name!r}, base_url={self.config.base_url!r}, "
            f"auth={self.config.auth.type!r}, endpoints={sorted(self.config.endpoints)})"
        )

    @property
    def endpoints(self) -> list[str]:
        return sorted(self.config.endpoints)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RestConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calling -------------------------------------------------------------------------------

    def call(
        self,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        path_params: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retries: int | None = None,
    ) -> ConnectorResponse:
        """Call ``endpoint``; the parsed JSON body on success, ``ConnectorError`` otherwise.

        ``params`` are merged over the endpoint's default query parameters. A ``{placeholder}``
        in the path is filled from ``path_params``, else taken out of ``params``.
        ``timeout_ms`` and ``retries`` override the connector's for this call.
        """
        ep = self._endpoint(endpoint)
        response, attempts, latency_ms = self._send(
            endpoint, ep, params, json, path_params, timeout_ms, retries
        )
        data = self._parse(endpoint, ep, response, attempts)
        return ConnectorResponse(
            response.status_code, data, latency_ms, attempts, dict(response.headers)
        )

    def test(self) -> ConnectorTestReport:
        """Call the test endpoint once (with the usual retries) and list what is wrong, if any."""
        endpoint = self.config.test_endpoint
        if endpoint is None:
            known = ", ".join(self.endpoints) or "none"
            return ConnectorTestReport(
                False,
                None,
                None,
                [f"no test endpoint: set connectors.{self.name}.test (endpoints: {known})"],
                self.name,
                None,
            )
        started = time.perf_counter()
        try:
            response = self.call(endpoint)
        except ConnectorError as exc:
            latency = round((time.perf_counter() - started) * 1000, 1)
            problems = list(exc.problems) or [exc.message]
            return ConnectorTestReport(False, latency, exc.status, problems, self.name, endpoint)
        return ConnectorTestReport(
            True, response.latency_ms, response.status, [], self.name, endpoint
        )

    # -- internals -----------------------------------------------------------------------------

    def _error(
        self,
        endpoint: str | None,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        *,
        attempts: int = 0,
        problems: list[str] | tuple[str, ...] = (),
    ) -> ConnectorError:
        return ConnectorError(
            self.name,
            endpoint,
            kind,
            self._redact(message),
            status,
            attempts=attempts,
            problems=[self._redact(p) for p in problems],
        )

    def _redact(self, text: str) -> str:
        for value in self._secret_values:
            text = text.replace(value, "***")
        return text

    def _endpoint(self, endpoint: str) -> EndpointConfig:
        ep = self.config.endpoints.get(endpoint)
        if ep is None:
            known = ", ".join(self.endpoints) or "none"
            raise self._error(endpoint, "config", f"unknown endpoint (known: {known})")
        return ep

    def _build(
        self,
        endpoint: str,
        ep: EndpointConfig,
        params: Mapping[str, Any] | None,
        path_params: Mapping[str, Any] | None,
    ) -> tuple[str, dict[str, Any]]:
        query = {**ep.params, **(params or {})}
        values: dict[str, str] = {}
        for name in ep.placeholders:
            if path_params and name in path_params:
                value = path_params[name]
            elif name in query:
                value = query.pop(name)
            else:
                raise self._error(
                    endpoint, "config", f"path {ep.path} needs a value for {{{name}}}"
                )
            if value is None or str(value) == "":
                raise self._error(endpoint, "config", f"empty value for {{{name}}} in {ep.path}")
            values[name] = quote(str(value), safe="")
        path = ep.path.format(**values) if values else ep.path
        query = {k: v for k, v in query.items() if v is not None}
        return path, query

    def _send(
        self,
        endpoint: str,
        ep: EndpointConfig,
        params: Mapping[str, Any] | None,
        json: Any,
        path_params: Mapping[str, Any] | None,
        timeout_ms: int | None,
        retries: int | None,
    ) -> tuple[httpx.Response, int, float]:
        path, query = self._build(endpoint, ep, params, path_params)
        if json is not None:
            try:
                jsonlib.dumps(json)
            except (TypeError, ValueError) as exc:
                raise self._error(endpoint, "config", f"request body is not JSON: {exc}") from None
        timeout_ms = timeout_ms or ep.timeout_ms or self.config.timeout_ms
        max_attempts = 1 + (self.config.retries if retries is None else max(0, retries))
        headers = {}
        if ep.method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = uuid.uuid4().hex  # the same for every attempt
        url = f"{self.config.base_url}{path}"
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            if self._bucket is not None and not self._bucket.acquire(timeout_ms / 1000):
                raise self._error(
                    endpoint,
                    "rate_limited",
                    f"over the limit of {self.config.rate_limit_per_second:g} calls/s and no slot "
                    f"free within {timeout_ms} ms",
                    attempts=attempt - 1,
                )
            failure = self._attempt(ep, path, query, json, headers, timeout_ms, url)
            if isinstance(failure, httpx.Response):
                return failure, attempt, round((time.perf_counter() - started) * 1000, 1)
            if attempt >= max_attempts or not failure.retryable:
                suffix = f" after {_plural(attempt)}" if attempt > 1 else ""
                raise self._error(
                    endpoint,
                    failure.kind,
                    failure.message + suffix,
                    failure.status,
                    attempts=attempt,
                )
            delay = self._backoff(attempt)
            cap = self.config.backoff_max_ms / 1000
            if failure.retry_after_s is not None:
                if failure.retry_after_s > cap:
                    raise self._error(
                        endpoint,
                        failure.kind,
                        f"{failure.message}; asked to retry after {failure.retry_after_s:g} s, "
                        f"more than the {self.config.backoff_max_ms} ms limit "
                        f"(gave up after {_plural(attempt)})",
                        failure.status,
                        attempts=attempt,
                    )
                delay = max(delay, failure.retry_after_s)
            # INFO: a retry that then succeeds is routine; a final failure raises instead.
            log.info(
                "%s.%s: %s; retry %d of %d in %.0f ms",
                self.name,
                endpoint,
                self._redact(failure.message),  # it may quote the service's answer
                attempt,
                max_attempts - 1,
                delay * 1000,
            )
            time.sleep(delay)

    def _attempt(
        self,
        ep: EndpointConfig,
        path: str,
        query: dict[str, Any],
        json: Any,
        headers: dict[str, str],
        timeout_ms: int,
        url: str,
    ) -> httpx.Response | _Failure:
        unsafe_ok = ep.retry_unsafe_failures
        try:
            response = self._client.request(
                ep.method,
                path,
                params=query or None,
                json=json,
                headers=headers or None,
                timeout=timeout_ms / 1000,
            )
            response.read()
        except httpx.ConnectTimeout:
            return _Failure(
                "timeout", f"no connection to {self.config.base_url} within {timeout_ms} ms", True
            )
        except httpx.TimeoutException:
            return _Failure(
                "timeout", f"no response within {timeout_ms} ms from {ep.method} {url}", unsafe_ok
            )
        except httpx.ConnectError as exc:
            reason = _connect_reason(exc)
            return _Failure("unreachable", f"cannot reach {self.config.base_url} ({reason})", True)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            return _Failure(
                "unreachable", f"connection to {self.config.base_url} failed ({reason})", unsafe_ok
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # e.g. a body that fails to decode
            reason = str(exc) or type(exc).__name__
            return _Failure("invalid_response", f"{ep.method} {path} failed ({reason})", False)
        status = response.status_code
        if status < 300:
            return response
        message = f"HTTP {status} from {ep.method} {path}"
        if status < 400:
            # Redirects are not followed, and a 3xx carries no data (an SSO or auth proxy,
            # http -> https): going on as if the call worked would hand the agent nothing.
            return _Failure("http_error", self._redirect_message(message, response), False, status)
        detail = _detail(response, self._redact)
        if detail:
            message += f": {detail}"
        if status == 429:
            return _Failure("rate_limited", message, True, status, _retry_after(response))
        if status == 503:
            return _Failure("http_error", message, True, status, _retry_after(response))
        if status >= 500:
            return _Failure("http_error", message, unsafe_ok, status, _retry_after(response))
        return _Failure("http_error", message, False, status)

    def _redirect_message(self, message: str, response: httpx.Response) -> str:
        if response.status_code == 304:  # only an answer to If-None-Match / If-Modified-Since
            return (
                f"{message}: Not Modified, so no data; connectors send no conditional requests, "
                f"check connectors.{self.name}.headers and any proxy in between"
            )
        # Redacted before joining too: percent-encoding could change a secret past matching.
        location = self._redact(response.headers.get("location", ""))
        if not location:
            return f"{message}: a redirect without a Location; redirects are not followed"
        try:
            target = self._redact(str(response.url.join(location)))  # a relative one in full
        except httpx.InvalidURL:
            target = location
        if len(target) > _DETAIL_LIMIT:
            target = target[: _DETAIL_LIMIT - 3] + "..."
        return (
            f"{message}: the service redirected to {target}; redirects are not followed, so "
            f"point connectors.{self.name}.base_url (or the endpoint's path) at the final address"
        )

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_ms, self.config.backoff_ms * 2 ** (attempt - 1)) / 1000
        return base / 2 + self._rng.uniform(0, base / 2)

    def _parse(
        self, endpoint: str, ep: EndpointConfig, response: httpx.Response, attempts: int
    ) -> Any:
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if not response.content:
            data: Any = None
        elif "json" in content_type or ep.response_schema is not None:
            try:
                data = response.json()
            except ValueError:
                snippet = " ".join(self._redact(response.text)[:80].split())
                raise self._error(
                    endpoint,
                    "invalid_response",
                    f"{ep.method} {ep.path} returned {content_type or 'no content type'}, "
                    f"not JSON: {snippet!r}",
                    status,
                    attempts=attempts,
                    problems=["(top level): response is not JSON"],
                ) from None
        else:
            data = response.text
        if ep.response_schema is not None:
            problems = shape_problems(ep.response_schema, data)
            if problems:
                shown = "; ".join(problems[:3])
                more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
                raise self._error(
                    endpoint,
                    "invalid_response",
                    f"response of {ep.method} {ep.path} does not match its schema: {shown}{more}",
                    status,
                    attempts=attempts,
                    problems=problems,
                )
        return data
