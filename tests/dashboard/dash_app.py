"""The real app with the dashboard wired in, for the dashboard tests.

The server includes the dashboard's router and page itself; this only gives the tests one place
to build it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from fastapi import FastAPI

from agent_lightning.config import Settings
from agent_lightning.server.app import create_app
from agent_lightning.server.state import ServerState, build_state
from agent_lightning.store import Store


def dashboard_app(
    settings: Settings, store: Store, state: ServerState | None = None, **kwargs
) -> FastAPI:
    return create_app(settings, state=state or build_state(settings, store), **kwargs)


@contextlib.contextmanager
def module_settings(database: str, tmp_path_factory, name: str) -> Iterator[Settings]:
    """Settings on a fresh SQLite file or PostgreSQL schema, for a module-scoped seeded app."""
    from tests.conftest import postgres_schema_url, require_postgres

    tmp = tmp_path_factory.mktemp(name)
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'agl.db'}",
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
        token_burst=1000,
        token_rate=1000.0,
    )
    if database != "postgres":
        yield settings
        return
    require_postgres()
    with postgres_schema_url() as url:
        yield replace(settings, database_url=url)
