"""Putting the gateway in front of the server, or running it on its own.

`mount_gateway(app, state)` adds an outermost ASGI dispatcher to the FastAPI app: the gateway's
paths go straight to the gateway (no FastAPI routing, dependency injection or middleware on the
hot path), everything else to FastAPI as before. The gateway's routes live under `/v1` like the
REST API's, but none collide (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
`/v1/responses`, `/v1/models`, plus the `/s/{session}/v1/...` forms).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from agent_lightning.gateway.app import Gateway, is_gateway_path
from agent_lightning.gateway.config import RuntimeConfig, config_path, load_runtime_config

log = logging.getLogger("agent_lightning.gateway")


class GatewayDispatcher:
    """ASGI middleware: gateway paths to the gateway, the rest to the wrapped app."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_gateway_path(scope["path"]):
            await self.gateway.handle(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            receive = self._closing_upstream(receive)
        await self.app(scope, receive, send)

    def _closing_upstream(self, receive: Any) -> Any:
        # The upstream session is async and must close on its own loop; the server's shutdown
        # hooks are sync, so close it here as the shutdown message goes by.
        async def wrapped() -> dict:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.gateway.upstream.aclose()
            return message

        return wrapped


def mount_gateway(
    app: Any,
    state: Any,
    config: RuntimeConfig | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
) -> Gateway:
    """Serve the gateway from the FastAPI `app`; call before the app starts.

    The span writer starts and stops with the app (registered in `state.extras`), so captured
    spans are flushed on shutdown. Returns the gateway (also in `state.extras["gateway"]`).
    """
    if isinstance(state.extras.get("gateway"), Gateway):
        return state.extras["gateway"]  # mounted already (idempotent wiring)
    config = config or load_runtime_config(config_path)
    gateway = Gateway(state, config)
    app.add_middleware(GatewayDispatcher, gateway=gateway)
    state.extras["gateway"] = gateway
    state.extras.setdefault("on_startup", []).append(gateway.start)
    state.extras.setdefault("on_shutdown", []).append(gateway.stop)
    return gateway


def mount_gateway_if_configured(app: Any, state: Any) -> Gateway | None:
    """`mount_gateway` when a runtime.yaml exists; without one the server runs without a gateway.

    A file that exists but is invalid still raises: a typo must stop the server, not silently
    turn the gateway off.
    """
    path = config_path()
    if not path.exists():
        log.info("no runtime configuration at %s: the gateway is off", path)
        return None
    return mount_gateway(app, state, load_runtime_config(path))
