"""Every error the SDK raises, under one root:

    AgentLightningError
    ├── APIError                  the server answered with an error (status, code, message)
    │   ├── AuthenticationError   401: missing, wrong, expired or revoked credentials
    │   ├── PermissionDeniedError 403: your roles do not allow this route
    │   ├── NotFoundError         404: no such record, policy or task (in your app)
    │   ├── ConflictError         409: the id is already used by different content
    │   ├── ValidationError       400 / 422: the request was refused; see `.details`
    │   ├── RateLimitError        429: slow down; `.retry_after` seconds, when the server said
    │   ├── ServerError           5xx: the server (or a proxy in front of it) failed
    │   └── UnexpectedResponseError  a success status, but not an agent-lightning answer
    ├── TransportError            no answer: connection refused, timeout, broken connection
    ├── BufferFullError           buffered mode: the local queue is full; nothing was queued
    ├── ClientClosedError         the client was used after `close()`
    └── TaskTimeoutError          wait_for_task: the task did not finish in time

Messages carry the server's code and sentence and the request id, never a secret or a token.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class AgentLightningError(Exception):
    """Root of every error the SDK raises."""


class APIError(AgentLightningError):
    """The server answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        *,
        details: Any = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details
        super().__init__(self._describe())

    def _describe(self) -> str:
        suffix = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(APIError):
    """401: the credentials are missing, wrong, expired or revoked."""


class PermissionDeniedError(APIError):
    """403: authenticated, but your roles do not allow this."""


class NotFoundError(APIError):
    """404: nothing with that id or name in your app."""


class ConflictError(APIError):
    """409: the id is already used by a record with different content (or the name is taken)."""


class ValidationError(APIError):
    """400 / 422: the server refused the request; `.details` lists the problems (no input)."""


class RateLimitError(APIError):
    """429: too many requests; `.retry_after` is the server's advice in seconds, if any."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(APIError):
    """5xx: the server or a proxy failed; the SDK has already retried where that is safe."""


class UnexpectedResponseError(APIError):
    """A success status, but a body that no agent-lightning server sends (not JSON, or without
    the expected fields): typically a captive portal, a proxy, or a base_url that points at
    another service."""


class TransportError(AgentLightningError):
    """The request got no answer: connection refused or reset, DNS failure, timeout."""


class BufferFullError(AgentLightningError):
    """Buffered mode: the local queue holds `max_buffer` records already; nothing was queued.

    Raised instead of dropping old records silently. Call `flush()` or slow down; a full buffer
    usually means the server has been unreachable for a while.
    """


class ClientClosedError(AgentLightningError, RuntimeError):
    """The client was used after `close()`; create a new one."""


class TaskTimeoutError(AgentLightningError, TimeoutError):
    """`wait_for_task` ran out of time; the task may still finish later."""

    def __init__(self, task_id: str, status: str, waited: float) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(f"task {task_id} is still {status} after {waited:.1f} s")


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header as seconds (delta-seconds or an HTTP date), if present and sane."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_code(response: httpx.Response) -> str | None:
    """The machine-readable code of an error body, in either of the server's two shapes."""
    body = _json_or_none(response)
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return code if isinstance(code, str) else None
    return error if isinstance(error, str) else None


def error_from_response(response: httpx.Response) -> APIError:
    """Map an error response to the exception class for its status.

    Two body shapes exist: the API's `{"error": {"code", "message", "details"}, "request_id"}`
    and, from the token endpoint, RFC 6749's `{"error": "...", "error_description": "..."}`.
    """
    status = response.status_code
    body = _json_or_none(response)
    request_id = response.headers.get("x-request-id")
    code, message, details = _default_code(status), response.reason_phrase or "error", None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
            details = error.get("details")
        elif isinstance(error, str):  # RFC 6749 §5.2
            code = error
            message = str(body.get("error_description") or message)
        if isinstance(body.get("request_id"), str):
            request_id = body["request_id"]
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    if cls is RateLimitError:
        return RateLimitError(
            status,
            code,
            message,
            request_id,
            details=details,
            retry_after=retry_after_seconds(response),
        )
    return cls(status, code, message, request_id, details=details)


def error_for_reason(
    reason: str, message: str, request_id: str | None = None, details: Any = None
) -> APIError:
    """The error a single write gets for a per-record rejection reason of a batch."""
    status = {"id_conflict": 409, "unknown_decision": 404}.get(reason, 422)
    return _BY_STATUS[status](status, reason, message, request_id, details=details)


def unexpected_response(response: httpx.Response, problem: str) -> UnexpectedResponseError:
    """The error for a success status whose body is not an agent-lightning answer."""
    try:
        where = f"{response.request.method} {response.request.url.path}: "
    except RuntimeError:  # a response built without its request
        where = ""
    kind = response.headers.get("content-type") or "no content type"
    message = (
        f"{where}the server's answer (HTTP {response.status_code}, {kind}) is not what "
        f"agent-lightning sends: {problem}; check base_url and any proxy in between"
    )
    request_id = response.headers.get("x-request-id")
    return UnexpectedResponseError(response.status_code, "unexpected_response", message, request_id)


def _default_code(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}.get(
        status, "error"
    )


def _json_or_none(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None
