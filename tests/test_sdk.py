"""The SDK against the real server app, in-process (no sockets): sync and async clients.

Retry and error mapping with scripted answers live in test_sdk_transport.py; buffered mode in
test_sdk_buffer.py.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import agent_lightning
from agent_lightning import sdk
from agent_lightning.config import Settings
from agent_lightning.sdk import (
    AgentLightningClient,
    AsyncAgentLightningClient,
    AuthenticationError,
    NotFoundError,
    ServerError,
    SyncASGITransport,
    ValidationError,
)
from agent_lightning.security import identities, passwords
from agent_lightning.security.tokens import TokenIssuer
from agent_lightning.store import Store, new_id
from agent_lightning.store import Task as StoreTask
from tests.conftest import Api, make_api

SIGNING_KEY = "test-signing-key-0123456789abcdef0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording(httpx.BaseTransport):
    """Passes requests to the app and remembers (method, path) of each one."""

    def __init__(self, app: object) -> None:
        self.inner = SyncASGITransport(app)
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.seen if p == path)


def start_server(directory: Path) -> Api:
    """One real app on its own SQLite file, shared by a module's tests (building one costs
    about a second); each test gets its own tenant, so tests cannot see each other's data."""
    settings = Settings(
        data_dir=directory / "data",
        database_url=f"sqlite:///{directory / 'agl.db'}",
        jwt_secret=SIGNING_KEY,
        token_burst=1000,
        token_rate=1000.0,
    )
    return make_api(settings, Store(settings.database_url))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = start_server(tmp_path_factory.mktemp("sdk"))
    yield server
    server.client.close()
    server.store.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def new_identity(api: Api, tenant: str, roles: tuple[str, ...], monkeypatch):
    """A client of `tenant`. Its secret is hashed with a cheap scrypt cost (hash_secret allows
    it for tests; verifying reads the cost from the hash), which keeps each login fast."""
    cheap = functools.partial(passwords.hash_secret, n=2**8)
    monkeypatch.setattr(identities, "hash_secret", cheap)
    return api.new_client(tenant, roles)


@pytest.fixture
def creds(api: Api, tenant: str, monkeypatch):
    return new_identity(api, tenant, ("AgentAdmin",), monkeypatch)


@pytest.fixture
def client(api: Api, creds) -> Iterator[AgentLightningClient]:
    with AgentLightningClient(creds.client_id, creds.secret, app=api.app) as c:
        yield c


# -- the public surface ----------------------------------------------------------------------


def test_all_lists_every_public_name_sorted():
    public = {name for name in dir(sdk) if not name.startswith("_")}
    assert set(sdk.__all__) == public
    assert sdk.__all__ == sorted(sdk.__all__)
    assert agent_lightning.AgentLightningClient is AgentLightningClient
    assert agent_lightning.AsyncAgentLightningClient is AsyncAgentLightningClient


def test_every_error_derives_from_one_root():
    errors = [getattr(sdk, n) for n in sdk.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    assert all(issubclass(e, sdk.AgentLightningError) for e in errors)


def test_sync_and_async_clients_have_the_same_surface():
    import inspect

    def public(cls):
        return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}

    def parameters(function):
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    sync, async_ = public(AgentLightningClient), public(AsyncAgentLightningClient)
    assert set(async_) - set(sync) == {"aclose"}
    assert set(sync) <= set(async_)
    assert parameters(AgentLightningClient) == parameters(AsyncAgentLightningClient)
    for name, method in sync.items():
        if not callable(method):
            continue
        assert parameters(method) == parameters(async_[name]), name
        assert method.__doc__, f"{name} has no docstring"
        if not name.startswith("list_"):
            assert inspect.iscoroutinefunction(async_[name]), name


def test_credentials_from_the_environment(monkeypatch):
    monkeypatch.setenv("AGL_CLIENT_ID", "agl_env")
    monkeypatch.setenv("AGL_CLIENT_SECRET", "env-secret-value")
    monkeypatch.setenv("AGL_BASE_URL", "https://agl.example.com")
    c = AgentLightningClient()
    assert c.client_id == "agl_env"
    assert c.base_url == "https://agl.example.com"
    assert "env-secret-value" not in repr(c)
    c.close()
    explicit = AgentLightningClient("agl_arg", "s", "http://other:1")
    assert (explicit.client_id, explicit.base_url) == ("agl_arg", "http://other:1")
    explicit.close()


