"""When to resend a request, and how long to wait first (exponential backoff with jitter).

Resent: 429, 502, 503 and 504, and transport failures. A failure where the request surely never
reached the server (connect error, pool timeout) is always resent; one where it may have been
processed (read timeout, broken connection, a proxy's 502 / 504) only if the request is
idempotent. Every write of ours carries a client id, so the server stores it once however often
it arrives; `trigger_task` and `create_policy` are the exceptions. Other 4xx are never resent.
"""

from __future__ import annotations

import random

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that mean "not processed, try later" even for a non-idempotent request.
SAFE_STATUSES = frozenset({429, 503})
# 503s that describe how the server is set up, not a passing condition: resending cannot help.
PERMANENT_CODES = frozenset({"learning_unavailable"})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_DELAY = 8.0  # cap of the exponential backoff, seconds
MAX_RETRY_AFTER = 60.0  # a server asking for a longer pause gets the error back instead


class RetryPolicy:
    """`max_retries` resends after the first attempt, waiting `backoff * 2**n` seconds (capped,
    with jitter), or what the server's Retry-After asks for if that is longer."""

    def __init__(self, max_retries: int, backoff: float, rng: random.Random | None = None) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff < 0:
            raise ValueError("backoff must be >= 0")
        self.max_retries = max_retries
        self.backoff = backoff
        self._rng = rng or random.Random()

    def retry_status(
        self, attempt: int, status: int, code: str | None, retry_after: float | None, idem: bool
    ) -> bool:
        if attempt >= self.max_retries or status not in RETRY_STATUSES:
            return False
        if code in PERMANENT_CODES:
            return False
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return False
        return idem or status in SAFE_STATUSES

    def retry_exception(self, attempt: int, exc: httpx.TransportError, idem: bool) -> bool:
        if attempt >= self.max_retries:
            return False
        return isinstance(exc, NOT_SENT) or idem

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before resend number `attempt + 1`."""
        base = min(MAX_DELAY, self.backoff * (2**attempt))
        jittered = base * (0.5 + self._rng.random() / 2)
        if retry_after is not None:
            return max(retry_after, jittered)
        return jittered
