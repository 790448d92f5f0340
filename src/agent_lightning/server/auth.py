"""Who is calling, and may they: identities for every request, checked against the RBAC table.

Three kinds of bearer credential are accepted on every route:

- our own short-lived JWT, from `POST /v1/oauth/token` (OAuth2 client credentials);
- a token from an external OIDC identity provider, when one is configured;
- a personal API key (`aglk_<id>_<secret>`), revocable, for scripts.

`authorize` runs on every `/v1` route (it is a router-level dependency), looks the matched route
up in `security.rbac.ROUTE_PERMISSIONS`, and refuses with 401/403. Tenancy is enforced by the
store: every query is scoped to `principal.app_id`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request

from agent_lightning.security.principal import Principal
from agent_lightning.security.rbac import Role, roles_from_claims
from agent_lightning.server.errors import APIError

if TYPE_CHECKING:
    from agent_lightning.store import ApiKey, Store


def _unauthorized(message: str, code: str = "unauthorized") -> APIError:
    return APIError(
        401, code, message, headers={"WWW-Authenticate": 'Bearer realm="agent-lightning"'}
    )


class ApiKeyCache:
    """Verifying an API key costs a slow KDF; remember good keys briefly (revocation clears)."""

    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(full_key: str) -> str:
        return hashlib.sha256(full_key.encode()).hexdigest()

    def get(self, full_key: str) -> Principal | None:
        with self._lock:
            hit = self._entries.get(self._key(full_key))
            if hit and hit[0] > time.monotonic():
                return hit[1]
            return None

    def put(self, full_key: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._key(full_key)] = (time.monotonic() + self.ttl, principal)

    def forget_key_id(self, key_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, p) in self._entries.items() if p.token_id == key_id]:
                del self._entries[k]


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(request: Request) -> Principal:
    """Resolve the bearer credential of a request into a Principal, or raise 401."""
    from agent_lightning.security.passwords import parse_api_key, verify_secret

    state = request.app.state.agl
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("send a bearer token: Authorization: Bearer <token>")
    remote = _client_address(request)

    if credential.startswith("aglk_"):
        parsed = parse_api_key(credential)
        key = state.store.get_api_key(parsed[0]) if parsed else None
        # Revocation (of the key or of its owner) is checked on every request, cache hit or not:
        # the cache only saves the slow KDF, and it cannot see a revocation made by the CLI.
        if key is None or key.revoked_at is not None or _owner_revoked(state.store, key):
            raise _unauthorized("the API key is not valid or has been revoked", "invalid_token")
        cached = state.api_key_cache.get(credential)
        if cached is not None:
            return cached
        if not verify_secret(parsed[1], key.secret_hash):
            raise _unauthorized("the API key is not valid or has been revoked", "invalid_token")
        principal = Principal(
            key.owner, key.app_id, tuple(Role(r) for r in key.roles), "api_key", key.id, remote
        )
        state.api_key_cache.put(credential, principal)
        return principal

    claims, kind = _verify_bearer(state, credential)
    if kind == "oidc" and not claims.app:
        raise APIError(403, "forbidden", "the token names no app; ask your administrator")
    if kind == "client":
        client = state.store.get_client(claims.subject)
        if client is None or client.revoked_at is not None:
            raise _unauthorized("this client has been revoked", "invalid_token")
    roles = roles_from_claims(list(claims.roles))
    # Kept so a long-lived response (the SSE stream) can end when the token does.
    extra = {"expires_at": claims.expires_at.timestamp()}
    return Principal(claims.subject, claims.app, roles, kind, claims.token_id, remote, extra)


def _owner_revoked(store: Store, key: ApiKey) -> bool:
    from agent_lightning.security.identities import key_owner_revoked

    return key_owner_revoked(store, key)


def credentials_still_valid(state: Any, principal: Principal) -> bool:
    """Recheck what `authenticate` checked, for a response that outlives its request (SSE):
    the token has not expired, and the client or API key (and the key's owner) is not revoked."""
    expires_at = principal.extra.get("expires_at")
    if expires_at is not None and time.time() >= expires_at:
        return False
    store = state.store
    if principal.kind == "client":
        client = store.get_client(principal.subject)
        return client is not None and client.revoked_at is None
    if principal.kind == "api_key":
        key = store.get_api_key(principal.token_id) if principal.token_id else None
        return key is not None and key.revoked_at is None and not _owner_revoked(store, key)
    return True


def _verify_bearer(state, credential: str):  # noqa: ANN001, ANN202
    """Our own token first; then the external identity provider, if one is configured."""
    from agent_lightning.security.tokens import InvalidToken

    try:
        return state.token_issuer.verify(credential), "client"
    except InvalidToken as own_error:
        if state.oidc is None:
            message = f"the token is not valid: {own_error.message}"
            raise _unauthorized(message, "invalid_token") from None
    try:
        return state.oidc.verify(credential), "oidc"
    except InvalidToken as exc:
        raise _unauthorized(f"the token is not valid: {exc.message}", "invalid_token") from None


API_PREFIX = "/v1"


def route_template(request: Request) -> str | None:
    """The full path template of the matched route (e.g. `/v1/events/{event_id}`).

    Our routers are mounted once, under `/v1`, and FastAPI hands the dependency the router's own
    route (path without the prefix); `create_app` checks at startup that this holds for every
    route, so the lookup cannot silently drift.
    """
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return None
    return path if path.startswith(API_PREFIX + "/") else API_PREFIX + path


def authorize(request: Request) -> Principal | None:
    """Router-level dependency: authenticate, then check the route's permission."""
    from agent_lightning.security.rbac import ROUTE_PERMISSIONS

    path = route_template(request)
    key = (request.method.upper(), path or "")
    if key not in ROUTE_PERMISSIONS:
        # Fail closed: a route missing from the table is refused (and app startup checks it).
        raise APIError(403, "forbidden", "this route has no access rule")
    permission = ROUTE_PERMISSIONS[key]
    if permission is None:
        request.state.principal = None
        return None
    principal = authenticate(request)
    request.state.principal = principal
    if not principal.can(permission):
        raise APIError(
            403,
            "forbidden",
            f"your roles ({', '.join(principal.roles) or 'none'}) do not allow {permission.value}",
        )
    return principal


def current_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # pragma: no cover - authorize always ran first on protected routes
        raise _unauthorized("authentication required")
    return principal
