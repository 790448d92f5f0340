"""Issuing and verifying our own short-lived access tokens (OAuth2 client-credentials result).

Tokens are JWTs (RFC 9068 style, header ``typ: at+jwt``) signed with a symmetric key
(HS256 by default) and carrying ``iss``, ``aud``, ``sub`` (the client id), ``app``,
``roles``, optional ``scope``, ``iat``, ``nbf``, ``exp`` and a random ``jti``.

Verification pins the algorithm: the header's ``alg`` must equal the configured one, so
``alg: none`` and algorithm-confusion tokens (RS256/ES256 headers, or another HS variant) are
refused before any cryptography runs. Issuer, audience and token type are checked, and
``exp``, ``nbf``, ``iat`` are checked against an injectable clock with a small leeway
(default 30 s) for clock skew. ``exp``, ``iat``, ``sub`` and ``app`` are required.

Signing key: the server uses ``AGL_JWT_SECRET`` when set (at least 32 bytes for HS256; 48 and
64 for HS384/HS512, per RFC 7518 §3.2), otherwise a 32-byte random key kept in a 0600 file
created by :func:`load_or_create_signing_key`. Reading the environment is the caller's job.
Changing the key invalidates every outstanding token, which is the way to revoke them all.

The header/time-claim helpers below are shared with :mod:`.oidc`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from agent_lightning.security.crypto import warn_if_exposed, write_private_file
from agent_lightning.security.errors import InvalidToken, SecurityError

__all__ = [
    "Claims",
    "InvalidToken",
    "IssuedToken",
    "SecurityError",
    "TokenIssuer",
    "load_or_create_signing_key",
]

TOKEN_TYPE = "at+jwt"
SIGNING_KEY_BYTES = 32
_HMAC_MIN_KEY = {"HS256": 32, "HS384": 48, "HS512": 64}
# Our tokens are a few hundred bytes; anything much larger is not ours and not worth parsing.
MAX_OWN_TOKEN_LENGTH = 8 * 1024


@dataclass(frozen=True)
class IssuedToken:
    """The token endpoint's answer. ``access_token`` is kept out of the repr (logs)."""

    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"


@dataclass(frozen=True)
class Claims:
    """A verified token's identity, the same shape for our own tokens and OIDC tokens."""

    subject: str
    app: str | None
    roles: list[str]
    scopes: list[str]
    issued_at: datetime | None
    expires_at: datetime
    token_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


# -- helpers shared with oidc.py ------------------------------------------------------------


def read_unverified_header(token: object, max_length: int) -> dict[str, Any]:
    """Parse the JOSE header of a compact JWS without trusting it; InvalidToken if malformed."""
    if not isinstance(token, str) or not token:
        raise InvalidToken("malformed", "the token is not a string")
    if len(token) > max_length:
        raise InvalidToken("malformed", "the token is too long")
    if token.count(".") != 2:
        # Three segments only: refuses JWE (five) and anything that is not a JWT at all.
        raise InvalidToken("malformed", "the token is not a signed JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed", "the token header cannot be decoded") from None
    if "crit" in header or "b64" in header:
        # We understand no critical extensions, and b64=false (RFC 7797) changes what is
        # signed: neither appears in ordinary access tokens.
        raise InvalidToken("malformed", "the token uses unsupported header extensions")
    return header


