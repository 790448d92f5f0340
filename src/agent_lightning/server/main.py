"""Entry point for uvicorn: `uvicorn agent_lightning.server.main:app_from_env --factory`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from agent_lightning.config import Settings
from agent_lightning.gateway.app import Gateway
from agent_lightning.gateway.config import RuntimeConfig


def app_from_env() -> FastAPI:
    from agent_lightning.observability import configure_logging_from_env
    from agent_lightning.server.app import create_app
    from agent_lightning.server.wiring import with_components

    configure_logging_from_env()  # AGL_LOG_LEVEL, AGL_LOG_FORMAT=json|text
    from agent_lightning.gateway import mount_gateway_if_configured

    settings = Settings.from_env()
    state = with_components(settings)
    limit_blas_threads(settings.blas_threads)  # after the imports that load BLAS
    from agent_lightning.dashboard.warmup import install_warmup

    install_warmup(state)  # the first dashboard load after a restart should not wait
    app = create_app(settings, state=state)
    # The OpenAI-compatible gateway, when runtimes/runtime.yaml (or $AGL_RUNTIME_CONFIG) exists.
    mount_gateway_if_configured(app, state)
    return app


def limit_blas_threads(threads: int) -> None:
    """Cap the threads of every BLAS numpy and scipy loaded (0: leave the library's default).

    Learning runs on a worker thread beside the threads answering decisions. Left to itself,
    OpenBLAS spreads a learning task's matrix work over every core, and a decision that arrives
    meanwhile waits: on 2 cores, hybrid decide p99 while learning was 9.8 ms against 1.8 ms with
    one BLAS thread (`benchmarks/decide_under_learning.py`), for about a third slower learning.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")  # process-wide, not scoped


def create_gateway_app(
    settings: Settings | None = None,
    config: RuntimeConfig | None = None,
    *,
    state: Any | None = None,
) -> Gateway:
    """The gateway alone, as an ASGI app with its own lifespan (no REST API)."""
    from agent_lightning.gateway.config import load_runtime_config
    from agent_lightning.server.state import build_state

    settings = settings or Settings.from_env()
    state = state or build_state(settings)
    return Gateway(state, config or load_runtime_config())


def gateway_from_env() -> Gateway:
    """`uvicorn agent_lightning.server.main:gateway_from_env --factory`"""
    return create_gateway_app()
