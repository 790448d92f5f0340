"""Retries, error mapping and authentication with scripted answers (httpx.MockTransport)."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agent_lightning.sdk import (
    AgentLightningClient,
    AgentLightningError,
    APIError,
    AsyncAgentLightningClient,
    AuthenticationError,
    ClientClosedError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskTimeoutError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)

SECRET = "s3cret-value-never-printed"
TOKEN = "tok-abc-never-printed"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def error(status: int, code: str, message: str = "nope", **extra) -> httpx.Response:
    body = {"error": {"code": code, "message": message, **extra}, "request_id": "req-1"}
    return httpx.Response(status, json=body)


class Script:
    """A MockTransport handler: answers the token endpoint, then plays `answers` in order
    (the last one repeats); records every request and every pause."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth/token":
            self.tokens += 1
            return httpx.Response(
                200, json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 900}
            )
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        # A fresh copy: a Response that one client has read cannot be handed out again.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def client(self, **kwargs) -> AgentLightningClient:
        kwargs.setdefault("max_retries", 4)
        return AgentLightningClient(
            "agl_test",
            SECRET,
            "http://agl.test",
            transport=httpx.MockTransport(self),
            sleep=self.sleeps.append,
            **kwargs,
        )


CREATED = httpx.Response(201, json={"id": "e1", "status": "created"})


def test_retries_503_then_succeeds_honouring_retry_after():
    script = Script(
        httpx.Response(503, json={"error": {"code": "busy"}}, headers={"Retry-After": "2"}),
        error(502, "bad_gateway"),
        CREATED,
    )
    with script.client(backoff=0.25) as c:
        assert c.log_event("hi") == "e1"
    assert len(script.requests) == 3
    assert script.sleeps[0] == 2.0  # Retry-After, longer than the backoff
    assert 0.25 <= script.sleeps[1] <= 0.5  # backoff * 2**1, jittered down by at most half
    bodies = [json.loads(r.content) for r in script.requests]
    assert len({b["id"] for b in bodies}) == 1  # the same record id every time
    assert len({r.headers["x-request-id"] for r in script.requests}) == 1


def test_gives_up_after_max_retries():
    script = Script(error(503, "database_unavailable"))
    with script.client(max_retries=2) as c, pytest.raises(ServerError) as info:
        c.log_event("hi")
    assert len(script.requests) == 3
    assert info.value.code == "database_unavailable"
    assert len(script.sleeps) == 2


def test_backoff_grows_and_is_capped():
    script = Script(error(504, "timeout"))
    with script.client(max_retries=6, backoff=1.0) as c, pytest.raises(ServerError):
        c.log_event("hi")
    for attempt, pause in enumerate(script.sleeps):
        base = min(8.0, 2.0**attempt)
        assert base / 2 <= pause <= base


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_never_resent(status):
    script = Script(error(status, "invalid", details=[{"loc": ["text"]}]))
    with script.client() as c, pytest.raises(APIError):
        c.log_event("hi")
    assert len(script.requests) == 1  # a 401 other than invalid_token is not even refreshed
    assert script.sleeps == []


def test_422_maps_to_validation_error_with_details():
    script = Script(error(422, "invalid", "text: too long", details=[{"loc": ["text"]}]))
    with script.client() as c, pytest.raises(ValidationError) as info:
        c.log_event("hi")
    assert (info.value.status, info.value.code) == (422, "invalid")
    assert info.value.details == [{"loc": ["text"]}]
    assert info.value.request_id == "req-1"
    assert "422 invalid: text: too long" in str(info.value)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, APIError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_status_maps_to_exception_class(status, cls):
    script = Script(error(status, "some_code"))
    with script.client(max_retries=0) as c, pytest.raises(cls) as info:
        c.get_task("t1")
    assert type(info.value) is cls
    assert info.value.status == status
    assert isinstance(info.value, AgentLightningError)


def test_error_without_json_body():
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with script.client(max_retries=0) as c, pytest.raises(ServerError) as info:
        c.me()
    assert (info.value.status, info.value.code) == (502, "server_error")


def test_retry_after_as_an_http_date():
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": later}), CREATED)
    with script.client() as c:
        c.log_event("hi")
    assert len(script.requests) == 2
    assert 1.0 <= script.sleeps[0] <= 3.0


