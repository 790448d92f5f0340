"""SQLAlchemy 2 models: the one schema shared by SQLite and PostgreSQL.

Conventions, so every table reads the same way:

- `pk` is an auto-increment integer used only for ordering and cursor pagination (it is
  monotonic per table, unlike timestamps, so a cursor never skips or repeats a row).
- `id` is the public identifier (client-supplied or generated). It is unique per app, which is
  what makes a retried batch idempotent and keeps one tenant from colliding with another.
- Every tenant-owned row carries `app_id`; the store never reads across apps.
- Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
PK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class App(Base):
    """A tenant: one agent (or a family of agents) and its settings."""

    __tablename__ = "apps"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Reward join settings: how long to wait, what to assume when nothing arrives, how to combine.
    reward_wait_seconds: Mapped[float] = mapped_column(Float, default=3600.0)
    default_reward: Mapped[float] = mapped_column(Float, default=0.0)
    reward_aggregation: Mapped[str] = mapped_column(String(16), default="sum")
    reward_min: Mapped[float] = mapped_column(Float, default=-1.0)
    reward_max: Mapped[float] = mapped_column(Float, default=1.0)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Client(Base):
    """An OAuth2 client (machine identity) of one app; the secret is stored hashed."""

    __tablename__ = "clients"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(80), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """A personal API key for scripts: `aglk_<id>_<secret>`, secret stored hashed, revocable."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(80), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """Telemetry from an agent: the product's event payload plus what a real system needs."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("app_id", "id", name="uq_events_app_id"),
        Index("ix_events_app_pk", "app_id", "pk"),
        Index("ix_events_app_session", "app_id", "session_id"),
        Index("ix_events_app_user", "app_id", "user_id"),
        Index("ix_events_app_created", "app_id", "created_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    intent_prediction: Mapped[str | None] = mapped_column(String(200))
    confidence: Mapped[float | None] = mapped_column(Float)
    feedback_score: Mapped[float | None] = mapped_column(Float)
    policy_name: Mapped[str | None] = mapped_column(String(200))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pii_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Hash of the record as submitted: a retried id with the same content is a no-op, a reused id
    # with different content is a conflict.
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """One decision an agent made, with the probability it had (its propensity)."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("app_id", "id", name="uq_decisions_app_id"),
        Index("ix_decisions_app_pk", "app_id", "pk"),
        Index("ix_decisions_app_point", "app_id", "decision_point", "pk"),
        Index("ix_decisions_app_session", "app_id", "session_id"),
        Index("ix_decisions_app_user", "app_id", "user_id"),
        Index("ix_decisions_app_policy", "app_id", "policy_name", "policy_version"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    decision_point: Mapped[str] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    action_id: Mapped[str] = mapped_column(String(200))
    propensity: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    policy_name: Mapped[str | None] = mapped_column(String(200))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pii_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Reward(Base):
    """Feedback on a decision (or on a whole session): zero or more per decision."""

    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("app_id", "id", name="uq_rewards_app_id"),
        ForeignKeyConstraint(
            ["app_id", "decision_id"],
            ["decisions.app_id", "decisions.id"],
            name="fk_rewards_decision",
            ondelete="CASCADE",
        ),
        Index("ix_rewards_app_decision", "app_id", "decision_id"),
        Index("ix_rewards_app_session", "app_id", "session_id"),
        Index("ix_rewards_app_pk", "app_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    decision_id: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32), default="user")
    correct_action_id: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Policy(Base):
    """A named decision function for one decision point of an app; its versions are immutable."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_policies_app_name"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    decision_point: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    live_version: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PolicyVersion(Base):
    """An immutable learned artefact with its lineage: parent, training data range and hash."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("policy_id", "version", name="uq_policy_versions_policy_version"),
        Index("ix_policy_versions_app_pk", "app_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    policy_id: Mapped[str] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    # Size of the stored bytes, so listing versions never reads the artifacts themselves.
    artifact_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # Set when retention removed the artifact's bytes: the row (lineage, metrics, SHA-256) stays.
    artifact_pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    data_hash: Mapped[str | None] = mapped_column(String(64))
    data_range: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Task(Base):
    """A learning task (or another long job) with its status and result."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_app_pk", "app_id", "pk"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Append-only, hash-chained record of who changed what (see `security.audit`)."""

    __tablename__ = "audit_log"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    app_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(32), default="client")
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class RetentionRule(Base):
    """How long one kind of record is kept for one app."""

    __tablename__ = "retention_rules"
    __table_args__ = (UniqueConstraint("app_id", "kind", name="uq_retention_app_kind"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    days: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Secret(Base):
    """A connector credential, encrypted at rest (Fernet); never returned by the API."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_secrets_app_name"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
