"""Buffered mode: writes are queued locally and sent in batches by a background flusher.

`log_event`, `log_events`, `reward` and `log_decision` return as soon as the record is queued:
ids are assigned client-side, so they are known at once, and a batch that is resent after an
unknown outcome is stored once (the server deduplicates by id).

The flusher (a daemon thread for the sync client, an asyncio task for the async one) sends
what is queued every `flush_interval` seconds, as soon as a full batch (500) is waiting, on
`flush()`, on `close()` / context exit, and at interpreter exit with a bounded wait.
Decisions are sent before events and rewards, and no record is sent while a decision queued
before it is still waiting, so a reward never overtakes its decision.

What happens to a record:

- accepted by the server (created or duplicate): done;
- refused by the server (invalid, id_conflict, unknown_decision, ...), or its whole batch
  refused with a 4xx that resending cannot fix: handed to `on_rejected` and logged (reason
  codes and counts only, never content);
- no answer, 429, 5xx, 401 or 403: kept, in order, and retried with growing pauses (up to
  30 s); the caller is never blocked by this;
- still queued when the client closes and the wait runs out: handed to `on_rejected` with
  reason "undelivered" and logged.

A full buffer (`max_buffer` records) does not drop old records: the write raises
`BufferFullError` and queues nothing, so the caller decides.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from agent_lightning.sdk._calls import KINDS, MAX_BATCH
from agent_lightning.sdk._exceptions import APIError, BufferFullError, ClientClosedError
from agent_lightning.sdk._models import BatchResult, RejectedRecord

log = logging.getLogger("agent_lightning.sdk")

MAX_PAUSE = 30.0  # longest pause between failed flush attempts, seconds
EXIT_WAIT = 5.0  # how long interpreter exit waits for a last flush, seconds

OnRejected = Callable[[list[RejectedRecord]], None]


class Pending:
    """The queued records, one FIFO per kind, each record numbered in arrival order."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_buffer must be >= 1")
        self.max_size = max_size
        self.queues: dict[str, deque[tuple[int, dict[str, Any]]]] = {k: deque() for k in KINDS}
        self.size = 0
        self.last_seq = 0
        self.limits = dict.fromkeys(KINDS, MAX_BATCH)  # halved when the server says 413

    def add(self, kind: str, records: list[dict[str, Any]]) -> None:
        if self.size + len(records) > self.max_size:
            raise BufferFullError(
                f"the buffer holds {self.size} of {self.max_size} records; "
                f"{len(records)} more do not fit (the server may be unreachable)"
            )
        for record in records:
            self.last_seq += 1
            self.queues[kind].append((self.last_seq, record))
        self.size += len(records)

    def peek(self, kind: str) -> list[tuple[int, dict[str, Any]]]:
        """The next batch of `kind` to send, from the head of its queue.

        Events and rewards only up to the oldest waiting decision: a decision queued while
        they are being sent must go first, or the server refuses a reward that points at it
        (unknown_decision), for good.
        """
        queue = self.queues[kind]
        decisions = self.queues["decisions"]
        first_decision = decisions[0][0] if kind != "decisions" and decisions else None
        batch = []
        for item in queue:
            if len(batch) >= self.limits[kind]:
                break
            if first_decision is not None and item[0] > first_decision:
                break
            batch.append(item)
        return batch

    def settle(self, kind: str, batch: list[tuple[int, dict[str, Any]]]) -> None:
        """Remove a sent batch (it is at the head, unless `drain` took it meanwhile)."""
        seqs = {seq for seq, _ in batch}
        queue = self.queues[kind]
        while queue and queue[0][0] in seqs:
            queue.popleft()
            self.size -= 1

    def oldest(self) -> int | None:
        heads = [q[0][0] for q in self.queues.values() if q]
        return min(heads) if heads else None

    def settled_up_to(self, seq: int) -> bool:
        oldest = self.oldest()
        return oldest is None or oldest > seq

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        out = [(kind, record) for kind, q in self.queues.items() for _, record in q]
        for q in self.queues.values():
            q.clear()
        self.size = 0
        return out


class Reporter:
    """Hands refused records to `on_rejected` and logs counts per reason (never content)."""

    def __init__(self, on_rejected: OnRejected | None) -> None:
        self.on_rejected = on_rejected

    def batch(self, kind: str, records: list[dict[str, Any]], result: BatchResult) -> None:
        if result.rejected:
            self.report(
                [
                    RejectedRecord(kind, records[r.index], r.reason, r.message, r.errors)
                    for r in result.rejected
                    if 0 <= r.index < len(records)
                ]
            )

    def undelivered(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        message = "the client closed before this record could be delivered"
        self.report([RejectedRecord(kind, r, "undelivered", message) for kind, r in items])

    def report(self, rejected: list[RejectedRecord]) -> None:
        if not rejected:
            return
        counts = Counter(f"{r.kind}:{r.reason}" for r in rejected)
        summary = ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))
        log.warning("agent-lightning: %d records not stored (%s)", len(rejected), summary)
        if self.on_rejected is not None:
            try:
                self.on_rejected(rejected)
            except Exception:  # noqa: BLE001 - a callback bug must not kill the flusher
                log.exception("agent-lightning: the on_rejected callback raised")