def translate_jwt_error(exc: jwt.PyJWTError) -> InvalidToken:
    """Map a PyJWT error to an InvalidToken whose message never echoes the token."""
    # Most specific first: InvalidSignatureError is a DecodeError, and so on.
    if isinstance(exc, jwt.InvalidSignatureError):
        return InvalidToken("bad_signature", "the token signature is not valid")
    if isinstance(exc, jwt.ExpiredSignatureError):
        return InvalidToken("expired", "the token has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return InvalidToken("not_yet_valid", "the token is not valid yet")
    if isinstance(exc, jwt.InvalidAudienceError):
        return InvalidToken("bad_audience", "the token is not meant for this service")
    if isinstance(exc, jwt.InvalidIssuerError):
        return InvalidToken("bad_issuer", "the token comes from an issuer we do not trust")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        if exc.claim == "aud":
            return InvalidToken("bad_audience", "the token names no audience")
        if exc.claim == "iss":
            return InvalidToken("bad_issuer", "the token names no issuer")
        return InvalidToken("missing_claim", f"the token lacks the required claim {exc.claim}")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return InvalidToken("unsupported_algorithm", "the token's algorithm is not accepted")
    if isinstance(exc, jwt.InvalidKeyError):
        return InvalidToken("bad_key", "the verification key is not usable for this token")
    return InvalidToken("malformed", "the token cannot be decoded")


def _numeric_date(payload: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidToken("missing_claim", f"the token lacks the required claim {name}")
        return None
    # RFC 7519 NumericDate is a JSON number; PyJWT would also take "123" strings, we do not.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken("malformed", f"the {name} claim is not a number")
    return float(value)


def check_time_claims(
    payload: Mapping[str, Any], now: float, leeway: float, *, require_iat: bool
) -> tuple[float | None, float]:
    """Validate exp (required), nbf and iat against ``now``; returns ``(iat, exp)``."""
    exp = _numeric_date(payload, "exp", required=True)
    nbf = _numeric_date(payload, "nbf", required=False)
    iat = _numeric_date(payload, "iat", required=require_iat)
    assert exp is not None
    if now >= exp + leeway:
        raise InvalidToken("expired", "the token has expired")
    if nbf is not None and now + leeway < nbf:
        raise InvalidToken("not_yet_valid", "the token is not valid yet")
    if iat is not None and now + leeway < iat:
        # Issued in the future: a skewed or forged issuer; refuse rather than trust it.
        raise InvalidToken("not_yet_valid", "the token was issued in the future")
    return iat, exp


def to_datetime(timestamp: float) -> datetime:
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken("malformed", "a time claim is out of range") from None


def string_list(value: object, name: str) -> list[str]:
    """A claim that is a list of strings or a space-separated string, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidToken("malformed", f"the {name} claim is not a list of strings")


def required_subject(payload: Mapping[str, Any]) -> str:
    sub = payload.get("sub")
    if sub is None or sub == "":
        raise InvalidToken("missing_claim", "the token lacks the required claim sub")
    if not isinstance(sub, str):
        raise InvalidToken("malformed", "the sub claim is not a string")
    return sub


# -- our own issuer -------------------------------------------------------------------------


class TokenIssuer:
    """Issue and verify this server's HMAC-signed access tokens.

    ``clock`` returns the current Unix time; inject one in tests to move time.
    """

    def __init__(
        self,
        signing_key: bytes | str,
        issuer: str = "agent-lightning",
        audience: str = "agent-lightning",
        ttl_seconds: int = 900,
        algorithm: str = "HS256",
        *,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in _HMAC_MIN_KEY:
            raise ValueError(f"algorithm must be one of {sorted(_HMAC_MIN_KEY)}")
        key = signing_key.encode("utf-8") if isinstance(signing_key, str) else bytes(signing_key)
        if len(key) < _HMAC_MIN_KEY[algorithm]:
            # A short HMAC key can be brute-forced offline from a single token.
            raise ValueError(
                f"the {algorithm} signing key must be at least {_HMAC_MIN_KEY[algorithm]} bytes"
            )
        if int(ttl_seconds) <= 0:
            raise ValueError("ttl_seconds must be positive")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = int(ttl_seconds)
        self.algorithm = algorithm
        self.leeway = float(leeway)
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenIssuer(issuer={self.issuer!r}, audience={self.audience!r})"

    def issue(
        self,
        subject: str,
        app: str,
        roles: Sequence[str],
        scopes: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Sign a new access token for ``subject`` (client id) in ``app`` with ``roles``."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not isinstance(app, str) or not app:
            raise ValueError("app must be a non-empty string")
        roles, scopes = list(roles), list(scopes)
        for item in (*roles, *scopes):
            if not isinstance(item, str) or not item or any(c.isspace() for c in item):
                # Scopes travel space-separated; a blank inside one would split it in two.
                raise ValueError("roles and scopes must be non-empty strings without spaces")
        now = int(self._clock())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "app": app,
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        if scopes:
            payload["scope"] = " ".join(scopes)
        if extra:
            clash = set(extra) & (set(payload) | {"scope"})
            if clash:
                raise ValueError(f"extra claims may not override {sorted(clash)}")
            payload.update(extra)
        token = jwt.encode(
            payload, self._key, algorithm=self.algorithm, headers={"typ": TOKEN_TYPE}
        )
        return IssuedToken(access_token=token, expires_in=self.ttl_seconds)

    def verify(self, token: str) -> Claims:
        """Verify one of our tokens; raises :class:`InvalidToken` with a reason code."""
        header = read_unverified_header(token, MAX_OWN_TOKEN_LENGTH)
        if header.get("alg") != self.algorithm:
            # Pin the algorithm before touching the key: refuses alg "none" and RS/HS confusion.
            raise InvalidToken("unsupported_algorithm", "the token's algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
            raise InvalidToken("bad_type", "the token is not an agent-lightning access token")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud"],
                    # Time claims are checked below against our injectable clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise translate_jwt_error(exc) from None
        iat, exp = check_time_claims(payload, self._clock(), self.leeway, require_iat=True)
        subject = required_subject(payload)
        app = payload.get("app")
        if not isinstance(app, str) or not app:
            raise InvalidToken("missing_claim", "the token lacks the required claim app")
        jti = payload.get("jti")
        return Claims(
            subject=subject,
            app=app,
            roles=string_list(payload.get("roles"), "roles"),
            scopes=string_list(payload.get("scope"), "scope"),
            issued_at=to_datetime(iat) if iat is not None else None,
            expires_at=to_datetime(exp),
            token_id=jti if isinstance(jti, str) else None,
            raw=payload,
        )


def load_or_create_signing_key(path: Path) -> bytes:
    """Read the signing key at ``path``, creating it (32 random bytes, mode 0600) if missing.

    Creation is atomic and never overwrites: when several processes start at once, they all
    end up with the key of whichever created the file first. The server prefers
    ``AGL_JWT_SECRET`` over this file when that variable is set.
    """
    path = Path(path)
    if not path.exists():
        write_private_file(path, secrets.token_bytes(SIGNING_KEY_BYTES))
    warn_if_exposed(path)
    key = path.read_bytes()
    if len(key) < SIGNING_KEY_BYTES:
        raise ValueError(f"the signing key in {path} is shorter than {SIGNING_KEY_BYTES} bytes")
    return key
