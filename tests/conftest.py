"""Shared fixtures: a real store (SQLite file, or PostgreSQL in its own schema) and a real app.

PostgreSQL: `AGL_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test). Each
test that uses it gets a fresh schema, dropped afterwards. Where no server can be reached the
PostgreSQL variants are skipped with a clear message, except under CI (`CI=true`), where an
unreachable PostgreSQL is a failure: CI must not silently skip it.
"""

from __future__ import annotations

import os

# Rich wraps CLI output at 80 columns when it is not a terminal, so a long temporary path could
# split the words a test looks for. Set before the CLI's consoles are created (at import).
os.environ.setdefault("COLUMNS", "250")
# NumPy and SciPy each load an OpenBLAS that starts one busy-waiting thread per core. The tests'
# matrices are small, so on a 2-core machine shared with other work those threads only compete
# with the test (and with the servers it starts, which inherit this): one thread each made
# tests/learning/test_simulation.py, test_ope.py, tests/test_controller.py and
# tests/runtime/test_edge.py take 74-77 s instead of 87-93 s. Set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import shutil  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent_lightning.config import Settings
from agent_lightning.store import Store

POSTGRES_URL = os.environ.get("AGL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_reachable: bool | None = None


def postgres_available() -> bool:
    global _pg_reachable
    if _pg_reachable is None:
        try:
            import psycopg

            with psycopg.connect(
                POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3
            ):
                _pg_reachable = True
        except Exception:  # noqa: BLE001 - any failure means unavailable
            _pg_reachable = False
    return _pg_reachable


def require_postgres() -> None:
    if postgres_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}; CI must test it")
    pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL} (set AGL_TEST_POSTGRES_URL)")


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a brand-new schema; the schema is dropped afterwards."""
    import psycopg

    schema = f"agl_test_{uuid.uuid4().hex[:12]}"
    raw = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in raw else "?"
    try:
        yield f"{raw}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


_sqlite_template: Path | None = None


def migrated_sqlite_url(path: Path) -> str:
    """A SQLite URL at `path` whose file already holds the newest schema.

    A copy of one database migrated once per test session: running the Alembic migrations for
    every new store took about 0.25 s, and hundreds of tests start from an empty store. The
    migrations themselves still run wherever a test builds a store at a path of its own.
    """
    global _sqlite_template
    if _sqlite_template is None:
        template = Path(tempfile.mkdtemp(prefix="agl-template-")) / "agl.db"
        Store(f"sqlite:///{template}").close()  # closing the last connection folds in the WAL
        _sqlite_template = template
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield migrated_sqlite_url(tmp_path / "agl.db")
        return
    require_postgres()
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite_url(tmp_path / "agl.db")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=migrated_sqlite_url(tmp_path / "agl.db"),
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
        token_burst=1000,
        token_rate=1000.0,
    )


@dataclass
class Api:
    """The app served in-process by Starlette's TestClient (an httpx.Client), plus identities."""

    app: object
    store: Store
    client: httpx.Client

    def new_client(self, app_id: str = "acme", roles: tuple[str, ...] = ("AgentAdmin",)):
        from agent_lightning.security.audit import Actor, AuditLog
        from agent_lightning.security.identities import create_client

        return create_client(self.store, AuditLog(self.store), app_id, list(roles), Actor("test"))

    def token(self, app_id: str = "acme", roles: tuple[str, ...] = ("AgentAdmin",)) -> str:
        new = self.new_client(app_id, roles)
        response = self.client.post(
            "/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": new.client_id,
                "client_secret": new.secret,
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def auth(self, app_id: str = "acme", roles: tuple[str, ...] = ("AgentAdmin",)) -> dict:
        return {"Authorization": f"Bearer {self.token(app_id, roles)}"}


def make_api(settings: Settings, store: Store) -> Api:
    from fastapi.testclient import TestClient

    from agent_lightning.server.app import create_app

    app = create_app(settings, store=store)
    # TestClient is an httpx.Client driving the ASGI app in-process (no socket).
    client = TestClient(app, base_url="http://testserver")
    return Api(app, store, client)


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[Api]:
    store = Store(settings.database_url)
    made = make_api(settings, store)
    yield made
    made.client.close()
    store.close()


@pytest.fixture
def learn_calls(monkeypatch) -> list[int]:
    """How many logged decisions each `Policy.learn` call was given, in order."""
    from agent_lightning.learning import policy as policy_module

    calls: list[int] = []
    learn = policy_module.Policy.learn

    def counting_learn(self, examples):
        examples = list(examples)
        calls.append(len(examples))
        return learn(self, examples)

    monkeypatch.setattr(policy_module.Policy, "learn", counting_learn)
    return calls
