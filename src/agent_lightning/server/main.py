"""Entry point for uvicorn: `uvicorn agent_lightning.server.main:app_from_env --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from agent_lightning.config import Settings


def app_from_env() -> FastAPI:
    from agent_lightning.observability import configure_logging_from_env
    from agent_lightning.server.app import create_app
    from agent_lightning.server.wiring import with_components

    configure_logging_from_env()  # AGL_LOG_LEVEL, AGL_LOG_FORMAT=json|text
    from agent_lightning.gateway import mount_gateway_if_configured

    settings = Settings.from_env()
    state = with_components(settings)
    from agent_lightning.dashboard.warmup import install_warmup

    install_warmup(state)  # the first dashboard load after a restart should not wait
    app = create_app(settings, state=state)
    # The OpenAI-compatible gateway, when runtimes/runtime.yaml (or $AGL_RUNTIME_CONFIG) exists.
    mount_gateway_if_configured(app, state)
    return app
