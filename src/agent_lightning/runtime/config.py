"""`agent.yaml`: how one deployed agent runtime is wired (policy, server, keys, state, listen).

Loaded once at start-up and validated strictly (unknown keys are errors, reported with the file
and line), so a typo cannot silently turn off signature checks or point the outbox elsewhere.
Relative paths are resolved against the directory of the file, not the working directory, so
`agent-lightning run --config deploy/agent.yaml` works from anywhere. Secrets never live in the
file: it names environment variables (`client_secret_env`, `token_env`, connectors'
`auth.token_env`) and a literal secret in the file is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent_lightning._yaml import YamlSyntaxError, parse_yaml, validation_problems

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Keys that would hold a secret value; the file must name an env var (`*_env`) instead.
# (A connector's `auth.secret` is the *name* of a stored secret, so it is allowed.)
_SECRET_KEYS = frozenset({"token", "password", "client_secret", "api_key_value"})


class RuntimeConfigError(ValueError):
    """The agent.yaml is missing, not YAML, or invalid; the message names file:line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    """The agent-lightning server the runtime syncs with (policies in, telemetry out)."""

    url: str = Field(pattern=r"^https?://", max_length=2000)
    client_id_env: str = Field(default="AGL_CLIENT_ID", pattern=ENV_NAME)
    client_secret_env: str = Field(default="AGL_CLIENT_SECRET", pattern=ENV_NAME)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class ListenConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8900, ge=0, le=65535)


class SyncConfig(_Strict):
    """How often the runtime asks for a new manifest, and whether it holds the SSE stream."""

    poll_seconds: float = Field(default=2.0, gt=0, le=3600)
    stream: bool = True
    report_seconds: float = Field(default=30.0, gt=0, le=3600)


class OutboxConfig(_Strict):
    """The durable event queue: its bound and how it uploads."""

    max_records: int = Field(default=100_000, ge=10)
    batch_size: int = Field(default=200, ge=1, le=1000)
    max_backoff_seconds: float = Field(default=30.0, gt=0, le=3600)


class RuntimeConfig(_Strict):
    """One runtime's `agent.yaml`. `base_dir` is where relative paths were resolved from."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    policy: Path
    server: ServerConfig | None = None
    trusted_keys: list[Path] = Field(default_factory=list)
    state_dir: Path = Path(".agl-runtime")
    listen: ListenConfig = Field(default_factory=ListenConfig)
    token_env: str = Field(default="AGL_RUNTIME_TOKEN", pattern=ENV_NAME)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    connectors: dict[str, Any] = Field(default_factory=dict)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("connectors")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = _literal_secret(value, "connectors")
        if where:
            raise ValueError(
                f"{where} holds a secret value; name an environment variable instead "
                f"(e.g. token_env: MY_TOKEN)"
            )
        return value

    # -- derived --------------------------------------------------------------------------------

    def resolve(self, path: Path) -> Path:
        """A path from the file, made absolute against the file's directory."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def policy_path(self) -> Path:
        return self.resolve(self.policy)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def trusted_key_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.trusted_keys]

    def load_trusted_keys(self) -> list[Any]:
        """The Ed25519 public keys bundles must be signed with (RuntimeConfigError if unusable)."""
        from agent_lightning.publisher.bundle import BundleError, load_public_key

        keys = []
        for path in self.trusted_key_paths:
            try:
                keys.append(load_public_key(path.read_bytes()))
            except OSError as exc:
                raise RuntimeConfigError(f"trusted key {path}: {exc.strerror}") from None
            except BundleError as exc:
                raise RuntimeConfigError(f"trusted key {path}: {exc}") from None
        return keys

    def server_credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """(client_id, secret) from the named env vars; None when no server or they are unset."""
        env = os.environ if env is None else env
        if self.server is None:
            return None
        client_id = env.get(self.server.client_id_env) or ""
        secret = env.get(self.server.client_secret_env) or ""
        if not client_id or not secret:
            return None
        return client_id, secret

    def service_token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The bearer token callers of the run service must present (from `token_env`)."""
        env = os.environ if env is None else env
        return env.get(self.token_env) or None


def _literal_secret(value: Any, path: str) -> str | None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            here = f"{path}.{key}"
            if str(key).lower() in _SECRET_KEYS and isinstance(child, str | int) and child != "":
                return here
            found = _literal_secret(child, here)
            if found:
                return found
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found = _literal_secret(child, f"{path}[{index}]")
            if found:
                return found
    return None


def load_runtime_config(path: str | Path) -> RuntimeConfig:
    """Read and validate an agent.yaml; relative paths resolve against its directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RuntimeConfigError(f"{path}: no such file (the runtime's agent.yaml)") from None
    except OSError as exc:
        raise RuntimeConfigError(f"{path}: {exc.strerror}") from None
    return parse_runtime_config(text, str(path), base_dir=path.resolve().parent)


def parse_runtime_config(
    text: str, source: str = "agent.yaml", *, base_dir: Path | None = None
) -> RuntimeConfig:
    """Validate agent.yaml text; errors read `agent.yaml:7: sync.poll_seconds: ...`."""
    try:
        data, node = parse_yaml(text, source)
    except YamlSyntaxError as exc:
        raise RuntimeConfigError(str(exc)) from None
    if not isinstance(data, Mapping):
        raise RuntimeConfigError(f"{source}: expected a mapping (name, policy, server, ...)")
    if "base_dir" in data:
        raise RuntimeConfigError(f"{source}: base_dir: set by the loader, not in the file")
    try:
        return RuntimeConfig.model_validate({**data, "base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise RuntimeConfigError("; ".join(validation_problems(exc, node, source))) from None


__all__ = [
    "ListenConfig",
    "OutboxConfig",
    "RuntimeConfig",
    "RuntimeConfigError",
    "ServerConfig",
    "SyncConfig",
    "load_runtime_config",
    "parse_runtime_config",
]
