"""Retention: how long each kind of record is kept per app, and the job that enforces it.

Defaults follow the product's guidance: raw telemetry (events) 30 days, decisions and rewards one
year. Apply runs from the server's scheduler and from `agent-lightning retention apply`, and every
run is audited with what it removed.

`policy_versions` is about learned artifacts: a learning task registers a version (megabytes of
learned state) each time its candidate passes the gate, so without a rule the store grows for
ever. Past the rule's days a version's artifact bytes are removed and its row (lineage, metrics,
SHA-256) stays; a policy's newest `KEEP_NEWEST_VERSIONS`, its live version and that version's
parent, and the baseline and candidate of a running rollout always keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import CompactReport, RetentionRule, Store, utcnow

KINDS = ("events", "decisions", "rewards", "spans", "policy_versions")
# Spans (gateway model calls, ingested traces) hold raw conversation content: kept like events.
DEFAULT_DAYS = {"events": 30, "decisions": 365, "rewards": 365, "spans": 30, "policy_versions": 30}
MAX_DAYS = 36_500
# Whatever their age, a policy's newest versions keep their artifacts (Kubernetes keeps 10
# revisions of a Deployment by default, for the same reason: somewhere recent to roll back to).
KEEP_NEWEST_VERSIONS = 10


def rules(store: Store, app_id: str) -> dict[str, int]:
    """Days to keep each kind for one app (stored rule, or the default)."""
    out = dict(DEFAULT_DAYS)
    with store.session() as s:
        for rule in s.scalars(select(RetentionRule).where(RetentionRule.app_id == app_id)):
            if rule.enabled:
                out[rule.kind] = rule.days
    return out


def set_rule(
    store: Store, audit: AuditLog, app_id: str, kind: str, days: int, actor: Actor
) -> dict[str, int]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    before = rules(store, app_id)
    with store.session() as s:
        rule = s.scalar(
            select(RetentionRule).where(RetentionRule.app_id == app_id, RetentionRule.kind == kind)
        )
        if rule is None:
            s.add(RetentionRule(app_id=app_id, kind=kind, days=days))
        else:
            rule.days, rule.enabled, rule.updated_at = days, True, utcnow()
    after = rules(store, app_id)
    audit.record(
        actor,
        "retention.set",
        "retention_rule",
        kind,
        app_id=app_id,
        before={kind: before[kind]},
        after={kind: after[kind]},
    )
    return after


def apply(store: Store, audit: AuditLog, actor: Actor, app_ids: list[str] | None = None) -> dict:
    """Delete what is past its retention for every app (or the given ones); audited per app."""
    now = utcnow()
    report: dict[str, dict[str, int]] = {}
    for app_id in app_ids or [a.id for a in store.list_apps()]:
        removed: dict[str, int] = {}
        # Rewards first, then decisions (rewards hang off decisions: an old decision's newer
        # rewards go with it, and are counted), then events.
        days = rules(store, app_id)
        for kind in ("rewards", "decisions", "events", "spans"):
            cutoff = now - timedelta(days=days[kind])
            for gone, n in store.delete_older_than(app_id, kind, cutoff).items():
                removed[gone] = removed.get(gone, 0) + n
        pruned = store.prune_policy_artifacts(
            app_id,
            now - timedelta(days=days["policy_versions"]),
            keep_newest=KEEP_NEWEST_VERSIONS,
            pinned=_rollout_versions,  # the publisher's; imported when retention runs
        )
        removed["policy_versions"] = len(pruned)
        report[app_id] = removed
        after: dict = dict(removed)
        if pruned:  # which versions lost their bytes, and how many bytes that freed
            after["policy_artifacts"] = version_ranges((p["policy"], p["version"]) for p in pruned)
            after["policy_artifact_bytes"] = sum(p["bytes"] for p in pruned)
        audit.record(actor, "retention.apply", "app", app_id, app_id=app_id, after=after)
    return report


def compact(store: Store, audit: AuditLog, actor: Actor) -> CompactReport:
    """Give deleted rows' space back (`Store.compact`); audited with the sizes."""
    report = store.compact()
    audit.record(
        actor,
        "store.compact",
        "store",
        report.dialect,
        after={"before_bytes": report.before_bytes, "after_bytes": report.after_bytes},
    )
    return report


def version_ranges(versions: Iterable[tuple[str, int]]) -> list[str]:
    """("intent", 1) ... ("intent", 40), ("intent", 42) -> ["intent@1-40", "intent@42"].

    The first run on a large install prunes hundreds of versions at once; runs of consecutive
    versions keep its audit entry short while still naming every one.
    """
    by_policy: dict[str, list[int]] = {}
    for policy, version in versions:
        by_policy.setdefault(policy, []).append(int(version))
    out: list[str] = []
    for policy in sorted(by_policy):
        numbers = sorted(set(by_policy[policy]))
        start = prev = numbers[0]
        for v in [*numbers[1:], None]:
            if v is not None and v == prev + 1:
                prev = v
                continue
            out.append(f"{policy}@{start}" if start == prev else f"{policy}@{start}-{prev}")
            if v is not None:
                start = prev = v
    return out


def _rollout_versions(session: Session, policy_id: str) -> set[int]:
    from agent_lightning.publisher import versions_in_rollouts

    return versions_in_rollouts(session, policy_id)


def erase_user(store: Store, audit: AuditLog, app_id: str, user_id: str, actor: Actor) -> dict:
    """Right to erasure: every record of the user, everywhere in the app; audited."""
    removed = store.delete_user(app_id, user_id)
    # The audit entry names the user id (needed to prove the erasure) but holds no content.
    audit.record(actor, "user.erase", "user", user_id, app_id=app_id, after=removed)
    return removed


class RetentionScheduler:
    """Applies retention on a timer (hourly by default) in a daemon thread; audited each run."""

    def __init__(self, store: Store, audit: AuditLog, every_seconds: float = 3600.0) -> None:
        import threading

        self.store = store
        self.audit = audit
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import threading

        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="agl-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        import logging

        from agent_lightning.security.audit import Actor

        while not self._stop.wait(self.every_seconds):
            try:
                apply(self.store, self.audit, Actor("retention-scheduler", "system"))
            except Exception:  # noqa: BLE001 - try again next tick; the failure is logged
                logging.getLogger("agent_lightning.retention").exception("retention run failed")
