"""In-memory token-bucket rate limiter, keyed by string, for brute-force protection.

Each key (e.g. ``"client:<id>"`` or ``"addr:<ip>"``) has a bucket of ``burst`` tokens that
refills at ``rate`` tokens per second; a request takes one token or is refused with the time
until one is available (``retry_after``, for a ``Retry-After`` header). Refused requests take
nothing, so a client that backs off as told is served again.

Memory is bounded: a bucket that has refilled to full is indistinguishable from no bucket, so
idle keys are evicted as they fill up (checked a few at a time on each call, oldest first), and
the number of keys is capped at ``max_keys``, evicting the least recently used. LRU eviction
keeps the buckets of keys that are actively hammering, which are the ones that matter.

The state is per process: behind several workers each has its own limits.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateDecision", "RateLimiter"]

# Idle buckets examined per call: amortised O(1) cleanup without a background thread.
_SWEEP_PER_CALL = 8


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float  # seconds until a request would be allowed; 0.0 when allowed


class RateLimiter:
    """Thread-safe token bucket per key; ``clock`` is injectable (monotonic seconds)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive (tokens per second)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_keys = int(max_keys)
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, time of last update); order = least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def _level(self, tokens: float, updated: float, now: float) -> float:
        # max(0, ...): a clock that steps backwards must not drain the bucket.
        return min(float(self.burst), tokens + max(0.0, now - updated) * self.rate)

    def _sweep(self, now: float) -> None:
        for _ in range(min(_SWEEP_PER_CALL, len(self._buckets))):
            key, (tokens, updated) = next(iter(self._buckets.items()))
            if self._level(tokens, updated, now) < self.burst:
                break  # oldest entry still matters; newer ones were touched more recently
            del self._buckets[key]

    def check(self, key: str, cost: float = 1.0, *, take: bool = True) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them.

        With ``take=False`` only ask whether it has them (for limits that charge failures
        only: ask first, then `check` once the attempt failed).
        """
        if not 0 < cost <= self.burst:
            raise ValueError("cost must be positive and at most burst")
        with self._lock:
            now = self._clock()
            self._sweep(now)
            entry = self._buckets.get(key)
            tokens = float(self.burst) if entry is None else self._level(*entry, now)
            if tokens >= cost:
                decision = RateDecision(True, 0.0)
                if take:
                    tokens -= cost
            else:
                decision = RateDecision(False, (cost - tokens) / self.rate)
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return decision

    def reset(self, key: str) -> None:
        """Forget ``key`` (e.g. after an administrator unblocks a client)."""
        with self._lock:
            self._buckets.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
