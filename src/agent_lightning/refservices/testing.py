"""Run the reference service on loopback in a background thread (tests, demos, templates)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agent_lightning.refservices.app import create_app
from agent_lightning.refservices.faults import Faults


class RefServiceServer:
    """uvicorn on 127.0.0.1 (a free port by default); ``url``, ``app`` and ``faults`` once started.

    ``with RefServiceServer(tmp_path / "ref.db", token="t") as ref: ...``
    """

    def __init__(
        self,
        db_path: str | Path,
        token: str | None,
        *,
        port: int = 0,
        faults: Faults | None = None,
        **app_options: Any,
    ) -> None:
        import uvicorn

        self.faults = faults if faults is not None else Faults()
        self.app = create_app(db_path, token, faults=self.faults, **app_options)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="refservices", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hits(self) -> Any:
        """Requests seen per ``"METHOD /path"`` (a ``collections.Counter``)."""
        return self.app.state.hits

    def start(self) -> RefServiceServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reference service did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> RefServiceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
