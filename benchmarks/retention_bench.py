"""What `policy_versions` retention does to the store: time to prune, and growth afterwards.

A learning task registers a version each time its candidate passes the gate; a Banking77 policy
after 8,000 decisions is 12-18 MB. This registers `--versions` versions of `--mb` MB each
(random bytes: the store and retention never parse an artifact), ages them past the rule,
prunes, then registers `--more` new versions, and compares the SQLite file with a run that
never prunes (the peer). SQLite keeps freed pages and reuses them, so the file stops growing
rather than shrinking; then `Store.compact` (`retention apply --compact`: VACUUM) gives the
rest back to the filesystem, and its time and the file's size after it are printed too.

    .venv/bin/python benchmarks/retention_bench.py --versions 30 --more 10 --mb 12
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from agent_lightning.security import retention
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import Policy, PolicyVersion, Store, new_id


def register(store: Store, policy: Policy, n: int, size: int) -> None:
    for _ in range(n):
        store.add_policy_version(
            PolicyVersion(id=new_id(), policy_id=policy.id, artifact=os.urandom(size)),
            make_live=True,
        )


def run(folder: Path, versions: int, more: int, size: int, prune: bool) -> dict[str, float]:
    path = folder / ("pruned.db" if prune else "kept.db")
    store = Store(f"sqlite:///{path}")
    store.ensure_app("acme")
    policy = store.create_policy(
        Policy(id=new_id(), app_id="acme", name="intents", decision_point="intent", spec={})
    )
    register(store, policy, versions, size)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE policy_versions SET created_at = :t"),
            {"t": datetime.now(UTC) - timedelta(days=60)},
        )
    before = path.stat().st_size
    seconds, pruned = 0.0, 0
    if prune:
        started = time.perf_counter()
        report = retention.apply(store, AuditLog(store), Actor("bench", "system"), ["acme"])
        seconds = time.perf_counter() - started
        pruned = report["acme"]["policy_versions"]
    register(store, policy, more, size)
    after = path.stat().st_size
    compacted, compact_seconds = after, 0.0
    if prune:
        started = time.perf_counter()
        compacted = store.compact().after_bytes or 0
        compact_seconds = time.perf_counter() - started
    store.close()
    return {"before": before, "after": after, "seconds": seconds, "pruned": pruned,
            "compacted": compacted, "compact_seconds": compact_seconds}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", type=int, default=30, help="versions registered, then aged")
    ap.add_argument("--more", type=int, default=10, help="versions registered after pruning")
    ap.add_argument("--mb", type=float, default=12.0, help="artifact size in MB")
    a = ap.parse_args()
    size = int(a.mb * 1_000_000)
    mb = 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        kept = run(Path(tmp), a.versions, a.more, size, prune=False)
        pruned = run(Path(tmp), a.versions, a.more, size, prune=True)
    print(
        f"{a.versions} versions of {a.mb:g} MB, aged past the rule: retention removed "
        f"{pruned['pruned']} artifacts in {pruned['seconds'] * 1000:.0f} ms "
        f"(the newest {retention.KEEP_NEWEST_VERSIONS} keep theirs)"
    )
    print(f"SQLite file before pruning: {pruned['before'] / mb:,.0f} MB")
    print(
        f"after {a.more} more versions: {pruned['after'] / mb:,.0f} MB with retention, "
        f"{kept['after'] / mb:,.0f} MB without (peer); with / without = "
        f"{pruned['after'] / kept['after']:.2f}"
    )
    print(
        f"compacted (VACUUM) in {pruned['compact_seconds']:.1f} s: "
        f"{pruned['compacted'] / mb:,.0f} MB; compacted / without = "
        f"{pruned['compacted'] / kept['after']:.2f}"
    )


if __name__ == "__main__":
    main()
