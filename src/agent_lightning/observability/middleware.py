"""The ASGI middleware that measures, traces and logs every HTTP request.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses pass through untouched. Per request:

- a request id: the one `BodyLimitMiddleware` put in `scope["state"]["request_id"]` when it runs
  first; when this middleware is the outer one, it picks the id itself (the client's valid
  `x-request-id`, or a new one) and hands it down in that header, so both agree;
- context variables for log lines written while serving it (`_context`);
- a SERVER span continuing the caller's W3C `traceparent`, when tracing is on;
- counters and a latency histogram by route *template* and status class, and the per-app tally
  the alert evaluator reads (the app is known once authentication has run);
- one access log line with method, route, status and duration.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from agent_lightning.observability._context import request_id_var, route_template, scope_var
from agent_lightning.observability.metrics import UNMATCHED_ROUTE, Metrics

access_log = logging.getLogger("agent_lightning.access")


def _valid_request_id(value: str) -> bool:
    return bool(value) and len(value) <= 64 and value.replace("-", "").isalnum()


class ObservabilityMiddleware:
    def __init__(self, app: Any, metrics: Metrics, tracer: Any | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope_state = scope.setdefault("state", {})
        request_id = scope_state.get("request_id")
        if not request_id:
            headers = list(scope.get("headers") or [])
            given = dict(headers).get(b"x-request-id", b"").decode("latin-1")
            request_id = given if _valid_request_id(given) else uuid.uuid4().hex
            if given != request_id:
                headers = [(k, v) for k, v in headers if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                scope = {**scope, "headers": headers}
            scope_state["request_id"] = request_id
        tokens = (request_id_var.set(request_id), scope_var.set(scope))
        status = 500
        started = time.perf_counter()

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        span = self._start_span(scope)
        self.metrics.http_in_flight.inc()
        try:
            if span is None:
                await self.app(scope, receive, observed_send)
            else:
                from opentelemetry import trace

                with trace.use_span(span, end_on_exit=False, record_exception=True):
                    await self.app(scope, receive, observed_send)
        except BaseException:
            status = 500
            raise
        finally:
            self.metrics.http_in_flight.dec()
            duration = time.perf_counter() - started
            route = route_template(scope) or UNMATCHED_ROUTE
            method = scope.get("method", "GET")
            principal = scope_state.get("principal")
            app_id = getattr(principal, "app_id", None)
            self.metrics.observe_request(method, route, status, duration, app_id)
            if span is not None:
                self._end_span(span, method, route, status)
            access_log.info(
                "%s %s %d %.1fms",
                method,
                route,
                status,
                duration * 1000,
                extra={
                    "method": method,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "route": route,
                },
            )
            request_id_var.reset(tokens[0])
            scope_var.reset(tokens[1])

    def _start_span(self, scope: dict) -> Any | None:
        if self.tracer is None:
            return None
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        carrier = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers") or []
            if k in (b"traceparent", b"tracestate")
        }
        method = scope.get("method", "GET")
        return self.tracer.start_span(
            method,
            context=extract(carrier),
            kind=SpanKind.SERVER,
            # No raw path: it can hold user ids; the route template is set when the span ends.
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        )

    @staticmethod
    def _end_span(span: Any, method: str, route: str, status: int) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
