"""The FastAPI application: wiring only. Logic lives in the components it calls.

`create_app()` builds the components from Settings, mounts the `/v1` API behind the RBAC check,
and refuses to start if any route is missing from the access table.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_lightning import __version__, dashboard
from agent_lightning.config import Settings
from agent_lightning.observability import install_observability, instrument_app
from agent_lightning.publisher.service import install_publisher
from agent_lightning.security.rbac import ROUTE_PERMISSIONS
from agent_lightning.server.auth import API_PREFIX, authorize
from agent_lightning.server.errors import error_body, install_error_handlers
from agent_lightning.server.routes import admin, health, policies, rollouts, telemetry
from agent_lightning.server.state import ServerState, build_state
from agent_lightning.store import Store

log = logging.getLogger("agent_lightning.server")


# Policy-version uploads carry a base64 artifact: they get `max_artifact_bytes`, not the 1 MiB.
ARTIFACT_UPLOAD_PATHS = re.compile(rf"{API_PREFIX}/policies/[^/]+/versions")


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before reading them whole (pure ASGI, streaming)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        large_paths: re.Pattern[str] | None = None,
        large_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Routes whose bodies are legitimately big (policy artifacts) get their own ceiling.
        self.large_paths = large_paths
        self.large_max_bytes = large_max_bytes or max_bytes

    def _limit(self, scope: Scope) -> int:
        if self.large_paths is not None and self.large_paths.fullmatch(scope.get("path", "")):
            return self.large_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, send, request_id, limit)
            return
        received = 0
        too_large = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(scope, send, request_id, limit)

    async def _too_large(self, scope: Scope, send: Send, request_id: str, limit: int) -> None:
        import json

        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"the request body is larger than {limit} bytes",
                },
                "request_id": request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _request_id(scope: Scope) -> str:
    given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
    if given and len(given) <= 64 and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex


_CHECKED_ROUTE_TABLES: set[frozenset[tuple[str, str]]] = set()


def check_route_table(app: FastAPI, routers: list[APIRouter]) -> None:
    """Every /v1 route must have an access rule: fail at startup, not in production."""
    # What `auth.route_template` will compute for each route must be what is served.
    computed = frozenset(
        (method, API_PREFIX + route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )
    # The table is a property of the routes, so one check per process and table is enough:
    # building the OpenAPI schema costs about 0.1 s, and tests build hundreds of apps.
    if computed in _CHECKED_ROUTE_TABLES:
        return
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(API_PREFIX)
        for method in operations
    }
    if computed != served:
        raise RuntimeError(f"route templates drifted: {sorted(computed ^ served)}")
    missing = sorted(f"{m} {p}" for m, p in served if (m, p) not in ROUTE_PERMISSIONS)
    if missing:
        listing = ", ".join(missing)
        raise RuntimeError(f"routes without an access rule in rbac.ROUTE_PERMISSIONS: {listing}")
    _CHECKED_ROUTE_TABLES.add(computed)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    state: ServerState | None = None,
    start_background: bool = True,
) -> FastAPI:
    settings = settings or Settings.from_env()
    state = state or build_state(settings, store)
    install_observability(state)
    install_publisher(state)  # the rollout manager and selector behind the rollouts routes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_background:
            for hook in app.state.agl.extras.get("on_startup", []):
                hook()
        try:
            yield
        finally:
            for hook in reversed(app.state.agl.extras.get("on_shutdown", [])):
                hook()

    app = FastAPI(
        title="agent-lightning",
        version=__version__,
        description="Make deployed AI agents learn from their own mistakes. Every route but "
        "health and the token endpoint needs a bearer token (POST /v1/oauth/token).",
        lifespan=lifespan,
    )
    app.state.agl = state
    install_error_handlers(app)

    routers = [health.router, admin.router, telemetry.router, policies.router, dashboard.router]
    routers.append(rollouts.router)  # the publisher's: rollouts, registry, distribution
    routers += state.extras.get("routers", [])
    for router in routers:
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(authorize)])

    @app.middleware("http")
    async def _no_store(request: Request, call_next):
        response = await call_next(request)
        if request.url.path.startswith(API_PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        large_paths=ARTIFACT_UPLOAD_PATHS,
        large_max_bytes=settings.max_artifact_bytes,
    )
    instrument_app(app, state)  # outermost: counts 413s too
    check_route_table(app, routers)
    dashboard.mount_dashboard(app)  # GET / and /static/*: the page holds no data itself
    _ = error_body  # re-exported for components that build their own responses
    return app
