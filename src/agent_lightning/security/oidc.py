"""Accepting bearer tokens issued by an external OpenID Connect identity provider.

:class:`OIDCVerifier` validates a JWT access token against the IdP's published keys (JWKS):

- the signing keys come from ``jwks_url``, or from ``jwks_uri`` in
  ``{issuer}/.well-known/openid-configuration`` (whose ``issuer`` must match ours);
- keys are cached for ``cache_ttl_seconds``. A token naming an unknown ``kid`` triggers one
  refetch (the IdP may have rotated its keys), but the IdP is contacted at most once per
  ``min_refetch_interval`` (10 s) whatever happens, so a caller spraying random kids, or an
  IdP outage, cannot make every request hit the network. When a refresh fails, the keys we
  already have keep working for ``max_stale_seconds``;
- only asymmetric algorithms are accepted (default RS256, ES256, PS256). ``alg: none`` and
  every ``HS*`` algorithm are refused before any key is used: with HMAC allowed, an attacker
  could sign with the IdP's *public* key as the secret (RS/HS confusion). The key must also be
  of the type the algorithm expects, and symmetric (``oct``) JWKs are never loaded;
- issuer, audience (string or list in the token), ``exp``, ``nbf`` and ``iat`` are checked with
  a leeway; ``exp`` and ``sub`` are required.

Roles come from ``roles_claim``, which may be a dotted path into nested objects (Keycloak's
``realm_access.roles``) unless a top-level claim has that exact name (namespaced claims such as
``https://example.com/roles``); the value may be a list or a space-separated string. The app
comes from ``app_claim`` the same way, or is None.

Threading: :meth:`OIDCVerifier.verify` is synchronous and thread-safe; it does its rare
network fetches with a blocking ``httpx.Client`` (5 s timeout) while holding a lock, so
concurrent requests wait for one fetch instead of stampeding the IdP. From async code call
:meth:`OIDCVerifier.averify`, which runs it in a worker thread, or call ``verify`` from a
threadpool (FastAPI does this for sync dependencies).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from agent_lightning.security.errors import InvalidToken
from agent_lightning.security.tokens import (
    Claims,
    check_time_claims,
    read_unverified_header,
    required_subject,
    string_list,
    to_datetime,
    translate_jwt_error,
)

__all__ = ["OIDCVerifier", "resolve_claim"]

log = logging.getLogger(__name__)

# IdP tokens can be large (Azure AD group lists); still, bound what we parse.
MAX_TOKEN_LENGTH = 16 * 1024
# A JWKS or discovery document is a few KiB; refuse to buffer more than this.
MAX_DOCUMENT_BYTES = 1024 * 1024
MIN_RSA_BITS = 2048

# Algorithm -> (JWK kty, required curve for EC/OKP keys or None).
_ASYMMETRIC: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_PUBLIC_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RSA": (rsa.RSAPublicKey,),
    "EC": (ec.EllipticCurvePublicKey,),
    "OKP": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
# Members that only a private or symmetric JWK has; a JWKS must never publish them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})


def resolve_claim(payload: Mapping[str, Any], path: str) -> Any:
    """Look up ``path`` in ``payload``: the exact top-level name first, then a dotted path."""
    if path in payload:
        return payload[path]
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, what: str, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and (allow_http or _is_loopback(url)):
        return
    # Keys fetched over plain HTTP could be swapped by anyone on the path.
    raise ValueError(f"the OIDC {what} must be an https URL (http only for loopback)")


class OIDCVerifier:
    """Verify access tokens from an external OIDC provider; see the module docstring."""

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str],
        roles_claim: str = "roles",
        app_claim: str = "app",
        jwks_url: str | None = None,
        http_client: httpx.Client | None = None,
        cache_ttl_seconds: float = 300,
        leeway: float = 30,
        allowed_algorithms: Iterable[str] = ("RS256", "ES256", "PS256"),
        *,
        min_refetch_interval: float = 10.0,
        max_stale_seconds: float = 3600.0,
        http_timeout: float = 5.0,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required")
        _check_url(issuer, "issuer", allow_insecure_http)
        if jwks_url is not None:
            _check_url(jwks_url, "JWKS URL", allow_insecure_http)
        algorithms = tuple(allowed_algorithms)
        refused = [alg for alg in algorithms if alg not in _ASYMMETRIC]
        if refused or not algorithms:
            # HS* here would reopen RS/HS confusion; "none" needs no comment.
            raise ValueError(
                f"allowed_algorithms must be asymmetric JWS algorithms from {sorted(_ASYMMETRIC)}"
            )
        self.issuer = issuer
        self.audience: str | list[str] = audience if isinstance(audience, str) else list(audience)
        if not self.audience:
            raise ValueError("audience is required")
        self.roles_claim = roles_claim
        self.app_claim = app_claim
        self.allowed_algorithms = algorithms
        self.cache_ttl_seconds = float(cache_ttl_seconds)
        self.min_refetch_interval = float(min_refetch_interval)
        self.max_stale_seconds = float(max_stale_seconds)
        self.leeway = float(leeway)
        self._allow_http = allow_insecure_http
        self._clock = clock
        self._monotonic = monotonic
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=http_timeout, follow_redirects=False)
        self._jwks_url = jwks_url
        self._lock = threading.Lock()
        self._jwks: dict[str, dict[str, Any]] | None = None  # kid -> JWK (public, signing)
        self._unnamed: list[dict[str, Any]] = []  # JWKs without a kid
        self._prepared: dict[tuple[int, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch (monotonic)
        self._attempted_at: float | None = None  # last fetch attempt, successful or not

    def __enter__(self) -> OIDCVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client:
            self._http.close()

    # -- fetching ----------------------------------------------------------------------------

    def _get_json(self, url: str) -> dict[str, Any]:
        """GET a JSON object, size-capped; InvalidToken(idp_unreachable) on any failure."""
        try:
            with self._http.stream("GET", url, headers={"Accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise ValueError(f"HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ValueError("document too large")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return document
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            log.warning("OIDC: fetching %s failed: %s", url, exc)
            raise InvalidToken(
                "idp_unreachable", "the identity provider could not be reached"
            ) from None

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url)
        # OIDC Discovery §4.3: the document must name the very issuer we asked about.
        jwks_uri = document.get("jwks_uri")
        if document.get("issuer") != self.issuer or not isinstance(jwks_uri, str):
            log.error(
                "OIDC: discovery document at %s is for another issuer or has no jwks_uri", url
            )
            raise InvalidToken("idp_misconfigured", "the identity provider is misconfigured")
        try:
            _check_url(jwks_uri, "jwks_uri", self._allow_http)
        except ValueError:
            log.error("OIDC: discovery document at %s names a non-https jwks_uri", url)
            raise InvalidToken(
                "idp_misconfigured", "the identity provider is misconfigured"
            ) from None
        return jwks_uri

    def _fetch_keys(self) -> None:
        """Fetch and replace the key set. Caller holds the lock and has rate-limited."""
        self._attempted_at = self._monotonic()
        if self._jwks_url is None:
            self._jwks_url = self._discover()
        document = self._get_json(self._jwks_url)
        entries = document.get("keys")
        if not isinstance(entries, list):
            log.error("OIDC: JWKS at %s has no keys list", self._jwks_url)
            raise InvalidToken("idp_misconfigured", "the identity provider is misconfigured")
        by_kid: dict[str, dict[str, Any]] = {}
        unnamed: list[dict[str, Any]] = []
        for jwk in entries:
            if not isinstance(jwk, dict) or jwk.get("kty") not in _PUBLIC_KEY_TYPES:
                continue  # symmetric ("oct") or unknown key types are never usable here
            if jwk.get("use", "sig") != "sig" or _PRIVATE_MEMBERS & jwk.keys():
                continue
            kid = jwk.get("kid")
            if isinstance(kid, str):
                by_kid[kid] = jwk
            elif kid is None:
                unnamed.append(jwk)
        self._jwks, self._unnamed, self._prepared = by_kid, unnamed, {}
        self._fetched_at = self._attempted_at

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refetch_interval

    def refresh(self) -> None:
        """Fetch the keys now (e.g. at startup), still honouring the refetch interval."""
        with self._lock:
            if self._may_fetch(self._monotonic()):
                self._fetch_keys()

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if self._jwks is None:
            return None
        if kid is not None:
            return self._jwks.get(kid)
        # No kid in the token: only unambiguous when the IdP publishes a single key.
        candidates = list(self._jwks.values()) + self._unnamed
        return candidates[0] if len(candidates) == 1 else None

    def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for a token header, fetching the JWKS when needed."""
        with self._lock:
            now = self._monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= self.cache_ttl_seconds
            if stale and self._may_fetch(now):
                try:
                    self._fetch_keys()
                except InvalidToken:
                    # Keep serving the keys we have while the IdP is briefly unavailable.
                    if self._fetched_at is None or now - self._fetched_at > self.max_stale_seconds:
                        self._jwks, self._unnamed, self._prepared = None, [], {}
                        raise
            if self._jwks is None:
                raise InvalidToken(
                    "idp_unreachable", "the identity provider's keys are not available"
                )
            jwk = self._lookup(kid)
            if jwk is None and self._may_fetch(now):
                # An unknown kid may mean the IdP rotated its keys: look once more. A failure
                # here is logged by the fetch; for the caller the key simply stays unknown.
                try:
                    self._fetch_keys()
                except InvalidToken:
                    pass
                jwk = self._lookup(kid)
            if jwk is None:
                raise InvalidToken("unknown_key", "the token was signed with an unknown key")
            # Same lock section as the lookup: the cache is keyed by the JWK object's id,
            # which is only unique while that object is in the current key set.
            return self._prepare_key(jwk, alg)

    def _prepare_key(self, jwk: dict[str, Any], alg: str) -> jwt.PyJWK:
        cache_key = (id(jwk), alg)
        prepared = self._prepared.get(cache_key)
        if prepared is not None:
            return prepared
        kty, crv = _ASYMMETRIC[alg]
        declared = jwk.get("alg")
        if (
            jwk.get("kty") != kty
            or (crv is not None and jwk.get("crv") != crv)
            or (declared is not None and declared != alg)
        ):
            # The key exists but is not for this algorithm: refuse rather than guess.
            raise InvalidToken("unknown_key", "no key of the right type for this token")
        try:
            prepared = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            log.warning("OIDC: the IdP published an unusable %s key", kty)
            raise InvalidToken("unknown_key", "the signing key cannot be used") from None
        if not isinstance(prepared.key, _PUBLIC_KEY_TYPES[kty]):
            raise InvalidToken("unknown_key", "the signing key cannot be used")
        if isinstance(prepared.key, rsa.RSAPublicKey) and prepared.key.key_size < MIN_RSA_BITS:
            raise InvalidToken("bad_key", "the signing key is too weak")
        self._prepared[cache_key] = prepared
        return prepared

    # -- verification ------------------------------------------------------------------------

    def verify(self, token: str) -> Claims:
        """Verify an IdP access token; raises :class:`InvalidToken` with a reason code."""
        header = read_unverified_header(token, MAX_TOKEN_LENGTH)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.allowed_algorithms:
            # Before any key lookup: refuses "none", HS* (RS/HS confusion) and anything unlisted.
            raise InvalidToken("unsupported_algorithm", "the token's algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed", "the token's key id is not a string")
        key = self._key_for(kid, alg)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise translate_jwt_error(exc) from None
        iat, exp = check_time_claims(payload, self._clock(), self.leeway, require_iat=False)
        subject = required_subject(payload)
        app = resolve_claim(payload, self.app_claim)
        scopes = payload.get("scope", payload.get("scp"))
        jti = payload.get("jti")
        return Claims(
            subject=subject,
            app=app if isinstance(app, str) and app else None,
            roles=string_list(resolve_claim(payload, self.roles_claim), self.roles_claim),
            scopes=string_list(scopes, "scope"),
            issued_at=to_datetime(iat) if iat is not None else None,
            expires_at=to_datetime(exp),
            token_id=jti if isinstance(jti, str) else None,
            raw=payload,
        )

    async def averify(self, token: str) -> Claims:
        """:meth:`verify` in a worker thread, so a key fetch never blocks the event loop."""
        return await asyncio.to_thread(self.verify, token)
