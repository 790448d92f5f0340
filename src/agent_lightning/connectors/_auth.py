"""Turn an ``AuthConfig`` (names of credentials) into an ``httpx.Auth`` (their values).

Values live only inside the auth object, which adds headers per request: they are not in the
client's default headers, the connector's repr, or any error message.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Generator, Mapping

import httpx

from agent_lightning.connectors.config import AuthConfig

# A stored-secret lookup: a mapping, or a function name -> value that raises when it is missing
# (e.g. ``lambda n: security.secrets.get_secret(store, box, app_id, n)``).
SecretSource = Mapping[str, str] | Callable[[str], str]


class HeaderAuth(httpx.Auth):
    """Adds fixed credential headers to every request; its repr never shows them."""

    def __init__(self, kind: str, headers: dict[str, str], raw: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._headers = headers
        self._raw = raw

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._headers)
        yield request

    def secret_values(self) -> list[str]:
        """Everything that must never be shown: header values and the raw credentials."""
        return [*self._headers.values(), *self._raw]

    def __repr__(self) -> str:
        return f"HeaderAuth(kind={self.kind!r}, headers=<redacted>)"


def _lookup_secret(secrets: SecretSource | None, name: str) -> str:
    if secrets is None:
        raise LookupError(f"stored secret {name!r} requested but no secret store was given")
    try:
        value = secrets[name] if isinstance(secrets, Mapping) else secrets(name)
    except KeyError:
        raise LookupError(f"stored secret {name!r} not found") from None
    except LookupError as exc:
        raise LookupError(f"stored secret {name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a store may raise its own NotFound/DecryptionError
        reason = f"{type(exc).__name__}: {exc}"[:200]
        raise LookupError(f"stored secret {name!r} could not be read ({reason})") from None
    if not value:
        raise LookupError(f"stored secret {name!r} is empty")
    return value


def resolve_auth(
    auth: AuthConfig, where: str, env: Mapping[str, str], secrets: SecretSource | None
) -> tuple[HeaderAuth | None, list[str]]:
    """The auth for a connector and the problems found, each naming ``where`` and the field."""
    problems: list[str] = []

    def from_env(field: str, var: str) -> str:
        value = env.get(var)
        if not value:
            problems.append(f"{where}.auth.{field}: environment variable {var} is not set")
            return ""
        return value

    def from_secret(name: str) -> str:
        try:
            return _lookup_secret(secrets, name)
        except LookupError as exc:
            problems.append(f"{where}.auth.secret: {exc}")
            return ""

    if auth.type == "none":
        return None, problems
    if auth.type in ("bearer", "api_key"):
        token = (
            from_env("token_env", auth.token_env)
            if auth.token_env
            else from_secret(auth.secret or "")
        )
        if problems:
            return None, problems
        if auth.type == "bearer":
            return HeaderAuth("bearer", {"Authorization": f"Bearer {token}"}, (token,)), problems
        return HeaderAuth("api_key", {auth.header_name: token}, (token,)), problems
    user = (
        auth.username
        if auth.username is not None
        else from_env("username_env", auth.username_env or "")
    )
    password = (
        from_env("password_env", auth.password_env)
        if auth.password_env
        else from_secret(auth.secret or "")
    )
    if problems:
        return None, problems
    if ":" in user:
        return None, [f"{where}.auth.username: a basic-auth user name cannot contain ':'"]
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    # The encoded pair too: a service may echo the credentials without the "Basic " prefix.
    raw = (encoded, password)
    return HeaderAuth("basic", {"Authorization": f"Basic {encoded}"}, raw), problems
