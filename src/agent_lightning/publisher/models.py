"""The publisher's tables, on the shared declarative Base so Alembic and the store see them.

`rollouts`: one row per rollout of a candidate version against a baseline, with its current
share, the guardrails it is watched by, and a history of every step with the evidence behind it.
`active_key` holds the policy id while the rollout is running or paused and NULL once it ended;
a unique constraint on it is what guarantees one active rollout per policy, on SQLite and
PostgreSQL alike, even with several server replicas racing (NULLs never collide).

`runtime_reports`: the last report of each runtime about the versions it runs, per policy.

Conventions follow `store.models`: `pk` orders, `id` is public, every row carries `app_id`,
times are UTC.
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

from agent_lightning.store.models import PK, Base, utcnow

KINDS = ("canary", "ab", "blue_green", "flag")
STATUSES = ("running", "paused", "promoted", "rolled_back", "aborted")
ACTIVE = ("running", "paused")


class Rollout(Base):
    """A candidate version served to a growing share of units, watched by guardrails."""

    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("active_key", name="uq_rollouts_active_key"),
        Index("ix_rollouts_app_pk", "app_id", "pk"),
        Index("ix_rollouts_app_policy", "app_id", "policy_name", "status"),
        Index("ix_rollouts_status", "status"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    policy_id: Mapped[str] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    policy_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    baseline_version: Mapped[int] = mapped_column(Integer)
    candidate_version: Mapped[int] = mapped_column(Integer)
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    min_decisions_per_step: Mapped[int] = mapped_column(Integer, default=100)
    segment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    salt: Mapped[str] = mapped_column(String(64))
    guardrails: Mapped[list[Any]] = mapped_column(JSON, default=list)
    alpha: Mapped[float] = mapped_column(Float, default=0.05)
    status: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str] = mapped_column(Text, default="")
    active_key: Mapped[str | None] = mapped_column(String(64))
    # Bumped on every transition: updates are compare-and-set on it (see RolloutManager).
    revision: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    step_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)


class RuntimeReport(Base):
    """What one runtime last said it runs for one policy (upserted, so bounded per runtime)."""

    __tablename__ = "runtime_reports"
    __table_args__ = (
        UniqueConstraint("app_id", "runtime_id", "policy", name="uq_runtime_reports_key"),
        Index("ix_runtime_reports_app_pk", "app_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    runtime_id: Mapped[str] = mapped_column(String(200))
    policy: Mapped[str] = mapped_column(String(200))
    versions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


__all__ = ["ACTIVE", "KINDS", "STATUSES", "Rollout", "RuntimeReport"]
