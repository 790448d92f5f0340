"""What the sync and async clients share: settings, credentials, and the retry verdict."""

from __future__ import annotations

from typing import Any

import httpx

from agent_lightning import __version__
from agent_lightning.sdk import _calls as calls
from agent_lightning.sdk._auth import Credentials, TokenCache
from agent_lightning.sdk._buffer import OnRejected
from agent_lightning.sdk._calls import Call
from agent_lightning.sdk._exceptions import (
    TransportError,
    error_code,
    error_from_response,
    retry_after_seconds,
)
from agent_lightning.sdk._retry import RetryPolicy

USER_AGENT = f"agent-lightning-python/{__version__}"
_COMMON_FILTERS = frozenset({"since", "until", "session_id", "user_id"})
# The server ignores a filter that does not apply to a kind (and unknown parameters), so a
# misspelt or misplaced filter would list everything: the SDK refuses them instead.
LIST_FILTERS = {
    "events": _COMMON_FILTERS | {"policy_name", "policy_version"},
    "decisions": _COMMON_FILTERS | {"decision_point", "policy_name", "policy_version"},
    "rewards": _COMMON_FILTERS | {"decision_id"},
}


def checked_url(url: str) -> str:
    """The base URL, refused at once unless http(s) with a host: without a scheme, httpx would
    fail only when sending, after seconds of retries."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        shown = url.rsplit("@", 1)[-1]  # never a password in user:password@host
        raise ValueError(
            f"base_url must be an http:// or https:// URL, like http://127.0.0.1:8000; "
            f"got {shown!r}"
        )
    return url


class BaseClient:
    """Settings are public attributes named like the constructor arguments; credentials and
    tokens are private and never shown."""

    def __init__(
        self,
        client_id: str | None,
        secret: str | None,
        base_url: str | None,
        *,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
        buffer: bool,
        flush_interval: float,
        max_buffer: int,
        on_rejected: OnRejected | None,
        transport: Any,
        app: Any,
    ) -> None:
        if transport is not None and app is not None:
            raise ValueError("pass either transport or app, not both")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self._credentials = Credentials.resolve(client_id, secret, api_key, base_url)
        self.client_id = self._credentials.client_id
        self.base_url = checked_url(self._credentials.base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.buffer = buffer
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.on_rejected = on_rejected
        self._retry = RetryPolicy(max_retries, backoff)
        self._tokens = TokenCache()

    def __repr__(self) -> str:
        who = f"client_id={self.client_id!r}" if self.client_id is not None else "api_key='aglk_…'"
        return f"{type(self).__name__}(base_url={self.base_url!r}, {who}, buffer={self.buffer})"

    @property
    def _uses_api_key(self) -> bool:
        return self._credentials.api_key is not None

    def _headers(self, call: Call, bearer: str | None) -> dict[str, str]:
        headers = {"X-Request-ID": call.request_id}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return headers

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: Call, bearer: str | None):
        return http.build_request(
            call.method,
            call.path,
            json=call.json,
            data=call.data,
            params=call.params,
            headers=self._headers(call, bearer),
        )

    def _verdict(
        self, call: Call, response: httpx.Response, attempt: int, may_refresh: bool
    ) -> tuple[str, float]:
        """("done" | "refresh" | "retry", pause) for an answer, or raise its error."""
        status = response.status_code
        if status < 400:
            return "done", 0.0
        code = error_code(response)
        if status == 401 and may_refresh and code == "invalid_token":
            return "refresh", 0.0
        retry_after = retry_after_seconds(response)
        if self._retry.retry_status(attempt, status, code, retry_after, call.idempotent):
            return "retry", self._retry.delay(attempt, retry_after)
        raise error_from_response(response)

    def _transport_error(
        self, call: Call, exc: httpx.TransportError, attempt: int
    ) -> tuple[bool, float, TransportError]:
        retry = self._retry.retry_exception(attempt, exc, call.idempotent)
        detail = str(exc) or type(exc).__name__
        error = TransportError(
            f"{call.method} {call.path} got no answer after {attempt + 1} attempt(s): "
            f"{type(exc).__name__}: {detail}"
        )
        return retry, self._retry.delay(attempt) if retry else 0.0, error

    def _store_token(self, response: httpx.Response, asked_at: float) -> str:
        def parse(body: object) -> str:
            return self._tokens.store(calls.an_object(body), asked_at)

        return calls.read(response, parse)

    @staticmethod
    def _list_params(
        kind: str, filters: dict[str, Any], order: str, page_size: int
    ) -> dict[str, Any]:
        unknown = set(filters) - LIST_FILTERS[kind]
        if unknown:
            raise TypeError(
                f"unknown filter(s) for {kind}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(LIST_FILTERS[kind]))}"
            )
        if order not in ("asc", "desc"):
            raise ValueError("order must be 'asc' or 'desc'")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        return {**calls.list_params(filters, page_size), "order": order}
