"""A per-connector token bucket, shared by every thread that calls the connector.

Policy when the bucket is empty: a call *waits* for its token, but never longer than its own
timeout; if the token would come later than that, the call fails at once with
``ConnectorError(kind="rate_limited")`` instead of sleeping in vain. Waiting callers reserve
their token (the level may go negative), so concurrent callers are served in arrival order and
the long-run rate never exceeds ``rate`` per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, bursts of up to ``capacity`` (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, max_wait_s: float) -> float | None:
        """Take a token; the seconds to wait before using it, or None if that exceeds max_wait_s."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if wait > max_wait_s:
                return None
            self._tokens -= 1
            return wait

    def acquire(self, max_wait_s: float) -> bool:
        """Block until a token is ours (True), or return False at once if it would take too long."""
        wait = self.reserve(max_wait_s)
        if wait is None:
            return False
        if wait > 0:
            self._sleep(wait)
        return True