def test_one_token_fetch_for_many_threads():
    fetched: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth/token":
            fetched.append(time.monotonic())
            time.sleep(0.05)  # a slow token endpoint widens the race
            return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 900})
        return httpx.Response(200, json={"subject": "agl_test"})

    with AgentLightningClient("agl_test", SECRET, transport=httpx.MockTransport(handler)) as c:
        threads = [threading.Thread(target=c.me) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(fetched) == 1


def test_rate_limit_with_a_long_retry_after_is_returned_to_the_caller():
    script = Script(error(429, "rate_limited"))
    script.answers[0].headers["Retry-After"] = "3600"
    with script.client() as c, pytest.raises(RateLimitError) as info:
        c.log_event("hi")
    assert info.value.retry_after == 3600
    assert len(script.requests) == 1


def test_connect_errors_are_always_resent_then_raise_transport_error():
    script = Script(httpx.ConnectError("connection refused"))
    with script.client(max_retries=3) as c, pytest.raises(TransportError) as info:
        c.trigger_task({"task": "learn", "policy": "p"})  # even a non-idempotent call
    assert len(script.requests) == 4
    assert "ConnectError" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_read_timeout_resent_only_when_idempotent():
    task = {"id": "t1", "kind": "learn", "status": "queued", "params": {}}
    script = Script(httpx.ReadTimeout("timed out"), httpx.Response(202, json=task))
    with script.client() as c, pytest.raises(TransportError):
        c.trigger_task({"task": "learn", "policy": "p"})  # might have been queued already
    assert len(script.requests) == 1

    script = Script(httpx.ReadTimeout("timed out"), CREATED)
    with script.client() as c:
        assert c.log_event("hi") == "e1"  # carries its id: safe to resend
    assert len(script.requests) == 2


def test_502_not_resent_for_trigger_task_but_503_is():
    script = Script(error(502, "bad_gateway"))
    with script.client() as c, pytest.raises(ServerError):
        c.trigger_task({"task": "learn", "policy": "p"})
    assert len(script.requests) == 1
    task = {"id": "t1", "kind": "learn", "status": "queued"}
    script = Script(error(503, "database_unavailable"), httpx.Response(202, json=task))
    with script.client() as c:
        assert c.trigger_task({"task": "learn", "policy": "p"}).id == "t1"


def test_learning_unavailable_is_not_resent():
    script = Script(error(503, "learning_unavailable"))
    with script.client() as c, pytest.raises(ServerError):
        c.trigger_task({"task": "learn", "policy": "p"})
    assert len(script.requests) == 1


def test_token_sent_as_bearer_and_form_encoded_credentials():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/oauth/token":
            return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 900})
        return httpx.Response(200, json={"subject": "agl_test"})

    with AgentLightningClient("agl_test", SECRET, transport=httpx.MockTransport(handler)) as c:
        c.me()
    token_request, me_request = seen
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(token_request.content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "agl_test",
        "client_secret": SECRET,
    }
    assert me_request.headers["authorization"] == f"Bearer {TOKEN}"
    assert me_request.headers["user-agent"].startswith("agent-lightning-python/")


