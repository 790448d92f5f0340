"""The manifest stream over a real socket: uvicorn on loopback, an httpx client holding the SSE."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pub_seed import APP, POLICY, seed_policy
from pub_seed import sse_events as _events

from agent_lightning.config import Settings
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_client
from agent_lightning.server.app import create_app
from agent_lightning.store import Store


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    url = f"sqlite:///{tmp_path / 'agl.db'}"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
    )
    store = Store(url)
    seed_policy(store)
    app = create_app(settings, store=store)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


def _token(base: str, store: Store, roles: list[str]) -> str:
    made = create_client(store, AuditLog(store), APP, roles, Actor("test"))
    response = httpx.post(
        f"{base}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": made.client_id,
            "client_secret": made.secret,
        },
    )
    return response.json()["access_token"]


def test_the_stream_pushes_the_manifest_when_a_rollout_starts(server) -> None:
    base, store = server
    agent = {"Authorization": f"Bearer {_token(base, store, ['Agent'])}"}
    admin = {"Authorization": f"Bearer {_token(base, store, ['AgentAdmin'])}"}
    timeout = httpx.Timeout(10.0, read=10.0)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        with client.stream("GET", f"/v1/runtime/stream?policy={POLICY}", headers=agent) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream)
            kind, data = next(events)
            assert kind == "manifest" and json.loads(data)["rollout"] is None
            started = client.post(
                "/v1/rollouts",
                json={"policy": POLICY, "candidate_version": 2, "steps": [10, 100]},
                headers=admin,
            )
            assert started.status_code == 201, started.text
            began = time.monotonic()
            kind, data = next(events)
            pushed = json.loads(data)
            assert kind == "manifest" and time.monotonic() - began < 5
            assert pushed["rollout"]["id"] == started.json()["id"]
            assert pushed["rollout"]["percent"] == 10.0 and pushed["versions"] == [1, 2]
        denied = client.get(f"/v1/runtime/stream?policy={POLICY}", headers={})
        assert denied.status_code == 401
        unknown = client.get("/v1/runtime/stream?policy=nope", headers=agent)
        assert unknown.status_code == 404