def outcome_of(error: BaseException) -> str:
    """What to do with a batch whose request failed: "split", "reject" or "retry"."""
    if isinstance(error, APIError):
        if error.status == 413:
            return "split"
        if 400 <= error.status < 500 and error.status not in (401, 403, 408, 429):
            return "reject"
    return "retry"


def pause(failures: int, flush_interval: float) -> float:
    return min(MAX_PAUSE, max(flush_interval, 0.5) * 2 ** (failures - 1))


def _handle_failure(
    pending: Pending, kind: str, batch: list, error: BaseException
) -> tuple[bool, list[RejectedRecord]]:
    """Apply the outcome of a failed batch: (may the cycle go on, records to report)."""
    outcome = outcome_of(error)
    if outcome == "split" and len(batch) > 1:
        pending.limits[kind] = max(1, len(batch) // 2)
        return True, []
    if outcome in ("split", "reject"):
        assert isinstance(error, APIError)
        pending.settle(kind, batch)
        return True, [RejectedRecord(kind, r, error.code, error.message) for _, r in batch]
    log.warning(
        "agent-lightning: sending %d %s failed (%s); will retry",
        len(batch),
        kind,
        error if isinstance(error, APIError) else type(error).__name__,
    )
    return False, []


class SyncFlusher:
    """The sync client's buffer and its daemon thread."""

    def __init__(
        self,
        send: Callable[[str, list[dict[str, Any]]], BatchResult],
        *,
        flush_interval: float,
        max_buffer: int,
        on_rejected: OnRejected | None,
    ) -> None:
        self._send = send
        self.flush_interval = flush_interval
        self._pending = Pending(max_buffer)
        self._reporter = Reporter(on_rejected)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._closing = False
        self._closed = False
        self._requested = 0  # flush requests made / cycles completed, to answer flush()
        self._completed = 0
        ref = weakref.ref(self)

        def at_exit() -> None:
            flusher = ref()
            if flusher is not None:
                flusher.close(EXIT_WAIT)

        self._at_exit = at_exit
        atexit.register(at_exit)

    @property
    def size(self) -> int:
        """Records waiting to be sent."""
        return self._pending.size

    def put(self, kind: str, records: list[dict[str, Any]]) -> None:
        with self._cond:
            if self._closing:
                raise ClientClosedError("the client is closed; create a new one")
            self._pending.add(kind, records)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agl-sdk-flush", daemon=True)
                self._thread.start()
            if self._pending.size >= MAX_BATCH:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now; True once it is all settled, False on failure or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._pending.last_seq
            if self._pending.settled_up_to(target) or self._thread is None:
                return self._pending.settled_up_to(target)
            self._requested += 1
            ticket = self._requested
            self._cond.notify_all()
            while not self._pending.settled_up_to(target) and self._completed < ticket:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                if self._stopped:
                    break
                self._cond.wait(remaining)
            return self._pending.settled_up_to(target)

    def close(self, timeout: float | None = EXIT_WAIT) -> bool:
        """Stop the thread after a last flush; anything left is reported as undelivered."""
        with self._cond:
            if self._closed:
                return True
            self._closed = self._closing = True
            self._cond.notify_all()
            thread = self._thread
        atexit.unregister(self._at_exit)
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            left = self._pending.drain()
            self._cond.notify_all()
        if left:
            self._reporter.undelivered(left)
        return not left

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # however the thread ends, nobody may keep waiting for it in flush()
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                wait = pause(failures, self.flush_interval) if failures else self.flush_interval
                started = time.monotonic()
                while not (self._requested > self._completed or self._ready(failures)):
                    if self._closing:  # after a failure, a short pause before the last tries
                        wait = min(wait, 0.5)
                    remaining = started + wait - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                ticket, closing = self._requested, self._closing
            ok = self._cycle()
            failures = 0 if ok else failures + 1
            with self._cond:
                self._completed = max(self._completed, ticket)
                self._cond.notify_all()
                if closing and (ok or self._pending.size == 0):
                    return

    def _ready(self, failures: int) -> bool:
        # A full batch or closing triggers a flush at once, unless the last attempt failed.
        return not failures and (self._closing or self._pending.size >= MAX_BATCH)

    def _cycle(self) -> bool:
        # Kind by kind, and again while decisions queued meanwhile hold records back (peek).
        progress = True
        while progress:
            progress = False
            for kind in KINDS:
                while True:
                    with self._cond:
                        batch = self._pending.peek(kind)
                    if not batch:
                        break
                    progress = True
                    if not self._deliver(kind, batch):
                        return False
        return True

    def _deliver(self, kind: str, batch: list[tuple[int, dict[str, Any]]]) -> bool:
        """Send one batch and settle it; False when it stays queued for a later retry."""
        records = [r for _, r in batch]
        try:
            result = self._send(kind, records)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            with self._cond:
                go_on, refused = _handle_failure(self._pending, kind, batch, exc)
                self._cond.notify_all()
            self._reporter.report(refused)
            return go_on
        with self._cond:
            self._pending.settle(kind, batch)
            self._cond.notify_all()
        self._reporter.batch(kind, records, result)
        return True


class AsyncFlusher:
    """The async client's buffer and its asyncio task (buffered mode needs asyncio)."""

    def __init__(
        self,
        send: Callable[[str, list[dict[str, Any]]], Awaitable[BatchResult]],
        *,
        flush_interval: float,
        max_buffer: int,
        on_rejected: OnRejected | None,
    ) -> None:
        self._send = send
        self.flush_interval = flush_interval
        self._pending = Pending(max_buffer)
        self._reporter = Reporter(on_rejected)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._closing = False
        self._closed = False
        self._abandoned = False
        self._requested = 0
        self._completed = 0
        ref = weakref.ref(self)

        def at_exit() -> None:
            flusher = ref()
            if flusher is not None:
                flusher._exit_without_loop()

        self._at_exit = at_exit
        atexit.register(at_exit)

    @property
    def size(self) -> int:
        """Records waiting to be sent."""
        return self._pending.size

    def put(self, kind: str, records: list[dict[str, Any]]) -> None:
        if self._closing:
            raise ClientClosedError("the client is closed; create a new one")
        self._pending.add(kind, records)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="agl-sdk-flush")
        if self._pending.size >= MAX_BATCH:
            self._wake.set()

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _wait_progress(self, deadline: float | None) -> bool:
        event = self._progress
        if deadline is None:
            await event.wait()
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(event.wait(), remaining)
        except TimeoutError:
            return False
        return True

    async def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now; True once it is all settled, False on failure or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self._pending.last_seq
        if self._pending.settled_up_to(target) or self._task is None:
            return self._pending.settled_up_to(target)
        self._requested += 1
        ticket = self._requested
        self._wake.set()
        while not self._pending.settled_up_to(target) and self._completed < ticket:
            if self._task.done() or not await self._wait_progress(deadline):
                break
        return self._pending.settled_up_to(target)

    async def close(self, timeout: float | None = EXIT_WAIT) -> bool:
        """Stop the task after a last flush; anything left is reported as undelivered."""
        if self._closed:
            return True
        self._closed = self._closing = True
        atexit.unregister(self._at_exit)
        self._wake.set()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                self._abandoned = True
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        left = self._pending.drain()
        self._signal_progress()
        if left:
            self._reporter.undelivered(left)
        return not left

    def _exit_without_loop(self) -> None:
        # At interpreter exit the event loop is usually closed already: nothing can be sent.
        if self._closed:
            return
        self._closed = self._closing = True
        left = self._pending.drain()
        if left:
            self._reporter.undelivered(left)

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                wait = pause(failures, self.flush_interval) if failures else self.flush_interval
                if self._closing and failures:
                    wait = min(wait, 0.5)
                if not self._ready(failures) and self._requested <= self._completed:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                self._wake.clear()
                ticket, closing = self._requested, self._closing
                ok = await self._cycle()
                failures = 0 if ok else failures + 1
                self._completed = max(self._completed, ticket)
                self._signal_progress()
                if closing and (ok or self._pending.size == 0):
                    return
        except asyncio.CancelledError:
            # asyncio.run() cancels leftover tasks at the end of the program: one last try.
            task = asyncio.current_task()
            if self._abandoned or task is None or not self._pending.size:
                raise
            task.uncancel()
            try:
                await asyncio.wait_for(self._cycle(), EXIT_WAIT)
            except (TimeoutError, asyncio.CancelledError):
                pass
            raise
        finally:  # however the task ends, nobody may keep waiting for it in flush()
            self._signal_progress()

    def _ready(self, failures: int) -> bool:
        return not failures and (self._closing or self._pending.size >= MAX_BATCH)

    async def _cycle(self) -> bool:
        # Kind by kind, and again while decisions queued meanwhile hold records back (peek).
        progress = True
        while progress:
            progress = False
            for kind in KINDS:
                while batch := self._pending.peek(kind):
                    progress = True
                    if not await self._deliver(kind, batch):
                        return False
        return True

    async def _deliver(self, kind: str, batch: list[tuple[int, dict[str, Any]]]) -> bool:
        """Send one batch and settle it; False when it stays queued for a later retry."""
        records = [r for _, r in batch]
        try:
            result = await self._send(kind, records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            go_on, refused = _handle_failure(self._pending, kind, batch, exc)
            self._signal_progress()
            self._reporter.report(refused)
            return go_on
        self._pending.settle(kind, batch)
        self._signal_progress()
        self._reporter.batch(kind, records, result)
        return True
