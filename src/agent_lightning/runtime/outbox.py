"""A durable on-disk outbox: what the runtime decided and learned, delivered exactly once.

The runtime must keep answering while the server is away, and nothing it acknowledged may be
lost or counted twice. So every record goes into SQLite (WAL, `synchronous=FULL`) with its
client id *before* `record_*` returns, and an uploader thread sends batches through the SDK's
batch endpoints. A row leaves the outbox only after the server answered for that very record
(`created` or `duplicate`): a crash between the server storing a batch and us marking it sent
means the batch is sent again and the server, which deduplicates by id and content, answers
`duplicate`. Records the server refuses are kept aside with the reason, never dropped.

Ordering: rows are taken in sequence order and, within one round, decisions are sent before
events and rewards, and a later kind is not sent when an earlier one failed to go out, so a
reward never reaches the server before the decision it scores.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent_lightning.ingestion.schemas import DecisionIn, EventIn, RewardIn

log = logging.getLogger("agent_lightning.runtime.outbox")

KINDS = ("decisions", "events", "rewards")  # upload order within a round
_MODELS: dict[str, type[BaseModel]] = {
    "decisions": DecisionIn,
    "events": EventIn,
    "rewards": RewardIn,
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, record_id)
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxFullError(RuntimeError):
    """The outbox holds `max_records` undelivered records; the new one was NOT recorded."""


class OutboxClosedError(RuntimeError):
    """A record was offered after `close()`."""


@dataclass(frozen=True)
class RejectedRow:
    """A record the server refused: kept so someone can fix and resend it (`requeue`)."""

    seq: int
    kind: str
    record_id: str
    record: dict[str, Any]
    reason: str
    message: str
    rejected_at: float


@dataclass(frozen=True)
class UploadRound:
    """What one upload round did (`sent` includes duplicates; `failed` says why it stopped)."""

    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: str | None = None


class Outbox:
    """See module docstring. Implements the runtime's Recorder protocol.

    `client` is an `AgentLightningClient` (or anything with `log_decisions`, `log_events` and
    `log_rewards` returning the SDK's `BatchResult`); without one the outbox only queues.
    Call `start()` to run the uploader thread, `close()` to flush best-effort and stop.
    """

    def __init__(
        self,
        path: str | Path,
        client: Any | None = None,
        *,
        max_records: int = 100_000,
        batch_size: int = 200,
        min_backoff: float = 0.2,
        max_backoff: float = 30.0,
        idle_seconds: float = 1.0,
        on_rejected: Callable[[list[RejectedRow]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.client = client
        self.max_records = max_records
        self.batch_size = batch_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.idle_seconds = idle_seconds
        self.on_rejected = on_rejected
        self._lock = threading.RLock()
        self._kick = threading.Event()  # new records or a nudge: look at the queue now
        self._nudged = threading.Event()  # end a backoff pause early
        self._upload_lock = threading.Lock()  # one upload round at a time (thread or flush)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._pending = self._count("outbox")
        self._warned = False
        self._full = False  # refusing records now (logged once per episode)
        self._dropped_before = 0  # `dropped_full` when this episode began
        self.dropped_full = 0  # records refused since start because the outbox was full
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self.last_upload_at: float | None = None
        self.last_error: str | None = None
        self.server_reachable: bool | None = None

    # -- the Recorder protocol ------------------------------------------------------------------

    def record_decision(self, decision: DecisionIn | Mapping[str, Any]) -> None:
        """Durably queue one decision (on disk before this returns)."""
        self._append("decisions", decision)

    def record_reward(self, reward: RewardIn | Mapping[str, Any]) -> None:
        """Durably queue one reward."""
        self._append("rewards", reward)

    def record_event(self, event: EventIn | Mapping[str, Any]) -> None:
        """Durably queue one event."""
        self._append("events", event)

    def _append(self, kind: str, record: BaseModel | Mapping[str, Any]) -> str:
        model = _MODELS[kind]
        if not isinstance(record, model):
            # Validate here: a record the server would refuse is better refused to the caller.
            record = model.model_validate(dict(record) if isinstance(record, Mapping) else record)
        body = record.model_dump(mode="json", exclude_none=True)
        if not body.get("id"):
            from agent_lightning.sdk._calls import new_id

            body["id"] = new_id()
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        with self._lock:
            if self._closed:
                raise OutboxClosedError("the outbox is closed")
            if self._pending >= self.max_records:
                self.dropped_full += 1
                message = (
                    f"the outbox holds {self._pending} undelivered records (limit "
                    f"{self.max_records}); is the server reachable? ({self.last_error})"
                )
                if not self._full:  # one line when it fills up, not one per record refused
                    self._full, self._dropped_before = True, self.dropped_full - 1
                    log.error("%s: new records are not kept until it drains", message)
                raise OutboxFullError(message)
            if self._full:
                self._full = False
                log.warning(
                    "outbox %s has room again; %d record(s) were not kept while it was full",
                    self.path,
                    self.dropped_full - self._dropped_before,
                )
            try:
                self._db.execute(
                    "INSERT INTO outbox (kind, record_id, body, created_at) VALUES (?, ?, ?, ?)",
                    (kind, body["id"], text, time.time()),
                )
            except sqlite3.IntegrityError:
                # Same id recorded twice (a caller's retry): the first copy is the one kept.
                existing = self._db.execute(
                    "SELECT body FROM outbox WHERE kind = ? AND record_id = ?", (kind, body["id"])
                ).fetchone()
                if existing is not None and existing[0] != text:
                    raise ValueError(
                        f"{kind[:-1]} id {body['id']!r} is already queued with other content"
                    ) from None
                return body["id"]
            self._pending += 1
            self._maybe_warn()
        self._kick.set()
        return body["id"]

    def _maybe_warn(self) -> None:
        if self._pending >= 0.8 * self.max_records and not self._warned:
            self._warned = True
            log.warning(
                "outbox %s is %d%% full (%d of %d records undelivered; last error: %s); "
                "new records are refused once it is full",
                self.path,
                100 * self._pending // self.max_records,
                self._pending,
                self.max_records,
                self.last_error,
            )
        elif self._pending < 0.5 * self.max_records:
            self._warned = False

    # -- what is in it --------------------------------------------------------------------------

    def _count(self, table: str) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def pending(self, kind: str | None = None) -> int:
        """Records queued and not yet confirmed by the server (optionally of one kind)."""
        if kind is None:
            with self._lock:
                return self._pending
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE kind = ?", (kind,))
            return int(row.fetchone()[0])

    def pending_records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The queued records in sequence order (for inspection and tests)."""
        query, args = "SELECT body FROM outbox ORDER BY seq", ()
        if kind is not None:
            query, args = "SELECT body FROM outbox WHERE kind = ? ORDER BY seq", (kind,)
        with self._lock:
            return [json.loads(r[0]) for r in self._db.execute(query, args).fetchall()]

    def rejected(self) -> list[RejectedRow]:
        """Records the server refused, with its reason; they stay until `requeue` or `discard`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, record_id, body, reason, message, rejected_at FROM rejected "
                "ORDER BY seq"
            ).fetchall()
        return [RejectedRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def sent_total(self) -> int:
        """Records the server confirmed over this outbox's lifetime."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'sent'").fetchone()
        return int(row[0]) if row else 0

    def requeue(self, seqs: list[int] | None = None) -> int:
        """Put rejected records back in the queue (after the cause was fixed server-side)."""
        with self._lock:
            where, args = "", ()
            if seqs is not None:
                where = f" WHERE seq IN ({','.join('?' * len(seqs))})"
                args = tuple(seqs)
            with self._tx():
                rows = self._db.execute(
                    f"SELECT seq, kind, record_id, body FROM rejected{where}", args
                ).fetchall()
                for seq, kind, record_id, body in rows:
                    self._db.execute(
                        "INSERT OR IGNORE INTO outbox (seq, kind, record_id, body, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (seq, kind, record_id, body, time.time()),
                    )
                    self._db.execute("DELETE FROM rejected WHERE seq = ?", (seq,))
            self._pending = self._count("outbox")
        self._kick.set()
        return len(rows)

    def status(self) -> dict[str, Any]:
        """Counts and sync health for `/v1/status`."""
        return {
            "pending": self.pending(),
            "rejected": self._count("rejected"),
            "sent": self.sent_total(),
            "max_records": self.max_records,
            "dropped_full": self.dropped_full,
            "last_upload_at": self.last_upload_at,
            "last_error": self.last_error,
            "server_reachable": self.server_reachable,
        }

    # -- uploading ------------------------------------------------------------------------------

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_: object) -> None:
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def upload_once(self) -> UploadRound:
        """Send one batch (decisions first) and settle each record by the server's answer."""
        if self.client is None:
            return UploadRound(failed="no server configured")
        with self._upload_lock:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, kind, body FROM outbox ORDER BY seq LIMIT ?", (self.batch_size,)
                ).fetchall()
            if not rows:
                return UploadRound()
            totals = {"sent": 0, "duplicates": 0, "rejected": 0}
            for kind in KINDS:
                batch = [(seq, json.loads(body)) for seq, k, body in rows if k == kind]
                if not batch:
                    continue
                failure = self._send(kind, batch, totals)
                if failure is not None:
                    return UploadRound(**totals, failed=failure)
            return UploadRound(**totals)

    def _send(self, kind: str, batch: list[tuple[int, dict[str, Any]]], totals: dict) -> str | None:
        from agent_lightning.sdk import AgentLightningError, APIError

        sender = {
            "decisions": self.client.log_decisions,
            "events": self.client.log_events,
            "rewards": self.client.log_rewards,
        }[kind]
        records = [dict(record) for _, record in batch]
        try:
            result = sender(records)
        except APIError as exc:
            if exc.status == 413 and len(batch) > 1:  # too large for one request: halve it
                half = len(batch) // 2
                return self._send(kind, batch[:half], totals) or self._send(
                    kind, batch[half:], totals
                )
            if exc.status == 413:
                self._settle(kind, batch, [], [(0, "too_large", str(exc))], totals)
                return None
            self._note_failure(f"{kind} upload failed: {exc}", reachable=True)
            return self.last_error
        except AgentLightningError as exc:
            self._note_failure(f"{kind} upload failed: {exc}", reachable=False)
            return self.last_error
        accepted = [(a.index, a.status) for a in result.accepted]
        rejected = [(r.index, r.reason, r.message) for r in result.rejected]
        self._settle(kind, batch, accepted, rejected, totals)
        self.server_reachable = True
        self.last_error = None
        self.last_upload_at = time.time()
        return None

    def _settle(self, kind, batch, accepted, rejected, totals) -> None:
        """Remove confirmed rows and move refused ones aside, in one transaction."""
        now = time.time()
        refused: list[RejectedRow] = []
        with self._lock:
            with self._tx():
                for index, status in accepted:
                    if not 0 <= index < len(batch):
                        continue
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (batch[index][0],))
                    totals["sent"] += 1
                    totals["duplicates"] += status == "duplicate"
                for index, reason, message in rejected:
                    if not 0 <= index < len(batch):
                        continue
                    seq, record = batch[index]
                    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
                    self._db.execute(
                        "INSERT OR REPLACE INTO rejected (seq, kind, record_id, body, reason, "
                        "message, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (seq, kind, record["id"], body, reason, message, now),
                    )
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    refused.append(
                        RejectedRow(seq, kind, record["id"], record, reason, message, now)
                    )
                    totals["rejected"] += 1
                sent = sum(1 for i, _ in accepted if 0 <= i < len(batch))
                if sent:
                    self._db.execute(
                        "INSERT INTO counters (name, value) VALUES ('sent', ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                        (sent,),
                    )
            self._pending = self._count("outbox")
            self._maybe_warn()
        for row in refused:
            log.error(
                "the server refused %s %s (%s: %s); kept in %s (table rejected)",
                row.kind[:-1],
                row.record_id,
                row.reason,
                row.message,
                self.path,
            )
        if refused and self.on_rejected is not None:
            self.on_rejected(refused)

    def _note_failure(self, message: str, *, reachable: bool) -> None:
        if message != self.last_error:
            log.warning("%s; %d records wait in the outbox", message, self.pending())
        self.last_error = message
        self.server_reachable = reachable

    def flush(self, timeout: float = 10.0, *, give_up_on_failure: bool = False) -> bool:
        """Upload until the queue is empty or `timeout` passes; True when nothing is pending.

        `give_up_on_failure` stops at the first failed round (shutdown: do not hang on a server
        that is away; the records stay on disk for the next start).
        """
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            outcome = self.upload_once()
            if outcome.failed:
                if give_up_on_failure or time.monotonic() + self.min_backoff >= deadline:
                    break
                time.sleep(self.min_backoff)
        return self.pending() == 0

    def start(self) -> None:
        """Run the uploader thread (idempotent)."""
        if self._thread is not None or self.client is None:
            return
        self._thread = threading.Thread(target=self._run, name="agl-outbox", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if self.pending():
                outcome = self.upload_once()
                if outcome.failed:
                    # Exponential backoff with jitter while the server is away; `nudge()` ends it.
                    backoff = min(self.max_backoff, max(self.min_backoff, backoff * 2))
                    self._nudged.wait(backoff * (0.5 + random.random() / 2))
                    if self._nudged.is_set():
                        self._nudged.clear()
                        backoff = 0.0
                    continue
                backoff = 0.0
                if self.pending():
                    continue
            self._kick.wait(self.idle_seconds)
            self._kick.clear()

    def nudge(self) -> None:
        """Try an upload now (e.g. the server is known to be back): ends the current backoff."""
        self._nudged.set()
        self._kick.set()

    def close(self, flush_timeout: float = 5.0) -> None:
        """Stop accepting records, flush best-effort (bounded), stop the uploader; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self.nudge()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout + self.max_backoff)
        if self.client is not None and self.pending() and flush_timeout > 0:
            self.flush(flush_timeout, give_up_on_failure=True)
        if self.pending():
            log.warning(
                "%d records stay in the outbox %s; they are sent on the next start",
                self.pending(),
                self.path,
            )
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "KINDS",
    "Outbox",
    "OutboxClosedError",
    "OutboxFullError",
    "RejectedRow",
    "UploadRound",
]
