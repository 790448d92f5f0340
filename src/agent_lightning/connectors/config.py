"""The ``connectors:`` block of ``agent.yaml``: one validated model per connector.

Configs hold the *names* of credentials (an environment variable, a stored secret), never their
values, so a config can be printed, logged and diffed safely.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent_lightning.connectors.errors import ConnectorConfigError

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
AuthType = Literal["none", "bearer", "api_key", "basic"]
_IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    """How a connector proves who it is. Values come from env vars or stored secrets.

    - ``bearer``: ``Authorization: Bearer <token>``; token from ``token_env`` or ``secret``.
    - ``api_key``: ``<header>: <key>`` (header default ``X-API-Key``); key from ``token_env``
      or ``secret``.
    - ``basic``: user from ``username`` or ``username_env``; password from ``password_env`` or
      ``secret``.
    """

    type: AuthType = "none"
    token_env: str | None = None
    secret: str | None = Field(default=None, description="name of a stored (encrypted) secret")
    header: str | None = None
    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> AuthConfig:
        given = {k for k in self.model_fields_set if k != "type" and getattr(self, k) is not None}
        allowed = {
            "none": set(),
            "bearer": {"token_env", "secret"},
            "api_key": {"token_env", "secret", "header"},
            "basic": {"username", "username_env", "password_env", "secret"},
        }[self.type]
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} not used by auth type {self.type!r}")
        if self.type in ("bearer", "api_key"):
            if (self.token_env is None) == (self.secret is None):
                raise ValueError(f"auth type {self.type!r} needs exactly one of token_env, secret")
        if self.type == "basic":
            if (self.username is None) == (self.username_env is None):
                raise ValueError("auth type 'basic' needs exactly one of username, username_env")
            if (self.password_env is None) == (self.secret is None):
                raise ValueError("auth type 'basic' needs exactly one of password_env, secret")
        if self.header is not None and not _HEADER.match(self.header):
            raise ValueError(f"header {self.header!r} is not a valid HTTP header name")
        return self

    @property
    def header_name(self) -> str:
        return self.header or "X-API-Key"


class EndpointConfig(_Model):
    """One operation of a connector: ``GET /tickets/{id}`` plus what its answer must look like."""

    method: HttpMethod = "GET"
    path: str
    response_schema: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="default query parameters")
    timeout_ms: int | None = Field(default=None, ge=1, le=600_000)
    # None: GET/PUT/DELETE are safe to resend after a timeout or a 5xx, POST/PATCH are not
    # (a lost answer to POST /tickets would otherwise open the ticket twice).
    idempotent: bool | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/' (got {value!r})")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"bad placeholder in path {value!r}: {exc}") from None
        for name in fields:
            if not name.isidentifier():
                raise ValueError(f"placeholder {{{name}}} in {value!r} must be a plain name")
        return value

    @field_validator("response_schema")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                where = "/".join(str(p) for p in exc.path) or "(top level)"
                raise ValueError(f"not a valid JSON schema at {where}: {exc.message}") from None
        return value

    @property
    def placeholders(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.path) if f]

    @property
    def retry_unsafe_failures(self) -> bool:
        """Whether a timeout / 5xx may be retried (the request may already have taken effect)."""
        if self.idempotent is not None:
            return self.idempotent
        return self.method in _IDEMPOTENT_METHODS


class ConnectorConfig(_Model):
    """One REST connector: where it is, how it authenticates, how hard it tries, what it calls."""

    base_url: str
    auth: AuthConfig = Field(default_factory=AuthConfig)
    timeout_ms: int = Field(default=3000, ge=1, le=600_000, description="per attempt")
    retries: int = Field(default=2, ge=0, le=10, description="attempts after the first")
    backoff_ms: int = Field(default=100, ge=0, le=60_000, description="first retry delay")
    backoff_max_ms: int = Field(
        default=2000, ge=0, le=300_000, description="cap on a delay, also on Retry-After"
    )
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=100_000)
    test: str | None = None
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except Exception as exc:  # noqa: BLE001 - httpx raises several types
            raise ValueError(f"not a URL: {value!r} ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL with a host (got {value!r})")
        if url.userinfo:
            raise ValueError("base_url must not carry credentials; use auth")
        return value.rstrip("/")

    @field_validator("endpoints")
    @classmethod
    def _check_endpoint_names(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"endpoint name {name!r} must match [A-Za-z0-9_.-]+")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in ("authorization", "proxy-authorization"):
                raise ValueError(f"put credentials in auth, not in headers ({name})")
        return value

    @model_validator(mode="after")
    def _check_test(self) -> ConnectorConfig:
        if self.test is not None and self.test not in self.endpoints:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise ValueError(f"test endpoint {self.test!r} is not in endpoints (known: {known})")
        return self

    @property
    def test_endpoint(self) -> str | None:
        """The endpoint ``connectors test`` calls: ``test``, else one named ``health``."""
        if self.test is not None:
            return self.test
        return "health" if "health" in self.endpoints else None


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix]
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts)


def parse_connector_config(name: str, raw: Any, *, prefix: str = "connectors") -> ConnectorConfig:
    """Validate one connector's mapping; errors name the connector and the field."""
    where = f"{prefix}.{name}"
    if not _NAME.match(str(name)):
        raise ConnectorConfigError([f"{where}: connector name must match [A-Za-z0-9_.-]+"], name)
    if not isinstance(raw, Mapping):
        raise ConnectorConfigError([f"{where}: expected a mapping, got {type(raw).__name__}"], name)
    try:
        return ConnectorConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = [f"{_loc(where, tuple(e['loc']))}: {_describe(e)}" for e in exc.errors()]
        raise ConnectorConfigError(problems, name) from None


def parse_connectors(mapping: Any, *, prefix: str = "connectors") -> dict[str, ConnectorConfig]:
    """Validate a whole ``connectors:`` block, reporting every problem at once."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConnectorConfigError([f"{prefix}: expected a mapping of connector name to config"])
    configs: dict[str, ConnectorConfig] = {}
    problems: list[str] = []
    for name, raw in mapping.items():
        try:
            configs[str(name)] = parse_connector_config(str(name), raw, prefix=prefix)
        except ConnectorConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConnectorConfigError(problems)
    return configs
