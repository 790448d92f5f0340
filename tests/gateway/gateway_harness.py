"""The gateway for real: fake upstreams on loopback, the full server under uvicorn, identities.

One harness per test module (starting servers is the slow part). Tests reach the gateway over
real HTTP with unmodified client libraries, then read back the spans the gateway stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_lightning.config import Settings
from agent_lightning.gateway import Gateway, list_spans, mount_gateway, parse_runtime_config
from agent_lightning.gateway.testing import FakeUpstream, ThreadedServer
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_api_key, create_client
from agent_lightning.server.app import create_app
from agent_lightning.server.state import ServerState, build_state

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
AZURE_KEY = "azure-upstream-key-0123456789"
JWT_SECRET = "gateway-test-signing-key-0123456789abcdef0123456789"

RUNTIME_YAML = """\
runtimes:
  primary:
    kind: openai
    base_url: {primary}/v1
    api_key_env: AGL_TEST_UPSTREAM_KEY
    retries: 2
    backoff: 0.01
    timeout: 10
  backup:
    kind: vllm
    base_url: {backup}/v1
    model: backup-model
    retries: 0
  quick:
    kind: openai
    base_url: {primary}/v1
    api_key_env: AGL_TEST_UPSTREAM_KEY
    retries: 0
    read_timeout: 0.5
    timeout: 1
  azure:
    kind: azure_openai
    base_url: {primary}
    api_version: "2024-10-21"
    deployment: my-deployment
    api_key_env: AGL_TEST_AZURE_KEY
  dead:
    kind: openai
    base_url: http://127.0.0.1:{dead_port}/v1
    retries: 1
    backoff: 0.01
    connect_timeout: 1
routes:
  - model: support-bot
    runtime: primary
    upstream_model: gpt-4o-mini
    policy: support-prompts
  - model: with-fallback
    runtime: dead
    fallback: backup
  - model: dead-model
    runtime: dead
  - model: hang-model
    runtime: quick
  - model: azure-model
    runtime: azure
  - model: "gpt-*"
    runtime: primary
  - model: "text-*"
    runtime: primary
"""


@dataclass
class Harness:
    state: ServerState
    gateway: Gateway
    server: ThreadedServer
    upstream: FakeUpstream
    backup: FakeUpstream
    token: str

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def new_token(self, app_id: str = "acme", roles: tuple[str, ...] = ("Agent",)) -> str:
        new = create_client(self.state.store, AuditLog(self.state.store), app_id, list(roles),
                            Actor("test"))  # fmt: skip
        return self.state.token_issuer.issue(new.client_id, app_id, list(roles)).access_token

    def new_client(self, app_id: str = "acme", roles: tuple[str, ...] = ("Agent",)) -> Any:
        return create_client(self.state.store, AuditLog(self.state.store), app_id, list(roles),
                             Actor("test"))  # fmt: skip

    def new_api_key(self, app_id: str = "acme", roles: tuple[str, ...] = ("Developer",)) -> str:
        self.state.store.ensure_app(app_id)
        key = create_api_key(self.state.store, AuditLog(self.state.store), app_id, "dev@test",
                             list(roles), Actor("test"))  # fmt: skip
        return key.key

    def spans(
        self, app_id: str = "acme", session_id: str | None = None, at_least: int = 0
    ) -> list[Any]:
        """Stored spans; with `at_least`, wait up to 10 s for that many (see `span`)."""
        deadline = time.monotonic() + 10
        while True:
            assert self.gateway.writer.flush(10), self.gateway.writer.stats()
            found = list(list_spans(self.state.store, app_id, session_id=session_id))
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def span(self, span_id: str, app_id: str = "acme") -> Any:
        # The gateway hands a span to the writer after the last byte is sent, so a client that
        # has already seen the end (or an error) may ask a moment before it is queued: poll.
        deadline = time.monotonic() + 10
        while True:
            found = [s for s in self.spans(app_id) if s.id == span_id]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert found, f"span {span_id} not stored"
        return found[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_harness(tmp: Path) -> Iterator[Harness]:
    os.environ["AGL_TEST_UPSTREAM_KEY"] = UPSTREAM_KEY
    os.environ["AGL_TEST_AZURE_KEY"] = AZURE_KEY
    upstream = FakeUpstream().start()
    backup = FakeUpstream().start()
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'agl.db'}",
        jwt_secret=JWT_SECRET,
        token_burst=1000,
        token_rate=1000.0,
    )
    state = build_state(settings)
    config = parse_runtime_config(
        RUNTIME_YAML.format(primary=upstream.url, backup=backup.url, dead_port=_free_port())
    )
    app = create_app(settings, state=state)
    gateway = mount_gateway(app, state, config)
    server = ThreadedServer(app).start()
    new = create_client(state.store, AuditLog(state.store), "acme", ["Agent"], Actor("test"))
    token = state.token_issuer.issue(new.client_id, "acme", ["Agent"]).access_token
    harness = Harness(state, gateway, server, upstream, backup, token)
    try:
        yield harness
    finally:
        server.stop()
        upstream.stop()
        backup.stop()
        state.store.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    yield from start_harness(tmp_path_factory.mktemp("gateway"))


@pytest.fixture
def gw(harness: Harness) -> Harness:
    """The module's harness with the upstreams' scripted failures and records cleared."""
    harness.upstream.clear()
    harness.backup.clear()
    return harness
