"""``ConnectorRegistry``: every connector of an ``agent.yaml``, validated before the first call."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from agent_lightning.connectors._auth import SecretSource
from agent_lightning.connectors.config import parse_connectors
from agent_lightning.connectors.errors import ConnectorConfigError, ConnectorError
from agent_lightning.connectors.rest import RestConnector


class ConnectorRegistry:
    """Connectors by name; ``registry["kb"]`` raises ``ConnectorError(kind="config")`` if unknown.

    Close it (or use it as a context manager) to release the pooled HTTP connections.
    """

    def __init__(self, connectors: Mapping[str, RestConnector] | None = None) -> None:
        self._connectors = dict(connectors or {})

    @classmethod
    def from_config(
        cls,
        mapping: Mapping[str, Any] | None,
        env: Mapping[str, str] | None = None,
        secrets: SecretSource | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> ConnectorRegistry:
        """Build every connector of a ``connectors:`` block, or raise one ``ConnectorConfigError``
        listing every problem (``connectors.kb.auth.token_env: environment variable ... not set``).

        ``env`` defaults to ``os.environ``; ``secrets`` resolves ``auth.secret`` names (a mapping or
        a function, e.g. over ``security.secrets.get_secret``).
        """
        configs = parse_connectors(mapping)
        env = os.environ if env is None else env
        built: dict[str, RestConnector] = {}
        problems: list[str] = []
        for name, config in configs.items():
            try:
                built[name] = RestConnector(
                    name, config, env=env, secrets=secrets, transport=transport
                )
            except ConnectorConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            for connector in built.values():
                connector.close()
            raise ConnectorConfigError(problems)
        return cls(built)

    def __getitem__(self, name: str) -> RestConnector:
        try:
            return self._connectors[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ConnectorError(
                name, None, "config", f"unknown connector (configured: {known})"
            ) from None

    def get(self, name: str, default: RestConnector | None = None) -> RestConnector | None:
        return self._connectors.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._connectors

    def __iter__(self) -> Iterator[str]:
        return iter(self._connectors)

    def __len__(self) -> int:
        return len(self._connectors)

    def names(self) -> list[str]:
        return sorted(self._connectors)

    def __repr__(self) -> str:
        return f"ConnectorRegistry({self.names()})"

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()

    def __enter__(self) -> ConnectorRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
