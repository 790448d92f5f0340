"""The runtime's traces: message → decide → each action → each connector call.

Tracing is off unless the standard `OTEL_*` variables turn it on (the same rule as the server's,
`observability.tracing`); then `agent-lightning run` exports spans to the OTLP endpoint they name,
under the service name `agent-lightning-runtime`. Off, every span is a `nullcontext`: one
attribute check per step. Spans carry ids, intents, versions and outcomes, never message text
(it may hold personal data the server would have redacted).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

SERVICE_NAME = "agent-lightning-runtime"


class RuntimeTracer:
    """A thin wrapper so the runtime's code reads the same with tracing on or off."""

    def __init__(self, tracer: Any | None = None) -> None:
        self._tracer = tracer

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, client: bool = False
    ) -> AbstractContextManager[Any]:
        """A span around a block (the current span becomes its parent), or a no-op."""
        if self._tracer is None:
            return nullcontext(None)
        from opentelemetry.trace import SpanKind

        clean = {k: v for k, v in (attributes or {}).items() if v is not None}
        kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
        return self._tracer.start_as_current_span(name, attributes=clean, kind=kind)


NO_TRACING = RuntimeTracer(None)


def set_attributes(span: Any, attributes: Mapping[str, Any]) -> None:
    """Add attributes to a span that may be None (tracing off); None values are left out."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def tracer_from_env() -> tuple[RuntimeTracer, Any | None]:
    """(tracer, provider) as the `OTEL_*` variables say; the provider is None when tracing is off
    (shut it down on exit so the last spans are exported)."""
    from agent_lightning.observability.tracing import configure_tracing, get_tracer

    provider = configure_tracing(SERVICE_NAME)
    return RuntimeTracer(get_tracer(provider)), provider


__all__ = ["NO_TRACING", "SERVICE_NAME", "RuntimeTracer", "set_attributes", "tracer_from_env"]
