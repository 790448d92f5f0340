"""REST connectors: the runtime's way to reach knowledge bases, ticketing and CRM systems.

``ConnectorRegistry.from_config(agent_yaml["connectors"])`` validates every connector up front;
``registry["tickets"].call("create", json={...})`` returns a ``ConnectorResponse`` or raises a
``ConnectorError`` whose ``kind`` is one of ``unreachable | timeout | http_error |
invalid_response | rate_limited | config``.
"""

from agent_lightning.connectors._auth import SecretSource
from agent_lightning.connectors.config import (
    AuthConfig,
    ConnectorConfig,
    EndpointConfig,
    parse_connector_config,
    parse_connectors,
)
from agent_lightning.connectors.errors import ERROR_KINDS, ConnectorConfigError, ConnectorError
from agent_lightning.connectors.ratelimit import TokenBucket
from agent_lightning.connectors.registry import ConnectorRegistry
from agent_lightning.connectors.rest import ConnectorResponse, ConnectorTestReport, RestConnector

__all__ = [
    "AuthConfig",
    "ConnectorConfig",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorRegistry",
    "ConnectorResponse",
    "ConnectorTestReport",
    "ERROR_KINDS",
    "EndpointConfig",
    "RestConnector",
    "SecretSource",
    "TokenBucket",
    "parse_connector_config",
    "parse_connectors",
]
