"""Capture: every call becomes a span, written off the request path in batches.

The request path only fills a `SpanRecord` with what it already holds (the request bytes, the
answer bytes or stream chunks) and appends it to a bounded queue: no JSON, no redaction, no I/O.
A shipping thread drains the queue every `linger` seconds (at once when a batch is full) and
hands each batch to a `SpanSink` running in a child process (see `_span_process`), which parses,
rebuilds streamed answers, redacts PII and inserts the batch in one transaction. A slow
database never slows a call, the sink's CPU work never holds the server's GIL, and SQLite pays
one fsync per batch, not per call. If the child cannot run, the sink runs in the thread instead.
`stop()` drains everything before returning: spans are flushed on shutdown.

If the queue is full (the database far behind), new spans are dropped and counted rather than
blocking the agent; `stats()` reports it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from agent_lightning.gateway.models import GatewaySpan

log = logging.getLogger("agent_lightning.gateway")


def parse_json(data: bytes | str) -> Any:
    """`json.loads` for what is stored: NaN and Infinity, which Python accepts and PostgreSQL's
    JSON refuses (losing the row), are kept as their names; nesting too deep is a ValueError."""
    try:
        return json.loads(data, parse_constant=str)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc


class SpanRecord:
    """What the request path knows about one call; turned into a row by the writer."""

    __slots__ = (
        "id",
        "app_id",
        "session_id",
        "user_id",
        "endpoint",
        "model",
        "upstream",
        "upstream_model",
        "stream",
        "request",
        "request_raw",
        "response",
        "response_raw",
        "chunks",
        "status",
        "http_status",
        "error",
        "started",
        "latency_ms",
        "ttft_ms",
        "retries",
        "policy_name",
        "decision_id",
        "variant_id",
        "created_at",
    )

    def __init__(self, span_id: str, app_id: str, endpoint: str, started: float) -> None:
        self.id = span_id
        self.app_id = app_id
        self.endpoint = endpoint
        self.started = started
        self.created_at = datetime.now(UTC)
        self.session_id: str | None = None
        self.user_id: str | None = None
        self.model: str | None = None
        self.upstream: str | None = None
        self.upstream_model: str | None = None
        self.stream = False
        self.request: dict[str, Any] | None = None
        self.request_raw: bytes | None = None
        self.response: dict[str, Any] | None = None
        self.response_raw: bytes | None = None
        self.chunks: list[bytes] | None = None
        self.status = "ok"
        self.http_status: int | None = None
        self.error: str | None = None
        self.latency_ms = 0.0
        self.ttft_ms: float | None = None
        self.retries = 0
        self.policy_name: str | None = None
        self.decision_id: str | None = None
        self.variant_id: str | None = None

    def to_wire(self) -> tuple[Any, ...]:
        """Plain values and bytes for the pipe: parsed bodies go as the bytes they came from."""
        request_raw = self.request_raw
        if request_raw is None and self.request is not None:
            request_raw = json.dumps(self.request).encode()
        response_raw = self.response_raw
        if response_raw is None and self.response is not None:
            response_raw = json.dumps(self.response).encode()
        chunks = [b"".join(self.chunks)] if self.chunks is not None else None
        return tuple(
            request_raw if name == "request_raw"
            else response_raw if name == "response_raw"
            else chunks if name == "chunks"
            else None if name in ("request", "response")
            else getattr(self, name)
            for name in self.__slots__
        )  # fmt: skip

    @classmethod
    def from_wire(cls, values: tuple[Any, ...]) -> SpanRecord:
        span = cls.__new__(cls)
        for name, value in zip(cls.__slots__, values, strict=True):
            setattr(span, name, value)
        return span


class SpanWriter:
    def __init__(
        self,
        store: Any,
        redactor: Any | None = None,
        *,
        queue_size: int = 100_000,
        batch_size: int = 500,
        linger: float = 0.5,
        capture_bodies: bool = True,
        isolate: bool = True,
    ) -> None:
        self.store = store
        self.redactor = redactor
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger = linger
        self.capture_bodies = capture_bodies
        # A custom redactor object cannot be shipped to another process: keep the sink here.
        self.isolate = isolate and redactor is None
        self._queue: deque[SpanRecord] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._submit_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._child: Any = None
        self._sink: Any = None
        self._stopping = False
        self.enqueued = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0

    # -- the request path -------------------------------------------------------------------

    def submit(self, span: SpanRecord) -> bool:
        """Queue a span (safe from any thread; costs an append and an uncontended lock)."""
        with self._submit_lock:
            if len(self._queue) >= self.queue_size:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("gateway span queue full: %d spans dropped so far", self.dropped)
                return False
            self._queue.append(span)
            self.enqueued += 1
        if self._thread is None:
            self.start()
        elif len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            if self.isolate and self._child is None:
                self._child = self._start_child()
            thread = threading.Thread(target=self._run, name="agl-span-writer", daemon=True)
            thread.start()
            self._thread = thread

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, then end the thread and the child process."""
        thread = self._thread
        self._stopping = True
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        if self._queue:  # never started, or the thread died: write what is left here
            self._drain()
        if self._child is not None:
            self._child.close(timeout)
            self._child = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every span submitted so far is written (or given up on)."""
        target = self.enqueued
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.written + self.failed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if self._thread is None and self._queue:
                    self._drain()
                    continue
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def stats(self) -> dict[str, int]:
        return {
            "enqueued": self.enqueued,
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
            "queued": len(self._queue),
        }

    # -- the shipping thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.linger)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                log.exception("gateway span writer failed a batch")
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        while self._queue:
            batch: list[SpanRecord] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            if self._child is not None:
                try:
                    self._child.send([span.to_wire() for span in batch])
                    continue
                except OSError:
                    log.error("the span writer process is gone; writing spans in-process")
                    self._child = None
            self._count(*self._local_sink().write(batch))

    def _start_child(self) -> Any:
        from agent_lightning.gateway._span_process import SpanProcess

        url = self.store.engine.url.render_as_string(hide_password=False)
        try:
            return SpanProcess(url, capture_bodies=self.capture_bodies, on_ack=self._count)
        except OSError as exc:
            log.warning("no span writer process (%s); writing spans in-process", exc)
            return None

    def _local_sink(self) -> Any:
        if self._sink is None:
            from agent_lightning.gateway.sink import SpanSink

            self._sink = SpanSink(self.store, self.redactor, capture_bodies=self.capture_bodies)
        return self._sink

    def _count(self, written: int = 0, failed: int = 0) -> None:
        with self._idle:
            self.written += written
            self.failed += failed
            self._idle.notify_all()


# -- reading spans back (tests, the benchmark, later an API) ----------------------------------


def count_spans(store: Any, app_id: str | None = None, session_id: str | None = None) -> int:
    query = select(func.count()).select_from(GatewaySpan)
    if app_id is not None:
        query = query.where(GatewaySpan.app_id == app_id)
    if session_id is not None:
        query = query.where(GatewaySpan.session_id == session_id)
    with store.session() as s:
        return int(s.scalar(query) or 0)


def list_spans(
    store: Any, app_id: str, *, session_id: str | None = None, limit: int = 1000
) -> Sequence[GatewaySpan]:
    query = select(GatewaySpan).where(GatewaySpan.app_id == app_id)
    if session_id is not None:
        query = query.where(GatewaySpan.session_id == session_id)
    with store.session() as s:
        return list(s.scalars(query.order_by(GatewaySpan.pk).limit(limit)))
