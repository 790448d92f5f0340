"""What the current request is, for log lines written anywhere while it is being served.

The middleware sets these context variables; context variables follow the request into FastAPI's
worker threads (the thread pool copies the context), so a log call deep in a component still
knows its request id and route without being handed them.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("agl_request_id", default=None)
scope_var: ContextVar[dict[str, Any] | None] = ContextVar("agl_scope", default=None)

API_PREFIX = "/v1"


def route_template(scope: dict[str, Any] | None) -> str | None:
    """The matched route's path template (`/v1/events/{event_id}`), or None before routing.

    FastAPI hands over the router's own route, whose path lacks the prefix it was mounted under;
    the server mounts every router under `/v1`, so a `/v1/...` request gets the prefix back.
    """
    if not scope:
        return None
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        return None
    requested = scope.get("path", "")
    if requested.startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX + "/"):
        return API_PREFIX + path
    return path


def current_route() -> str | None:
    return route_template(scope_var.get())
