"""The observability tables, on the shared declarative Base so Alembic and the store see them.

- `trace_spans`: OpenTelemetry spans that instrumented agents export to `POST /v1/traces`,
  redacted, keyed by (app, trace id, span id) so an exporter's retry is stored once, and linked
  to the session they belong to.
- `alert_configs`: one row per app: its alert rules and where to deliver them.
- `alert_firings`: every time a rule started firing, and when it resolved.

Conventions follow `store.models`: `pk` orders, every row carries `app_id`, times are UTC.

The windowed alert queries read decisions by time, so this module also declares an index on
`decisions (app_id, created_at)` (created by migration 0003); it lives here, with the queries that
need it, rather than in the store's models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent_lightning.store.models import PK, Base, Decision, utcnow

DECISIONS_BY_TIME = Index(
    "ix_obs_decisions_app_created", Decision.__table__.c.app_id, Decision.__table__.c.created_at
)


class TraceSpan(Base):
    """One span from an agent's own OpenTelemetry instrumentation (OTLP), redacted."""

    __tablename__ = "trace_spans"
    __table_args__ = (
        UniqueConstraint("app_id", "trace_id", "span_id", name="uq_trace_spans_app_trace_span"),
        Index("ix_trace_spans_app_pk", "app_id", "pk"),
        Index("ix_trace_spans_app_session_start", "app_id", "session_id", "start_time"),
        Index("ix_trace_spans_app_created", "app_id", "created_at"),
        Index("ix_trace_spans_app_user", "app_id", "user_id"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(32))  # lower-case hex
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))  # internal | server | client | producer | ...
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float] = mapped_column(Float)
    status_code: Mapped[str] = mapped_column(String(8))  # unset | ok | error
    status_message: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    service_name: Mapped[str | None] = mapped_column(String(200))
    scope_name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    links: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resource: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pii_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertConfig(Base):
    """An app's alert rules (a JSON list, replaced as a whole) and its webhook."""

    __tablename__ = "alert_configs"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), unique=True)
    rules: Mapped[list[Any]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # Encrypted with the server's SecretBox; never returned by the API.
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertFiring(Base):
    """One episode of a rule firing: opened when its condition held, closed when it stopped.

    `open_key` is set while the episode is open and cleared on resolution; its uniqueness per app
    means two server replicas evaluating the same rule cannot both open an episode (NULLs are
    distinct, so closed episodes never collide).
    """

    __tablename__ = "alert_firings"
    __table_args__ = (
        UniqueConstraint("app_id", "id", name="uq_alert_firings_app_id"),
        UniqueConstraint("app_id", "open_key", name="uq_alert_firings_open"),
        Index("ix_alert_firings_app_pk", "app_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    open_key: Mapped[str | None] = mapped_column(String(300))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # none (no webhook) | pending | delivered | failed: for the latest notification of the episode
    delivery_status: Mapped[str] = mapped_column(String(16), default="none")
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivery_error: Mapped[str | None] = mapped_column(Text)
