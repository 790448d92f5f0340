"""OpenTelemetry traces out: request → decision → ingestion → store write, to any OTLP backend.

Configured only by the standard environment variables, so operators use what they already know:
tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_TRACES_EXPORTER` is set (and `OTEL_SDK_DISABLED` is not `true`); otherwise nothing is
created and the instrumentation costs one `None` check. The SDK itself reads the rest
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...). Exporters: `otlp` (HTTP/protobuf; `grpc` when that
exporter package is installed and the protocol asks for it), `console`, `none`.

The provider is per server instance, not the process-global one, so tests and several apps in
one process do not share it. Components are instrumented from outside (`instrument_state` wraps
the state's objects), so none of them depends on OpenTelemetry.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("agent_lightning.observability")

INSTRUMENTATION_NAME = "agent_lightning"


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    exporters = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporters == "none":
        return False
    return bool(
        exporters
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service_name: str = "agent-lightning") -> Any | None:
    """A TracerProvider exporting as the `OTEL_*` variables say, or None when tracing is off."""
    if not tracing_enabled():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = [
        n.strip().lower() for n in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")
    ]
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> Any | None:
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; use otlp or console", name)
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        except ImportError:
            log.warning(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc; using HTTP/protobuf"
            )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def get_tracer(provider: Any | None) -> Any | None:
    return provider.get_tracer(INSTRUMENTATION_NAME) if provider is not None else None


def _traced(
    tracer: Any,
    name: str,
    fn: Callable[..., Any],
    attributes: Callable[..., dict[str, Any]],
    result_attributes: Callable[[Any], dict[str, Any]] | None = None,
) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(name, attributes=attributes(*args, **kwargs)) as span:
            result = fn(*args, **kwargs)
            if result_attributes is not None:
                span.set_attributes(result_attributes(result))
            return result

    return wrapper


def _timed(histogram: Any, fn: Callable[..., Any], labels: Callable[..., tuple]) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            observed = histogram.labels(*labels(*args, **kwargs)) if labels else histogram
            observed.observe(time.perf_counter() - started)

    return wrapper


_MARK = "_agl_instrumented"


def instrument_state(state: Any, metrics: Any, tracer: Any | None) -> None:
    """Wrap the state's decision service, pipeline and store (once) with timing and spans.

    The wrappers are instance attributes that shadow the methods, so the objects keep their
    types and nothing in their modules changes. Spans only when a tracer is given.
    """
    if getattr(state, _MARK, False):
        return
    store, pipeline, decisions = state.store, state.pipeline, state.decisions

    write = _timed(metrics.store_write, store.insert_records, lambda kind, *_a, **_k: (str(kind),))
    if tracer is not None:
        write = _traced(
            tracer,
            "agl.store.write",
            write,
            lambda kind, app_id, rows, **_k: {
                "agl.record.kind": str(kind),
                "agl.app.id": str(app_id),
                "agl.records": len(rows),
                "db.system": store.dialect,
            },
        )
    store.insert_records = write

    decide = _timed(metrics.decide_duration, decisions.decide, None)
    if tracer is not None:
        decide = _traced(
            tracer,
            "agl.decide",
            decide,
            lambda app_id, request, **_k: {
                "agl.app.id": str(app_id),
                "agl.decision_point": str(getattr(request, "decision_point", "")),
                "agl.actions": len(getattr(request, "actions", ()) or ()),
            },
            lambda outcome: {
                "agl.decision.id": outcome.decision_id,
                "agl.action.id": outcome.action_id,
                "agl.propensity": float(outcome.propensity),
                "agl.policy.name": outcome.policy_name or "",
                "agl.policy.version": outcome.policy_version or 0,
            },
        )
    decisions.decide = decide

    if tracer is not None:
        for kind in ("events", "decisions", "rewards"):
            method = f"ingest_{kind}"
            setattr(
                pipeline,
                method,
                _traced(
                    tracer,
                    f"agl.ingest.{kind}",
                    getattr(pipeline, method),
                    lambda app_id, records, **_k: {
                        "agl.app.id": str(app_id),
                        "agl.records": len(records),
                    },
                    lambda result: {
                        "agl.accepted": len(result.accepted),
                        "agl.rejected": len(result.rejected),
                    },
                ),
            )
    setattr(state, _MARK, True)
