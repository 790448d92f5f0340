"""Alert episodes (`alert_firings`): opened when a rule starts firing, closed when it stops.

The open-episode key (`rule id|subject`) is unique per app while the episode is open, so when
several replicas evaluate the same rules only one of them opens each episode (the others get an
integrity error and do nothing), and only one closes it (`UPDATE ... WHERE resolved_at IS NULL`).
That replica alone sends the notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from agent_lightning.observability.models import AlertFiring
from agent_lightning.store import Store, new_id
from agent_lightning.store.pagination import Page, decode_cursor, encode_cursor


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


@dataclass(frozen=True)
class Verdict:
    """What one check of a rule found: whether it fires, the measured value, and why."""

    firing: bool
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def public_firing(row: AlertFiring) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule_id": row.rule_id,
        "kind": row.kind,
        "severity": row.severity,
        "subject": row.subject or None,
        "status": row.status,
        "value": row.value,
        "threshold": row.threshold,
        "message": row.message,
        "details": row.details,
        "fired_at": iso(row.fired_at),
        "resolved_at": iso(row.resolved_at),
        "delivery": {
            "status": row.delivery_status,
            "attempts": row.delivery_attempts,
            "error": row.delivery_error,
        },
    }


class Firings:
    """`alert_firings`: open, close and list episodes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def open_episodes(self, app_id: str) -> dict[str, AlertFiring]:
        with self.store.session() as s:
            rows = s.scalars(
                select(AlertFiring).where(
                    AlertFiring.app_id == app_id, AlertFiring.open_key.is_not(None)
                )
            )
            return {row.open_key: row for row in rows if row.open_key}

    def open(
        self, app_id: str, rule: Any, subject: str, verdict: Verdict, now: datetime
    ) -> AlertFiring | None:
        """A new episode, or None if one is open already (another replica was first)."""
        row = AlertFiring(
            id=new_id(),
            app_id=app_id,
            rule_id=rule.id,
            kind=rule.kind,
            severity=rule.severity,
            subject=subject,
            status="firing",
            open_key=open_key(rule.id, subject),
            value=verdict.value,
            threshold=verdict.threshold,
            message=verdict.message,
            details=verdict.details,
            fired_at=now,
            delivery_status="pending",
            delivery_attempts=0,
        )
        try:
            with self.store.session() as s:
                s.add(row)
        except IntegrityError:
            return None
        return row

    def resolve(self, app_id: str, firing_id: str, now: datetime, message: str) -> bool:
        """Close an open episode; False if it was closed already (by another replica)."""
        with self.store.session() as s:
            result = s.execute(
                update(AlertFiring)
                .where(
                    AlertFiring.app_id == app_id,
                    AlertFiring.id == firing_id,
                    AlertFiring.resolved_at.is_(None),
                )
                .values(
                    status="resolved",
                    open_key=None,
                    resolved_at=now,
                    delivery_status="pending",
                    delivery_attempts=0,
                    delivery_error=None,
                )
            )
            if result.rowcount:
                row = s.scalar(
                    select(AlertFiring).where(
                        AlertFiring.app_id == app_id, AlertFiring.id == firing_id
                    )
                )
                if row is not None:
                    row.details = {**(row.details or {}), "resolution": message}
            return bool(result.rowcount)

    def get(self, app_id: str, firing_id: str) -> AlertFiring | None:
        with self.store.session() as s:
            return s.scalar(
                select(AlertFiring).where(AlertFiring.app_id == app_id, AlertFiring.id == firing_id)
            )

    def set_delivery(
        self,
        app_id: str,
        firing_id: str,
        status: str,
        attempts: int,
        error: str | None,
        *,
        if_status: str | None = None,
    ) -> bool:
        """Record how a notification went; with `if_status`, only while the episode is in it.

        A notification for `firing` that ends after the episode resolved is then not recorded:
        the delivery status belongs to the `resolved` notification by then. False if not recorded.
        """
        conditions = [AlertFiring.app_id == app_id, AlertFiring.id == firing_id]
        if if_status is not None:
            conditions.append(AlertFiring.status == if_status)
        with self.store.session() as s:
            result = s.execute(
                update(AlertFiring)
                .where(*conditions)
                .values(delivery_status=status, delivery_attempts=attempts, delivery_error=error)
            )
            return bool(result.rowcount)

    def list(
        self,
        app_id: str,
        *,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[AlertFiring]:
        """Newest first."""
        query = select(AlertFiring).where(AlertFiring.app_id == app_id)
        if status is not None:
            query = query.where(AlertFiring.status == status)
        if cursor:
            query = query.where(AlertFiring.pk < decode_cursor(cursor, "desc"))
        with self.store.session() as s:
            items = list(s.scalars(query.order_by(AlertFiring.pk.desc()).limit(limit + 1)))
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(items[-1].pk, "desc")
        return Page(items=items, next_cursor=next_cursor)


def open_key(rule_id: str, subject: str) -> str:
    return f"{rule_id}|{subject}"
