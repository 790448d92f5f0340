"""Per-bucket aggregates of closed time buckets, held in memory: the dashboard's rollup.

Why: a chart over 30 days of a busy app aggregates millions of rows, which no index makes fast
enough for a page that refreshes every half minute. But telemetry rows are written with the
server's clock, once: after a bucket has closed (plus a grace period for in-flight commits and
clock skew between replicas) its aggregate no longer changes. So each closed bucket is computed
once and kept; a later request asks the database only for the buckets since the last one kept,
usually just the open one. Deletes (retention, erasure) can still change a closed bucket, so kept
buckets are recomputed after `ttl` seconds, in the background while the old figures are served
(stale-while-revalidate), so no request waits for a full recomputation after the first.

Aggregates must be additive (counts and sums) so buckets merge into any window by addition.
Each replica keeps its own rollup; nothing here is shared or persisted.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent_lightning.dashboard.buckets import ceil, floor
from agent_lightning.store import utcnow

# group key (e.g. (policy, version)) -> additive values (counts, sums)
Summary = dict[tuple[Any, ...], list[float]]
Compute = Callable[[datetime, datetime], dict[datetime, Summary]]


@dataclass
class Fetched:
    """Aggregates of every non-empty bucket in the window, and where they came from."""

    buckets: dict[datetime, Summary]
    cached_buckets: int = 0
    queried_from: datetime | None = None
    stale: bool = False


@dataclass
class _Entry:
    lo: datetime  # kept buckets cover [lo, hi)
    hi: datetime
    born: float
    buckets: dict[datetime, Summary] = field(default_factory=dict)
    refreshing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Rollup:
    def __init__(
        self,
        *,
        ttl: float = 900.0,
        grace: timedelta = timedelta(minutes=2),
        max_keys: int = 256,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ttl = ttl
        self.grace = grace
        self.max_keys = max_keys
        self.background = background
        self.clock = clock
        self.now = now
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _entry(self, key: Hashable, since: datetime) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(lo=since, hi=since, born=self.clock())
                self._entries[key] = entry
                while len(self._entries) > self.max_keys:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return entry

    def fetch(
        self, key: Hashable, bucket: str, since: datetime, until: datetime, compute: Compute
    ) -> Fetched:
        """Aggregates for [since, until), from kept closed buckets plus one query for the rest."""
        start, end = floor(since, bucket), ceil(until, bucket)
        closed_before = floor(self.now() - self.grace, bucket)
        entry = self._entry(key, start)
        with entry.lock:
            stale = self.clock() - entry.born > self.ttl
            if stale and not self.background:
                entry.buckets, entry.lo, entry.hi, entry.born = {}, start, start, self.clock()
                stale = False
            if start > entry.hi:  # a gap since what is kept: start over from this window
                entry.buckets, entry.lo, entry.hi, entry.born = {}, start, start, self.clock()
                stale = False
            if start < entry.lo:
                entry.buckets.update(compute(start, entry.lo))
                entry.lo = start
            queried_from = None
            fresh: dict[datetime, Summary] = {}
            if end > entry.hi:
                queried_from = entry.hi
                fresh = compute(entry.hi, end)
                keep_until = min(end, closed_before)
                for at, summary in fresh.items():
                    if at < keep_until:
                        entry.buckets[at] = summary
                entry.hi = max(entry.hi, keep_until)
            out = {at: s for at, s in entry.buckets.items() if start <= at < end}
            cached = len(out) - sum(1 for at in fresh if at in out)
            for at, summary in fresh.items():
                if at >= entry.hi:
                    out[at] = summary
            if stale and not entry.refreshing:
                entry.refreshing = True
                threading.Thread(
                    target=self._refresh,
                    args=(entry, entry.lo, entry.hi, compute),
                    name="agl-dashboard-rollup",
                    daemon=True,
                ).start()
        return Fetched(out, cached_buckets=cached, queried_from=queried_from, stale=stale)

    def _refresh(self, entry: _Entry, lo: datetime, hi: datetime, compute: Compute) -> None:
        try:
            fresh = compute(lo, hi) if lo < hi else {}
        except Exception:  # noqa: BLE001 - keep serving the old figures; retry on the next fetch
            with entry.lock:
                entry.refreshing = False
                entry.born = self.clock() - self.ttl + 30.0
            return
        with entry.lock:
            entry.buckets = {at: s for at, s in entry.buckets.items() if not lo <= at < hi} | fresh
            entry.born = self.clock()
            entry.refreshing = False


def merge(into: Summary, other: Summary) -> Summary:
    """Add `other` into `into`, key by key (additive aggregates)."""
    for key, values in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = list(values)
        else:
            for i, v in enumerate(values):
                mine[i] += v
    return into
