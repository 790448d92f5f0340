"""Wiring observability into a server: one call on the state, one on the app.

`install_observability(state)` builds everything (per instance: registry, tracer provider, alert
threads), hooks it to the components from outside (the pipeline's `on_ingest`, wrappers around
`decide`, the pipeline and store writes), adds the router to `state.extras["routers"]` and the
lifecycle to `state.extras["on_startup"/"on_shutdown"]`. `instrument_app(app)` adds the request
middleware. Both are idempotent.

Settings come from the environment (the `OTEL_*` variables configure tracing, see `tracing`):

- `AGL_METRICS_PORT`: also serve `/metrics` without authentication on this port (unset: off);
  `AGL_METRICS_ADDR` the address to bind (default `127.0.0.1`).
- `AGL_ALERTS_EVERY_SECONDS`: how often alert rules are evaluated (default 30).
- `AGL_METRICS_CACHE_SECONDS`: how long database-backed metrics are cached (default 5).
- `AGL_OTLP_MAX_SPANS`: most spans accepted in one `POST /v1/traces` (default 10000).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent_lightning.observability.alert_rules import AlertRules
from agent_lightning.observability.alerts import AlertEvaluator, Notifier
from agent_lightning.observability.db_stats import PolicyStats, RolloutStats, TaskStats
from agent_lightning.observability.firings import Firings
from agent_lightning.observability.metrics import Metrics, MetricsPortServer
from agent_lightning.observability.otlp_ingest import IngestResult, TraceIngestor
from agent_lightning.observability.tracing import configure_tracing, get_tracer, instrument_state
from agent_lightning.observability.webhooks import WebhookClient
from agent_lightning.store import utcnow

log = logging.getLogger("agent_lightning.observability")


def _number(name: str, default: float, cast: Callable[[str], Any] = float) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class ObservabilitySettings:
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    alerts_every_seconds: float = 30.0
    stats_ttl_seconds: float = 5.0
    otlp_max_spans: int = 10_000
    otlp_max_inflated_bytes: int = 16 * 1024 * 1024
    webhook_attempts: int = 4
    webhook_backoff_seconds: float = 0.5
    webhook_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> ObservabilitySettings:
        port = os.environ.get("AGL_METRICS_PORT")
        return cls(
            metrics_port=int(port) if port else None,
            metrics_addr=os.environ.get("AGL_METRICS_ADDR") or "127.0.0.1",
            alerts_every_seconds=_number("AGL_ALERTS_EVERY_SECONDS", 30.0),
            stats_ttl_seconds=_number("AGL_METRICS_CACHE_SECONDS", 5.0),
            otlp_max_spans=_number("AGL_OTLP_MAX_SPANS", 10_000, int),
        )


class Observability:
    """Everything observability for one server instance."""

    def __init__(
        self,
        state: Any,
        settings: ObservabilitySettings,
        *,
        tracer_provider: Any | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        webhook_transport: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = state.store
        self.audit = state.audit
        self.metrics = Metrics()
        self.policy_stats = PolicyStats(
            state.store, ttl=settings.stats_ttl_seconds, monotonic=monotonic
        )
        self.task_stats = TaskStats(
            state.store, ttl=settings.stats_ttl_seconds, monotonic=monotonic
        )
        self.rollout_stats = RolloutStats(
            state.store, ttl=settings.stats_ttl_seconds, monotonic=monotonic
        )
        self.metrics.registry.register(self.policy_stats)
        self.metrics.registry.register(self.task_stats)
        self.metrics.registry.register(self.rollout_stats)
        self._owns_provider = tracer_provider is None
        self.tracer_provider = (
            tracer_provider if tracer_provider is not None else configure_tracing()
        )
        self.tracer = get_tracer(self.tracer_provider)
        self.traces = TraceIngestor(
            state.store, state.pipeline.redactor, max_spans=settings.otlp_max_spans
        )
        self.alert_rules = AlertRules(state.store, state.secret_box)
        self.firings = Firings(state.store)
        self.notifier = Notifier(
            self.alert_rules,
            self.firings,
            WebhookClient(
                attempts=settings.webhook_attempts,
                backoff=settings.webhook_backoff_seconds,
                timeout=settings.webhook_timeout_seconds,
                transport=webhook_transport,
                sleep=sleep,
            ),
            self.metrics,
        )
        self.evaluator = AlertEvaluator(
            state.store,
            self.alert_rules,
            self.firings,
            self.metrics.tally,
            self.notifier,
            every_seconds=settings.alerts_every_seconds,
            clock=clock,
        )
        self.metrics_server = (
            MetricsPortServer(self.metrics.registry, settings.metrics_port, settings.metrics_addr)
            if settings.metrics_port is not None
            else None
        )

    def ingest_traces(self, app_id: str, message: Any) -> IngestResult:
        """Store an OTLP request's spans and count them (runs on a worker thread)."""
        started = time.perf_counter()
        if self.tracer is not None:
            with self.tracer.start_as_current_span("agl.ingest.trace_spans"):
                result = self.traces.ingest(app_id, message)
        else:
            result = self.traces.ingest(app_id, message)
        self.metrics.store_write.labels("trace_spans").observe(time.perf_counter() - started)
        self.metrics.on_ingest("trace_spans", app_id, result.stored, result.pii_counts)
        for outcome, count in (
            ("stored", result.stored),
            ("duplicate", result.duplicates),
            ("rejected", result.rejected),
        ):
            if count:
                self.metrics.otlp_spans.labels(app_id, outcome).inc(count)
        return result

    def start(self) -> None:
        self.notifier.start()
        self.evaluator.start()
        if self.metrics_server is not None:
            self.metrics_server.start()
            log.info(
                "metrics also served without authentication on http://%s:%d/metrics",
                self.metrics_server.addr,
                self.metrics_server.port,
            )

    def stop(self) -> None:
        self.evaluator.stop()
        self.notifier.stop()  # delivers what is queued first
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.tracer_provider is not None and self._owns_provider:
            self.tracer_provider.shutdown()