def test_token_endpoint_rfc6749_error():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        return httpx.Response(401, json=body)

    with AgentLightningClient("agl_test", SECRET, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(AuthenticationError) as info:
            c.me()
    assert info.value.code == "invalid_client"
    assert info.value.message == "unknown client or wrong secret"
    for text in (str(info.value), repr(info.value)):
        assert SECRET not in text


def test_invalid_token_refreshes_once_then_gives_up():
    script = Script(error(401, "invalid_token", "the token is not valid: expired"))
    with script.client() as c, pytest.raises(AuthenticationError) as info:
        c.me()
    assert script.tokens == 2  # the first token, and one refresh
    assert len(script.requests) == 2
    assert TOKEN not in str(info.value)
    assert SECRET not in str(info.value)


def test_api_key_is_the_bearer_and_is_never_refreshed():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return error(401, "invalid_token", "the API key is not valid or has been revoked")

    key = "aglk_abc_secretpart"
    with AgentLightningClient(api_key=key, transport=httpx.MockTransport(handler)) as c:
        assert key not in repr(c)
        with pytest.raises(AuthenticationError) as info:
            c.me()
    assert [r.url.path for r in seen] == ["/v1/me"]
    assert seen[0].headers["authorization"] == f"Bearer {key}"
    assert key not in str(info.value)


def test_wait_for_task_times_out():
    running = httpx.Response(200, json={"id": "t1", "kind": "learn", "status": "running"})
    script = Script(running)
    with script.client() as c, pytest.raises(TaskTimeoutError) as info:
        c.wait_for_task("t1", timeout=3, poll=1)
    assert info.value.status == "running"
    assert len(script.requests) == 4 and script.sleeps == [1, 1, 1]
    assert isinstance(info.value, TimeoutError)


def test_ids_and_names_are_escaped_in_paths():
    script = Script(error(404, "not_found"))
    with script.client() as c, pytest.raises(NotFoundError):
        c.get_task("../admin")
    assert script.requests[0].url.raw_path == b"/v1/tasks/..%2Fadmin"


def test_decide_body_shape():
    answer = {
        "decision_id": "d1",
        "action_id": "b",
        "propensity": 0.5,
        "probabilities": {"a": 0.5, "b": 0.5},
        "policy": {"name": "support", "version": 3},
    }
    script = Script(httpx.Response(201, json=answer))
    with script.client() as c:
        decision = c.decide(
            ["a", {"id": "b", "features": {"cost": 1.0}}],
            "hello",
            features={"len": 5.0},
            decision_point="route",
            exclude=["c"],
            session_id="s1",
        )
    body = json.loads(script.requests[0].content)
    assert body.pop("id")
    assert body == {
        "decision_point": "route",
        "context": {"text": "hello", "features": {"len": 5.0}},
        "actions": [{"id": "a"}, {"id": "b", "features": {"cost": 1.0}}],
        "exclude": ["c"],
        "session_id": "s1",
    }
    assert (decision.policy_name, decision.policy_version, decision.status) == (
        "support",
        3,
        "created",
    )


def test_decide_resent_into_a_server_side_race_returns_the_stored_decision():
    # The first attempt timed out on our side while the server was still deciding; the resend
    # raced it and lost with id_conflict. Asking again returns the decision that was stored.
    stored = {"decision_id": "d1", "action_id": "a", "propensity": 1.0, "policy": {}}
    script = Script(
        httpx.ReadTimeout("timed out"),
        error(409, "id_conflict"),
        httpx.Response(200, json=stored),
    )
    with script.client() as c:
        decision = c.decide(["a"], id="d1")
    assert (decision.decision_id, decision.status) == ("d1", "duplicate")
    assert len(script.requests) == 3

    script = Script(error(409, "conflict"))
    with script.client() as c, pytest.raises(ConflictError):
        c.decide(["a"])
    assert len(script.requests) == 1


def test_large_batches_are_split_and_indexes_kept():
    def answer(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)
        accepted = [{"index": i, "id": r["id"], "status": "created"} for i, r in enumerate(records)]
        return httpx.Response(200, json={"accepted": accepted, "rejected": []})

    script = Script(answer)
    with script.client() as c:
        result = c.log_events([{"text": str(i)} for i in range(1200)])
    assert [len(json.loads(r.content)) for r in script.requests] == [500, 500, 200]
    assert [a.index for a in result.accepted] == list(range(1200))
    assert result.created == 1200


@pytest.mark.anyio
async def test_async_retries_and_errors():
    script = Script(error(503, "busy"), CREATED, error(409, "id_conflict"))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with AsyncAgentLightningClient(
        "agl_test", SECRET, transport=httpx.MockTransport(script), sleep=sleep
    ) as c:
        assert await c.log_event("hi") == "e1"
        with pytest.raises(ConflictError):
            await c.log_event("again", id="e1")
    assert len(script.requests) == 3 and len(sleeps) == 1


def body_limit(limit: int) -> Handler:
    """A batch endpoint that refuses bodies over `limit` bytes (413), as the server does."""

    def answer(request: httpx.Request) -> httpx.Response:
        if len(request.content) > limit:
            return error(413, "payload_too_large", f"the request body is larger than {limit} bytes")
        records = json.loads(request.content)
        accepted = [{"index": i, "id": r["id"], "status": "created"} for i, r in enumerate(records)]
        return httpx.Response(200, json={"accepted": accepted, "rejected": []})

    return answer


def test_a_list_over_the_body_limit_is_sent_in_pieces_small_enough():
    # 600 records of 3 KB: 500 of them (the count limit) made a 1.5 MB body, refused with 413
    # after any earlier batch was stored.
    script = Script(body_limit(1024 * 1024))
    with script.client() as c:
        result = c.log_events([{"text": "x" * 3000, "session_id": "big"} for _ in range(600)])
    assert result.created == 600
    assert [a.index for a in result.accepted] == list(range(600))
    assert all(len(r.content) <= 900 * 1024 for r in script.requests)


def test_a_batch_refused_as_too_large_is_split():
    # A server configured with a lower limit than the SDK's budget: halves until it fits.
    script = Script(body_limit(40_000))
    with script.client() as c:
        result = c.log_rewards([{"session_id": f"s{i}", "value": 1.0} for i in range(1000)])
    assert result.created == 1000
    assert [a.index for a in result.accepted] == list(range(1000))
    sent = [json.loads(r.content) for r in script.requests if len(r.content) <= 40_000]
    assert [r["session_id"] for batch in sent for r in batch] == [f"s{i}" for i in range(1000)]


def test_a_record_too_large_by_itself_is_an_error_naming_it():
    script = Script(body_limit(10_000))
    records = [{"text": "ok"}, {"text": "ok"}, {"text": "x" * 20_000}]
    with script.client() as c, pytest.raises(APIError) as info:
        c.log_events(records)
    assert info.value.status == 413
    assert "records[2] alone is larger than the server accepts" in str(info.value)


@pytest.mark.anyio
async def test_async_a_list_over_the_body_limit_is_sent_in_pieces():
    script = Script(body_limit(100_000))
    async with AsyncAgentLightningClient(
        "agl_test", SECRET, transport=httpx.MockTransport(script)
    ) as c:
        result = await c.log_events([{"text": "x" * 3000} for _ in range(100)])
    assert result.created == 100
    assert [a.index for a in result.accepted] == list(range(100))


def test_exclude_must_be_a_list_not_a_str():
    # list("escalate") excluded the letters, and "escalate" stayed a candidate.
    chosen = {"decision_id": "d1", "action_id": "escalate", "propensity": 0.5}
    script = Script(httpx.Response(201, json=chosen))
    with script.client() as c, pytest.raises(TypeError, match="exclude must be a list"):
        c.decide(["escalate", "reply"], text="hi", exclude="escalate")
    assert script.requests == []


HTML = httpx.Response(200, headers={"content-type": "text/html"}, text="<html>log in</html>")


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        (HTML, lambda c: c.log_event("x")),
        (httpx.Response(201, json={}), lambda c: c.log_event("x")),
        (httpx.Response(201, json={"decision_id": "d1"}), lambda c: c.decide(["a", "b"])),
        (httpx.Response(200, json={}), lambda c: c.log_events([{"text": "x"}])),
        (httpx.Response(200, json=[]), lambda c: c.get_task("t1")),
        (httpx.Response(200, json={"next_cursor": None}), lambda c: list(c.list_events())),
        (HTML, lambda c: c.me()),
    ],
)
def test_a_success_answer_that_is_not_ours_is_an_sdk_error(answer, call):
    # A captive portal or a wrong proxy used to surface as a JSONDecodeError or a KeyError.
    script = Script(answer)
    with script.client() as c, pytest.raises(UnexpectedResponseError) as info:
        call(c)
    assert isinstance(info.value, APIError)
    assert info.value.code == "unexpected_response"
    assert "is not what agent-lightning sends" in str(info.value)
    assert len(script.requests) == 1


