"""PolicySync and RolloutDecider against a publisher served over real HTTP on loopback.

The distribution routes (manifest with ETag, bundles, keys, report, SSE stream) are served here
by `StubPublisher`, a small FastAPI app written to the contract in docs/runtime-and-publisher.md,
because the real server routes are built in parallel; the bundles it serves are real, signed
with `publisher.bundle.sign_bundle`, and hold real learned policies. `test_offline.py` runs the
runtime against the real server process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from agent_lightning import learning
from agent_lightning.publisher import assignment
from agent_lightning.publisher.bundle import sign_bundle
from agent_lightning.runtime.edge import (
    KbSnapshot,
    PolicySync,
    RolloutDecider,
    ServerSession,
    kb_export_fetcher,
)

POLICY = "support-ticket"
INTENTS = [
    learning.Action("CreateTicket", "open a ticket for a problem: my printer is broken"),
    learning.Action("CheckStatus", "status of an existing ticket: where is my ticket"),
    learning.Action("Escalate", "talk to a human agent"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_policy(version: int, favourite: str) -> bytes:
    """A learned policy that has been taught to prefer `favourite` for every text."""
    # Hashing features: these tests are about distributing and serving versions, not about
    # features (hybrid, the default, serves end to end in test_offline.py and e2e/).
    policy = learning.make_policy({"featurizer": "hashing", "seed": version})
    policy.version = version
    examples = [
        learning.LoggedDecision(
            context={"text": text},
            actions=INTENTS,
            action_id=favourite,
            propensity=1 / 3,
            reward=1.0,
        )
        for text in ("my printer is broken", "where is my ticket", "help me please") * 20
    ]
    return policy.learn(examples).to_bytes()


class StubPublisher:
    """The contract's distribution routes over real HTTP (uvicorn in a thread)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.token = "stub-token"
        self.manifest: dict[str, Any] | None = None
        self.bundles: dict[int, bytes] = {}
        self.reports: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}
        self.kb_export: Any = {"articles": []}
        self.app = self._build()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def publish(self, version: int, artifact: bytes | None) -> bytes:
        data = sign_bundle(
            {"policy": POLICY, "version": version, "decision_point": "intent"}, artifact, self.key
        )
        self.bundles[version] = data
        return data

    def set_manifest(self, live: int | None, rollout: dict | None = None) -> None:
        versions = sorted(
            {v for v in (live, *(rollout or {}).get("versions", [])) if v is not None}
        )
        if rollout:
            rollout = {k: v for k, v in rollout.items() if k != "versions"}
            arms = {rollout["baseline_version"], rollout["candidate_version"]}
            versions = sorted({*versions, *arms})
        self.manifest = {
            "policy": POLICY,
            "decision_point": "intent",
            "live_version": live,
            "rollout": rollout,
            "versions": versions,
        }

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/oauth/token")
        async def token() -> dict:
            self._hit("token")
            return {"access_token": self.token, "token_type": "bearer", "expires_in": 900}

        @app.get("/v1/runtime/manifest")
        async def manifest(request: Request, policy: str) -> Response:
            if not self._authorized(request):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if self.manifest is None or policy != POLICY:
                return JSONResponse({"error": "not_found"}, status_code=404)
            body = json.dumps(self.manifest, sort_keys=True)
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
            if request.headers.get("if-none-match") == etag:
                self._hit("304")
                return Response(status_code=304, headers={"ETag": etag})
            self._hit("200")
            return Response(body, media_type="application/json", headers={"ETag": etag})

        @app.get("/v1/policies/{name}/versions/{version}/bundle")
        async def bundle(request: Request, name: str, version: int) -> Response:
            self._hit(f"bundle-{version}")
            if not self._authorized(request) or version not in self.bundles:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return Response(self.bundles[version], media_type="application/json")

        @app.post("/v1/runtime/report")
        async def report(request: Request) -> dict:
            self.reports.append(await request.json())
            return {"ok": True}

        @app.get("/v1/runtime/stream")
        async def stream(request: Request, policy: str) -> StreamingResponse:
            async def events():
                last = None
                ticks = 0
                while not await request.is_disconnected():
                    if self.manifest != last:
                        last = json.loads(json.dumps(self.manifest))
                        yield f"event: manifest\ndata: {json.dumps(last)}\n\n"
                    elif ticks % 5 == 0:
                        # A keep-alive comment, as the server sends (every 15 s there). Often
                        # here: PolicySync.stop() lets its stream thread end at the next line,
                        # and without one it waits out its 2 s join in every streaming test.
                        yield ": keep-alive\n\n"
                    ticks += 1
                    await asyncio.sleep(0.02)

            return StreamingResponse(events(), media_type="text/event-stream")

        @app.get("/kb/export")
        async def kb_export(request: Request) -> Response:
            if request.headers.get("authorization") != "Bearer kb-token":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            return JSONResponse(self.kb_export)

        return app

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stub publisher did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def artifacts() -> dict[int, bytes]:
    return {1: trained_policy(1, "CreateTicket"), 2: trained_policy(2, "Escalate")}


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def publisher(signing_key, artifacts) -> Iterator[StubPublisher]:
    stub = StubPublisher(signing_key)
    stub.publish(1, artifacts[1])
    stub.publish(2, artifacts[2])
    stub.set_manifest(1)
    stub.start()
    yield stub
    stub.stop()


