"""Machine identities and API keys: created here for both the CLI and the API, always audited.

A secret is shown exactly once, when it is created; only its slow-KDF hash is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.passwords import (
    generate_client_id,
    generate_secret,
    hash_secret,
    make_api_key,
    parse_api_key,
)
from agent_lightning.security.rbac import Role, parse_roles
from agent_lightning.store import ApiKey, Client, Store


def key_owner_revoked(store: Store, key: ApiKey) -> bool:
    """True when the client that made this API key is revoked: the key dies with it.

    An owner may also be an OIDC user, who is not a client: only a revoked client of the key's
    own app counts.
    """
    owner = store.get_client(key.owner)
    return owner is not None and owner.app_id == key.app_id and owner.revoked_at is not None


@dataclass(frozen=True)
class NewClient:
    client_id: str
    secret: str
    app: str
    roles: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "secret": self.secret,
            "app": self.app,
            "roles": self.roles,
        }


def create_client(
    store: Store,
    audit: AuditLog,
    app_id: str,
    roles: list[str] | tuple[str, ...],
    actor: Actor,
    name: str = "",
) -> NewClient:
    parsed = parse_roles(list(roles)) or (Role.AGENT,)
    store.ensure_app(app_id)
    client_id = generate_client_id()
    secret = generate_secret()
    store.add_client(
        Client(
            id=client_id,
            app_id=app_id,
            name=name,
            secret_hash=hash_secret(secret),
            roles=[r.value for r in parsed],
            created_by=actor.name,
        )
    )
    audit.record(
        actor,
        "client.create",
        "client",
        client_id,
        app_id=app_id,
        after={"roles": [r.value for r in parsed], "name": name},
    )
    return NewClient(client_id, secret, app_id, [r.value for r in parsed])


def revoke_client(
    store: Store, audit: AuditLog, app_id: str, client_id: str, actor: Actor
) -> list[str]:
    """Revoke a client and every API key it owns; returns the ids of the keys revoked now.

    A key the client minted for itself must not outlive it, or a compromised client could keep
    its access by making one before it is revoked. Revoking again sweeps keys left over.
    """
    client = store.revoke_client(app_id, client_id)
    keys = [
        k.id for k in store.list_api_keys(app_id) if k.owner == client_id and k.revoked_at is None
    ]
    for key_id in keys:
        store.revoke_api_key(app_id, key_id)
    audit.record(
        actor,
        "client.revoke",
        "client",
        client_id,
        app_id=app_id,
        before={"revoked": False},
        after={"revoked": True, "roles": list(client.roles), "api_keys_revoked": keys},
    )
    for key_id in keys:
        audit.record(
            actor,
            "api_key.revoke",
            "api_key",
            key_id,
            app_id=app_id,
            before={"revoked": False},
            after={"revoked": True, "owner": client_id, "reason": "owner client revoked"},
        )
    return keys


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    key: str
    app: str
    roles: list[str]


def create_api_key(
    store: Store,
    audit: AuditLog,
    app_id: str,
    owner: str,
    roles: list[str] | tuple[str, ...],
    actor: Actor,
    name: str = "",
) -> NewApiKey:
    parsed = parse_roles(list(roles))
    key_id, full_key = make_api_key()
    parsed_key = parse_api_key(full_key)
    assert parsed_key is not None  # we just made it
    secret = parsed_key[1]
    store.add_api_key(
        ApiKey(
            id=key_id,
            app_id=app_id,
            owner=owner,
            name=name,
            secret_hash=hash_secret(secret),
            roles=[r.value for r in parsed],
        )
    )
    audit.record(
        actor,
        "api_key.create",
        "api_key",
        key_id,
        app_id=app_id,
        after={"owner": owner, "roles": [r.value for r in parsed], "name": name},
    )
    return NewApiKey(key_id, full_key, app_id, [r.value for r in parsed])
