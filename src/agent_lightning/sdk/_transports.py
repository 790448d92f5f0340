"""A blocking transport that calls an ASGI app in-process.

`httpx.ASGITransport` is async-only. `SyncASGITransport` runs it on a private event loop in a
daemon thread and hands each request over, so the sync client (and its background flusher) can
talk to the real server app without sockets: `AgentLightningClient(..., app=create_app())`.
Like `httpx.ASGITransport`, it does not run the app's lifespan (startup / shutdown hooks).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx


class SyncASGITransport(httpx.BaseTransport):
    """Serve requests from an ASGI app in-process, for blocking httpx clients."""

    def __init__(self, app: Any, *, client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self.app = app
        self._inner = httpx.ASGITransport(app=app, client=client)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="agl-sdk-asgi", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(self._handle(request), self._running_loop())
        return future.result()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        response = await self._inner.handle_async_request(forwarded)
        try:  # raw bytes: any content-encoding is left for the outer client to decode
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