def test_missing_or_half_credentials_are_refused(monkeypatch):
    for name in ("AGL_CLIENT_ID", "AGL_CLIENT_SECRET", "AGL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="no credentials"):
        AgentLightningClient()
    with pytest.raises(ValueError, match="go together"):
        AgentLightningClient("agl_only_id")
    with pytest.raises(ValueError, match="not both"):
        AgentLightningClient("agl_x", "s", api_key="aglk_x")


def test_secrets_never_shown(api, creds):
    c = AgentLightningClient(creds.client_id, creds.secret, app=api.app)
    c.me()
    token = c._tokens.current()
    assert token
    for text in (repr(c), str(c), repr(vars(c))):
        assert creds.secret not in text
        assert token not in text
    wrong = AgentLightningClient(creds.client_id, "not-the-secret-xyz", app=api.app)
    with pytest.raises(AuthenticationError) as info:
        wrong.me()
    assert info.value.code == "invalid_client"
    assert "not-the-secret-xyz" not in str(info.value)
    assert "not-the-secret-xyz" not in repr(info.value)
    c.close()
    wrong.close()


# -- tokens ------------------------------------------------------------------------------------


def test_token_fetched_once_and_reused(api, creds):
    transport = Recording(api.app)
    with AgentLightningClient(creds.client_id, creds.secret, transport=transport) as c:
        assert c.me()["subject"] == creds.client_id
        c.log_event("one")
        c.log_event("two")
    assert transport.count("/v1/oauth/token") == 1
    assert transport.count("/v1/events") == 2


def test_token_refreshed_before_it_expires(api, creds, monkeypatch):
    state = api.app.state.agl
    monkeypatch.setattr(state, "token_issuer", TokenIssuer(SIGNING_KEY, ttl_seconds=900))
    transport = Recording(api.app)
    now = [1000.0]  # the client's clock, moved by hand: no sleeping, no timing luck
    with AgentLightningClient(creds.client_id, creds.secret, transport=transport) as c:
        c._tokens._clock = lambda: now[0]
        c.me()
        c.me()
        assert transport.count("/v1/oauth/token") == 1
        now[0] += 800  # not yet due
        c.me()
        assert transport.count("/v1/oauth/token") == 1
        now[0] += 99  # past its refresh point, 30 s before the 900 s expire: replaced before use
        c.me()
        assert transport.count("/v1/oauth/token") == 2


def test_refused_token_is_refreshed_once(api, creds, monkeypatch):
    transport = Recording(api.app)
    with AgentLightningClient(creds.client_id, creds.secret, transport=transport) as c:
        c.me()
        # The server restarts with a new signing key: the cached token is now invalid.
        rotated = TokenIssuer("another-signing-key-" * 3, ttl_seconds=900)
        monkeypatch.setattr(api.app.state.agl, "token_issuer", rotated)
        assert c.me()["subject"] == creds.client_id
    assert transport.count("/v1/oauth/token") == 2
    assert transport.count("/v1/me") == 3  # the refused call was sent again, once


def test_revoked_client_gets_authentication_error(api, creds, tenant):
    with AgentLightningClient(creds.client_id, creds.secret, app=api.app) as c:
        c.me()
        api.store.revoke_client(tenant, creds.client_id)
        with pytest.raises(AuthenticationError) as info:
            c.me()
    # The refused token was refreshed once, and the token endpoint then refused the client.
    assert info.value.status == 401
    assert info.value.code == "invalid_client"


def test_personal_api_key(api, client):
    key = client._execute(sdk._calls.Call("POST", "/v1/api-keys", json={"name": "ci"})).json()
    with AgentLightningClient(api_key=key["key"], app=api.app) as by_key:
        me = by_key.me()
        assert me["kind"] == "api_key"
        assert key["key"] not in repr(by_key)


# -- telemetry -------------------------------------------------------------------------------


def test_log_event_is_stored_and_readable(client):
    event_id = client.log_event(
        "my card was declined, write to bob@example.com",
        user_id="u1",
        session_id="s-read",
        intent_prediction="declined_card_payment",
        confidence=0.8,
        feedback_score=1.0,
        attributes={"channel": "chat"},
    )
    events = list(client.list_events(session_id="s-read"))
    assert [e["id"] for e in events] == [event_id]
    event = events[0]
    assert event["intent_prediction"] == "declined_card_payment"
    assert event["confidence"] == 0.8
    assert event["attributes"] == {"channel": "chat"}
    assert "bob@example.com" not in event["text"]  # redacted by the server


def test_log_event_with_same_id_is_stored_once(api, client, tenant):
    first = client.log_event("hello", id="evt-fixed-1")
    again = client.log_event("hello", id="evt-fixed-1")
    assert first == again == "evt-fixed-1"
    assert api.store.count_records("events", tenant) == 1


def test_list_events_follows_cursors(client):
    client.log_events([{"text": f"n{i}", "session_id": "paged"} for i in range(7)])
    texts = [e["text"] for e in client.list_events(session_id="paged", page_size=3)]
    assert texts == [f"n{i}" for i in range(7)]
    newest = next(iter(client.list_events(session_id="paged", order="desc")))
    assert newest["text"] == "n6"
    with pytest.raises(TypeError, match="unknown filter"):
        client.list_events(sesion_id="typo")
    with pytest.raises(TypeError, match="unknown filter"):
        client.list_events(decision_id="d1")  # the server would ignore it and list everything


def test_batch_keeps_the_good_records_and_reports_the_bad_one(api, client, tenant):
    result = client.log_events(
        [{"text": "ok 1"}, {"text": "bad", "confidence": 7}, {"text": "ok 2"}]
    )
    assert result.created == 2
    assert [a.index for a in result.accepted] == [0, 2]
    assert len(result.rejected) == 1
    bad = result.rejected[0]
    assert (bad.index, bad.reason) == (1, "invalid")
    assert "confidence" in bad.message
    assert api.store.count_records("events", tenant) == 2


def test_a_list_over_the_body_limit_is_stored(api, client, tenant):
    # 500 records of 3 KB made one 1.5 MB request: 413 payload_too_large (the limit is 1 MiB).
    result = client.log_events([{"text": "x" * 3000, "session_id": "big"} for _ in range(600)])
    assert result.created == 600
    assert api.store.count_records("events", tenant) == 600


class LoseFirstAnswer(Recording):
    """The server stores the batch, but its answer never arrives (a read timeout)."""

    def __init__(self, app: object) -> None:
        super().__init__(app)
        self.lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == "/v1/events/batch" and not self.lost:
            self.lost = True
            raise httpx.ReadTimeout("timed out", request=request)
        return response


def test_resent_batch_stores_nothing_twice(api, creds, tenant):
    transport = LoseFirstAnswer(api.app)
    records = [{"text": f"t{i}"} for i in range(3)]
    with AgentLightningClient(
        creds.client_id, creds.secret, transport=transport, sleep=lambda s: None
    ) as c:
        result = c.log_events(records)
        assert transport.count("/v1/events/batch") == 2  # the SDK resent it
        assert result.duplicates == 3 and result.created == 0
        assert api.store.count_records("events", tenant) == 3
        # The ids were written into the caller's dicts: sending the list again is safe too.
        assert all(r["id"] for r in records)
        again = c.log_events(records)
    assert again.duplicates == 3
    assert api.store.count_records("events", tenant) == 3


def test_decide_then_reward_the_decision(api, client, tenant):
    decision = client.decide(
        ["refund", {"id": "escalate", "description": "hand over to a human"}],
        text="I was charged twice",
        session_id="s-dec",
    )
    assert decision.action_id in ("refund", "escalate")
    assert decision.probabilities == pytest.approx({"refund": 0.5, "escalate": 0.5})
    assert decision.propensity == pytest.approx(0.5)
    reward_id = client.reward(decision.decision_id, 1.0, correct_action_id="refund")
    rewards = list(client.list_rewards(decision_id=decision.decision_id))
    assert [(r["id"], r["value"], r["source"]) for r in rewards] == [(reward_id, 1.0, "user")]
    assert api.store.count_records("decisions", tenant) == 1


def test_resent_decide_returns_the_same_decision(client):
    first = client.decide([f"a{i}" for i in range(20)], id="dec-fixed-1")
    again = client.decide([f"a{i}" for i in range(20)], id="dec-fixed-1")
    assert again.decision_id == first.decision_id == "dec-fixed-1"
    assert again.action_id == first.action_id
    assert (first.status, again.status) == ("created", "duplicate")


def test_session_reward(client):
    client.log_event("step 1", session_id="s-run")
    reward_id = client.reward(session_id="s-run", value=0.5, source="reward_function")
    rewards = list(client.list_rewards(session_id="s-run"))
    assert [(r["id"], r["decision_id"], r["value"]) for r in rewards] == [(reward_id, None, 0.5)]


def test_reward_errors(client):
    with pytest.raises(NotFoundError) as info:
        client.reward("no-such-decision", 1.0)
    assert info.value.code == "unknown_decision"
    assert info.value.request_id  # from the X-Request-ID header: this body has none
    with pytest.raises(ValueError, match="decision_id or a session_id"):
        client.reward(value=1.0)
    with pytest.raises(ValidationError) as invalid:
        client.reward(session_id="s", value=1.0, source="nobody")
    assert invalid.value.status == 422
    assert invalid.value.details


def test_log_decision_made_elsewhere_then_reward_it(api, client, tenant):
    decision_id = client.log_decision(
        "b", ["a", "b"], 0.25, {"text": "hi"}, probabilities={"a": 0.75, "b": 0.25}
    )
    client.reward(decision_id, 0.0)
    stored = api.store.get_record("decisions", tenant, decision_id)
    assert (stored.action_id, stored.propensity) == ("b", 0.25)
    with pytest.raises(ValidationError) as info:
        client.log_decision("c", ["a", "b"], 0.5)  # not a candidate
    assert info.value.code == "invalid"


# -- policies and learning tasks ---------------------------------------------------------------


def test_trigger_task_without_a_learning_controller(client):
    client.create_policy("intents", description="banking intents")
    assert client.get_policy("intents").description == "banking intents"
    with pytest.raises(ServerError) as info:
        client.trigger_task({"task": "learn", "policy": "intents"})
    assert (info.value.status, info.value.code) == (503, "learning_unavailable")
    with pytest.raises(NotFoundError):
        client.trigger_task({"task": "learn", "policy": "missing"})
    with pytest.raises(NotFoundError):
        client.get_task("no-such-task")


class FakeController:
    """Stands in for the LearningController: queues the task in the store, runs nothing."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, app_id, params, actor):
        task = StoreTask(
            id=new_id(), app_id=app_id, kind=params["task"], params=params, created_by=actor.name
        )
        return self.store.create_task(task)


def test_trigger_task_and_wait_for_it(api, creds, monkeypatch):
    monkeypatch.setattr(api.app.state.agl, "controller", FakeController(api.store))

    def finish_the_task(seconds: float) -> None:  # time passes; the controller does its work
        api.store.update_task(task.id, status="succeeded", result={"version": 2})

    with AgentLightningClient(
        creds.client_id, creds.secret, app=api.app, sleep=finish_the_task
    ) as c:
        c.create_policy("intents")
        task = c.trigger_task({"task": "learn", "policy": "intents", "force": True})
        assert (task.kind, task.status, task.params["policy"]) == ("learn", "queued", "intents")
        assert c.get_task(task.id).status == "queued"
        done = c.wait_for_task(task.id, timeout=10, poll=0.5)
    assert done.status == "succeeded" and done.done
    assert done.result == {"version": 2}


def test_health_needs_no_token(api, creds):
    transport = Recording(api.app)
    with AgentLightningClient(creds.client_id, creds.secret, transport=transport) as c:
        assert c.health()["status"] == "ok"
    assert transport.count("/v1/oauth/token") == 0


# -- async -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_end_to_end(api, creds, tenant):
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncAgentLightningClient(creds.client_id, creds.secret, transport=transport) as c:
        assert (await c.health())["status"] == "ok"
        assert (await c.me())["app"] == tenant
        event_id = await c.log_event("hello", session_id="s-async")
        result = await c.log_events([{"text": "x", "session_id": "s-async"}, {"confidence": 9}])
        assert (result.created, [r.index for r in result.rejected]) == (1, [1])
        ids = [e["id"] async for e in c.list_events(session_id="s-async", page_size=1)]
        assert ids == [event_id, result.accepted[0].id]
        decision = await c.decide(["a", "b"], {"text": "hi", "features": {"x": 1.0}})
        await c.reward(decision.decision_id, 1.0)
        await c.reward(session_id="s-async", value=0.5)
        with pytest.raises(NotFoundError):
            await c.get_policy("missing")
    assert api.store.count_records("rewards", tenant) == 2


@pytest.mark.anyio
async def test_async_token_fetched_once_for_concurrent_calls(api, creds, tenant):
    import anyio

    seen: list[str] = []
    inner = httpx.ASGITransport(app=api.app)

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return await inner.handle_async_request(request)

    async with AsyncAgentLightningClient(creds.client_id, creds.secret, transport=Counting()) as c:
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(c.log_event, f"e{i}")
    assert seen.count("/v1/oauth/token") == 1
    assert api.store.count_records("events", tenant) == 5


@pytest.mark.anyio
async def test_async_app_argument_and_buffered_close(api, creds, tenant):
    async with AsyncAgentLightningClient(
        creds.client_id, creds.secret, app=api.app, buffer=True, flush_interval=60
    ) as c:
        for i in range(3):
            await c.log_event(f"buffered {i}")
        assert c.pending == 3
        assert api.store.count_records("events", tenant) == 0
    assert api.store.count_records("events", tenant) == 3


def test_a_nan_reward_is_a_clear_error_before_anything_is_sent(api, client, tenant):
    decision = client.decide(["a", "b"], text="hello")
    with pytest.raises(ValueError, match="value must be a finite number"):
        client.reward(decision.decision_id, float("nan"))
    assert api.store.count_records("rewards", tenant) == 0
