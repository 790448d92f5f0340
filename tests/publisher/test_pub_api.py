"""The publisher's HTTP API through the real app (TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pub_seed import APP, POLICY, publisher_api, record
from tests.conftest import Api


@pytest.fixture
def papi(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with publisher_api(database_url, tmp_path) as made:
        yield made


def test_canary_through_the_api_reaches_live(papi: Api) -> None:
    admin = papi.auth(APP)
    started = papi.client.post(
        "/v1/rollouts",
        json={
            "policy": POLICY,
            "candidate_version": 2,
            "steps": [25, 100],
            "min_decisions_per_step": 30,
            "guardrails": [{"metric": "mean_reward", "max_drop": 0.05}, {"metric": "error_rate"}],
            "reason": "nightly model",
        },
        headers=admin,
    )
    assert started.status_code == 201, started.text
    ro = started.json()
    assert ro["percent"] == 25.0 and ro["status"] == "running" and ro["baseline_version"] == 1

    record(papi.store, 2, 30, p_success=0.7, seed=1, prefix="c")
    record(papi.store, 1, 30, p_success=0.7, seed=2, prefix="b")
    shown = papi.client.get(f"/v1/rollouts/{ro['id']}", headers=admin).json()
    metrics = shown["metrics"]
    assert metrics["candidate"]["decisions"] == 30 and metrics["baseline"]["decisions"] == 30
    assert metrics["candidate"]["version"] == 2 and len(metrics["guardrails"]) == 2

    step = papi.client.post(f"/v1/rollouts/{ro['id']}/evaluate", json={}, headers=admin).json()
    assert step["action"] == "advance" and step["rollout"]["percent"] == 100.0
    promoted = papi.client.post(
        f"/v1/rollouts/{ro['id']}/promote", json={"reason": "ship it"}, headers=admin
    )
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted"
    live = papi.client.get(f"/v1/policies/{POLICY}/live", headers=admin).json()
    assert live["version"] == 2
    listed = papi.client.get("/v1/rollouts?status=promoted", headers=admin).json()["items"]
    assert [r["id"] for r in listed] == [ro["id"]]
    again = papi.client.post(f"/v1/rollouts/{ro['id']}/pause", json={}, headers=admin)
    assert again.status_code == 409 and "is promoted" in again.json()["error"]["message"]


def test_bad_rollout_requests_get_clear_4xx(papi: Api) -> None:
    admin = papi.auth(APP)
    cases = [
        ({"policy": POLICY, "candidate_version": 2, "steps": [50, 10]}, 422, "increase"),
        ({"policy": POLICY, "candidate_version": 2, "steps": [5, 120]}, 422, "(0, 100]"),
        ({"policy": POLICY, "candidate_version": 1}, 422, "is the baseline already"),
        ({"policy": POLICY, "candidate_version": 7}, 422, "has no version 7"),
        ({"policy": "nope", "candidate_version": 2}, 404, "not found"),
        ({"policy": POLICY, "candidate_version": 2, "colour": "red"}, 422, "colour"),
        ({"policy": POLICY, "candidate_version": 2, "kind": "flag"}, 422, "needs a segment"),
        (
            {"policy": POLICY, "candidate_version": 2, "guardrails": [{"metric": "fun"}]},
            422,
            "metric",
        ),
    ]
    for body, status, text in cases:
        response = papi.client.post("/v1/rollouts", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        assert text in json.dumps(response.json()), (body, response.text)
    ok = papi.client.post(
        "/v1/rollouts", json={"policy": POLICY, "candidate_version": 2}, headers=admin
    )
    assert ok.status_code == 201
    clash = papi.client.post(
        "/v1/rollouts", json={"policy": POLICY, "candidate_version": 3}, headers=admin
    )
    assert clash.status_code == 409 and "already has an active rollout" in clash.text
    no_reason = papi.client.post(f"/v1/rollouts/{ok.json()['id']}/rollback", json={}, headers=admin)
    assert no_reason.status_code == 422


def test_analyst_and_developer_cannot_change_rollouts(papi: Api) -> None:
    admin = papi.auth(APP)
    ro = papi.client.post(
        "/v1/rollouts", json={"policy": POLICY, "candidate_version": 2}, headers=admin
    ).json()
    for role in ("Analyst", "Developer"):
        headers = papi.auth(APP, (role,))
        denied = papi.client.post(f"/v1/rollouts/{ro['id']}/promote", json={}, headers=headers)
        assert denied.status_code == 403, role
        assert papi.client.get(f"/v1/rollouts/{ro['id']}", headers=headers).status_code == 200
    assert papi.store.get_policy(APP, POLICY).live_version == 1
    agent = papi.auth(APP, ("Agent",))
    assert (
        papi.client.get(f"/v1/runtime/manifest?policy={POLICY}", headers=agent).status_code == 200
    )
    assert papi.client.get("/v1/rollouts", headers=agent).status_code == 403


def test_manifest_etag_and_304_until_a_rollout_changes_it(papi: Api) -> None:
    agent = papi.auth(APP, ("Agent",))
    url = f"/v1/runtime/manifest?policy={POLICY}"
    first = papi.client.get(url, headers=agent)
    assert first.status_code == 200
    assert first.json() == {
        "policy": POLICY,
        "decision_point": "intent",
        "live_version": 1,
        "rollout": None,
        "versions": [1],
    }
    etag = first.headers["etag"]
    same = papi.client.get(url, headers={**agent, "If-None-Match": etag})
    assert same.status_code == 304 and same.headers["etag"] == etag and not same.content

    admin = papi.auth(APP)
    body = {
        "policy": POLICY,
        "candidate_version": 3,
        "segment": {"attribute": "plan", "values": ["pro"]},
    }
    ro = papi.client.post("/v1/rollouts", json=body, headers=admin).json()
    changed = papi.client.get(url, headers={**agent, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    manifest = changed.json()
    assert manifest["versions"] == [1, 3]
    assert manifest["rollout"] == {
        "id": ro["id"],
        "kind": "canary",
        "status": "running",
        "baseline_version": 1,
        "candidate_version": 3,
        "percent": 5.0,
        "salt": ro["salt"],
        "segment": {"attribute": "plan", "values": ["pro"]},
    }
    missing = papi.client.get("/v1/runtime/manifest?policy=nope", headers=agent)
    assert missing.status_code == 404


def test_bundle_export_import_and_tampering(papi: Api, tmp_path: Path) -> None:
    admin = papi.auth(APP)
    exported = papi.client.get(f"/v1/policies/{POLICY}/versions/2/bundle", headers=admin)
    assert exported.status_code == 200
    data = exported.content
    keys = papi.client.get("/v1/publisher/keys", headers=admin).json()["keys"]
    assert keys[0]["primary"] and json.loads(data)["manifest"]["key_id"] == keys[0]["key_id"]

    # Into another app of the same installation (the key is trusted): a new version 1.
    other = papi.auth("globex")
    imported = papi.client.post(
        f"/v1/policies/{POLICY}/bundles",
        json={"bundle_b64": base64.b64encode(data).decode(), "create_policy": True},
        headers=other,
    )
    assert imported.status_code == 201, imported.text
    version = imported.json()
    assert version["version"] == 1 and version["created"] is True
    assert version["metrics"]["imported_from"]["version"] == 2
    assert version["artifact_sha256"] == json.loads(data)["manifest"]["artifact_sha256"]
    twice = papi.client.post(
        f"/v1/policies/{POLICY}/bundles",
        json={"bundle_b64": base64.b64encode(data).decode()},
        headers=other,
    )
    assert twice.status_code == 200 and twice.json()["created"] is False

    document = json.loads(data)
    document["manifest"]["notes"] = "totally the same model"
    tampered = json.dumps(document).encode()
    refused = papi.client.post(
        f"/v1/policies/{POLICY}/bundles",
        json={"bundle_b64": base64.b64encode(tampered).decode()},
        headers=admin,
    )
    assert refused.status_code == 422
    assert "bad signature" in refused.json()["error"]["message"]
    versions = papi.client.get(f"/v1/policies/{POLICY}/versions", headers=admin).json()["items"]
    assert len(versions) == 3  # nothing was registered
    from agent_lightning.security.audit import AuditLog

    refusals = [e for e in AuditLog(papi.store).entries(APP) if e.outcome == "refused"]
    assert refusals and "bad signature" in refusals[-1].after["reason"]


def test_diff_reports_metadata_metrics_lineage_and_parameters(papi: Api) -> None:
    admin = papi.auth(APP)
    diff = papi.client.get(f"/v1/policies/{POLICY}/diff?from=1&to=3", headers=admin).json()
    assert diff["lineage"] == {"related": "ancestor", "path": [3, 2, 1]}
    assert diff["metrics"]["gate.lower_bound"]["delta"] == pytest.approx(0.1)
    assert diff["metadata"]["notes"] == {"from": "version 1", "to": "version 3"}
    params = diff["parameters"]
    assert params["comparable"] and params["examples_seen"] == {"from": 0, "to": 20, "delta": 20}
    assert params["config_changes"]["seed"] == {"from": 0, "to": 2}
    assert "arm[reply].w" in params["arrays_added"]  # v1 had learned nothing yet
    learned = papi.client.get(f"/v1/policies/{POLICY}/diff?from=2&to=3", headers=admin).json()
    grown = {a["name"]: a for a in learned["parameters"]["arrays_resized"]}
    assert grown["arm[reply].w"] == {"name": "arm[reply].w", "from_shape": [5], "to_shape": [10]}
    default = papi.client.get(f"/v1/policies/{POLICY}/diff", headers=admin).json()
    assert (default["from"], default["to"]) == (2, 3)
    bad = papi.client.get(f"/v1/policies/{POLICY}/diff?from=1&to=9", headers=admin)
    assert bad.status_code == 404


def test_runtime_reports_are_kept_per_runtime(papi: Api) -> None:
    agent = papi.auth(APP, ("Agent",))
    body = {
        "runtime_id": "edge-1",
        "policy": POLICY,
        "versions": [1],
        "arms": {"baseline": 12},
        "queued": 3,
        "last_sync": "2026-01-01T00:00:00+00:00",
    }
    assert papi.client.post("/v1/runtime/report", json=body, headers=agent).status_code == 200
    body.update(versions=[1, 2], queued=0)
    assert papi.client.post("/v1/runtime/report", json=body, headers=agent).status_code == 200
    extra = papi.client.post("/v1/runtime/report", json={**body, "cpu": 1}, headers=agent)
    assert extra.status_code == 422
    admin = papi.auth(APP)
    items = papi.client.get("/v1/runtime/reports", headers=admin).json()["items"]
    assert len(items) == 1
    assert items[0]["versions"] == [1, 2] and items[0]["details"]["queued"] == 0
