"""PolicySync repairs what the disk lost, and reports server errors once and only while they last.

Against `StubPublisher` from test_edge.py (real HTTP on loopback, real signed bundles).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse
from tests.runtime.test_edge import (
    POLICY,
    StubPublisher,
    choose,
    make_sync,
    trained_policy,
)

from agent_lightning.runtime.edge import RolloutDecider

ROLLOUT = {"id": "ro-1", "kind": "canary", "status": "running", "baseline_version": 1,
           "candidate_version": 2, "percent": 50.0, "salt": "s1", "segment": None}  # fmt: skip


@pytest.fixture(scope="module")
def artifacts() -> dict[int, bytes]:
    return {1: trained_policy(1, "CreateTicket"), 2: trained_policy(2, "Escalate")}


@pytest.fixture
def publisher(signing_key, artifacts) -> Iterator[StubPublisher]:
    stub = StubPublisher(signing_key)
    stub.publish(1, artifacts[1])
    stub.publish(2, artifacts[2])
    stub.set_manifest(1, ROLLOUT)
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def signing_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def _corrupt(path) -> None:
    document = json.loads(path.read_bytes())
    document["manifest"]["notes"] = "bit rot"
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_candidate_bundle_damaged_on_disk_is_downloaded_again(
    publisher, signing_key, tmp_path, damage
) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    assert sync.sync_once() == "updated" and sync.versions_served() == [1, 2]
    path = tmp_path / "bundles" / POLICY / "2.json"
    _corrupt(path) if damage == "corrupt" else path.unlink()

    # A restart with the server up and the manifest unchanged.
    restarted = make_sync(publisher, signing_key, tmp_path)
    assert restarted.versions_served() == [1]  # the damaged candidate cannot serve from disk
    assert restarted.sync_once() == "updated"
    assert restarted.versions_served() == [1, 2]
    assert publisher.hits["bundle-2"] == 2  # fetched again, and verified
    assert path.read_bytes() == publisher.bundles[2]
    assert restarted.status.last_error is None
    # Both arms serve again: the candidate gets its share of traffic from this runtime.
    arms = {choose(RolloutDecider(restarted), user_id=f"u{i}").arm for i in range(40)}
    assert arms == {"baseline", "candidate"}
    # And the next polls are cheap again.
    assert restarted.sync_once() == "not_modified"
    assert publisher.hits["bundle-2"] == 2


def test_a_repeated_server_error_is_logged_once_and_cleared_by_a_good_sync(
    publisher, signing_key, tmp_path, caplog
) -> None:
    calls = {"n": 0}

    # The real server's error body: the same error, a new request_id on every answer.
    @publisher.app.middleware("http")
    async def not_found(request: Request, call_next):
        if request.url.path == "/v1/runtime/manifest" and publisher.manifest is None:
            calls["n"] += 1
            body = {"error": {"code": "not_found", "message": f"policy {POLICY!r} not found"},
                    "request_id": f"req-{calls['n']}"}  # fmt: skip
            return JSONResponse(body, status_code=404)
        return await call_next(request)

    publisher.manifest = None
    sync = make_sync(publisher, signing_key, tmp_path)
    with caplog.at_level(logging.WARNING, logger="agent_lightning.runtime.edge"):
        outcomes = [sync.sync_once() for _ in range(4)]
    assert outcomes == ["error"] * 4 and calls["n"] == 4
    warnings = [r.getMessage() for r in caplog.records if "HTTP 404" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "HTTP 404 not_found: policy 'support-ticket' not found" in warnings[0]
    assert "req-" not in warnings[0]
    assert sync.snapshot()["last_error"].startswith("GET /v1/runtime/manifest: HTTP 404")

    # The policy appears on the server: the error is gone from the status.
    publisher.set_manifest(1)
    assert sync.sync_once() == "updated"
    assert sync.snapshot()["last_error"] is None
