"""Buffered mode: writes queue locally and a background flusher sends them in batches."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent_lightning.sdk import (
    AgentLightningClient,
    AsyncAgentLightningClient,
    BufferFullError,
    RejectedRecord,
    SyncASGITransport,
)
from tests.conftest import Api
from tests.test_sdk import new_identity, start_server

SECRET = "buffer-secret-value"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = start_server(tmp_path_factory.mktemp("sdk-buffer"))
    yield server
    server.client.close()
    server.store.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def creds(api: Api, tenant: str, monkeypatch):
    return new_identity(api, tenant, ("Agent",), monkeypatch)


class Batches:
    """A MockTransport handler that accepts every batch (or plays scripted failures first)
    and remembers what arrived."""

    def __init__(self, *failures: httpx.Response | Exception) -> None:
        self.failures = list(failures)
        self.batches: list[tuple[str, list[dict]]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 900})
        with self.lock:
            if self.failures:
                failure = self.failures.pop(0)
                if isinstance(failure, Exception):
                    raise failure
                return failure
            records = json.loads(request.content)
            self.batches.append((request.url.path, records))
        accepted = [{"index": i, "id": r["id"], "status": "created"} for i, r in enumerate(records)]
        return httpx.Response(200, json={"accepted": accepted, "rejected": []})

    @property
    def records(self) -> list[dict]:
        with self.lock:
            return [r for _, batch in self.batches for r in batch]

    def client(self, **kwargs) -> AgentLightningClient:
        kwargs.setdefault("flush_interval", 60)
        return AgentLightningClient(
            "agl_buf",
            SECRET,
            transport=httpx.MockTransport(self),
            buffer=True,
            sleep=lambda s: None,
            **kwargs,
        )


def wait_until(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- against the real server -------------------------------------------------------------------


def test_writes_return_at_once_and_flush_stores_them(api, creds, tenant):
    with AgentLightningClient(
        creds.client_id, creds.secret, app=api.app, buffer=True, flush_interval=60
    ) as c:
        event_id = c.log_event("queued", session_id="s1")
        result = c.log_events([{"text": "a"}, {"text": "b"}])
        assert [a.status for a in result.accepted] == ["queued", "queued"]
        assert c.pending == 3
        assert api.store.count_records("events", tenant) == 0
        assert c.flush(timeout=5) is True
        assert c.pending == 0
        assert api.store.count_records("events", tenant) == 3
        assert api.store.get_record("events", tenant, event_id).session_id == "s1"


def test_close_flushes(api, creds, tenant):
    c = AgentLightningClient(
        creds.client_id, creds.secret, app=api.app, buffer=True, flush_interval=60
    )
    decision_id = c.log_decision("b", ["a", "b"], 0.5)
    c.reward(decision_id, 1.0)  # queued behind its decision: sent after it
    c.reward(session_id="s-close", value=0.5)
    c.close()
    assert api.store.count_records("decisions", tenant) == 1
    assert api.store.count_records("rewards", tenant) == 2


def test_flushes_on_its_own_every_interval(api, creds, tenant):
    with AgentLightningClient(
        creds.client_id, creds.secret, app=api.app, buffer=True, flush_interval=0.05
    ) as c:
        c.log_event("tick")
        assert wait_until(lambda: api.store.count_records("events", tenant) == 1)


def test_refused_records_go_to_on_rejected_without_content_in_logs(api, creds, tenant, caplog):
    refused: list[RejectedRecord] = []
    with AgentLightningClient(
        creds.client_id,
        creds.secret,
        app=api.app,
        buffer=True,
        flush_interval=60,
        on_rejected=refused.extend,
    ) as c:
        c.log_events([{"text": "fine"}, {"text": "private words", "confidence": 4}])
        c.reward("no-such-decision", 1.0)
        with caplog.at_level(logging.WARNING, logger="agent_lightning.sdk"):
            assert c.flush(timeout=5) is True
    assert sorted((r.kind, r.reason) for r in refused) == [
        ("events", "invalid"),
        ("rewards", "unknown_decision"),
    ]
    bad_event = next(r for r in refused if r.kind == "events")
    assert bad_event.record["text"] == "private words"
    assert "private words" not in caplog.text
    assert "1 events:invalid" in caplog.text
    assert api.store.count_records("events", tenant) == 1


@pytest.mark.anyio
async def test_async_buffered_flush_and_rejections(api, creds, tenant):
    refused: list[RejectedRecord] = []
    async with AsyncAgentLightningClient(
        creds.client_id,
        creds.secret,
        transport=httpx.ASGITransport(app=api.app),
        buffer=True,
        flush_interval=60,
        on_rejected=refused.extend,
    ) as c:
        await c.log_event("one")
        await c.log_events([{"text": "two"}, {"confidence": -1}])
        assert c.pending == 3
        assert await c.flush(timeout=5) is True
        assert api.store.count_records("events", tenant) == 2
        await c.log_event("three")
    assert api.store.count_records("events", tenant) == 3
    assert [(r.kind, r.reason) for r in refused] == [("events", "invalid")]


class Meanwhile(httpx.BaseTransport):
    """Passes requests to the app, and runs `hook` (once) as the first batch of `kind` leaves:
    the caller logging more while the flusher sends, made deterministic. Remembers the paths."""

    def __init__(self, app: object, kind: str) -> None:
        self.inner = SyncASGITransport(app)
        self.path = f"/v1/{kind}/batch"
        self.hook: Callable[[], None] | None = None
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/oauth/token":
            self.paths.append(request.url.path.removeprefix("/v1/").removesuffix("/batch"))
        if request.url.path == self.path and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_reward_never_overtakes_a_decision_queued_while_sending(api, creds, tenant):
    # The flusher used to send every queued reward once past the decisions: a decision and
    # its reward queued while events went out were sent reward first, and the server refused
    # the reward for good (unknown_decision).
    refused: list[RejectedRecord] = []
    transport = Meanwhile(api.app, "events")
    with AgentLightningClient(
        creds.client_id,
        creds.secret,
        transport=transport,
        buffer=True,
        flush_interval=60,
        on_rejected=refused.extend,
    ) as c:

        def meanwhile() -> None:
            c.log_event("e1")
            decision_id = c.log_decision("a", ["a", "b"], 0.5)
            c.reward(decision_id, 1.0)
            c.log_event("e2")

        transport.hook = meanwhile
        c.log_event("e0")
        c.reward(session_id="s-order", value=0.5)
        assert c.flush(timeout=5) is True
        assert c.flush(timeout=5) is True
    assert refused == []
    assert api.store.count_records("rewards", tenant) == 2
    # What was queued before the decision still goes first; what came after waits for it.
    assert transport.paths == ["events", "events", "rewards", "decisions", "events", "rewards"]


@pytest.mark.anyio
async def test_async_a_reward_never_overtakes_a_decision_queued_while_sending(api, creds, tenant):
    refused: list[RejectedRecord] = []
    inner = httpx.ASGITransport(app=api.app)
    paths: list[str] = []
    hooked: list[bool] = []

    class Meanwhile(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path != "/v1/oauth/token":
                paths.append(path.removeprefix("/v1/").removesuffix("/batch"))
            if path == "/v1/rewards/batch" and not hooked:
                hooked.append(True)
                decision_id = await c.log_decision("a", ["a", "b"], 0.5)
                await c.reward(decision_id, 1.0)
            return await inner.handle_async_request(request)

    async with AsyncAgentLightningClient(
        creds.client_id,
        creds.secret,
        transport=Meanwhile(),
        buffer=True,
        flush_interval=60,
        on_rejected=refused.extend,
    ) as c:
        await c.reward(session_id="s-async-order", value=0.5)
        assert await c.flush(timeout=5) is True
    assert refused == []
    assert api.store.count_records("rewards", tenant) == 2
    assert paths == ["rewards", "decisions", "rewards"]


# -- failures, with scripted answers -----------------------------------------------------------


def test_full_buffer_raises_and_keeps_what_it_has():
    server = Batches()
    with server.client(max_buffer=3) as c:
        c.log_event("1")
        c.log_event("2")
        with pytest.raises(BufferFullError):
            c.log_events([{"text": "3"}, {"text": "4"}])  # all or nothing
        assert c.pending == 2
        c.log_event("3")
        with pytest.raises(BufferFullError):
            c.log_event("4")
        assert c.flush(timeout=5)
        c.log_event("4")  # room again
    assert [r["text"] for r in server.records] == ["1", "2", "3", "4"]


def test_what_json_cannot_carry_is_refused_at_the_call_and_blocks_nothing():
    # A NaN used to be queued and fail only in the flusher, as a retry that never succeeds,
    # holding back every record behind it.
    server = Batches()
    with server.client() as c:
        c.log_event("before")
        with pytest.raises(ValueError, match=r"^value must be a finite number, got nan"):
            c.reward("d1", float("nan"))
        with pytest.raises(ValueError, match=r"records\[1\]\.confidence .* got inf"):
            c.log_events([{"text": "ok"}, {"text": "bad", "confidence": float("inf")}])
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            c.log_event("obj", attributes={"when": object()})
        assert c.pending == 1  # nothing of the refused calls was queued
        c.log_event("after")
        assert c.flush(timeout=5) is True
    assert [r["text"] for r in server.records] == ["before", "after"]


def test_failed_flush_keeps_records_and_never_blocks_the_caller():
    unavailable = httpx.Response(503, json={"error": {"code": "database_unavailable"}})
    server = Batches(unavailable, unavailable)
    with server.client(max_retries=0) as c:
        c.log_event("a")
        assert c.flush(timeout=5) is False  # the attempt failed: still queued
        assert c.pending == 1
        started = time.monotonic()
        c.log_event("b")  # the caller is not held up by the failing flusher
        assert time.monotonic() - started < 0.1
        assert c.flush(timeout=5) is False
        assert c.flush(timeout=5) is True
        assert c.pending == 0
    assert [r["text"] for r in server.records] == ["a", "b"]


def test_a_full_batch_is_sent_without_waiting_for_the_interval():
    server = Batches()
    with server.client(flush_interval=60) as c:
        c.log_events([{"text": str(i)} for i in range(500)])
        assert wait_until(lambda: c.pending == 0)
        assert len(server.records) == 500


def test_too_large_batches_are_split():
    too_large = httpx.Response(413, json={"error": {"code": "payload_too_large"}})
    server = Batches(too_large, too_large)
    with server.client() as c:
        c.log_events([{"text": str(i)} for i in range(10)])
        assert c.flush(timeout=5)
    assert [len(batch) for _, batch in server.batches] == [2] * 5  # 10 → 5 → 2 per batch
    assert [r["text"] for r in server.records] == [str(i) for i in range(10)]


def test_a_batch_refused_as_a_whole_is_reported():
    refused: list[RejectedRecord] = []
    invalid = httpx.Response(422, json={"error": {"code": "invalid_request", "message": "no"}})
    server = Batches(invalid)
    with server.client(on_rejected=refused.extend) as c:
        c.log_events([{"text": "x"}, {"text": "y"}])
        c.log_decision("a", ["a"], 1.0)
        assert c.flush(timeout=5)
    # Decisions go first (and are refused here); the events are then sent as usual.
    assert [(r.kind, r.reason) for r in refused] == [("decisions", "invalid_request")]
    assert [r["text"] for r in server.records] == ["x", "y"]


def test_undeliverable_records_are_reported_on_close():
    refused: list[RejectedRecord] = []
    server = Batches(*[httpx.ConnectError("refused")] * 1000)
    c = server.client(max_retries=0, on_rejected=refused.extend)
    c.log_event("lost?")
    c.reward(session_id="s", value=1.0)
    started = time.monotonic()
    c.close(timeout=0.5)
    assert time.monotonic() - started < 3
    assert sorted((r.kind, r.reason) for r in refused) == [
        ("events", "undelivered"),
        ("rewards", "undelivered"),
    ]


def test_flushes_at_interpreter_exit(tmp_path: Path):
    script = textwrap.dedent(
        """
        import json, httpx
        from agent_lightning.sdk import AgentLightningClient

        def handler(request):
            if request.url.path == "/v1/oauth/token":
                return httpx.Response(200, json={"access_token": "t", "expires_in": 900})
            records = json.loads(request.content)
            print("received", len(records), flush=True)
            accepted = [{"index": i, "id": r["id"], "status": "created"}
                        for i, r in enumerate(records)]
            return httpx.Response(200, json={"accepted": accepted, "rejected": []})

        c = AgentLightningClient("agl_x", "s", transport=httpx.MockTransport(handler),
                                 buffer=True, flush_interval=60)
        c.log_event("a")
        c.log_event("b")
        print("exiting", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["exiting", "received 2"]


def test_async_buffer_is_flushed_when_asyncio_run_ends():
    import asyncio

    server = Batches()

    async def main() -> None:
        c = AsyncAgentLightningClient(
            "agl_x", SECRET, transport=httpx.MockTransport(server), buffer=True, flush_interval=60
        )
        await c.log_event("left behind")  # and the program ends without closing the client

    asyncio.run(main())
    assert [r["text"] for r in server.records] == ["left behind"]