def test_a_token_answer_that_is_not_ours_is_an_sdk_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=["not", "a", "token"])

    with AgentLightningClient("agl_test", SECRET, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(UnexpectedResponseError, match="POST /v1/oauth/token"):
            c.me()


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "agl.example.com", "ftp://agl.example.com"])
def test_a_base_url_without_http_scheme_is_refused_at_once(url):
    # It used to be resent for seconds before failing with UnsupportedProtocol.
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL"):
        AgentLightningClient("agl_test", SECRET, url)
    with pytest.raises(ValueError, match="base_url"):
        AsyncAgentLightningClient("agl_test", SECRET, url)


def test_a_base_url_never_shows_a_password():
    with pytest.raises(ValueError) as info:
        AgentLightningClient("agl_test", SECRET, "user:hunter2@agl.example.com")
    assert "hunter2" not in str(info.value)


def test_using_a_closed_client_is_an_sdk_error():
    script = Script(CREATED)
    c = script.client()
    c.close()
    with pytest.raises(ClientClosedError, match="the client is closed"):
        c.log_event("late")
    assert script.requests == []
    buffered = script.client(buffer=True)
    buffered.close()
    with pytest.raises(ClientClosedError):
        buffered.log_event("late")
    assert issubclass(ClientClosedError, RuntimeError)  # what was raised before


@pytest.mark.anyio
async def test_async_using_a_closed_client_is_an_sdk_error():
    script = Script(CREATED)
    c = AsyncAgentLightningClient("agl_test", SECRET, transport=httpx.MockTransport(script))
    await c.close()
    with pytest.raises(ClientClosedError):
        await c.log_event("late")