def make_sync(stub_or_url, key, state_dir: Path, **kwargs) -> PolicySync:
    url = stub_or_url.url if isinstance(stub_or_url, StubPublisher) else stub_or_url
    session = ServerSession(url, "cl_test", "secret", timeout=2.0)
    return PolicySync(state_dir, POLICY, [key.public_key()], session=session, **kwargs)


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def choose(decider: RolloutDecider, text: str = "my printer is broken", **unit):
    unit.setdefault("user_id", None)
    unit.setdefault("session_id", None)
    attributes = unit.pop("attributes", {})
    return decider.choose(text, INTENTS, attributes=attributes, **unit)


# -- sync ----------------------------------------------------------------------------------------


def test_sync_verifies_persists_and_then_uses_the_etag(publisher, signing_key, tmp_path) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    assert sync.state.manifest is None
    assert sync.sync_once() == "updated"
    assert sync.state.live_version == 1 and set(sync.state.policies) == {1}
    assert (tmp_path / "bundles" / POLICY / "1.json").read_bytes() == publisher.bundles[1]
    stored = json.loads((tmp_path / "manifest.json").read_text())
    assert stored["manifest"]["live_version"] == 1 and stored["etag"]
    # Unchanged manifest: 304 through If-None-Match, and no bundle downloaded again.
    assert sync.sync_once() == "not_modified"
    assert sync.sync_once() == "not_modified"
    assert publisher.hits["304"] == 2 and publisher.hits["bundle-1"] == 1
    # The runtime reported what it runs.
    assert publisher.reports[-1]["versions"] == [1]
    assert publisher.reports[-1]["policy"] == POLICY
    assert publisher.reports[-1]["runtime_id"] == sync.runtime_id
    # A new live version is pulled.
    publisher.set_manifest(2)
    assert sync.sync_once() == "updated"
    assert sync.state.live_version == 2
    decider = RolloutDecider(sync)
    assert choose(decider).policy_version == 2


def test_tampered_bundle_is_refused_and_last_good_keeps_serving(
    publisher, signing_key, artifacts, tmp_path
) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    assert sync.sync_once() == "updated"
    document = json.loads(publisher.bundles[2])
    document["manifest"]["notes"] = "promoted by mallory"  # one changed field
    publisher.bundles[2] = json.dumps(document).encode()
    publisher.set_manifest(2)
    assert sync.sync_once() == "refused"
    assert sync.state.live_version == 1
    assert "bad signature" in sync.status.refused[-2]
    assert "still serving v1" in sync.status.last_error
    assert not (tmp_path / "bundles" / POLICY / "2.json").exists()
    assert choose(RolloutDecider(sync)).policy_version == 1
    # A bundle signed by a key we do not trust is refused too.
    other = StubPublisher(Ed25519PrivateKey.generate())
    publisher.bundles[2] = other.publish(2, artifacts[2])
    assert sync.sync_once() == "refused"
    assert sync.state.live_version == 1
    # Once the real bundle is served again, the update goes through.
    publisher.publish(2, artifacts[2])
    assert sync.sync_once() == "updated" and sync.state.live_version == 2


