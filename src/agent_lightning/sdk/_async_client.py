"""AsyncAgentLightningClient: the asyncio / anyio client, method for method like the sync one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio
import httpx

from agent_lightning.sdk import _calls as calls
from agent_lightning.sdk._base import USER_AGENT, BaseClient
from agent_lightning.sdk._buffer import AsyncFlusher, OnRejected
from agent_lightning.sdk._exceptions import (
    APIError,
    ClientClosedError,
    ConflictError,
    TaskTimeoutError,
)
from agent_lightning.sdk._models import Accepted, BatchResult, Decision, Policy, Task


class AsyncAgentLightningClient(BaseClient):
    """The async twin of `AgentLightningClient`: same arguments, same methods, awaited.

    ```python
    async with AsyncAgentLightningClient("cl_...", "secret") as agl:
        choice = await agl.decide(["refund", "escalate"], text="I was charged twice")
        await agl.reward(choice.decision_id, 1.0)
    ```

    `transport=` takes an async httpx transport (`httpx.MockTransport`, or
    `httpx.ASGITransport(app=...)` to run the real server in-process; `app=` does the same).
    `sleep=` replaces `anyio.sleep` for retry pauses (tests). `list_*` return async
    iterators: `async for event in agl.list_events(): ...`.

    Runs on asyncio or trio; buffered mode (`buffer=True`) needs asyncio, since its flusher is
    an asyncio task. Task-safe: share one client between tasks of one event loop. Close it
    (`async with`, or `await agl.close()`) to flush the buffer: at interpreter exit the loop
    is usually gone, and what is still queued can only be reported as undelivered.
    """

    def __init__(
        self,
        client_id: str | None = None,
        secret: str | None = None,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        app: Any = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.25,
        buffer: bool = False,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        on_rejected: OnRejected | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            client_id,
            secret,
            base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            buffer=buffer,
            flush_interval=flush_interval,
            max_buffer=max_buffer,
            on_rejected=on_rejected,
            transport=transport,
            app=app,
        )
        self._own_transport = httpx.ASGITransport(app=app) if app is not None else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._own_transport or transport,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
        )
        self._sleep = sleep or anyio.sleep
        self._token_lock = anyio.Lock()
        self._flusher = (
            AsyncFlusher(
                self._send_batch,
                flush_interval=flush_interval,
                max_buffer=max_buffer,
                on_rejected=on_rejected,
            )
            if buffer
            else None
        )
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------

    async def _bearer(self) -> str:
        if self._credentials.api_key is not None:
            return self._credentials.api_key.get()
        token = self._tokens.current()
        if token is not None:
            return token
        async with self._token_lock:  # one refresh at a time; the others then reuse its token
            token = self._tokens.current()
            if token is None:
                asked_at = self._tokens.now()
                assert self._credentials.client_id and self._credentials.secret
                call = calls.token(self._credentials.client_id, self._credentials.secret.get())
                token = self._store_token(await self._execute(call), asked_at)
        return token

    async def _execute(self, call: calls.Call) -> httpx.Response:
        attempt, refreshed = 0, False
        while True:
            if self._http.is_closed:  # else httpx's RuntimeError, from deep inside
                raise ClientClosedError("the client is closed; create a new one")
            bearer = await self._bearer() if call.auth else None
            try:
                response = await self._http.send(self._build(self._http, call, bearer))
            except httpx.TransportError as exc:
                retry, pause, error = self._transport_error(call, exc, attempt)
                if not retry:
                    raise error from exc
                await self._sleep(pause)
                attempt += 1
                continue
            may_refresh = call.auth and not refreshed and not self._uses_api_key
            verdict, pause = self._verdict(call, response, attempt, may_refresh)
            if verdict == "done":
                return response
            if verdict == "refresh":
                assert bearer is not None
                self._tokens.invalidate(bearer)
                refreshed = True
                continue
            await self._sleep(pause)
            attempt += 1

    async def _send_batch(self, kind: str, records: list[dict[str, Any]]) -> BatchResult:
        return calls.batch_result(await self._execute(calls.post_batch(kind, records)))

    async def _write_many(self, kind: str, records: Sequence[Mapping[str, Any]]) -> BatchResult:
        prepared = calls.with_ids(records)
        if self._flusher is not None:
            self._flusher.put(kind, prepared)
            return BatchResult([Accepted(i, r["id"], "queued") for i, r in enumerate(prepared)])
        parts, offset = [], 0
        todo = calls.chunks(prepared)
        while todo:
            chunk = todo.pop(0)
            try:
                response = await self._execute(calls.post_batch(kind, chunk))
            except APIError as exc:
                if exc.status != 413:
                    raise
                todo[:0] = calls.halves(chunk, offset, exc)
                continue
            parts.append(calls.batch_result(response, offset))
            offset += len(chunk)
        return BatchResult.merge(parts)

    async def _paginate(self, path: str, params: dict[str, Any]) -> AsyncIterator[Any]:
        while True:
            page = calls.read(await self._execute(calls.get(path, params)), calls.a_page)
            for item in page["items"]:
                yield item
            if not page.get("next_cursor"):
                return
            params = {**params, "cursor": page["next_cursor"]}

    # -- telemetry --------------------------------------------------------------------------

    async def log_event(
        self,
        text: str | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        intent_prediction: str | None = None,
        confidence: float | None = None,
        feedback_score: float | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Log one event; returns its id (assigned here unless given, so retries are safe)."""
        record = calls.event_record(
            text,
            user_id=user_id,
            session_id=session_id,
            intent_prediction=intent_prediction,
            confidence=confidence,
            feedback_score=feedback_score,
            attributes=attributes,
            id=id,
            timestamp=timestamp,
        )
        if self._flusher is not None:
            self._flusher.put("events", [record])
            return record["id"]
        return calls.created_id(await self._execute(calls.post_one("events", record)))

    async def log_events(self, events: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Log many events (dicts with the fields of `log_event`); per-record results.

        A record without an id gets one (written into your dict too), so resending the
        same list stores nothing twice. Large lists are sent in batches (500 records, or
        900 KiB of JSON, at most).
        """
        return await self._write_many("events", events)

    async def decide(
        self,
        actions: Sequence[str | Mapping[str, Any]],
        context: Mapping[str, Any] | str | None = None,
        *,
        decision_point: str = "default",
        text: str | None = None,
        features: Mapping[str, float] | None = None,
        exclude: Sequence[str] | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Decision:
        """Ask the live policy of `decision_point` to choose among `actions`.

        `actions` are ids or dicts (`id`, `description`, `features`); `context` is a dict
        (`text`, `features`) or a text. The decision is logged with its propensity; reward it
        later with `reward(decision.decision_id, value)`. Never buffered.
        """
        body = calls.decide_body(
            actions,
            context,
            decision_point=decision_point,
            text=text,
            features=features,
            exclude=exclude,
            session_id=session_id,
            user_id=user_id,
            attributes=attributes,
            id=id,
        )
        call = calls.decide(body)
        try:
            return calls.decision(await self._execute(call))
        except ConflictError as exc:
            if exc.code != "id_conflict":
                raise
            # A resend that raced the first attempt on the server: that one is stored now.
            return calls.decision(await self._execute(call))

    async def reward(
        self,
        decision_id: str | None = None,
        value: float | None = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        source: str = "user",
        correct_action_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> str:
        """Score a decision (`reward(decision_id, 1.0)`) or a whole session
        (`reward(session_id="s1", value=1.0)`); returns the reward id.

        `source`: user, system, reward_function or human_correction.
        """
        record = calls.reward_record(
            decision_id,
            value,
            session_id=session_id,
            user_id=user_id,
            source=source,
            correct_action_id=correct_action_id,
            attributes=attributes,
            id=id,
        )
        if self._flusher is not None:
            self._flusher.put("rewards", [record])
            return record["id"]
        return calls.created_id(await self._execute(calls.post_one("rewards", record)))

    async def log_rewards(self, rewards: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Log many rewards (dicts with the fields of `reward`); per-record results."""
        return await self._write_many("rewards", rewards)

    async def log_decision(
        self,
        action_id: str,
        actions: Sequence[str | Mapping[str, Any]],
        propensity: float,
        context: Mapping[str, Any] | str | None = None,
        *,
        decision_point: str = "default",
        text: str | None = None,
        features: Mapping[str, float] | None = None,
        probabilities: Mapping[str, float] | None = None,
        policy_name: str | None = None,
        policy_version: int | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> str:
        """Log a decision made elsewhere: the chosen `action_id` among `actions`, and the
        probability (`propensity`, in (0, 1]) it had. Returns the decision id."""
        record = calls.decision_record(
            action_id,
            actions,
            propensity,
            context,
            decision_point=decision_point,
            text=text,
            features=features,
            probabilities=probabilities,
            policy_name=policy_name,
            policy_version=policy_version,
            session_id=session_id,
            user_id=user_id,
            attributes=attributes,
            id=id,
        )
        if self._flusher is not None:
            self._flusher.put("decisions", [record])
            return record["id"]
        call = calls.post_batch("decisions", [record])
        return calls.only_id(calls.batch_result(await self._execute(call)), call.request_id)

    async def log_decisions(self, decisions: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Log many decisions made elsewhere (dicts as `log_decision` sends them)."""
        return await self._write_many("decisions", decisions)

    def list_events(
        self, *, order: str = "asc", page_size: int = 100, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over stored (redacted) events, fetching pages as needed.

        Filters: since, until (datetime or ISO 8601), session_id, user_id, policy_name,
        policy_version.
        """
        params = self._list_params("events", filters, order, page_size)
        return self._paginate("/events", params)

    def list_decisions(
        self, *, order: str = "asc", page_size: int = 100, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over stored (redacted) decisions. Filters: since, until, session_id,
        user_id, decision_point, policy_name, policy_version."""
        params = self._list_params("decisions", filters, order, page_size)
        return self._paginate("/decisions", params)

    def list_rewards(
        self, *, order: str = "asc", page_size: int = 100, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over stored rewards. Filters: since, until, session_id, user_id,
        decision_id."""
        params = self._list_params("rewards", filters, order, page_size)
        return self._paginate("/rewards", params)

    # -- learning ---------------------------------------------------------------------------

    async def trigger_task(self, spec: Mapping[str, Any]) -> Task:
        """Queue a learning task, e.g. `{"task": "learn", "policy": "intents"}`."""
        return calls.read(await self._execute(calls.trigger_task(spec)), Task.from_api)

    async def get_task(self, task_id: str) -> Task:
        """One task, with its status and (when done) result or error."""
        path = f"/tasks/{calls.path_segment(task_id)}"
        return calls.read(await self._execute(calls.get(path)), Task.from_api)

    async def wait_for_task(self, task_id: str, timeout: float = 300.0, poll: float = 1.0) -> Task:
        """Poll until the task has succeeded or failed (check `task.status`); raises
        TaskTimeoutError after `timeout` seconds."""
        started, slept = time.monotonic(), 0.0
        while True:
            task = await self.get_task(task_id)
            if task.done:
                return task
            waited = max(slept, time.monotonic() - started)
            if waited >= timeout:
                raise TaskTimeoutError(task_id, task.status, waited)
            pause = min(poll, timeout - waited)
            await self._sleep(pause)
            slept += pause

    async def create_policy(
        self,
        name: str,
        decision_point: str = "default",
        spec: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Policy:
        """Create the policy serving `decision_point`; with a `spec` (e.g. `{"learner":
        "linucb"}`) version 1 is registered and live at once."""
        call = calls.create_policy(name, decision_point, spec, description)
        return calls.read(await self._execute(call), Policy.from_api)

    async def get_policy(self, name: str) -> Policy:
        """One policy by name."""
        path = f"/policies/{calls.path_segment(name)}"
        return calls.read(await self._execute(calls.get(path)), Policy.from_api)

    # -- service ----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """The server's liveness answer (no credentials needed)."""
        return calls.read(await self._execute(calls.get("/health", auth=False)), calls.an_object)

    async def me(self) -> dict[str, Any]:
        """Who the server thinks you are: subject, app, roles, kind of credential."""
        return calls.read(await self._execute(calls.get("/me")), calls.an_object)

    # -- buffer and lifecycle ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records queued and not yet sent (buffered mode; 0 otherwise)."""
        return self._flusher.size if self._flusher is not None else 0

    async def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait; True when all of it was settled (stored, or
        reported to `on_rejected`), False if sending failed or `timeout` ran out (the records
        stay queued). Unbuffered clients have nothing to flush."""
        if self._flusher is None:
            return True
        return await self._flusher.flush(timeout)

    async def close(self, timeout: float | None = 10.0) -> None:
        """Flush (waiting at most `timeout` seconds), then release connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await self._flusher.close(timeout)
        await self._http.aclose()
        if self._own_transport is not None:
            await self._own_transport.aclose()

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Same as `close` (httpx's spelling)."""
        await self.close(timeout)

    async def __aenter__(self) -> AsyncAgentLightningClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
