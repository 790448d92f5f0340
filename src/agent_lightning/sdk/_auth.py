"""Credentials and the cached access token.

Two ways to authenticate: OAuth2 client credentials (`client_id` + `secret`, exchanged at
`POST /v1/oauth/token` for a short-lived bearer token, cached and refreshed), or a personal API
key sent as the bearer directly. The secret, the key and the token never appear in a repr.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
REFRESH_EARLY = 30.0  # seconds before expiry a token is replaced (at most half its lifetime)


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled along with a client
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Credentials:
    client_id: str | None
    secret: Secret | None
    api_key: Secret | None
    base_url: str

    @classmethod
    def resolve(
        cls,
        client_id: str | None,
        secret: str | None,
        api_key: str | None,
        base_url: str | None,
    ) -> Credentials:
        """Arguments first, then AGL_CLIENT_ID / AGL_CLIENT_SECRET / AGL_API_KEY / AGL_BASE_URL."""
        url = base_url or os.environ.get("AGL_BASE_URL") or DEFAULT_BASE_URL
        if api_key is not None:
            if client_id is not None or secret is not None:
                raise ValueError("pass either api_key or client_id and secret, not both")
            return cls(None, None, Secret(api_key), url)
        client_id = client_id or os.environ.get("AGL_CLIENT_ID") or None
        secret = secret or os.environ.get("AGL_CLIENT_SECRET") or None
        if client_id and secret:
            return cls(client_id, Secret(secret), None, url)
        if client_id or secret:
            raise ValueError("client_id and secret go together; one of them is missing")
        env_key = os.environ.get("AGL_API_KEY")
        if env_key:
            return cls(None, None, Secret(env_key), url)
        raise ValueError(
            "no credentials: pass client_id and secret (or api_key=), or set "
            "AGL_CLIENT_ID and AGL_CLIENT_SECRET (or AGL_API_KEY)"
        )


class TokenCache:
    """The current access token and when to replace it. Not locked itself: the sync client
    guards refreshes with a threading.Lock, the async one with an anyio.Lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: Secret | None = None
        self._refresh_at = 0.0

    def current(self) -> str | None:
        """The token if it is not due for refresh, else None."""
        if self._token is None or self._clock() >= self._refresh_at:
            return None
        return self._token.get()

    def store(self, answer: dict[str, Any], requested_at: float) -> str:
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError("the token endpoint answered without an access_token")
        lifetime = float(answer.get("expires_in") or 0)
        # Counted from when we asked, so network time only makes us refresh sooner.
        self._refresh_at = requested_at + lifetime - min(REFRESH_EARLY, lifetime / 2)
        self._token = Secret(token)
        return token

    def invalidate(self, token: str) -> None:
        """Forget `token` if it is still the current one (the server refused it)."""
        if self._token is not None and self._token.get() == token:
            self._token = None

    def now(self) -> float:
        return self._clock()
