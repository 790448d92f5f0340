"""Settings, read once from the environment.

Every knob has a sane default so that `agent-lightning serve` works on a fresh machine with no
configuration: SQLite under the project directory, a signing key created on first use.

Environment variables (all optional):

- `AGL_DATA_DIR`: where the embedded database and keys live (default `./.agl`).
- `AGL_DATABASE_URL`: SQLAlchemy URL; `postgresql://...` uses PostgreSQL through psycopg.
- `AGL_JWT_SECRET`: signing key for access tokens (default: a key file in the data dir).
- `AGL_TOKEN_TTL_SECONDS`: lifetime of issued access tokens (default 900).
- `AGL_MAX_BODY_BYTES`: largest request body accepted (default 1 MiB).
- `AGL_MAX_ARTIFACT_BYTES`: largest policy-version upload (`POST /v1/policies/{name}/versions`,
  default 64 MiB): a trained policy keeps its recent examples and is megabytes, not kilobytes.
- `AGL_MAX_BATCH`: most records in one batch (default 1000).
- `AGL_TOKEN_BURST`: failed sign-ins allowed at once per client id and per address before
  the token endpoint answers 429 (default 10; they come back at one a second).
- `AGL_RETENTION_EVERY_SECONDS`: how often retention rules are enforced (default hourly).
- `AGL_BLAS_THREADS`: threads numpy's BLAS may use in the server process (default 1; 0 keeps the
  library's own choice, one per core). A learning task's matrix work otherwise spreads over every
  core and the decisions served beside it wait: see `benchmarks/decide_under_learning.py`.
- `AGL_DECISION_SEED`: seed the decision service's sampling, so a replay of the same traffic
  makes the same choices (demos, tests). Unset in production: each process draws fresh
  randomness.
- `AGL_OIDC_ISSUER`, `AGL_OIDC_AUDIENCE`, `AGL_OIDC_ROLES_CLAIM`, `AGL_OIDC_APP_CLAIM`: accept
  tokens from an external identity provider.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting."""


def _int_env(name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'agent-lightning.db').resolve()}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".agl"))
    database_url: str = ""
    jwt_secret: str | None = None
    token_ttl_seconds: int = 900
    max_body_bytes: int = 1024 * 1024
    max_artifact_bytes: int = 64 * 1024 * 1024
    max_batch: int = 1000
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_roles_claim: str = "roles"
    oidc_app_claim: str = "app"
    # Token endpoint brute-force protection: failed attempts per second and burst, per client
    # id and per address.
    token_rate: float = 1.0
    token_burst: int = 10
    retention_every_seconds: float = 3600.0
    decision_seed: int | None = None
    blas_threads: int = 1

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(self.data_dir))

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        data_dir = Path(os.environ.get("AGL_DATA_DIR") or ".agl")
        settings = cls(
            data_dir=data_dir,
            database_url=os.environ.get("AGL_DATABASE_URL", ""),
            jwt_secret=os.environ.get("AGL_JWT_SECRET") or None,
            token_ttl_seconds=_int_env("AGL_TOKEN_TTL_SECONDS", 900),
            max_body_bytes=_int_env("AGL_MAX_BODY_BYTES", 1024 * 1024),
            max_artifact_bytes=_int_env("AGL_MAX_ARTIFACT_BYTES", 64 * 1024 * 1024),
            max_batch=_int_env("AGL_MAX_BATCH", 1000),
            oidc_issuer=os.environ.get("AGL_OIDC_ISSUER") or None,
            oidc_audience=os.environ.get("AGL_OIDC_AUDIENCE") or None,
            oidc_roles_claim=os.environ.get("AGL_OIDC_ROLES_CLAIM") or "roles",
            oidc_app_claim=os.environ.get("AGL_OIDC_APP_CLAIM") or "app",
            token_burst=_int_env("AGL_TOKEN_BURST", 10),
            retention_every_seconds=float(_int_env("AGL_RETENTION_EVERY_SECONDS", 3600)),
            decision_seed=_int_env("AGL_DECISION_SEED", None, minimum=0),
            blas_threads=_int_env("AGL_BLAS_THREADS", 1, minimum=0),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings
