"""The `run` service: auth, validation, config errors, version switches under load, offline KB.

It runs the `support-ticket` template's policy against the reference services (real HTTP on
loopback) and, for policy distribution, the contract-shaped `StubPublisher` from test_edge.py
(signed bundles, real HTTP) while the real distribution routes are built in parallel.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from tests.runtime.test_edge import StubPublisher

from agent_lightning import learning
from agent_lightning.publisher.bundle import public_key_pem, sign_bundle
from agent_lightning.refservices.testing import RefServiceServer
from agent_lightning.runtime.config import RuntimeConfigError, load_runtime_config
from agent_lightning.runtime.outbox import Outbox
from agent_lightning.runtime.service import ServiceConfigError, create_runtime_app
from agent_lightning.runtime.spec import load_policy_spec

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
TOKEN = "runtime-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_project(root: Path, server_url: str, ref_url: str, key: Ed25519PrivateKey) -> Path:
    (root / "policies").mkdir(parents=True)
    shutil.copy(TEMPLATE / "policies/support-ticket.yaml", root / "policies/support-ticket.yaml")
    (root / "keys").mkdir()
    (root / "keys/publisher.pem").write_text(public_key_pem(key.public_key()))
    connectors = "\n".join(
        f"  {name}:\n    base_url: {ref_url}\n    auth: {{type: bearer, token_env: REF_TOKEN}}\n"
        f"    timeout_ms: 500\n    retries: 0\n    endpoints:\n{endpoints}"
        for name, endpoints in (
            ("kb", "      search: {method: GET, path: /kb/search}\n"),
            (
                "tickets",
                "      create: {method: POST, path: /tickets}\n"
                '      get: {method: GET, path: "/tickets/{id}"}\n',
            ),
        )
    )
    (root / "agent.yaml").write_text(
        "name: support-desk\n"
        "policy: policies/support-ticket.yaml\n"
        f"server: {{url: {server_url}, client_id_env: CID, client_secret_env: CSECRET}}\n"
        "trusted_keys: [keys/publisher.pem]\n"
        "state_dir: state\n"
        "token_env: RUNTIME_TOKEN\n"
        "sync: {poll_seconds: 0.05, stream: false}\n"
        f"connectors:\n{connectors}\n"
    )
    return root / "agent.yaml"


ENV = {"RUNTIME_TOKEN": TOKEN, "CID": "cl_x", "CSECRET": "s", "REF_TOKEN": "ref-token"}


def trained(spec, version: int) -> bytes:
    policy = learning.make_policy(dict(spec.learner))
    policy.version = version
    return policy.to_bytes()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ref(tmp_path: Path) -> Iterator[RefServiceServer]:
    server = RefServiceServer(tmp_path / "ref.db", token="ref-token")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def publisher(key) -> Iterator[StubPublisher]:
    stub = StubPublisher(key)
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def config_path(tmp_path, publisher, ref, key) -> Path:
    return write_project(tmp_path / "project", publisher.url, ref.url, key)


def publish_versions(publisher: StubPublisher, config_path: Path, *versions: int) -> None:
    spec = load_policy_spec(config_path.parent / "policies/support-ticket.yaml")
    for v in versions:
        data = trained(spec, v)
        publisher.bundles[v] = sign_bundle({"policy": spec.name, "version": v}, data, publisher.key)


# -- start-up and config ---------------------------------------------------------------------------


def test_refuses_to_start_without_a_token(config_path) -> None:
    config = load_runtime_config(config_path)
    with pytest.raises(ServiceConfigError, match="set RUNTIME_TOKEN"):
        create_runtime_app(config, env={k: v for k, v in ENV.items() if k != "RUNTIME_TOKEN"})
    app = create_runtime_app(
        config,
        env={k: v for k, v in ENV.items() if k != "RUNTIME_TOKEN"},
        insecure_no_auth=True,
        start_background=False,
    )
    with TestClient(app) as client:
        assert client.post("/v1/messages", json={"text": "hello"}).status_code == 200


def test_config_errors_name_the_line_and_paths_are_relative_to_the_file(tmp_path) -> None:
    bad = tmp_path / "deploy" / "agent.yaml"
    bad.parent.mkdir()
    bad.write_text("name: a\npolicy: p.yaml\nsync:\n  poll_secs: 2\n")
    with pytest.raises(RuntimeConfigError, match=r"agent.yaml:4: sync.poll_secs: Extra inputs"):
        load_runtime_config(bad)
    bad.write_text("name: a\npolicy: p.yaml\nconnectors:\n  kb: {auth: {type: bearer, token: x}}\n")
    with pytest.raises(RuntimeConfigError, match=r"connectors.kb.auth.token holds a secret"):
        load_runtime_config(bad)
    bad.write_text("name: a\npolicy: policies/p.yaml\ntrusted_keys: [k.pem]\n")
    config = load_runtime_config(bad)
    assert config.policy_path == (tmp_path / "deploy/policies/p.yaml").resolve()
    assert config.state_path == (tmp_path / "deploy/.agl-runtime").resolve()
    with pytest.raises(RuntimeConfigError, match="k.pem"):
        config.load_trusted_keys()


# -- auth and validation ---------------------------------------------------------------------------


@pytest.fixture
def client(config_path) -> Iterator[TestClient]:
    app = create_runtime_app(load_runtime_config(config_path), env=ENV, start_background=False)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def refusing_client(tmp_path_factory) -> Iterator[TestClient]:
    """One runtime, as `client` builds it, for the cases whose every request is refused.

    They change nothing (each case checks that nothing was recorded), so they share it rather
    than each starting and stopping a runtime and its two loopback servers (about 0.7 s each).
    """
    key = Ed25519PrivateKey.generate()
    tmp = tmp_path_factory.mktemp("refusing")
    stub = StubPublisher(key)
    stub.start()
    try:
        with RefServiceServer(tmp / "ref.db", token="ref-token") as ref:
            config = load_runtime_config(write_project(tmp / "project", stub.url, ref.url, key))
            app = create_runtime_app(config, env=ENV, start_background=False)
            with TestClient(app) as c:
                yield c
    finally:
        stub.stop()


def test_every_route_but_health_needs_the_token(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    for method, path in (("POST", "/v1/messages"), ("POST", "/v1/feedback"), ("GET", "/v1/status")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.request(method, path, headers=headers, json={"text": "hi"})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/v1/status", headers=AUTH).status_code == 200


def test_messages_answer_and_are_recorded_durably(client, config_path) -> None:
    response = client.post(
        "/v1/messages", headers=AUTH, json={"text": "hello", "session_id": "s1", "user_id": "u1"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision_id"] and body["text"] and body["intent"]
    assert body["policy_version"] is None  # nothing published yet: zero-shot from the YAML
    feedback = client.post(
        "/v1/feedback", headers=AUTH, json={"decision_id": body["decision_id"], "resolved": True}
    )
    assert feedback.status_code == 202, feedback.text
    status = client.get("/v1/status", headers=AUTH).json()
    assert status["policy"] == "support-ticket" and status["pending"] == 2
    # The decision and the reward are in the on-disk outbox (the stub server has no ingestion).
    client.app.state.edge.outbox.close(0)
    reopened = Outbox(config_path.parent / "state/outbox.db")
    kinds = [r.get("action_id") and "decision" or "reward" for r in reopened.pending_records()]
    assert kinds == ["decision", "reward"]
    reopened.close(0)


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/v1/messages", {"text": "hi", "colour": "red"}, "colour: Extra inputs"),
        ("/v1/messages", {"text": ""}, "text: String should have at least 1 character"),
        ("/v1/messages", {"text": "x" * 8001}, "text: String should have at most 8000"),
        ("/v1/messages", {"text": "   "}, "must not be blank"),
        ("/v1/messages", {"text": "hi", "attributes": {"a": "x" * 5000}}, "attributes: Value"),
        ("/v1/messages", {"text": "hi", "user_id": "u" * 201}, "user_id: String should have"),
        ("/v1/messages", {"text": 5}, "text: Input should be a valid string"),
        ("/v1/feedback", {"decision_id": "d1"}, "give resolved, value or correct_intent"),
        ("/v1/feedback", {"decision_id": "d 1", "resolved": True}, "decision_id: String"),
        ("/v1/feedback", {"decision_id": "d1", "correct_intent": "Nope"}, "not an intent"),
    ],
)
def test_bad_input_is_a_clear_4xx(refusing_client, path, body, fragment) -> None:
    response = refusing_client.post(path, headers=AUTH, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert fragment in response.json()["error"]["message"]
    # Refused before anything was recorded (which is also what lets the cases share a runtime).
    assert refusing_client.get("/v1/status", headers=AUTH).json()["pending"] == 0


# -- serving while the policy changes -----------------------------------------------------------


class RuntimeServer:
    """The run service on a real loopback port (uvicorn in a thread, lifespan on)."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RuntimeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the runtime did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_switches_versions_under_load_without_a_failed_request(config_path, publisher) -> None:
    publish_versions(publisher, config_path, 1, 2)
    publisher.manifest = {"policy": "support-ticket", "decision_point": "intent",
                          "live_version": 1, "rollout": None, "versions": [1]}  # fmt: skip
    app = create_runtime_app(load_runtime_config(config_path), env=ENV)
    edge = app.state.edge
    results: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
            i = 0
            while not stop.is_set():
                text = f"my monitor number {i} is broken"
                r = http.post("/v1/messages", json={"text": text, "session_id": f"{worker}-{i}"})
                results.append((r.status_code, r.json().get("policy_version")))
                i += 1

    with RuntimeServer(app) as server:
        wait_for(lambda: edge.sync.state.live_version == 1, what="v1 to be pulled")
        threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(results) > 20, what="traffic on v1")
        publisher.manifest = {**publisher.manifest, "live_version": 2, "versions": [2]}
        wait_for(lambda: edge.sync.state.live_version == 2, what="the switch")
        mark = len(results)
        wait_for(lambda: len(results) > mark + 20, what="traffic on v2")
        stop.set()
        for t in threads:
            t.join()
        status = httpx.get(f"{server.url}/v1/status", headers=AUTH).json()
    assert {code for code, _ in results} == {200}
    versions = [v for _, v in results if v is not None]
    assert versions[0] == 1 and versions[-1] == 2
    assert status["live_version"] == 2 and status["versions"] == [2]
    wait_for(lambda: publisher.reports[-1]["versions"] == [2], what="the report of v2")


def test_kb_answers_from_the_snapshot_when_the_service_is_down(config_path, ref) -> None:
    # The reference service's /kb/export is saved on the first sync...
    app = create_runtime_app(load_runtime_config(config_path), env=ENV)
    edge = app.state.edge
    with TestClient(app) as client:
        wait_for(lambda: edge.sync.kb.available, what="the KB snapshot")
        ref.stop()  # ...and the knowledge base goes away.
        response = client.post(
            "/v1/messages", headers=AUTH, json={"text": "how do I reset my password"}
        )
    body = response.json()
    assert response.status_code == 200 and body["intent"] == "KnowledgeQuestion", body
    assert body["error"] is None and not body["escalated"], body
    fetched = [a for a in body["actions"] if a["type"] == "fetch_kb"]
    assert fetched and fetched[0]["ok"] and fetched[0]["data"]["count"] >= 1
    assert edge.registry is not None and (config_path.parent / "state/kb_snapshot.json").exists()
