"""The rollup of closed buckets: what it keeps, what it asks the database for, and when."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from agent_lightning.dashboard.buckets import BucketParser, ceil, floor, starts
from agent_lightning.dashboard.rollup import Rollup, merge

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Source:
    """A fake table: one row per hour with value 1, and a log of the ranges asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[datetime, datetime]] = []
        self.extra: dict[datetime, float] = {}

    def __call__(self, lo: datetime, hi: datetime) -> dict:
        self.calls.append((lo, hi))
        out = {}
        at = floor(lo, "hour")
        while at < hi:
            if at < NOW:
                out[at] = {(): [1.0 + self.extra.get(at, 0.0)]}
            at += HOUR
        return out


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def total(fetched) -> float:
    return sum(v[0] for s in fetched.buckets.values() for v in s.values())


def test_closed_buckets_are_computed_once_and_the_open_one_every_time() -> None:
    source, clock = Source(), Clock()
    rollup = Rollup(clock=clock, now=lambda: NOW, background=False)
    first = rollup.fetch("k", "hour", NOW - 24 * HOUR, NOW, source)
    # Windows align to whole buckets: 12:00 yesterday to the open 12:00 bucket today.
    assert total(first) == 25 and first.cached_buckets == 0
    assert source.calls == [(floor(NOW - 24 * HOUR, "hour"), ceil(NOW, "hour"))]
    second = rollup.fetch("k", "hour", NOW - 24 * HOUR, NOW, source)
    assert total(second) == 25
    # Buckets that closed before now minus the grace period come from memory; the query starts
    # at the bucket holding that moment (12:00 here: 12:28 minus 2 minutes is still 12:xx).
    assert source.calls[1] == (datetime(2026, 3, 10, 12, tzinfo=UTC), ceil(NOW, "hour"))
    assert second.cached_buckets == 24
    # A longer window asks only for the older part it does not have.
    longer = rollup.fetch("k", "hour", NOW - 48 * HOUR, NOW, source)
    assert total(longer) == 49
    assert source.calls[2] == (floor(NOW - 48 * HOUR, "hour"), floor(NOW - 24 * HOUR, "hour"))


def test_a_late_row_in_a_closed_bucket_waits_for_the_ttl() -> None:
    source, clock = Source(), Clock()
    rollup = Rollup(ttl=600, clock=clock, now=lambda: NOW, background=False)
    rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)
    source.extra[floor(NOW - 3 * HOUR, "hour")] = 5.0  # e.g. an erasure or a late writer
    assert total(rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)) == 7
    clock.t = 601
    assert total(rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)) == 12


def test_stale_figures_are_served_while_a_background_refresh_runs() -> None:
    source, clock = Source(), Clock()
    rollup = Rollup(ttl=600, clock=clock, now=lambda: NOW, background=True)
    rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)
    source.extra[floor(NOW - 3 * HOUR, "hour")] = 5.0
    clock.t = 601
    started = threading.active_count()
    stale = rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)
    assert stale.stale and total(stale) == 7  # the old figures, at once
    for thread in threading.enumerate():
        if thread.name == "agl-dashboard-rollup":
            thread.join(timeout=5)
    assert threading.active_count() <= started
    assert total(rollup.fetch("k", "hour", NOW - 6 * HOUR, NOW, source)) == 12


def test_a_window_after_a_gap_starts_over_and_keys_do_not_mix() -> None:
    source = Source()
    rollup = Rollup(now=lambda: NOW, background=False, max_keys=2)
    rollup.fetch("a", "hour", NOW - 50 * HOUR, NOW - 40 * HOUR, source)
    got = rollup.fetch("a", "hour", NOW - 5 * HOUR, NOW, source)
    assert total(got) == 6
    assert min(got.buckets) == floor(NOW - 5 * HOUR, "hour")
    rollup.fetch("b", "hour", NOW - 2 * HOUR, NOW, source)
    rollup.fetch("c", "hour", NOW - 2 * HOUR, NOW, source)  # evicts "a", the least recent
    calls = len(source.calls)
    rollup.fetch("a", "hour", NOW - 5 * HOUR, NOW, source)
    assert source.calls[calls][0] == floor(NOW - 5 * HOUR, "hour")


def test_buckets_align_and_parse_on_both_databases() -> None:
    at = datetime(2026, 3, 10, 12, 34, 56, 789, tzinfo=UTC)
    assert floor(at, "minute") == datetime(2026, 3, 10, 12, 34, tzinfo=UTC)
    assert floor(at, "day") == datetime(2026, 3, 10, tzinfo=UTC)
    assert ceil(at, "hour") == datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert ceil(floor(at, "hour"), "hour") == floor(at, "hour")
    assert len(starts(at - 3 * HOUR, at, "hour")) == 4
    parse = BucketParser()
    assert parse("2026-03-10 12") == datetime(2026, 3, 10, 12, tzinfo=UTC)  # SQLite, hour
    assert parse("2026-03-10 12:34") == datetime(2026, 3, 10, 12, 34, tzinfo=UTC)
    assert parse("2026-03-10") == datetime(2026, 3, 10, tzinfo=UTC)
    assert parse(datetime(2026, 3, 10, 12)) == datetime(2026, 3, 10, 12, tzinfo=UTC)  # PostgreSQL
    with pytest.raises(ValueError):
        floor(at, "week")


def test_merge_adds_key_by_key() -> None:
    into = {("a",): [1.0, 2.0]}
    merge(into, {("a",): [1.0, 1.0], ("b",): [3.0, 0.0]})
    assert into == {("a",): [2.0, 3.0], ("b",): [3.0, 0.0]}


def test_rare_intents_are_folded_so_memory_stays_bounded() -> None:
    from agent_lightning.dashboard.queries import MAX_INTENTS_PER_BUCKET, OTHER, _fold_intents

    summary = {("p", 1, f"intent-{i}"): [float(i + 1), 1.0, 0.5] for i in range(150)}
    folded = _fold_intents(summary)
    assert len(folded) == MAX_INTENTS_PER_BUCKET
    assert sum(v[0] for v in folded.values()) == sum(v[0] for v in summary.values())
    assert ("p", 1, "intent-149") in folded and ("p", 1, "intent-0") not in folded
    assert folded[("p", 1, OTHER)][1] == 51.0  # the 51 smallest, added up
    small = {("p", 1, "a"): [1.0, 0.0, 0.0]}
    assert _fold_intents(small) is small