def install_observability(
    state: Any,
    settings: ObservabilitySettings | None = None,
    **options: Any,
) -> Observability:
    """Build and hook observability into a server state (idempotent; returns the instance).

    `options` go to `Observability` (tests inject `tracer_provider`, `clock`, `monotonic`,
    `webhook_transport`, `sleep`).
    """
    existing = state.extras.get("observability")
    if existing is not None:
        return existing
    from agent_lightning.observability.routes import router

    obs = Observability(state, settings or ObservabilitySettings.from_env(), **options)
    state.extras["observability"] = obs
    state.extras.setdefault("routers", []).append(router)
    state.extras.setdefault("on_startup", []).append(obs.start)
    state.extras.setdefault("on_shutdown", []).append(obs.stop)

    previous = state.pipeline.on_ingest

    def on_ingest(kind: str, app_id: str, created: int, pii_counts: dict[str, int]) -> None:
        if previous is not None:
            previous(kind, app_id, created, pii_counts)
        try:
            obs.metrics.on_ingest(kind, app_id, created, pii_counts)
        except Exception:  # noqa: BLE001 - metrics must never fail a write that succeeded
            log.exception("ingest metrics failed")

    state.pipeline.on_ingest = on_ingest
    instrument_state(state, obs.metrics, obs.tracer)
    return obs


def instrument_app(app: Any, state: Any | None = None) -> Observability:
    """Add the request middleware to a FastAPI app (before it starts; idempotent)."""
    from agent_lightning.observability.middleware import ObservabilityMiddleware

    state = state if state is not None else app.state.agl
    obs = install_observability(state)
    if not getattr(app.state, "agl_observability_middleware", False):
        app.add_middleware(ObservabilityMiddleware, metrics=obs.metrics, tracer=obs.tracer)
        app.state.agl_observability_middleware = True
    return obs
