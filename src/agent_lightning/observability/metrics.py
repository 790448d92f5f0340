"""Prometheus metrics: one registry per server instance, and the views that expose it.

A registry per instance (never the process-global default) keeps two apps in one process, as in
the tests, from sharing counters. Labels are bounded by construction: route *templates* (never raw
paths), status classes, record kinds, PII types, tenant (app) ids, policy names (a bounded number
per app, see `db_stats`) and a bounded number of versions. No user id, session id or record id is
ever a label.

What each family means is in its help text; the per-policy-version and learning-task families are
read from the database at scrape time (see `db_stats`).

`/v1/metrics` shows a tenant its own series plus the process-wide ones (HTTP, store latency), which
carry no tenant data; the optional loopback port (`AGL_METRICS_PORT`) shows everything, for the
operator's Prometheus.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from agent_lightning import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"


def status_class(status: int) -> str:
    """200 -> "2xx"; anything outside 100-599 counts as a server error."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


class AppTally:
    """Responses and server errors per app, kept beside the counters for the alert evaluator.

    Reading counts back out of prometheus-client objects is not part of its API; a plain dict
    under a lock is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}

    def add(self, app_id: str, status: int) -> None:
        with self._lock:
            counts = self._counts.setdefault(app_id, [0, 0])
            counts[0] += 1
            if status >= 500:
                counts[1] += 1

    def get(self, app_id: str) -> tuple[int, int]:
        """(responses, server errors) for one app since this process started."""
        with self._lock:
            total, errors = self._counts.get(app_id, (0, 0))
            return total, errors


class Metrics:
    """Every instrument of one server instance, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("agl_build_info", "agent-lightning build", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self.http_requests = Counter(
            "agl_http_requests",
            "HTTP requests by route template, method and status class (5xx are errors)",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.http_duration = Histogram(
            "agl_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "agl_http_requests_in_flight", "HTTP requests being served", registry=r
        )
        self.app_responses = Counter(
            "agl_app_http_responses",
            "Authenticated responses per app by status class",
            ["app_id", "status_class"],
            registry=r,
        )
        self.ingested = Counter(
            "agl_ingested_records",
            "Records stored by the ingestion pipeline (events, decisions, rewards, trace_spans)",
            ["app_id", "kind"],
            registry=r,
        )
        self.pii_redactions = Counter(
            "agl_pii_redactions",
            "PII findings replaced by placeholders before storage, by type",
            ["app_id", "kind", "pii_type"],
            registry=r,
        )
        self.store_write = Histogram(
            "agl_store_write_duration_seconds",
            "Time to commit one batch write to the store, by record kind",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decide_duration = Histogram(
            "agl_decide_duration_seconds",
            "Time to answer one decide call (policy lookup, scoring, logging)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.otlp_spans = Counter(
            "agl_otlp_spans",
            "Spans received on POST /v1/traces, by outcome (stored, duplicate, rejected)",
            ["app_id", "outcome"],
            registry=r,
        )
        self.alert_notifications = Counter(
            "agl_alert_notifications",
            "Alert webhook deliveries by outcome (delivered, failed)",
            ["outcome"],
            registry=r,
        )
        self.tally = AppTally()

    # -- hooks ----------------------------------------------------------------------------------

    def on_ingest(self, kind: str, app_id: str, created: int, pii_counts: dict[str, int]) -> None:
        """The ingestion pipeline's hook: counts only, never record contents."""
        if created:
            self.ingested.labels(app_id, kind).inc(created)
        for pii_type, count in pii_counts.items():
            if count:
                self.pii_redactions.labels(app_id, kind, pii_type).inc(count)

    def observe_request(
        self, method: str, route: str, status: int, seconds: float, app_id: str | None
    ) -> None:
        klass = status_class(status)
        self.http_requests.labels(method, route, klass).inc()
        self.http_duration.labels(method, route).observe(seconds)
        if app_id:
            self.app_responses.labels(app_id, klass).inc()
            self.tally.add(app_id, status)

    # -- exposition -----------------------------------------------------------------------------

    def exposition(self, app_id: str | None = None) -> bytes:
        """The text format; with `app_id`, only that tenant's series and the process-wide ones."""
        source: Any = self.registry if app_id is None else TenantView(self.registry, app_id)
        return generate_latest(source)

    content_type = CONTENT_TYPE_LATEST


class TenantView:
    """A registry look-alike that hides every sample labelled with another app."""

    def __init__(self, registry: CollectorRegistry, app_id: str) -> None:
        self.registry = registry
        self.app_id = app_id

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            kept = _own(family.samples, self.app_id)
            if not kept and family.samples:
                continue
            clone = Metric(family.name, family.documentation, family.type, family.unit)
            clone.samples = kept
            yield clone


def _own(samples: Iterable[Any], app_id: str) -> list[Any]:
    return [s for s in samples if s.labels.get("app_id", app_id) == app_id]


class MetricsPortServer:
    """`/metrics` without authentication on a separate port, for a local Prometheus.

    Binds to loopback unless told otherwise: whoever can reach the port sees every tenant's
    series, so exposing it further is a deliberate choice (`AGL_METRICS_ADDR`).
    """

    def __init__(self, registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> None:
        self.registry = registry
        self.port = port
        self.addr = addr
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        if self._server is None:
            self._server, self._thread = start_http_server(
                self.port, addr=self.addr, registry=self.registry
            )
            self.port = self._server.server_port  # port 0 picks a free one

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None
