"""Role-based access control: one table from every API route to the permission it needs.

The table is the single source of truth. The server looks the matched route up here on every
request and refuses to start if a route has no entry, so a new route cannot ship unprotected
by accident (fail closed). `PUBLIC` marks the few routes that need no identity.

| role          | for whom                                                        |
| ------------- | --------------------------------------------------------------- |
| `AgentAdmin`  | operators: clients, keys, retention, erasure, audit, rollouts   |
| `Developer`   | builders: policies, training, plus everything telemetry         |
| `Analyst`     | readers: metrics and redacted data, nothing that changes state  |
| `Agent`       | runtimes and agents: write events/decisions/rewards, read policy |
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    AGENT_ADMIN = "AgentAdmin"
    DEVELOPER = "Developer"
    ANALYST = "Analyst"
    AGENT = "Agent"


class Permission(StrEnum):
    TELEMETRY_WRITE = "telemetry:write"  # events, decide, decisions, rewards
    TELEMETRY_READ = "telemetry:read"  # redacted events, decisions, rewards, sessions
    POLICY_READ = "policy:read"
    POLICY_LIVE_READ = "policy:live:read"  # the artefact a runtime needs to decide offline
    POLICY_WRITE = "policy:write"  # create policies and versions
    POLICY_PROMOTE = "policy:promote"  # change which version is live (rollout / rollback)
    TASK_RUN = "task:run"
    TASK_READ = "task:read"
    METRICS_READ = "metrics:read"
    SETTINGS_READ = "settings:read"
    SETTINGS_WRITE = "settings:write"
    CLIENTS_MANAGE = "clients:manage"
    KEYS_OWN = "keys:own"  # personal API keys for one's own scripts
    AUDIT_READ = "audit:read"
    RETENTION_MANAGE = "retention:manage"
    ERASURE = "erasure"
    IDENTITY = "identity"  # who am I


ALL_ROLES = tuple(Role)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT_ADMIN: frozenset(Permission),
    Role.DEVELOPER: frozenset(
        {
            Permission.TELEMETRY_WRITE,
            Permission.TELEMETRY_READ,
            Permission.POLICY_READ,
            Permission.POLICY_LIVE_READ,
            Permission.POLICY_WRITE,
            Permission.TASK_RUN,
            Permission.TASK_READ,
            Permission.METRICS_READ,
            Permission.SETTINGS_READ,
            Permission.KEYS_OWN,
            Permission.IDENTITY,
        }
    ),
    Role.ANALYST: frozenset(
        {
            Permission.TELEMETRY_READ,
            Permission.POLICY_READ,
            Permission.TASK_READ,
            Permission.METRICS_READ,
            Permission.SETTINGS_READ,
            Permission.KEYS_OWN,
            Permission.IDENTITY,
        }
    ),
    Role.AGENT: frozenset(
        {Permission.TELEMETRY_WRITE, Permission.POLICY_LIVE_READ, Permission.IDENTITY}
    ),
}

PUBLIC = None

# (method, route path template) -> permission needed; PUBLIC routes need no identity.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    ("GET", "/v1/health"): PUBLIC,
    ("GET", "/v1/ready"): PUBLIC,
    ("POST", "/v1/oauth/token"): PUBLIC,
    ("GET", "/v1/me"): Permission.IDENTITY,
    # telemetry
    ("POST", "/v1/events"): Permission.TELEMETRY_WRITE,
    ("POST", "/v1/events/batch"): Permission.TELEMETRY_WRITE,
    ("GET", "/v1/events"): Permission.TELEMETRY_READ,
    ("GET", "/v1/events/{event_id}"): Permission.TELEMETRY_READ,
    ("POST", "/v1/decisions"): Permission.TELEMETRY_WRITE,
    ("POST", "/v1/decisions/batch"): Permission.TELEMETRY_WRITE,
    ("GET", "/v1/decisions"): Permission.TELEMETRY_READ,
    ("GET", "/v1/decisions/{decision_id}"): Permission.TELEMETRY_READ,
    ("POST", "/v1/decisions/{decision_id}/rewards"): Permission.TELEMETRY_WRITE,
    ("POST", "/v1/rewards"): Permission.TELEMETRY_WRITE,
    ("POST", "/v1/rewards/batch"): Permission.TELEMETRY_WRITE,
    ("GET", "/v1/rewards"): Permission.TELEMETRY_READ,
    # policies
    ("GET", "/v1/policies"): Permission.POLICY_READ,
    ("POST", "/v1/policies"): Permission.POLICY_WRITE,
    ("GET", "/v1/policies/{name}"): Permission.POLICY_READ,
    ("GET", "/v1/policies/{name}/versions"): Permission.POLICY_READ,
    ("POST", "/v1/policies/{name}/versions"): Permission.POLICY_WRITE,
    ("GET", "/v1/policies/{name}/versions/{version}"): Permission.POLICY_READ,
    ("GET", "/v1/policies/{name}/live"): Permission.POLICY_LIVE_READ,
    ("PUT", "/v1/policies/{name}/live"): Permission.POLICY_PROMOTE,
    # learning tasks
    ("POST", "/v1/tasks"): Permission.TASK_RUN,
    ("GET", "/v1/tasks"): Permission.TASK_READ,
    ("GET", "/v1/tasks/{task_id}"): Permission.TASK_READ,
    # app settings and governance
    ("GET", "/v1/app"): Permission.SETTINGS_READ,
    ("PATCH", "/v1/app"): Permission.SETTINGS_WRITE,
    ("GET", "/v1/clients"): Permission.CLIENTS_MANAGE,
    ("POST", "/v1/clients"): Permission.CLIENTS_MANAGE,
    ("DELETE", "/v1/clients/{client_id}"): Permission.CLIENTS_MANAGE,
    ("GET", "/v1/api-keys"): Permission.KEYS_OWN,
    ("POST", "/v1/api-keys"): Permission.KEYS_OWN,
    ("DELETE", "/v1/api-keys/{key_id}"): Permission.KEYS_OWN,
    ("GET", "/v1/audit"): Permission.AUDIT_READ,
    ("GET", "/v1/audit/export"): Permission.AUDIT_READ,
    ("GET", "/v1/audit/verify"): Permission.AUDIT_READ,
    ("GET", "/v1/retention"): Permission.RETENTION_MANAGE,
    ("PUT", "/v1/retention/{kind}"): Permission.RETENTION_MANAGE,
    ("POST", "/v1/retention/apply"): Permission.RETENTION_MANAGE,
    ("DELETE", "/v1/users/{user_id}"): Permission.ERASURE,
    ("PUT", "/v1/secrets/{name}"): Permission.SETTINGS_WRITE,
    ("GET", "/v1/secrets"): Permission.SETTINGS_READ,
    # observability
    ("GET", "/v1/metrics"): Permission.METRICS_READ,
    ("POST", "/v1/traces"): Permission.TELEMETRY_WRITE,
    ("GET", "/v1/sessions/{session_id}/timeline"): Permission.TELEMETRY_READ,
    ("GET", "/v1/alerts/rules"): Permission.SETTINGS_WRITE,  # AgentAdmin: holds the webhook
    ("PUT", "/v1/alerts/rules"): Permission.SETTINGS_WRITE,
    ("GET", "/v1/alerts"): Permission.METRICS_READ,
    # dashboard (JSON summaries for the web app; the page itself is public and holds no data)
    ("GET", "/v1/dashboard/overview"): Permission.METRICS_READ,
    ("GET", "/v1/dashboard/learning"): Permission.TASK_READ,
    ("GET", "/v1/dashboard/rollouts"): Permission.POLICY_READ,
    ("PUT", "/v1/dashboard/rollouts/pause"): Permission.POLICY_PROMOTE,
    ("GET", "/v1/dashboard/sessions"): Permission.TELEMETRY_READ,
    ("GET", "/v1/dashboard/session"): Permission.TELEMETRY_READ,
    ("GET", "/v1/dashboard/audit"): Permission.AUDIT_READ,
    # update publisher: rollouts, registry, distribution to runtimes
    ("POST", "/v1/rollouts"): Permission.POLICY_PROMOTE,
    ("GET", "/v1/rollouts"): Permission.POLICY_READ,
    ("GET", "/v1/rollouts/{rollout_id}"): Permission.POLICY_READ,
    ("POST", "/v1/rollouts/{rollout_id}/pause"): Permission.POLICY_PROMOTE,
    ("POST", "/v1/rollouts/{rollout_id}/resume"): Permission.POLICY_PROMOTE,
    ("POST", "/v1/rollouts/{rollout_id}/promote"): Permission.POLICY_PROMOTE,
    ("POST", "/v1/rollouts/{rollout_id}/rollback"): Permission.POLICY_PROMOTE,
    ("POST", "/v1/rollouts/{rollout_id}/evaluate"): Permission.POLICY_PROMOTE,
    ("GET", "/v1/policies/{name}/diff"): Permission.POLICY_READ,
    ("GET", "/v1/policies/{name}/versions/{version}/bundle"): Permission.POLICY_LIVE_READ,
    ("POST", "/v1/policies/{name}/bundles"): Permission.POLICY_WRITE,
    ("GET", "/v1/publisher/keys"): Permission.IDENTITY,
    ("GET", "/v1/runtime/manifest"): Permission.POLICY_LIVE_READ,
    ("GET", "/v1/runtime/stream"): Permission.POLICY_LIVE_READ,
    ("POST", "/v1/runtime/report"): Permission.TELEMETRY_WRITE,
    ("GET", "/v1/runtime/reports"): Permission.POLICY_READ,
}


class UnknownRole(ValueError):
    pass


def parse_roles(names: list[str] | tuple[str, ...]) -> tuple[Role, ...]:
    """Roles from names (as the CLI or a token gives them); unknown names are an error."""
    out = []
    by_lower = {r.value.lower(): r for r in Role}
    for name in names:
        role = by_lower.get(str(name).strip().lower())
        if role is None:
            allowed = ", ".join(r.value for r in Role)
            raise UnknownRole(f"unknown role {name!r}; choose from {allowed}")
        out.append(role)
    return tuple(dict.fromkeys(out))


def roles_from_claims(names: list[str] | tuple[str, ...]) -> tuple[Role, ...]:
    """Like parse_roles, but an identity provider's other roles are ignored, not an error."""
    by_lower = {r.value.lower(): r for r in Role}
    return tuple(dict.fromkeys(by_lower[n.lower()] for n in names if n.lower() in by_lower))


def allowed(roles: tuple[Role, ...] | list[Role], permission: Permission | None) -> bool:
    if permission is None:
        return True
    return any(permission in ROLE_PERMISSIONS[role] for role in roles)


def roles_for(permission: Permission | None) -> tuple[Role, ...]:
    if permission is None:
        return ALL_ROLES
    return tuple(r for r in Role if permission in ROLE_PERMISSIONS[r])


def permission_for(method: str, path: str) -> Permission | None:
    """The permission a route needs; KeyError if the route is not in the table."""
    return ROUTE_PERMISSIONS[(method.upper(), path)]
