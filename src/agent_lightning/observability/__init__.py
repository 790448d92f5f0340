"""Observability: Prometheus metrics, structured logs, OpenTelemetry traces in and out, alerts.

The server wires it with two calls (see `install`)::

    obs = install_observability(state)   # metrics, tracing, hooks, /v1 routes, alert threads
    instrument_app(app, state)           # the request middleware

Modules: `metrics` and `db_stats` (what is measured), `logging` (JSON lines, scrubbed),
`tracing` (OTLP out), `otlp_ingest` (OTLP in, `POST /v1/traces`), `timeline` (a session in time
order), `alert_rules`, `alerts`, `firings` and `webhooks` (rules, evaluation, episodes,
delivery), `middleware`, `routes`, and `models` (the tables, created by migration 0003).
"""

from agent_lightning.observability.alert_rules import AlertRules, RulesIn
from agent_lightning.observability.alerts import AlertEvaluator, Notifier
from agent_lightning.observability.db_stats import PolicyStats, TaskStats
from agent_lightning.observability.firings import Firings
from agent_lightning.observability.install import (
    Observability,
    ObservabilitySettings,
    install_observability,
    instrument_app,
)
from agent_lightning.observability.logging import (
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    configure_logging_from_env,
)
from agent_lightning.observability.metrics import Metrics
from agent_lightning.observability.middleware import ObservabilityMiddleware
from agent_lightning.observability.models import AlertConfig, AlertFiring, TraceSpan
from agent_lightning.observability.otlp_ingest import TraceIngestor
from agent_lightning.observability.timeline import session_timeline
from agent_lightning.observability.tracing import configure_tracing, tracing_enabled
from agent_lightning.observability.webhooks import WebhookClient, signature

__all__ = [
    "AlertConfig",
    "AlertEvaluator",
    "AlertFiring",
    "AlertRules",
    "Firings",
    "JsonFormatter",
    "Metrics",
    "Notifier",
    "Observability",
    "ObservabilityMiddleware",
    "ObservabilitySettings",
    "PolicyStats",
    "RedactingFilter",
    "RulesIn",
    "TaskStats",
    "TraceIngestor",
    "TraceSpan",
    "WebhookClient",
    "configure_logging",
    "configure_logging_from_env",
    "configure_tracing",
    "install_observability",
    "instrument_app",
    "session_timeline",
    "signature",
    "tracing_enabled",
]
