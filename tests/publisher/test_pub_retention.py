"""Retention of learned artifacts (`policy_versions`), through the API, on SQLite and PostgreSQL.

A learning task registers a version each time its candidate passes the gate; each carries
megabytes of learned state. Past the rule's days the bytes go and the row stays, but never the
bytes that serving, a running rollout or the next rollback needs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pub_seed import ADMIN, APP, POLICY, publisher_api
from sqlalchemy import text
from tests.conftest import Api

from agent_lightning.security import retention
from agent_lightning.store import Conflict, Store

VERSIONS = 16  # newest 10 (v7-v16) are kept whatever their age


@pytest.fixture
def rapi(database_url: str, tmp_path: Path) -> Iterator[Api]:
    # v1 live, each version the parent of the next.
    with publisher_api(database_url, tmp_path, versions=VERSIONS) as made:
        yield made


def _age(store: Store, days: float, versions: list[int]) -> None:
    old = datetime.now(UTC) - timedelta(days=days)
    with store.engine.begin() as conn:
        for v in versions:
            conn.execute(
                text("UPDATE policy_versions SET created_at = :t WHERE version = :v"),
                {"t": old, "v": v},
            )


def _versions(api: Api, headers: dict) -> dict[int, dict]:
    page = api.client.get(f"/v1/policies/{POLICY}/versions", headers=headers).json()
    return {v["version"]: v for v in page["items"]}


def test_old_artifacts_go_but_serving_rollouts_and_rollback_keep_theirs(rapi: Api) -> None:
    admin = rapi.auth(APP)
    assert rapi.client.get("/v1/retention", headers=admin).json()["policy_versions"] == 30
    assert (
        rapi.client.put("/v1/retention/policy_versions", json={"days": 7}, headers=admin)
    ).status_code == 200
    # v3 live (its parent v2 is where a rollback goes), a canary of the old v1 against it.
    assert rapi.client.put(
        f"/v1/policies/{POLICY}/live", json={"version": 3}, headers=admin
    ).is_success
    canary = rapi.client.post(
        "/v1/rollouts", json={"policy": POLICY, "candidate_version": 1}, headers=admin
    )
    assert canary.status_code == 201, canary.text
    # Everything 40 days old except v4, registered two days ago.
    _age(rapi.store, 40, [v for v in range(1, VERSIONS + 1) if v != 4])
    _age(rapi.store, 2, [4])
    bundle_v5 = rapi.client.get(f"/v1/policies/{POLICY}/versions/5/bundle", headers=admin)
    assert bundle_v5.status_code == 200
    sizes = {v: row["artifact_bytes"] for v, row in _versions(rapi, admin).items()}

    applied = rapi.client.post("/v1/retention/apply", headers=admin).json()
    assert applied["removed"]["policy_versions"] == 2
    rows = _versions(rapi, admin)
    pruned = sorted(v for v, row in rows.items() if row["artifact_pruned_at"])
    assert pruned == [5, 6]  # v1 canary, v2 parent of live, v3 live, v4 recent, v7+ newest
    for v, row in rows.items():
        assert row["artifact_sha256"]  # lineage stays
        assert row["artifact_bytes"] == (0 if v in pruned else sizes[v])
    assert all(size > 0 for size in sizes.values())
    entry = next(
        e
        for e in rapi.client.get("/v1/audit", headers=admin).json()["items"]
        if e["action"] == "retention.apply"
    )
    assert entry["after"]["policy_artifacts"] == [f"{POLICY}@5-6"]
    assert entry["after"]["policy_artifact_bytes"] == sizes[5] + sizes[6]
    # A second run finds nothing more to remove.
    again = rapi.client.post("/v1/retention/apply", headers=admin).json()
    assert again["removed"]["policy_versions"] == 0

    # Once the canary has ended, its candidate is just an old version.
    ended = rapi.client.post(
        f"/v1/rollouts/{canary.json()['id']}/rollback", json={"reason": "done"}, headers=admin
    )
    assert ended.status_code == 200, ended.text
    rapi.client.post("/v1/retention/apply", headers=admin)
    assert _versions(rapi, admin)[1]["artifact_pruned_at"] is not None
    assert _versions(rapi, admin)[2]["artifact_pruned_at"] is None  # still live's parent

    # A version without its artifact never serves, and every refusal says why.
    live = rapi.client.put(f"/v1/policies/{POLICY}/live", json={"version": 5}, headers=admin)
    assert live.status_code == 409 and "retention removed it" in live.json()["error"]["message"]
    assert rapi.client.get(f"/v1/policies/{POLICY}", headers=admin).json()["live_version"] == 3
    rollout = rapi.client.post(
        "/v1/rollouts", json={"policy": POLICY, "candidate_version": 6}, headers=admin
    )
    assert rollout.status_code == 422 and "retention removed it" in rollout.text
    export = rapi.client.get(f"/v1/policies/{POLICY}/versions/6/bundle", headers=admin)
    assert export.status_code == 409 and export.json()["error"]["code"] == "artifact_removed"

    # The bundle exported before brings the bytes back (checked against the SHA-256).
    restored = rapi.client.post(
        f"/v1/policies/{POLICY}/bundles",
        json={"bundle_b64": base64.b64encode(bundle_v5.content).decode()},
        headers=admin,
    )
    assert restored.status_code == 200 and restored.json()["created"] is False
    assert restored.json()["version"] == 5 and restored.json()["artifact_pruned_at"] is None
    assert restored.json()["artifact_bytes"] == sizes[5]
    assert rapi.client.put(
        f"/v1/policies/{POLICY}/live", json={"version": 5}, headers=admin
    ).is_success
    actions = [e["action"] for e in rapi.client.get("/v1/audit", headers=admin).json()["items"]]
    assert "policy_version.restore" in actions


def test_store_refuses_bytes_that_do_not_match_and_keeps_young_versions(rapi: Api) -> None:
    store = rapi.store
    _age(store, 40, list(range(1, VERSIONS + 1)))
    now = datetime.now(UTC)
    # keep_newest=0: only the live version (v1, no parent) survives an old cutoff.
    pruned = store.prune_policy_artifacts(APP, now - timedelta(days=50), keep_newest=0)
    assert pruned == []  # nothing is older than the cutoff
    pruned = store.prune_policy_artifacts(
        APP, now - timedelta(days=30), keep_newest=0, pinned=lambda s, pid: {VERSIONS}
    )
    assert [p["version"] for p in pruned] == list(range(2, VERSIONS))
    assert all(p["policy"] == POLICY and p["bytes"] > 0 for p in pruned)
    row = store.get_policy_version(APP, POLICY, 2)
    assert row.artifact is None and row.artifact_pruned_at is not None
    with pytest.raises(Conflict, match="SHA-256"):
        store.restore_policy_artifact(row.id, b"not the artifact")
    with pytest.raises(Conflict, match="retention removed it"):
        store.set_live_version(APP, POLICY, 2)
    assert store.get_policy(APP, POLICY).live_version == 1


def test_scheduler_rule_defaults_and_validation(rapi: Api) -> None:
    admin = rapi.auth(APP)
    bad = rapi.client.put("/v1/retention/policy_versions", json={"days": 0}, headers=admin)
    assert bad.status_code == 422
    # The default (30 days) leaves a fresh install's versions alone.
    report = retention.apply(rapi.store, rapi.app.state.agl.audit, _system(), [APP])
    assert report[APP]["policy_versions"] == 0
    assert all(v["artifact_bytes"] > 0 for v in _versions(rapi, admin).values())


def _system():
    from agent_lightning.security.audit import Actor

    return Actor("retention-test", "system")


def test_a_rollout_starting_as_retention_prunes_its_candidate_is_refused(
    rapi: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_lightning.publisher.rollouts import RolloutError

    store = rapi.store
    manager = rapi.app.state.agl.extras["publisher"].manager
    _age(store, 40, list(range(1, VERSIONS + 1)))
    checked = store.get_policy_version

    def retention_runs_right_after_the_check(app_id: str, name: str, version: int, **kw):
        row = checked(app_id, name, version, **kw)
        if version == 2:
            store.prune_policy_artifacts(APP, datetime.now(UTC) - timedelta(days=30), keep_newest=0)
        return row

    monkeypatch.setattr(store, "get_policy_version", retention_runs_right_after_the_check)
    with pytest.raises(RolloutError, match="retention removed it"):
        manager.start(APP, ADMIN, policy=POLICY, candidate_version=2)
    assert manager.active(APP, POLICY) is None


def test_the_audit_entry_names_pruned_versions_as_runs() -> None:
    # A first run on a large install prunes hundreds of versions: runs keep the entry short.
    versions = [("intent", v) for v in range(40, 0, -1) if v != 17] + [("faq", 3), ("intent", 42)]
    assert retention.version_ranges(versions) == [
        "faq@3",
        "intent@1-16",
        "intent@18-40",
        "intent@42",
    ]
    assert retention.version_ranges([("p", 2), ("p", 2)]) == ["p@2"]
    assert retention.version_ranges([]) == []
