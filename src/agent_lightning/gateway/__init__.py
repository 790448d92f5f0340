"""Gateway: an OpenAI-compatible proxy that observes, records and improves an agent's model calls.

An agent changes one setting (its base URL, or `OPENAI_BASE_URL`) to this server's address and
uses its agent-lightning token as the API key. Every call is forwarded to the upstream named in
`runtime.yaml`, captured as a span (redacted, written in the background), and, where a route
names a policy, given the prompt variant the learning engine chose for its session.

Importing this package registers the `gateway_spans` table on the shared declarative Base, so
Alembic's autogenerate sees it (`store/migrations/env.py` imports `agent_lightning.gateway`).
"""

from agent_lightning.gateway.app import ENDPOINTS, Gateway, is_gateway_path
from agent_lightning.gateway.capture import SpanRecord, SpanWriter, count_spans, list_spans
from agent_lightning.gateway.config import (
    Route,
    RoutePlan,
    Router,
    Runtime,
    RuntimeConfig,
    RuntimeConfigError,
    load_runtime_config,
    parse_runtime_config,
)
from agent_lightning.gateway.errors import GatewayError
from agent_lightning.gateway.models import GatewaySpan
from agent_lightning.gateway.mount import (
    GatewayDispatcher,
    mount_gateway,
    mount_gateway_if_configured,
)
from agent_lightning.gateway.policy import Choice, PolicyApplier, Variant
from agent_lightning.gateway.sink import SpanSink

__all__ = [
    "ENDPOINTS",
    "Choice",
    "Gateway",
    "GatewayDispatcher",
    "GatewayError",
    "GatewaySpan",
    "PolicyApplier",
    "Route",
    "RoutePlan",
    "Router",
    "Runtime",
    "RuntimeConfig",
    "RuntimeConfigError",
    "SpanRecord",
    "SpanSink",
    "SpanWriter",
    "Variant",
    "count_spans",
    "is_gateway_path",
    "list_spans",
    "load_runtime_config",
    "mount_gateway",
    "mount_gateway_if_configured",
    "parse_runtime_config",
]
