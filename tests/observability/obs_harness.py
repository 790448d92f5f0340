"""The real server with observability installed, plus loopback helpers: uvicorn, a webhook receiver.

The app is the server's own `create_app` over a state that `install_observability` prepared,
exactly as the wiring does it; tests reach it in-process (TestClient) or over a socket (uvicorn).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent_lightning.config import Settings
from agent_lightning.observability import (
    Observability,
    ObservabilitySettings,
    install_observability,
    instrument_app,
)
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_client
from agent_lightning.server.app import create_app
from agent_lightning.server.state import ServerState, build_state

JWT_SECRET = "observability-test-signing-key-0123456789abcdef"


class FakeClock:
    """A settable UTC clock (starts at the real time so rows stamped by the store line up)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class Ticker:
    """A settable monotonic clock for caches."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@dataclass
class ObsApi:
    app: Any
    state: ServerState
    obs: Observability
    client: TestClient
    _tokens: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    @property
    def store(self) -> Any:
        return self.state.store

    def token(self, app_id: str = "acme", roles: tuple[str, ...] = ("AgentAdmin",)) -> str:
        key = (app_id, roles)
        if key not in self._tokens:
            new = create_client(
                self.store, AuditLog(self.store), app_id, list(roles), Actor("test")
            )
            issued = self.state.token_issuer.issue(new.client_id, app_id, list(roles))
            self._tokens[key] = issued.access_token
        return self._tokens[key]

    def auth(self, app_id: str = "acme", roles: tuple[str, ...] = ("AgentAdmin",)) -> dict:
        return {"Authorization": f"Bearer {self.token(app_id, roles)}"}


def build_api(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    settings: ObservabilitySettings | None = None,
    max_body_bytes: int = 1024 * 1024,
    **options: Any,
) -> ObsApi:
    server_settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url or f"sqlite:///{tmp_path / 'agl.db'}",
        jwt_secret=JWT_SECRET,
        token_burst=1000,
        token_rate=1000.0,
        max_body_bytes=max_body_bytes,
    )
    state = build_state(server_settings)
    obs = install_observability(state, settings or ObservabilitySettings(), **options)
    app = create_app(server_settings, state=state, start_background=False)
    instrument_app(app, state)
    return ObsApi(app, state, obs, TestClient(app, base_url="http://testserver"))


@pytest.fixture(name="obs_api")
def obs_api_fixture(tmp_path: Path) -> Iterator[ObsApi]:
    """The server with observability; import `obs_api_fixture` to use `obs_api` in a module."""
    api = build_api(tmp_path)
    yield api
    api.client.close()
    api.obs.stop()
    api.store.close()


class ServerThread:
    """uvicorn on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: Any, lifespan: str = "off") -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.005)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on loopback that records POSTs and answers from a script."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.received: list[Received] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        self._event = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                with receiver._event:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._event.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        with self._event:
            self._event.wait_for(lambda: len(self.received) >= count, timeout)
        return list(self.received)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the Prometheus text format (None if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None
