"""The SQL behind the dashboard: per-bucket aggregates, recent sessions, versions, audit.

Every query is scoped to one app and reads through an index that starts with `app_id`:

- events by `(app_id, created_at)`;
- decisions and rewards by `(app_id, pk)`: rewards have no time index, but `pk` and `created_at`
  are both assigned at insert time, so they grow together. `pk_floor` finds the first row at or
  after a time by binary search over the primary key (a few dozen index probes), and the range
  query then reads only that tail. A safety margin covers commits that land slightly out of
  order (replicas' clocks, long transactions); the exact time filter still applies.

Aggregates are counts and sums only, so the rollup can add buckets together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, desc, func, literal, select

from agent_lightning.dashboard.buckets import BucketParser, as_utc, bucket_expr, floor
from agent_lightning.dashboard.rollup import Compute, Fetched, Rollup, Summary, merge
from agent_lightning.store import (
    AuditEntry,
    Decision,
    Event,
    Policy,
    PolicyVersion,
    Reward,
    Store,
)

EVENTS: Table = Event.__table__  # type: ignore[assignment]
DECISIONS: Table = Decision.__table__  # type: ignore[assignment]
REWARDS: Table = Reward.__table__  # type: ignore[assignment]
PK_FLOOR_MARGIN = timedelta(minutes=5)
# Distinct intents kept per bucket; the rest are added up as OTHER, so that an app with
# thousands of free-form intents cannot make the rollup's memory grow without bound.
MAX_INTENTS_PER_BUCKET = 100
OTHER = "(other)"


def _fold_intents(summary: Summary) -> Summary:
    intents: dict[Any, float] = {}
    for (_name, _version, intent), values in summary.items():
        intents[intent] = intents.get(intent, 0.0) + values[0]
    if len(intents) <= MAX_INTENTS_PER_BUCKET:
        return summary
    keep = set(sorted(intents, key=lambda i: -intents[i])[: MAX_INTENTS_PER_BUCKET - 1])
    folded: Summary = {}
    for (name, version, intent), values in summary.items():
        key = (name, version, intent if intent in keep else OTHER)
        mine = folded.get(key)
        if mine is None:
            folded[key] = list(values)
        else:
            for i, v in enumerate(values):
                mine[i] += v
    return folded


def _gateway_table() -> Table | None:
    try:  # the gateway is optional; without it there are no model calls to measure
        from agent_lightning.gateway.models import GatewaySpan
    except ImportError:
        return None
    return GatewaySpan.__table__  # type: ignore[return-value]


class DashboardData:
    """Reads for one server process: SQL aggregates behind a rollup of closed buckets."""

    def __init__(self, store: Store, rollup: Rollup | None = None) -> None:
        self.store = store
        self.rollup = rollup or Rollup()
        self._floors: dict[tuple[str, str, datetime], tuple[float, int | None]] = {}
        self._floors_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.store.dialect

    # -- per-bucket aggregates ----------------------------------------------------------------

    def _rows_to_buckets(self, rows: Sequence[Any], groups: int) -> dict[datetime, Summary]:
        parse = BucketParser()
        out: dict[datetime, Summary] = {}
        for row in rows:
            at = parse(row[0])
            key = tuple(row[1 : 1 + groups])
            values = [float(v or 0) for v in row[1 + groups :]]
            bucket = out.setdefault(at, {})
            mine = bucket.get(key)
            if mine is None:
                bucket[key] = values
            else:  # e.g. SQLite text buckets that differ only in a suffix
                for i, v in enumerate(values):
                    mine[i] += v
        return out

    def _run(self, query: Any, groups: int) -> dict[datetime, Summary]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return self._rows_to_buckets(rows, groups)

    def events(self, app_id: str, bucket: str, since: datetime, until: datetime) -> Fetched:
        """(policy, version, intent) -> [events, with feedback, sum of feedback]."""
        t = EVENTS
        b = bucket_expr(self.dialect, t.c.created_at, bucket)

        def compute(lo: datetime, hi: datetime) -> dict[datetime, Summary]:
            query = (
                select(
                    b,
                    t.c.policy_name,
                    t.c.policy_version,
                    t.c.intent_prediction,
                    func.count(),
                    func.count(t.c.feedback_score),
                    func.sum(t.c.feedback_score),
                )
                .where(t.c.app_id == app_id, t.c.created_at >= lo, t.c.created_at < hi)
                .group_by(b, t.c.policy_name, t.c.policy_version, t.c.intent_prediction)
            )
            return {at: _fold_intents(summary) for at, summary in self._run(query, 3).items()}

        if bucket == "day":
            compute = self._days(compute, lambda lo, hi: self.events(app_id, "hour", lo, hi))
        return self.rollup.fetch(("events", app_id, bucket), bucket, since, until, compute)

    def decisions(
        self,
        app_id: str,
        bucket: str,
        since: datetime,
        until: datetime,
        escalation: tuple[str, ...],
    ) -> Fetched:
        """(policy, version) -> [decisions, escalated]."""
        t = DECISIONS
        b = bucket_expr(self.dialect, t.c.created_at, bucket)
        escalated = (
            func.sum(case((t.c.action_id.in_(escalation), 1), else_=0))
            if escalation
            else literal(0)
        )

        def compute(lo: datetime, hi: datetime) -> dict[datetime, Summary]:
            floor_pk = self.pk_floor(t, app_id, lo)
            if floor_pk is None:
                return {}
            query = (
                select(b, t.c.policy_name, t.c.policy_version, func.count(), escalated)
                .where(
                    t.c.app_id == app_id,
                    t.c.pk >= floor_pk,
                    t.c.created_at >= lo,
                    t.c.created_at < hi,
                )
                .group_by(b, t.c.policy_name, t.c.policy_version)
            )
            return self._run(query, 2)

        if bucket == "day":
            compute = self._days(
                compute, lambda lo, hi: self.decisions(app_id, "hour", lo, hi, escalation)
            )
        key = ("decisions", app_id, bucket, escalation)
        return self.rollup.fetch(key, bucket, since, until, compute)

    def rewards(self, app_id: str, bucket: str, since: datetime, until: datetime) -> Fetched:
        """(policy, version of the rewarded decision) -> [rewards, positive, sum of values].

        Bucketed by when the reward arrived, so a late reward never changes a closed bucket.
        A reward for a whole session has no decision, hence no version: key (None, None).
        """
        r, d = REWARDS, DECISIONS
        b = bucket_expr(self.dialect, r.c.created_at, bucket)

        def compute(lo: datetime, hi: datetime) -> dict[datetime, Summary]:
            floor_pk = self.pk_floor(r, app_id, lo)
            if floor_pk is None:
                return {}
            joined = r.outerjoin(d, and_(d.c.app_id == r.c.app_id, d.c.id == r.c.decision_id))
            query = (
                select(
                    b,
                    d.c.policy_name,
                    d.c.policy_version,
                    func.count(),
                    func.sum(case((r.c.value > 0, 1), else_=0)),
                    func.sum(r.c.value),
                )
                .select_from(joined)
                .where(
                    r.c.app_id == app_id,
                    r.c.pk >= floor_pk,
                    r.c.created_at >= lo,
                    r.c.created_at < hi,
                )
                .group_by(b, d.c.policy_name, d.c.policy_version)
            )
            return self._run(query, 2)

        if bucket == "day":
            compute = self._days(compute, lambda lo, hi: self.rewards(app_id, "hour", lo, hi))
        return self.rollup.fetch(("rewards", app_id, bucket), bucket, since, until, compute)

    def model_calls(
        self, app_id: str, bucket: str, since: datetime, until: datetime, target_ms: float
    ) -> Fetched | None:
        """() -> [calls, within the latency target, sum of latency, errors]; None: no gateway."""
        g = _gateway_table()
        if g is None:
            return None
        b = bucket_expr(self.dialect, g.c.created_at, bucket)

        def compute(lo: datetime, hi: datetime) -> dict[datetime, Summary]:
            query = (
                select(
                    b,
                    func.count(),
                    func.sum(case((g.c.latency_ms <= target_ms, 1), else_=0)),
                    func.sum(g.c.latency_ms),
                    func.sum(case((g.c.status != "ok", 1), else_=0)),
                )
                .where(g.c.app_id == app_id, g.c.created_at >= lo, g.c.created_at < hi)
                .group_by(b)
            )
            return self._run(query, 0)

        if bucket == "day":

            def hourly(lo: datetime, hi: datetime) -> Fetched:
                fetched = self.model_calls(app_id, "hour", lo, hi, target_ms)
                return fetched if fetched is not None else Fetched({})

            compute = self._days(compute, hourly)
        key = ("model_calls", app_id, bucket, target_ms)
        return self.rollup.fetch(key, bucket, since, until, compute)

    def _days(self, by_sql: Compute, hourly: Callable[[datetime, datetime], Fetched]) -> Compute:
        """Day buckets: closed days from SQL; today from the hourly rollup.

        Today's bucket is open, so the day rollup would aggregate all of today's rows on every
        call; the hourly rollup already holds today's closed hours and queries only this one.
        """

        def compute(lo: datetime, hi: datetime) -> dict[datetime, Summary]:
            today = floor(self.rollup.now() - self.rollup.grace, "day")
            cut = min(max(lo, today), hi)
            out = by_sql(lo, cut) if lo < cut else {}
            if cut < hi:
                for at, summary in hourly(cut, hi).buckets.items():
                    merge(out.setdefault(floor(at, "day"), {}), summary)
            return out

        return compute

    # -- the primary key as a time index ------------------------------------------------------

    def pk_floor(self, table: Table, app_id: str, at: datetime) -> int | None:
        """Smallest pk of this app's rows from (about) `at` on; None when the app has none.

        Binary search over the primary key, each probe one `(app_id, pk)` index seek. Rows are
        assumed to be written in time order give or take `PK_FLOOR_MARGIN`.
        """
        target = as_utc(at) - PK_FLOOR_MARGIN
        key = (table.name, app_id, target)
        now = time.monotonic()
        with self._floors_lock:
            hit = self._floors.get(key)
            if hit is not None and now - hit[0] < 60.0:
                return hit[1]
        found = self._search_floor(table, app_id, target)
        with self._floors_lock:
            if len(self._floors) > 4096:
                self._floors.clear()
            self._floors[key] = (now, found)
        return found

    def _search_floor(self, table: Table, app_id: str, target: datetime) -> int | None:
        c = table.c
        with self.store.engine.connect() as conn:
            # Two index seeks: `min(pk), max(pk)` in one query makes SQLite scan instead.
            ends = select(c.pk).where(c.app_id == app_id).limit(1)
            low = conn.execute(ends.order_by(c.pk)).scalar()
            if low is None:
                return None
            high = conn.execute(ends.order_by(desc(c.pk))).scalar()
            probe = (
                select(c.pk, c.created_at)
                .where(c.app_id == app_id, c.pk >= bindparam("floor_pk"))
                .order_by(c.pk)
                .limit(1)
            )
            lo, hi = int(low), int(high) + 1
            while lo < hi:
                mid = (lo + hi) // 2
                row = conn.execute(probe, {"floor_pk": mid}).first()
                if row is None or as_utc(row.created_at) >= target:
                    hi = mid
                else:
                    # Every pk in [mid, row.pk] is before the target (or another app's).
                    lo = int(row.pk) + 1
            return lo

    # -- records ------------------------------------------------------------------------------

    def recent_sessions(
        self, app_id: str, limit: int, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The sessions with the most recent activity, newest first, with what happened in them.

        Candidates are the sessions of the newest events and decisions (a backward walk of the
        `(app_id, pk)` index); their summaries then come from the `(app_id, session_id)` indexes.
        """
        scan = max(200, limit * 20)
        candidates: dict[str, None] = {}
        with self.store.engine.connect() as conn:
            for t in (EVENTS, DECISIONS):
                # A backward walk of `(app_id, pk)`; rows without a session are skipped here, as a
                # `session_id IS NOT NULL` in SQL makes PostgreSQL sort instead of walking.
                recent = (
                    select(t.c.session_id)
                    .where(t.c.app_id == app_id)
                    .order_by(desc(t.c.pk))
                    .limit(scan)
                )
                if user_id is not None:
                    recent = recent.where(t.c.user_id == user_id)
                kept = 0
                for (session_id,) in conn.execute(recent):
                    if session_id is not None and session_id not in candidates:
                        candidates[session_id] = None
                        kept += 1
                        if kept >= limit:
                            break
            summaries = self.session_summaries(app_id, list(candidates), conn)
        ordered = sorted(summaries.values(), key=lambda s: s["last_at"] or "", reverse=True)
        return ordered[:limit]

    def session_summaries(
        self, app_id: str, session_ids: list[str], conn: Any = None
    ) -> dict[str, dict[str, Any]]:
        if not session_ids:
            return {}
        if conn is None:
            with self.store.engine.connect() as own:
                return self.session_summaries(app_id, session_ids, own)
        out: dict[str, dict[str, Any]] = {
            s: {
                "session_id": s,
                "user_id": None,
                "started_at": None,
                "last_at": None,
                "events": 0,
                "decisions": 0,
                "rewards": 0,
                "reward_sum": 0.0,
                "feedback": None,
                "policy_versions": [],
            }
            for s in session_ids
        }

        def widen(summary: dict[str, Any], first: Any, last: Any) -> None:
            for value, field, pick in ((first, "started_at", min), (last, "last_at", max)):
                if value is None:
                    continue
                iso = as_utc(value).isoformat()
                summary[field] = iso if summary[field] is None else pick(summary[field], iso)

        e, d, r = EVENTS, DECISIONS, REWARDS
        for row in conn.execute(
            select(
                e.c.session_id,
                func.count(),
                func.min(e.c.created_at),
                func.max(e.c.created_at),
                func.avg(e.c.feedback_score),
                func.max(e.c.user_id),
            )
            .where(e.c.app_id == app_id, e.c.session_id.in_(session_ids))
            .group_by(e.c.session_id)
        ):
            summary = out[row[0]]
            summary["events"] = int(row[1])
            widen(summary, row[2], row[3])
            summary["feedback"] = None if row[4] is None else float(row[4])
            summary["user_id"] = row[5]
        # Aggregated in SQL, grouped by session only, so each read stays on the
        # `(app_id, session_id)` index whatever the size of a session.
        versions: dict[str, str] = {}
        for row in conn.execute(
            select(
                d.c.session_id,
                func.count(),
                func.min(d.c.created_at),
                func.max(d.c.created_at),
                func.max(d.c.user_id),
                func.max(d.c.policy_name),
                func.min(d.c.policy_version),
                func.max(d.c.policy_version),
            )
            .where(d.c.app_id == app_id, d.c.session_id.in_(session_ids))
            .group_by(d.c.session_id)
        ):
            summary = out[row[0]]
            summary["decisions"] = int(row[1])
            widen(summary, row[2], row[3])
            summary["user_id"] = summary["user_id"] or row[4]
            if row[7] is not None:
                span = f"v{row[6]}" if row[6] == row[7] else f"v{row[6]}–v{row[7]}"
                versions[row[0]] = f"{row[5]} {span}" if row[5] else span
        # Rewards name their session, or only their decision (which names the session). The
        # second kind is read in two index lookups: the sessions' decision ids by
        # `(app_id, session_id)`, then their rewards by `(app_id, decision_id)`. (A join, or an
        # IN-subquery, lets one planner or the other walk every reward of the app instead; and
        # "no session" stays out of SQL so SQLite does not use the rewards' session index.)
        direct = (
            select(r.c.session_id, func.count(), func.sum(r.c.value))
            .where(r.c.app_id == app_id, r.c.session_id.in_(session_ids))
            .group_by(r.c.session_id)
        )
        for session_id, count, total in conn.execute(direct):
            out[session_id]["rewards"] += int(count)
            out[session_id]["reward_sum"] += float(total or 0.0)
        owner = dict(
            conn.execute(
                select(d.c.id, d.c.session_id).where(
                    d.c.app_id == app_id, d.c.session_id.in_(session_ids)
                )
            ).all()
        )
        ids = list(owner)
        for start in range(0, len(ids), 1000):
            via_decision = select(r.c.decision_id, r.c.session_id, r.c.value).where(
                r.c.app_id == app_id, r.c.decision_id.in_(ids[start : start + 1000])
            )
            for decision_id, session_id, value in conn.execute(via_decision):
                if session_id is None:  # those naming a session were counted above
                    summary = out[owner[decision_id]]
                    summary["rewards"] += 1
                    summary["reward_sum"] += float(value)
        for session_id, label in versions.items():
            out[session_id]["policy_versions"] = [label]
        return {s: v for s, v in out.items() if v["events"] or v["decisions"] or v["rewards"]}

    def policies(self, app_id: str, name: str | None = None) -> list[Policy]:
        with self.store.session() as s:
            query = select(Policy).where(Policy.app_id == app_id).order_by(Policy.pk).limit(200)
            if name is not None:
                query = query.where(Policy.name == name)
            return list(s.scalars(query))

    def versions(self, policy_id: str) -> list[dict[str, Any]]:
        """A policy's versions without their artefacts (which can be large), oldest first."""
        v = PolicyVersion.__table__.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(
                    v.version,
                    v.parent_version,
                    v.artifact_sha256,
                    v.data_hash,
                    v.data_range,
                    v.metrics,
                    v.notes,
                    v.created_by,
                    v.created_at,
                    v.artifact_bytes,
                    v.artifact_pruned_at,
                )
                .where(v.policy_id == policy_id)
                .order_by(v.version)
                .limit(1000)
            ).all()
        return [
            {
                "version": row[0],
                "parent_version": row[1],
                "artifact_sha256": row[2],
                "data_hash": row[3],
                "data_range": row[4] or {},
                "metrics": row[5] or {},
                "notes": row[6],
                "created_by": row[7],
                "created_at": as_utc(row[8]).isoformat(),
                "artifact_bytes": int(row[9] or 0),
                "artifact_pruned_at": as_utc(row[10]).isoformat() if row[10] else None,
            }
            for row in rows
        ]

    def audit(
        self,
        app_id: str,
        *,
        limit: int = 100,
        before_seq: int | None = None,
        actions: Sequence[str] | None = None,
    ) -> list[AuditEntry]:
        """This app's audit entries, newest first."""
        with self.store.session() as s:
            query = select(AuditEntry).where(AuditEntry.app_id == app_id)
            if before_seq is not None:
                query = query.where(AuditEntry.seq < before_seq)
            if actions:
                query = query.where(AuditEntry.action.in_(list(actions)))
            return list(s.scalars(query.order_by(desc(AuditEntry.seq)).limit(limit)))
