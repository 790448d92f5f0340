"""Token-bucket rate limiter: burst, refusal with retry_after, refill, bounded memory."""

from __future__ import annotations

import threading
import time

import pytest

from agent_lightning.security.ratelimit import RateDecision, RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_burst_then_refuse_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.5, burst=3, clock=clock)
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check("k")
    assert refused == RateDecision(False, pytest.approx(2.0))
    assert refused.retry_after > 0
    # Refused attempts take nothing: waiting exactly retry_after is enough.
    clock.now += refused.retry_after
    assert limiter.check("k").allowed
    assert not limiter.check("k").allowed


def test_refill_over_time_is_capped_at_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.check("k").allowed and limiter.check("k").allowed
    clock.now += 0.5
    decision = limiter.check("k")
    assert not decision.allowed and decision.retry_after == pytest.approx(0.5)
    clock.now += 3600  # a long idle period refills to burst, not beyond
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert limiter.check("client:a").allowed
    assert not limiter.check("client:a").allowed
    assert limiter.check("client:b").allowed
    limiter.reset("client:a")
    assert limiter.check("client:a").allowed


def test_clock_going_backwards_does_not_drain_or_crash() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.check("k").allowed
    clock.now -= 100
    assert limiter.check("k").allowed
    assert not limiter.check("k").allowed


def test_key_cap_evicts_least_recently_used() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.001, burst=1, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.check(key).allowed
    assert not limiter.check("a").allowed  # "a" is now the most recently used
    assert limiter.check("d").allowed
    assert len(limiter) == 3
    assert not limiter.check("a").allowed  # kept: still limited
    assert limiter.check("b").allowed  # evicted, so it starts afresh


def test_idle_keys_are_evicted() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=5, clock=clock)
    for i in range(100):
        limiter.check(f"spray:{i}")
    assert len(limiter) == 100
    clock.now += 10  # every bucket has refilled: they carry no information any more
    for _ in range(20):
        limiter.check("active")
    assert len(limiter) <= 2


class YieldingKey(str):
    """A key whose hashing yields the GIL: dict reads and writes become switch points, so an
    unlocked read-modify-write of a bucket would interleave between threads."""

    def __hash__(self) -> int:
        time.sleep(0)
        return str.__hash__(self)


def test_thread_safety_exact_burst() -> None:
    limiter = RateLimiter(rate=1e-9, burst=100, clock=FakeClock())
    key = YieldingKey("shared")
    allowed: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results = [limiter.check(key).allowed for _ in range(25)]
        with lock:
            allowed.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 100 and len(allowed) == 200


def test_invalid_configuration() -> None:
    for kwargs in ({"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": -1, "burst": 5}):
        with pytest.raises(ValueError):
            RateLimiter(**kwargs)
    limiter = RateLimiter(rate=1, burst=2)
    with pytest.raises(ValueError):
        limiter.check("k", cost=3)
