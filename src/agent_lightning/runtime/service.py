"""`agent-lightning run`: one agent as a small authenticated HTTP service, online or offline.

    POST /v1/messages  {text, session_id?, user_id?, attributes?}  -> the AgentResponse as JSON
    POST /v1/feedback  {decision_id, resolved? | value? | correct_intent?, session_id?}
    GET  /v1/status    versions served, rollout, outbox, last sync, server reachable
    GET  /health       liveness (no auth)

`EdgeRuntime` wires the pieces from agent.yaml: the policy YAML, the connectors (with the
knowledge-base snapshot as an offline fallback), the durable outbox as the recorder, the policy
sync, and a `RolloutDecider` serving the version the manifest assigns to each unit. It starts
from disk, so the service answers even when the server is down at start-up.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agent_lightning.runtime.config import RuntimeConfig, RuntimeConfigError
from agent_lightning.runtime.outbox import OutboxFullError

log = logging.getLogger("agent_lightning.runtime.service")

MAX_MESSAGE = 8_000
MAX_ATTRIBUTES_BYTES = 4_096
Ident = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class ServiceConfigError(RuntimeConfigError):
    """The service cannot start as configured (no token, unreadable keys, bad policy...)."""


# -- request bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _small_attributes(value: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError("attributes must be plain JSON") from exc
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes are {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}")
    return value


class MessageIn(_Body):
    """One customer message."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE)]
    session_id: Ident | None = None
    user_id: Ident | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _attrs = field_validator("attributes")(_small_attributes)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip() or "\x00" in value:
            raise ValueError("text must not be blank or contain NUL characters")
        return value


class FeedbackIn(_Body):
    """The outcome of one decision: resolved or not, an explicit reward, or the right intent."""

    decision_id: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
    ]
    resolved: bool | None = None
    value: float | None = Field(default=None, ge=-1e6, le=1e6)
    correct_intent: Ident | None = None
    session_id: Ident | None = None


# -- the wired runtime ---------------------------------------------------------------------------


