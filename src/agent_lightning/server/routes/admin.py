"""Identity, app settings and governance: token, clients, API keys, audit, retention, erasure."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agent_lightning.security import identities, retention
from agent_lightning.security.audit import Actor, to_dict
from agent_lightning.security.rbac import UnknownRole
from agent_lightning.server import serializers
from agent_lightning.server.auth import Principal, current_principal
from agent_lightning.server.errors import APIError
from agent_lightning.store import AGGREGATIONS, app_settings, utcnow

router = APIRouter()


def _state(request: Request):
    return request.app.state.agl


# -- OAuth2 client credentials ---------------------------------------------------------------


def _oauth_error(status: int, error: str, description: str, headers=None) -> JSONResponse:
    # RFC 6749 §5.2 shape, which OAuth client libraries understand.
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


@functools.cache
def _dummy_hash() -> str:
    from agent_lightning.security.passwords import generate_secret, hash_secret

    return hash_secret(generate_secret())


def _unknown_client(client_id: str) -> str:
    return "unknown:" + hashlib.sha256(client_id.encode()).hexdigest()[:12]


@router.post("/oauth/token", tags=["auth"], summary="OAuth2 client credentials → access token")
def token(
    request: Request,
    grant_type: str = Form(..., max_length=100),
    client_id: str | None = Form(None, max_length=200),
    client_secret: str | None = Form(None, max_length=500),
    scope: str | None = Form(None, max_length=1000),
):
    from agent_lightning.security.passwords import verify_secret

    state = _state(request)
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(basic[6:].strip()).decode()
            client_id, _, client_secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client", "malformed Basic credentials")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    if not client_id or not client_secret:
        return _oauth_error(401, "invalid_client", "client_id and client_secret are required")
    remote = request.client.host if request.client else "unknown"
    # Brute-force protection charges failed attempts only: a fleet of workers sharing one
    # client signs in at once, while guesses still run dry (and then even the right secret
    # waits, so guessing cannot race the limit).
    limited = (f"client:{client_id}", f"addr:{remote}")
    for key in limited:
        decision = state.token_limiter.check(key, take=False)
        if not decision.allowed:
            retry = max(1, int(decision.retry_after + 0.999))
            return _oauth_error(
                429,
                "slow_down",
                f"too many attempts; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
    client = state.store.get_client(client_id)
    # Always pay for one slow hash check, so an unknown id answers as slowly as a wrong secret
    # (otherwise timing tells an attacker which client ids exist).
    secret_ok = verify_secret(client_secret, client.secret_hash if client else _dummy_hash())
    ok = client is not None and client.revoked_at is None and secret_ok
    if not ok:
        # The audit log is permanent, and a client_id that names no client is often a secret
        # typed into the wrong field: keep only a short hash of it, never the value.
        who = client.id if client else _unknown_client(client_id)
        state.audit.record(
            Actor(who, "client", None, remote),
            "auth.token_denied",
            "client",
            who,
            app_id=client.app_id if client else None,
            outcome="denied",
        )
        for key in limited:
            state.token_limiter.check(key)
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    issued = state.token_issuer.issue(client.id, client.app_id, list(client.roles))
    return {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(client.roles),
    }


@router.get("/me", tags=["auth"], summary="Who am I: identity, app and roles of this token")
def me(principal: Principal = Depends(current_principal)):
    return {
        "subject": principal.subject,
        "app": principal.app_id,
        "roles": list(principal.roles),
        "kind": principal.kind,
    }


# -- app settings ----------------------------------------------------------------------------


class AppSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(None, max_length=200)
    reward_wait_seconds: float | None = Field(None, ge=0, le=365 * 86400)
    default_reward: float | None = None
    reward_aggregation: str | None = Field(None, pattern="^(" + "|".join(AGGREGATIONS) + ")$")
    reward_min: float | None = None
    reward_max: float | None = None
    settings: dict[str, Any] | None = None


@router.get("/app", tags=["settings"], summary="This app's settings (reward join, range)")
def get_app(request: Request, principal: Principal = Depends(current_principal)):
    app = _state(request).store.get_app(principal.app_id)
    return {"id": app.id, **app_settings(app)}


@router.patch("/app", tags=["settings"], summary="Change this app's settings (audited)")
def patch_app(
    request: Request, body: AppSettingsPatch, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    changes = body.model_dump(exclude_none=True)
    try:
        before, app = state.store.update_app(principal.app_id, **changes)
    except ValueError as exc:
        raise APIError(422, "invalid_settings", str(exc)) from None
    after = app_settings(app)
    state.audit.record(principal.actor, "app.settings", "app", app.id, before=before, after=after)
    return {"id": app.id, **after}


# -- clients and API keys --------------------------------------------------------------------


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[str] = Field(default_factory=lambda: ["Agent"], max_length=4)
    name: str = Field("", max_length=200)


@router.get("/clients", tags=["identities"], summary="Clients of this app (never secrets)")
def list_clients(request: Request, principal: Principal = Depends(current_principal)):
    clients = _state(request).store.list_clients(principal.app_id)
    return {"items": [serializers.client(c) for c in clients], "next_cursor": None}


@router.post("/clients", status_code=201, tags=["identities"], summary="Create a client")
def create_client(
    request: Request, body: ClientCreate, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    try:
        new = identities.create_client(
            state.store, state.audit, principal.app_id, body.roles, principal.actor, body.name
        )
    except UnknownRole as exc:
        raise APIError(422, "unknown_role", str(exc)) from None
    return {**new.as_dict(), "note": "store the secret now; it is not shown again"}


@router.delete("/clients/{client_id}", tags=["identities"], summary="Revoke a client")
def revoke_client(
    request: Request, client_id: str, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    keys = identities.revoke_client(
        state.store, state.audit, principal.app_id, client_id, principal.actor
    )
    for key_id in keys:
        state.api_key_cache.forget_key_id(key_id)
    return {"client_id": client_id, "revoked": True, "api_keys_revoked": keys}


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    roles: list[str] | None = Field(None, max_length=4, description="default: your own roles")


@router.get("/api-keys", tags=["identities"], summary="Your API keys (admins: all of the app)")
def list_api_keys(request: Request, principal: Principal = Depends(current_principal)):
    keys = _state(request).store.list_api_keys(principal.app_id)
    if "AgentAdmin" not in principal.roles:
        keys = [k for k in keys if k.owner == principal.subject]
    return {"items": [serializers.api_key(k) for k in keys], "next_cursor": None}


@router.post("/api-keys", status_code=201, tags=["identities"], summary="Create a personal key")
def create_api_key(
    request: Request, body: ApiKeyCreate, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    wanted = body.roles if body.roles is not None else list(principal.roles)
    try:
        from agent_lightning.security.rbac import parse_roles

        roles = parse_roles(wanted)
    except UnknownRole as exc:
        raise APIError(422, "unknown_role", str(exc)) from None
    if not set(roles) <= set(principal.roles):
        raise APIError(403, "forbidden", "a key cannot have roles its owner does not have")
    new = identities.create_api_key(
        state.store,
        state.audit,
        principal.app_id,
        principal.subject,
        roles,
        principal.actor,
        body.name,
    )
    return {
        "key_id": new.key_id,
        "key": new.key,
        "app": new.app,
        "roles": new.roles,
        "note": "store the key now; it is not shown again",
    }


@router.delete("/api-keys/{key_id}", tags=["identities"], summary="Revoke an API key")
def revoke_api_key(
    request: Request, key_id: str, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    key = state.store.get_api_key(key_id)
    if key is None or key.app_id != principal.app_id:
        raise APIError(404, "not_found", f"API key {key_id!r} not found")
    if key.owner != principal.subject and "AgentAdmin" not in principal.roles:
        raise APIError(404, "not_found", f"API key {key_id!r} not found")
    state.store.revoke_api_key(principal.app_id, key_id)
    state.api_key_cache.forget_key_id(key_id)
    state.audit.record(
        principal.actor,
        "api_key.revoke",
        "api_key",
        key_id,
        before={"revoked": False},
        after={"revoked": True},
    )
    return {"key_id": key_id, "revoked": True}


# -- audit -----------------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], summary="This app's audit entries, oldest first")
def list_audit(
    request: Request,
    after_seq: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
):
    entries = _state(request).audit.entries(principal.app_id, after_seq=after_seq, limit=limit)
    items = [to_dict(e) for e in entries]
    next_after = items[-1]["seq"] if len(items) == limit else None
    return {"items": items, "next_after_seq": next_after}


@router.get("/audit/export", tags=["audit"], summary="Export this app's audit log as JSON lines")
def export_audit(request: Request, principal: Principal = Depends(current_principal)):
    audit = _state(request).audit

    def lines():
        after = 0
        while True:
            chunk = audit.entries(principal.app_id, after_seq=after, limit=1000)
            if not chunk:
                return
            for entry in chunk:
                yield json.dumps(to_dict(entry), sort_keys=True) + "\n"
            after = chunk[-1].seq

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/audit/verify", tags=["audit"], summary="Verify the hash chain of the audit log")
def verify_audit(request: Request, principal: Principal = Depends(current_principal)):
    # One chain runs through every app: say whether it holds, but describe only this app's
    # entries (how many entries other tenants have, or what theirs say, is theirs).
    audit = _state(request).audit
    result = audit.verify()
    if result.ok:
        return {"ok": True, "broken_seq": None, "message": "the chain is intact"}
    seq = result.broken_seq or 0
    found = audit.entries(after_seq=seq - 1, limit=1)
    if found and found[0].seq == seq and found[0].app_id == principal.app_id:
        return {"ok": False, "broken_seq": seq, "message": result.message}
    return {
        "ok": False,
        "broken_seq": None,
        "message": "the chain is broken at an entry outside this app (or one that is gone); "
        "`agent-lightning audit verify` on the server names it",
    }


# -- retention and erasure -------------------------------------------------------------------


class RetentionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(..., ge=1, le=retention.MAX_DAYS)


@router.get("/retention", tags=["privacy"], summary="Retention in days per record kind")
def get_retention(request: Request, principal: Principal = Depends(current_principal)):
    return retention.rules(_state(request).store, principal.app_id)


@router.put("/retention/{kind}", tags=["privacy"], summary="Set retention for one kind")
def put_retention(
    request: Request,
    kind: str,
    body: RetentionChange,
    principal: Principal = Depends(current_principal),
):
    state = _state(request)
    try:
        return retention.set_rule(
            state.store, state.audit, principal.app_id, kind, body.days, principal.actor
        )
    except ValueError as exc:
        raise APIError(422, "invalid_retention", str(exc)) from None


@router.post("/retention/apply", tags=["privacy"], summary="Delete what is past retention now")
def apply_retention(request: Request, principal: Principal = Depends(current_principal)):
    state = _state(request)
    report = retention.apply(state.store, state.audit, principal.actor, [principal.app_id])
    return {"removed": report[principal.app_id], "at": utcnow().isoformat()}


@router.delete("/users/{user_id}", tags=["privacy"], summary="Erase every record of one user")
def erase_user(request: Request, user_id: str, principal: Principal = Depends(current_principal)):
    state = _state(request)
    removed = retention.erase_user(
        state.store, state.audit, principal.app_id, user_id, principal.actor
    )
    return {"user_id": user_id, "removed": removed}


# -- connector secrets (encrypted at rest, never returned) -----------------------------------


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(..., min_length=1, max_length=20_000)


@router.put("/secrets/{name}", tags=["settings"], summary="Store a connector credential")
def put_secret(
    request: Request,
    name: str,
    body: SecretValue,
    principal: Principal = Depends(current_principal),
):
    state = _state(request)
    from agent_lightning.security.secrets import put_secret as store_secret

    store_secret(state.store, state.secret_box(), principal.app_id, name, body.value)
    state.audit.record(principal.actor, "secret.set", "secret", name, after={"set": True})
    return {"name": name, "stored": True}


@router.get("/secrets", tags=["settings"], summary="Names of stored credentials (never values)")
def list_secrets(request: Request, principal: Principal = Depends(current_principal)):
    from agent_lightning.security.secrets import secret_names

    return {"items": secret_names(_state(request).store, principal.app_id)}
