"""Entry point for uvicorn: `uvicorn agent_lightning.server.main:app_from_env --factory`."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from agent_lightning.config import Settings


def app_from_env() -> FastAPI:
    from agent_lightning.server.app import create_app
    from agent_lightning.server.wiring import with_components

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    return create_app(settings, state=with_components(settings))
