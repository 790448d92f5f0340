"""The gateway's table, on the shared declarative Base so Alembic and the store see it.

One row per model call the gateway forwarded (or refused after authentication): what was asked,
what came back, how long it took, and which prompt variant the live policy chose for it. Request
and response are stored after PII redaction. Conventions follow `store.models`: `pk` orders,
`id` is public and unique per app, every row carries `app_id`, times are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
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

from agent_lightning.store.models import PK, Base, utcnow


class GatewaySpan(Base):
    """One LLM call through the gateway, linked to its session (a multi-step agent run)."""

    __tablename__ = "gateway_spans"
    __table_args__ = (
        UniqueConstraint("app_id", "id", name="uq_gateway_spans_app_id"),
        Index("ix_gateway_spans_app_pk", "app_id", "pk"),
        Index("ix_gateway_spans_app_session", "app_id", "session_id"),
        Index("ix_gateway_spans_app_created", "app_id", "created_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    upstream: Mapped[str | None] = mapped_column(String(200))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # ok | upstream_error | error | client_disconnected
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    policy_name: Mapped[str | None] = mapped_column(String(200))
    decision_id: Mapped[str | None] = mapped_column(String(64))
    variant_id: Mapped[str | None] = mapped_column(String(200))
    pii_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