class EdgeRuntime:
    """Everything one `agent-lightning run` holds, built from a `RuntimeConfig`.

    ``env`` supplies the environment variables agent.yaml names (default ``os.environ``).
    """

    def __init__(self, config: RuntimeConfig, *, env: Mapping[str, str] | None = None) -> None:
        from agent_lightning.connectors import ConnectorRegistry
        from agent_lightning.runtime.agent import AgentRuntime
        from agent_lightning.runtime.edge import (
            OfflineConnectors,
            PolicySync,
            RolloutDecider,
            ServerSession,
            kb_export_fetcher,
        )
        from agent_lightning.runtime.local import LocalDecider
        from agent_lightning.runtime.outbox import Outbox
        from agent_lightning.runtime.spec import PolicySpecError, load_policy_spec

        env = os.environ if env is None else env
        self.config = config
        try:
            self.spec = load_policy_spec(config.policy_path)
        except PolicySpecError as exc:
            raise ServiceConfigError(str(exc)) from None
        except OSError as exc:
            raise ServiceConfigError(f"policy {config.policy_path}: {exc.strerror}") from None
        keys = config.load_trusted_keys()
        if not keys:
            log.warning(
                "agent.yaml lists no trusted_keys: no bundle from the server can be verified, so "
                "the runtime serves the zero-shot policy from %s",
                config.policy_path,
            )
        state = config.state_path
        state.mkdir(parents=True, exist_ok=True)

        credentials = config.server_credentials(env)
        self.client = None
        self.session = None
        if config.server is not None and credentials is None:
            log.warning(
                "%s / %s are not set: running offline (nothing is uploaded, no policy is pulled)",
                config.server.client_id_env,
                config.server.client_secret_env,
            )
        if config.server is not None and credentials is not None:
            from agent_lightning.sdk import AgentLightningClient

            client_id, secret = credentials
            timeout = config.server.timeout_seconds
            self.client = AgentLightningClient(
                client_id, secret, config.server.url, timeout=timeout, max_retries=0
            )
            self.session = ServerSession(config.server.url, client_id, secret, timeout=timeout)

        self.outbox = Outbox(
            state / "outbox.db",
            self.client,
            max_records=config.outbox.max_records,
            batch_size=config.outbox.batch_size,
            max_backoff=config.outbox.max_backoff_seconds,
        )
        from agent_lightning.connectors import ConnectorError

        try:
            self.registry = (
                ConnectorRegistry.from_config(config.connectors, env) if config.connectors else None
            )
        except ConnectorError as exc:
            self.outbox.close(0)
            raise ServiceConfigError(str(exc)) from None
        if self.registry is None:
            # A runtime without connectors is a choice (their actions escalate); say so once.
            for problem in self.spec.connector_problems(None):
                log.warning("%s: those actions will escalate", problem)
        elif problems := self.spec.connector_problems(self.registry):
            # A typo in a connector or endpoint name: refuse now, as `eval` does, rather than
            # escalate every message that needs it.
            self.outbox.close(0)
            self.registry.close()
            raise ServiceConfigError("\n".join(problems))
        try:
            self.kb_fetch = kb_export_fetcher(config.connectors, env=env) if self.registry else None
        except ConnectorError as exc:
            self.outbox.close(0)
            if self.registry is not None:
                self.registry.close()
            raise ServiceConfigError(str(exc)) from None
        self.sync = PolicySync(
            state,
            self.spec.name,
            keys,
            session=self.session,
            runtime_id=re.sub(r"[^A-Za-z0-9._:@-]", "-", f"{config.name}@{os.uname().nodename}"),
            poll_seconds=config.sync.poll_seconds,
            stream=config.sync.stream,
            report_seconds=config.sync.report_seconds,
            kb_fetch=self.kb_fetch,
            queued=self.outbox.pending,
        )
        connectors = (
            OfflineConnectors(self.registry, self.sync.kb) if self.registry is not None else None
        )
        spec = self.spec
        self.decider = RolloutDecider(
            self.sync,
            fallback=LocalDecider(spec),
            make_decider=lambda policy, version: LocalDecider(
                spec, policy, policy_name=spec.name, policy_version=version
            ),
        )
        from agent_lightning.runtime.tracing import tracer_from_env

        # Spans (message → decide → actions → connector calls) when OTEL_* asks for them.
        tracer, self._tracer_provider = tracer_from_env()
        self.agent = AgentRuntime(spec, self.decider, self.outbox, connectors, tracer=tracer)
        self._closed = threading.Event()

    def start(self) -> None:
        """Begin uploading and syncing in the background (first sync attempt included)."""
        self.outbox.start()
        self.sync.start()

    def status(self) -> dict[str, Any]:
        sync = self.sync.snapshot()
        outbox = self.outbox.status()
        reachable = sync["server_reachable"]
        if outbox["server_reachable"] is False:
            reachable = False
        return {
            "name": self.config.name,
            "policy": self.spec.name,
            "serving": sync["serving"],
            "live_version": sync["live_version"],
            "versions": sync["versions"],
            "rollout": sync["rollout"],
            "server": self.config.server.url if self.config.server else None,
            "server_reachable": reachable,
            "last_sync": sync["last_sync"],
            "sync": sync,
            "outbox": outbox,
            "pending": outbox["pending"],
        }

    def close(self, flush_timeout: float = 5.0) -> None:
        """Stop syncing, flush the outbox best-effort, release connections; idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.sync.stop()
        self.agent.close()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()  # exports the last spans
        self.outbox.close(flush_timeout if self.client is not None else 0)
        if self.client is not None:
            self.client.close(timeout=1.0)
        if self.session is not None:
            self.session.close()
        if self.registry is not None:
            self.registry.close()
        close_kb = getattr(self.kb_fetch, "close", None)
        if close_kb is not None:
            close_kb()


# -- the app -------------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def create_runtime_app(
    config: RuntimeConfig,
    *,
    env: Mapping[str, str] | None = None,
    insecure_no_auth: bool = False,
    runtime: EdgeRuntime | None = None,
    start_background: bool = True,
) -> FastAPI:
    """The run service for one agent.yaml. Refuses to build without a bearer token in the env
    var `config.token_env`, unless ``insecure_no_auth`` (local experiments only)."""
    env = os.environ if env is None else env
    token = config.service_token(env)
    if token is None and not insecure_no_auth:
        raise ServiceConfigError(
            f"set {config.token_env} to the bearer token callers must present "
            "(or pass --insecure-no-auth for a local experiment)"
        )
    edge = runtime or EdgeRuntime(config, env=env)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_background:
            edge.start()
        try:
            yield
        finally:
            await run_in_threadpool(edge.close)

    app = FastAPI(
        title=f"agent-lightning runtime: {config.name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.edge = edge

    def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), token.encode()
        ):
            raise _Unauthorized()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]}
            for e in exc.errors()
            if isinstance(e, dict)
        ]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:]) or "body"
        return _error(422, "invalid_request", f"{where}: {first['msg']}", errors=problems)

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        response = _error(401, "unauthorized", "send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    guarded = [Depends(authorize)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.post("/v1/messages", dependencies=guarded)
    async def messages(body: MessageIn) -> JSONResponse:
        response = await run_in_threadpool(
            edge.agent.handle,
            body.text,
            session_id=body.session_id,
            user_id=body.user_id,
            attributes=body.attributes,
        )
        return JSONResponse(response.to_dict())

    @app.post("/v1/feedback", dependencies=guarded)
    async def feedback(body: FeedbackIn) -> JSONResponse:
        from agent_lightning.runtime.agent import DecisionNotRecorded

        if body.resolved is None and body.value is None and body.correct_intent is None:
            return _error(422, "invalid_request", "give resolved, value or correct_intent")
        try:
            reward = await run_in_threadpool(
                edge.agent.feedback,
                body.decision_id,
                resolved=body.resolved,
                value=body.value,
                correct_intent=body.correct_intent,
                session_id=body.session_id,
            )
        except OutboxFullError as exc:
            return _error(503, "outbox_full", str(exc))
        except DecisionNotRecorded as exc:
            return _error(409, "decision_not_recorded", str(exc))
        except ValueError as exc:
            return _error(422, "invalid_request", str(exc))
        return JSONResponse(
            {"reward_id": reward.id, "decision_id": reward.decision_id, "value": reward.value},
            status_code=202,
        )

    @app.get("/v1/status", dependencies=guarded)
    async def status() -> dict[str, Any]:
        return edge.status()

    return app


class _Unauthorized(Exception):
    pass


__all__ = [
    "EdgeRuntime",
    "FeedbackIn",
    "MessageIn",
    "ServiceConfigError",
    "create_runtime_app",
]
