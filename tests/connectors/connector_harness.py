"""Shared by the connector tests: the token and connector configs for the reference service."""

from __future__ import annotations

import socket
from typing import Any

TOKEN = "ref-token-0123456789abcdef"
ENV = {"REF_TOKEN": TOKEN, "REF_USER": "agent"}

SEARCH_SCHEMA = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "body", "score"],
                "properties": {"title": {"type": "string"}, "score": {"type": "number"}},
            },
        }
    },
}


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connector_config(base_url: str, **overrides: Any) -> dict[str, Any]:
    """The connectors: entry the templates use for the reference service, with test-fast timing."""
    config: dict[str, Any] = {
        "base_url": base_url,
        "auth": {"type": "bearer", "token_env": "REF_TOKEN"},
        "timeout_ms": 2000,
        "retries": 2,
        "backoff_ms": 20,
        "backoff_max_ms": 500,
        "test": "health",
        "endpoints": {
            "health": {"method": "GET", "path": "/health"},
            "search": {
                "method": "GET",
                "path": "/kb/search",
                "params": {"limit": 3},
                "response_schema": SEARCH_SCHEMA,
            },
            "create": {"method": "POST", "path": "/tickets"},
            "get": {"method": "GET", "path": "/tickets/{id}"},
            "update": {"method": "PATCH", "path": "/tickets/{id}"},
            "customer": {"method": "GET", "path": "/crm/customers/{id}"},
        },
    }
    config.update(overrides)
    return config
