"""Alembic environment: runs on the connection the store hands it (see engine.upgrade_schema)."""

from alembic import context

import agent_lightning.gateway.models  # noqa: F401  (registers gateway_spans on Base)
import agent_lightning.observability.models  # noqa: F401  (trace_spans, alerts)
import agent_lightning.publisher.models  # noqa: F401  (rollouts, runtime_reports)
from agent_lightning.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs `alembic` by hand
    raise RuntimeError("run migrations through agent_lightning.store (Store.open)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
