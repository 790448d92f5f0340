"""Tamper-evident audit log: an append-only, hash-chained record of who changed what.

Each entry stores the hash of the previous entry and a SHA-256 over its own canonical content
(sequence number, time, actor, action, target, before/after, previous hash). Editing an entry
breaks its own hash; deleting or reordering breaks the link to its neighbour. `verify` walks the
chain and names the first entry that does not hold.

Appends are serialised: the next sequence number is unique in the table, so two writers racing
for the same position cannot both commit (the loser retries on the new head).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent_lightning.store import AuditEntry, Store, new_id

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it, from where; `kind` is client, api_key, oidc, cli or system."""

    name: str
    kind: str = "client"
    app_id: str | None = None
    remote_addr: str | None = None


SYSTEM = Actor("system", "system")


def _ts(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(entry: AuditEntry) -> str:
    body = {
        "seq": entry.seq,
        "id": entry.id,
        "ts": _ts(entry.ts),
        "app_id": entry.app_id,
        "actor": entry.actor,
        "actor_kind": entry.actor_kind,
        "remote_addr": entry.remote_addr,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "outcome": entry.outcome,
        "before": entry.before,
        "after": entry.after,
        "prev_hash": entry.prev_hash,
    }
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "id": entry.id,
        "ts": _ts(entry.ts),
        "app_id": entry.app_id,
        "actor": entry.actor,
        "actor_kind": entry.actor_kind,
        "remote_addr": entry.remote_addr,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "outcome": entry.outcome,
        "before": entry.before,
        "after": entry.after,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str | None = None,
        *,
        app_id: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        outcome: str = "ok",
    ) -> AuditEntry:
        """Append one entry; committed before it returns."""
        for attempt in range(200):
            try:
                with self.store.session() as s:
                    head = s.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
                    entry = AuditEntry(
                        id=new_id(),
                        seq=(head.seq + 1) if head else 1,
                        ts=datetime.now(UTC),
                        app_id=app_id if app_id is not None else actor.app_id,
                        actor=actor.name,
                        actor_kind=actor.kind,
                        remote_addr=actor.remote_addr,
                        action=action,
                        target_type=target_type,
                        target_id=target_id,
                        outcome=outcome,
                        before=_jsonable(before),
                        after=_jsonable(after),
                        prev_hash=head.hash if head else GENESIS,
                        hash="",
                    )
                    entry.hash = entry_hash(entry)
                    s.add(entry)
                return entry
            except IntegrityError:
                # Another writer took this sequence number; chain onto the new head.
                time.sleep(min(0.05, 0.001 * (attempt + 1)))
                continue
        raise RuntimeError("could not append to the audit log under contention")

    def entries(
        self, app_id: str | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        with self.store.session() as s:
            query = select(AuditEntry).where(AuditEntry.seq > after_seq).order_by(AuditEntry.seq)
            if app_id is not None:
                query = query.where(AuditEntry.app_id == app_id)
            if limit:
                query = query.limit(limit)
            return list(s.scalars(query))

    def iter_all(self, batch: int = 1000) -> Iterator[AuditEntry]:
        after = 0
        while True:
            chunk = self.entries(after_seq=after, limit=batch)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1].seq

    def verify(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the whole chain; report the first entry that was edited, removed or moved.

        A chain cut at its end (or emptied) is still a valid chain: only a head recorded
        earlier, outside the database, shows it. `head` is such a record, `(seq, hash or a
        prefix of at least 12 hex digits)`; that entry must still be there, unchanged.
        """
        if head is not None and (head[0] < 1 or len(head[1]) < 12):
            raise ValueError("a recorded head is (seq >= 1, at least 12 hex digits of its hash)")
        previous_hash = GENESIS
        expected_seq = 1
        count = 0
        recorded: AuditEntry | None = None
        for entry in self.iter_all():
            count += 1
            if entry.seq != expected_seq:
                return VerifyResult(
                    False,
                    count - 1,
                    entry.seq,
                    f"entry {expected_seq} is missing (the chain jumps to {entry.seq})",
                )
            if entry.prev_hash != previous_hash:
                return VerifyResult(
                    False,
                    count - 1,
                    entry.seq,
                    f"entry {entry.seq} does not follow entry {entry.seq - 1}: "
                    "an entry was deleted, inserted or reordered",
                )
            if entry_hash(entry) != entry.hash:
                return VerifyResult(
                    False,
                    count - 1,
                    entry.seq,
                    f"entry {entry.seq} was modified after it was written "
                    f"({entry.action} on {entry.target_type} {entry.target_id or ''})".rstrip(),
                )
            previous_hash = entry.hash
            expected_seq += 1
            if head is not None and entry.seq == head[0]:
                recorded = entry
        last = expected_seq - 1
        head_seq, head_hash = (last, previous_hash) if last else (None, None)
        problem = None
        if head is not None and recorded is None:
            cut = f"was cut after entry {last}" if last else "was emptied"
            problem = f"entry {head[0]}, recorded as the head, is gone: the log {cut}"
        elif head is not None and recorded is not None:
            if not recorded.hash.startswith(head[1].lower()):
                problem = (
                    f"entry {head[0]} is not the head that was recorded (its hash differs): "
                    "the log was rewritten from there"
                )
        if problem is not None:
            return VerifyResult(False, count, head[0], problem, head_seq, head_hash)
        message = f"{count} entries verified; the chain is intact"
        return VerifyResult(True, count, None, message, head_seq, head_hash)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None
    message: str
    head_seq: int | None = None  # the last entry walked: record it to detect a cut later
    head_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "broken_seq": self.broken_seq,
            "message": self.message,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    # Round-trip through JSON so what we hash is exactly what the database gives back later.
    return json.loads(json.dumps(value, sort_keys=True, default=str))
