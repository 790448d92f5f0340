"""The one exception a connector raises.

::

    ConnectorError            kind: unreachable | timeout | http_error | invalid_response
    └── ConnectorConfigError        | rate_limited | config

The runtime turns a ``ConnectorError`` into an escalation, so its ``str()`` is written for a
person: ``tickets.create: cannot reach http://127.0.0.1:8801 (connection refused) after 3
attempts``. Messages never contain credentials.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "unreachable", "timeout", "http_error", "invalid_response", "rate_limited", "config"
]
ERROR_KINDS: tuple[str, ...] = (
    "unreachable",
    "timeout",
    "http_error",
    "invalid_response",
    "rate_limited",
    "config",
)


class ConnectorError(Exception):
    """A connector call (or its configuration) failed; ``kind`` says how."""

    def __init__(
        self,
        connector: str,
        endpoint: str | None,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        *,
        attempts: int = 0,
        problems: tuple[str, ...] | list[str] = (),
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown ConnectorError kind {kind!r}")
        self.connector = connector
        self.endpoint = endpoint
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.attempts = attempts
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(self.__str__())

    @property
    def where(self) -> str:
        return f"{self.connector}.{self.endpoint}" if self.endpoint else self.connector

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def __repr__(self) -> str:
        return (
            f"ConnectorError(connector={self.connector!r}, endpoint={self.endpoint!r}, "
            f"kind={self.kind!r}, status={self.status!r}, message={self.message!r})"
        )


class ConnectorConfigError(ConnectorError):
    """The ``connectors:`` block is invalid; ``problems`` lists every bad field, one per line."""

    def __init__(self, problems: list[str], connector: str = "") -> None:
        text = problems[0] if len(problems) == 1 else "\n".join(["invalid connectors:", *problems])
        super().__init__(connector, None, "config", text, problems=problems)

    def __str__(self) -> str:
        return self.message
