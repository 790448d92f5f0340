"""Engines for the two supported databases, and schema migrations on open.

SQLite is the embedded default: WAL so readers never block the writer, `synchronous=FULL` so an
acknowledged commit survives a crash, foreign keys on (SQLite leaves them off by default), and a
busy timeout so concurrent writers queue instead of failing. PostgreSQL is reached through psycopg
with a short connect timeout, so a database that is down fails fast (the API turns that into 503).
Several servers may share one PostgreSQL database: schema setup is serialised between them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Advisory locks are per database; the schema is part of their key, so stores in separate
# schemas of one database never wait for each other. `:name` says what is locked.
PG_LOCK_KEY = "hashtextextended(current_schema() || ' ' || :name, 0)"


class DriverMissing(ImportError, ValueError):
    """The database's driver is not installed (a ValueError too: a configuration problem, which
    the CLI reports in one line)."""


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (`postgres://`, `postgresql://`) and pick our driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_store_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=20,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401 - only to say what to install; SQLAlchemy loads it
        except ImportError:
            raise DriverMissing(
                "PostgreSQL needs the psycopg driver: pip install 'agent-lightning[postgres]'"
            ) from None
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=20,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args={"connect_timeout": 3},
        )
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://"
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def upgrade_schema(engine: Engine) -> None:
    """Bring the database to the newest schema with Alembic (idempotent).

    On PostgreSQL, servers started together would each create Alembic's table and the schema
    at once, and all but one fail: each migrates under a transaction-level advisory lock, so the
    others wait and then find the schema already at head.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"), {"name": "agl.migrate"}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
