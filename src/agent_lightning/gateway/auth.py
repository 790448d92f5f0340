"""Who is calling the gateway: the platform's bearer credentials, verified once and cached.

The server's own `authorize` dependency does a JWT check and a client lookup per request; on the
gateway's hot path that would cost more than the whole latency budget, so verified tokens are
kept until they expire, and "is this client revoked?" is a cached lookup refreshed every
`revocation_ttl` seconds (a revoked client keeps working for at most that long). Anything slow
(the scrypt check of an API key, an OIDC key fetch, a database read) runs in a worker thread so
the event loop never waits on it.

A verified caller is a `security.principal.Principal`, the same type the API's routes see.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_lightning.gateway.errors import GatewayError, unauthorized
from agent_lightning.security.principal import Principal
from agent_lightning.security.rbac import Permission, Role, allowed, roles_from_claims


class GatewayAuthenticator:
    def __init__(
        self,
        state: Any,
        *,
        revocation_ttl: float = 5.0,
        max_entries: int = 10_000,
        permission: Permission = Permission.TELEMETRY_WRITE,
    ) -> None:
        self.state = state
        self.revocation_ttl = revocation_ttl
        self.max_entries = max_entries
        self.permission = permission
        # token -> (expires at, monotonic clock; caller)
        self._tokens: dict[
            str, tuple[float, Principal, float]
        ] = {}  # (expires, caller, verified at)
        # client id -> (checked at, revoked?)
        self._clients: dict[str, tuple[float, bool]] = {}

    def cached(self, credential: str) -> Principal | None:
        """The caller for a credential seen before, or None (then call `authenticate`)."""
        hit = self._tokens.get(credential)
        if hit is None:
            return None
        now = time.monotonic()
        if hit[0] <= now:
            del self._tokens[credential]
            return None
        caller = hit[1]
        if caller.kind == "api_key" and now - hit[2] > self.revocation_ttl:
            return None  # recheck the key (and its owner) as often as a client's revocation
        if caller.kind == "client":
            checked = self._clients.get(caller.subject)
            if checked is None or now - checked[0] > self.revocation_ttl:
                return None
            if checked[1]:
                raise unauthorized("this client has been revoked", "invalid_token")
        return caller

    async def authenticate(self, header: bytes | None) -> Principal:
        credential = _bearer(header)
        caller = self.cached(credential)
        if caller is None:
            caller = await self._verify(credential)
        if not allowed(caller.roles, self.permission):
            raise GatewayError(
                403,
                "forbidden",
                f"your roles ({', '.join(caller.roles) or 'none'}) do not allow "
                f"{self.permission.value}",
            )
        return caller

    async def _verify(self, credential: str) -> Principal:
        from agent_lightning.security.tokens import InvalidToken

        state = self.state
        if credential.startswith("aglk_"):
            caller, ttl = await asyncio.to_thread(self._verify_api_key, credential)
            self._remember(credential, caller, ttl)
            return caller
        try:
            claims, kind = state.token_issuer.verify(credential), "client"
        except InvalidToken as own:
            if state.oidc is None:
                raise unauthorized(
                    f"the token is not valid: {own.message}", "invalid_token"
                ) from None
            try:
                claims = await asyncio.to_thread(state.oidc.verify, credential)
            except InvalidToken as exc:
                raise unauthorized(
                    f"the token is not valid: {exc.message}", "invalid_token"
                ) from None
            kind = "oidc"
            if not claims.app:
                raise GatewayError(403, "forbidden", "the token names no app") from None
        caller = Principal(claims.subject, claims.app, roles_from_claims(list(claims.roles)), kind)
        if kind == "client":
            revoked = await asyncio.to_thread(self._client_revoked, claims.subject)
            self._clients[claims.subject] = (time.monotonic(), revoked)
            if revoked:
                raise unauthorized("this client has been revoked", "invalid_token")
        ttl = claims.expires_at.timestamp() - time.time()
        self._remember(credential, caller, ttl)
        return caller

    def _remember(self, credential: str, caller: Principal, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._tokens) >= self.max_entries:
            self._tokens.clear()
        now = time.monotonic()
        self._tokens[credential] = (now + ttl, caller, now)

    def _client_revoked(self, client_id: str) -> bool:
        client = self.state.store.get_client(client_id)
        return client is None or client.revoked_at is not None

    def _verify_api_key(self, credential: str) -> tuple[Principal, float]:
        """Reuses the server's API key cache, so a key revoked through the API stops here too."""
        from agent_lightning.security.identities import key_owner_revoked
        from agent_lightning.security.passwords import parse_api_key, verify_secret

        state = self.state
        cache = state.api_key_cache
        # Revocation (of the key, or of the client that made it) is read from the store every
        # time: the server's cache only saves the slow hash check, and cannot see a revocation
        # made by the CLI. Our own cache keeps this to once per `revocation_ttl`.
        parsed = parse_api_key(credential)
        key = state.store.get_api_key(parsed[0]) if parsed else None
        if key is None or key.revoked_at is not None or key_owner_revoked(state.store, key):
            raise unauthorized("the API key is not valid or has been revoked", "invalid_token")
        principal = cache.get(credential)
        if principal is None:
            if parsed is None or not verify_secret(parsed[1], key.secret_hash):
                raise unauthorized("the API key is not valid or has been revoked", "invalid_token")
            principal = Principal(
                key.owner, key.app_id, tuple(Role(r) for r in key.roles), "api_key", key.id
            )
            cache.put(credential, principal)
        # Our own cache of keys stays short: the server's cache is the one revocation clears.
        return principal, min(self.revocation_ttl, getattr(cache, "ttl", 60.0))


def _bearer(header: bytes | None) -> str:
    if not header:
        raise unauthorized(
            "send your agent-lightning token as the API key (Authorization: Bearer <token>)",
            "missing_api_key",
        )
    scheme, _, credential = header.decode("latin-1").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise unauthorized("use the Bearer scheme: Authorization: Bearer <token>")
    return credential
