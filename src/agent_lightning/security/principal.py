"""Principal: who is calling (subject, app, roles, credential kind), for the API and the gateway.

Built by whichever front door verified the credential (`server.auth`, `gateway.auth`); checked
against the RBAC table with `can`, and recorded in the audit log as `actor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_lightning.security.audit import Actor
from agent_lightning.security.rbac import Permission, Role, allowed


@dataclass(frozen=True)
class Principal:
    subject: str
    app_id: str
    roles: tuple[Role, ...]
    kind: str  # client | api_key | oidc
    token_id: str | None = None
    remote_addr: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def can(self, permission: Permission | None) -> bool:
        return allowed(self.roles, permission)

    @property
    def actor(self) -> Actor:
        return Actor(self.subject, self.kind, self.app_id, self.remote_addr)
