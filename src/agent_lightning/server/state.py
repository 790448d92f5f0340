"""The components one server process wires together, built once from Settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from agent_lightning.config import Settings
from agent_lightning.ingestion import DataIngestionPipeline
from agent_lightning.policy_engine import DecisionService
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Store


@dataclass
class ServerState:
    settings: Settings
    store: Store
    pipeline: DataIngestionPipeline
    decisions: DecisionService
    audit: AuditLog
    token_issuer: Any
    oidc: Any | None
    token_limiter: Any
    api_key_cache: Any
    controller: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def secret_box(self) -> Any:
        """Encryption for connector credentials: keys from AGL_ENCRYPTION_KEYS or a key file."""
        if "secret_box" not in self.extras:
            from agent_lightning.security.crypto import SecretBox, load_or_create_keyfile

            if os.environ.get("AGL_ENCRYPTION_KEYS"):
                self.extras["secret_box"] = SecretBox.from_env()
            else:
                keys = load_or_create_keyfile(self.settings.data_dir / "encryption.keys")
                self.extras["secret_box"] = SecretBox(keys)
        return self.extras["secret_box"]


def build_state(settings: Settings, store: Store | None = None) -> ServerState:
    from agent_lightning.security.ratelimit import RateLimiter
    from agent_lightning.security.tokens import TokenIssuer, load_or_create_signing_key
    from agent_lightning.server.auth import ApiKeyCache

    store = store or Store(settings.database_url)
    pipeline = DataIngestionPipeline(store, max_batch=settings.max_batch)
    if settings.jwt_secret:
        signing_key: bytes = settings.jwt_secret.encode()
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        signing_key = load_or_create_signing_key(settings.data_dir / "jwt.key")
    issuer = TokenIssuer(signing_key, ttl_seconds=settings.token_ttl_seconds)
    oidc = None
    if settings.oidc_issuer:
        from agent_lightning.security.oidc import OIDCVerifier

        oidc = OIDCVerifier(
            settings.oidc_issuer,
            settings.oidc_audience or "agent-lightning",
            roles_claim=settings.oidc_roles_claim,
            app_claim=settings.oidc_app_claim,
            jwks_url=os.environ.get("AGL_OIDC_JWKS_URL") or None,
        )
    return ServerState(
        settings=settings,
        store=store,
        pipeline=pipeline,
        decisions=DecisionService(store, pipeline, seed=settings.decision_seed),
        audit=AuditLog(store),
        token_issuer=issuer,
        oidc=oidc,
        token_limiter=RateLimiter(rate=settings.token_rate, burst=settings.token_burst),
        api_key_cache=ApiKeyCache(),
    )