def test_a_bundle_tampered_on_disk_is_refused_at_start(publisher, signing_key, tmp_path) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    sync.sync_once()
    path = tmp_path / "bundles" / POLICY / "1.json"
    document = json.loads(path.read_bytes())
    document["artifact"] = document["artifact"][:-8] + "AAAAAAA="
    path.write_text(json.dumps(document))
    restarted = PolicySync(tmp_path, POLICY, [signing_key.public_key()])  # no server
    assert restarted.state.policies == {}
    assert any("1.json" in r for r in restarted.status.refused)
    # With a zero-shot fallback the runtime still answers, on no learned version.
    zero_shot = RolloutDecider(restarted, fallback=RolloutDecider(sync))
    assert choose(zero_shot).arm is None


def test_works_offline_from_disk(publisher, signing_key, tmp_path) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    publisher.set_manifest(
        1,
        {"id": "ro-1", "kind": "canary", "status": "running", "baseline_version": 1,
         "candidate_version": 2, "percent": 50.0, "salt": "s1", "segment": None},
    )  # fmt: skip
    assert sync.sync_once() == "updated"
    publisher.stop()
    # A fresh process on the same state dir, with the server gone.
    dead = f"http://127.0.0.1:{free_port()}"
    offline = make_sync(dead, signing_key, tmp_path)
    assert offline.state.live_version == 1 and set(offline.state.policies) == {1, 2}
    assert offline.sync_once() == "unreachable"
    assert offline.status.server_reachable is False
    decider = RolloutDecider(offline)
    versions = {choose(decider, user_id=f"u{i}").policy_version for i in range(40)}
    assert versions == {1, 2}  # the rollout keeps running offline, from disk
    assert offline.state.live_version == 1


def test_conflicts_are_resolved_by_version(publisher, signing_key, tmp_path) -> None:
    sync = make_sync(publisher, signing_key, tmp_path)
    publisher.set_manifest(2)
    assert sync.sync_once() == "updated"
    # A wiped or restored server without a live version does not erase what we serve.
    publisher.set_manifest(None)
    assert sync.sync_once() == "refused"
    assert sync.state.live_version == 2 and "conflict resolved by version" in sync.status.last_error
    # A rollback on the server (live goes 2 -> 1) is a real decision and is followed; the
    # v2 bundle stays on disk, so nothing is lost.
    publisher.set_manifest(1)
    assert sync.sync_once() == "updated" and sync.state.live_version == 1
    assert (tmp_path / "bundles" / POLICY / "2.json").exists()


def test_version_switch_mid_traffic_drops_no_request(publisher, signing_key, tmp_path) -> None:
    sync = make_sync(publisher, signing_key, tmp_path, poll_seconds=0.05, stream=True)
    sync.sync_once()
    decider = RolloutDecider(sync)
    seen: list[int] = []
    started: list[tuple[float, int]] = []  # (when the request began, the version that served it)
    errors: list[BaseException] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                began = time.monotonic()
                c = choose(decider, f"message {i}", session_id=f"w{worker}-{i}")
                assert c.probabilities and abs(sum(c.probabilities.values()) - 1) < 1e-6
                seen.append(c.policy_version)
                started.append((began, c.policy_version))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    sync.start()  # polling plus the SSE stream in the background
    wait_for(lambda: len(seen) > 50, what="traffic on v1")
    publisher.set_manifest(2)
    wait_for(lambda: sync.state.live_version == 2, what="the switch to v2")
    switched = time.monotonic()
    mark = len(seen)
    wait_for(lambda: len(seen) > mark + 50, what="traffic on v2")
    stop.set()
    for t in threads:
        t.join()
    sync.stop()
    assert errors == []
    assert seen[0] == 1 and seen[-1] == 2
    # Every request that began after the switch was served by v2 (one in flight may finish on v1).
    assert {version for began, version in started if began > switched} == {2}


def test_the_sse_stream_pushes_a_new_manifest(publisher, signing_key, tmp_path) -> None:
    # Poll rarely: only the stream can make the switch fast.
    sync = make_sync(publisher, signing_key, tmp_path, poll_seconds=60, stream=True)
    sync.start()
    wait_for(lambda: sync.state.live_version == 1 and sync.status.streaming, what="streaming")
    publisher.set_manifest(2)
    wait_for(lambda: sync.state.live_version == 2, timeout=5, what="a push")
    sync.stop()


# -- sticky rollout assignment -------------------------------------------------------------------


def test_rollout_assignment_is_sticky_and_matches_the_publisher(
    publisher, signing_key, tmp_path
) -> None:
    rollout = {"id": "ro-7", "kind": "canary", "status": "running", "baseline_version": 1,
               "candidate_version": 2, "percent": 25.0, "salt": "salt-7",
               "segment": {"attribute": "plan", "values": ["pro"]}}  # fmt: skip
    publisher.set_manifest(1, rollout)
    sync = make_sync(publisher, signing_key, tmp_path)
    sync.sync_once()
    decider = RolloutDecider(sync)
    pro = {"plan": "pro"}
    arms = {}
    for i in range(200):
        first = choose(decider, user_id=f"user-{i}", attributes=pro)
        again = {choose(decider, f"text {j}", user_id=f"user-{i}", attributes=pro).arm
                 for j in range(3)}  # fmt: skip
        assert again == {first.arm}  # sticky
        expected = assignment.in_candidate("salt-7", f"user:user-{i}", 25.0)
        assert first.arm == ("candidate" if expected else "baseline")
        assert first.policy_version == (2 if expected else 1)
        assert first.rollout_id == "ro-7"
        arms[i] = first.arm
    share = sum(a == "candidate" for a in arms.values()) / len(arms)
    assert 0.15 < share < 0.35
    # Outside the segment: always the baseline.
    assert {choose(decider, user_id=f"user-{i}", attributes={"plan": "free"}).arm
            for i in range(50)} == {"baseline"}  # fmt: skip
    # A session without a user is sticky on the session.
    s = {choose(decider, session_id="sess-1", attributes=pro).arm for _ in range(5)}
    assert len(s) == 1
    # Raising the share only moves units into the candidate.
    publisher.set_manifest(1, {**rollout, "percent": 60.0})
    assert sync.sync_once() == "updated"
    for i, arm in arms.items():
        now = choose(decider, user_id=f"user-{i}", attributes=pro).arm
        if arm == "candidate":
            assert now == "candidate"


# -- the knowledge-base snapshot -----------------------------------------------------------------


def test_kb_snapshot_is_saved_on_sync_and_answers_offline(
    publisher, signing_key, tmp_path, monkeypatch
) -> None:
    publisher.kb_export = {
        "articles": [
            {"id": "kb-1", "title": "Reset your password", "body": "Use the reset link."},
            {"id": "kb-2", "title": "Printer troubleshooting", "body": "Turn the printer off."},
        ]
    }
    monkeypatch.setenv("KB_TOKEN", "kb-token")
    connectors = {
        "kb": {
            "base_url": publisher.url,
            "auth": {"type": "bearer", "token_env": "KB_TOKEN"},
            "endpoints": {"search": {"method": "GET", "path": "/kb/search"}},
        }
    }
    fetch = kb_export_fetcher(connectors)
    assert kb_export_fetcher({}) is None
    sync = make_sync(publisher, signing_key, tmp_path, kb_fetch=fetch)
    sync.sync_once()
    assert (tmp_path / "kb_snapshot.json").exists()
    publisher.stop()
    snapshot = KbSnapshot(tmp_path / "kb_snapshot.json")  # as a restarted runtime would
    hits = snapshot.search("my printer is broken", top_k=1)["results"]
    assert [h["id"] for h in hits] == ["kb-2"]
    assert snapshot.search("password", top_k=3)["results"][0]["id"] == "kb-1"
    assert snapshot.search("zebra")["results"] == []
    fetch.close()
