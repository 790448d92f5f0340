"""Policies and their immutable versions; which version is live; learning tasks."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from agent_lightning.server import serializers
from agent_lightning.server.auth import Principal, current_principal
from agent_lightning.server.errors import APIError
from agent_lightning.store import Filters, Policy, PolicyVersion, new_id

router = APIRouter(tags=["policies"])

PolicyName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")]


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PolicyName
    decision_point: str = Field("default", min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="learner spec, e.g. {'featurizer': 'hybrid', 'learner': 'linucb', "
        "'warm_start': 'zero_shot'}; with a spec, version 1 (untrained) is registered and live",
    )


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact_b64: str = Field(..., max_length=200_000_000)
    parent_version: int | None = Field(None, ge=1)
    notes: str = Field("", max_length=5000)
    metrics: dict[str, Any] = Field(default_factory=dict)
    make_live: bool = False


class LiveChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(..., ge=1, description="version to serve; null serves uniform")
    reason: str = Field("", max_length=2000)


def _state(request: Request):
    return request.app.state.agl


def _validated_artifact(artifact: bytes) -> None:
    from agent_lightning.learning import LearningError
    from agent_lightning.learning import Policy as LearnedPolicy

    try:
        LearnedPolicy.from_bytes(artifact)
    except LearningError as exc:
        raise APIError(422, "invalid_artifact", str(exc)) from None


@router.get("/policies", summary="List policies")
def list_policies(
    request: Request,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
):
    page = _state(request).store.list_policies(principal.app_id, cursor=cursor, limit=limit)
    return serializers.page(page, serializers.policy)


@router.post("/policies", status_code=201, summary="Create a policy for a decision point")
def create_policy(
    request: Request, body: PolicyCreate, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    artifact = None
    if body.spec:
        from agent_lightning.learning import LearningError, make_policy

        spec = dict(body.spec)
        if "variants" in spec:
            _check_variants(spec["variants"])
            # Prompt variants have no descriptions a message could be compared with: start
            # uniform and learn from rewards, unless the spec says otherwise.
            spec.setdefault("warm_start", "none")
        try:
            artifact = make_policy(spec).to_bytes()
        except (LearningError, ValueError, TypeError) as exc:
            raise APIError(422, "invalid_spec", f"spec: {exc}") from None
    row = state.store.create_policy(
        Policy(
            id=new_id(),
            app_id=principal.app_id,
            name=body.name,
            decision_point=body.decision_point,
            description=body.description,
            spec=body.spec,
            created_by=principal.subject,
        )
    )
    state.audit.record(
        principal.actor, "policy.create", "policy", body.name, after=body.model_dump()
    )
    if artifact is not None:
        version = state.store.add_policy_version(
            PolicyVersion(
                id=new_id(),
                policy_id=row.id,
                artifact=artifact,
                notes="initial version from the spec (warm start, nothing learned yet)",
                created_by=principal.subject,
            ),
            make_live=True,
        )
        state.audit.record(
            principal.actor,
            "policy_version.create",
            "policy_version",
            f"{body.name}@{version.version}",
            after={"version": version.version, "live": True},
        )
        row = state.store.get_policy(principal.app_id, body.name)
    state.decisions.invalidate(principal.app_id)
    return serializers.policy(row)


def _check_variants(raw: Any) -> None:
    """The gateway's prompt variants, refused here rather than ignored when a call comes."""
    from agent_lightning.gateway.policy import parse_variants

    try:
        if not parse_variants(raw):
            raise ValueError("variants: must be a non-empty list")
    except ValueError as exc:
        raise APIError(422, "invalid_spec", f"spec: {exc}") from None


@router.get("/policies/{name}", summary="One policy")
def get_policy(request: Request, name: str, principal: Principal = Depends(current_principal)):
    return serializers.policy(_state(request).store.get_policy(principal.app_id, name))


@router.get("/policies/{name}/versions", summary="Versions of a policy, oldest first")
def list_versions(
    request: Request,
    name: str,
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
):
    page = _state(request).store.list_policy_versions(
        principal.app_id, name, cursor=cursor, limit=limit
    )
    return serializers.page(page, lambda v: serializers.policy_version(v, name))


@router.post("/policies/{name}/versions", status_code=201, summary="Register a new version")
def create_version(
    request: Request,
    name: str,
    body: VersionCreate,
    principal: Principal = Depends(current_principal),
):
    state = _state(request)
    policy = state.store.get_policy(principal.app_id, name)
    try:
        artifact = base64.b64decode(body.artifact_b64, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "invalid_artifact", "artifact_b64 is not valid base64") from None
    _validated_artifact(artifact)
    if body.make_live and not principal.can(_promote()):
        raise APIError(403, "forbidden", "making a version live needs the policy:promote right")
    version = state.store.add_policy_version(
        PolicyVersion(
            id=new_id(),
            policy_id=policy.id,
            parent_version=body.parent_version,
            artifact=artifact,
            metrics=body.metrics,
            notes=body.notes,
            created_by=principal.subject,
        ),
        make_live=body.make_live,
    )
    if body.make_live:
        state.decisions.invalidate(principal.app_id)
    state.audit.record(
        principal.actor,
        "policy_version.create",
        "policy_version",
        f"{name}@{version.version}",
        after={"version": version.version, "parent": body.parent_version, "live": body.make_live},
    )
    return serializers.policy_version(version, name)


def _promote():
    from agent_lightning.security.rbac import Permission

    return Permission.POLICY_PROMOTE


@router.get("/policies/{name}/versions/{version}", summary="One version (metadata)")
def get_version(
    request: Request, name: str, version: int, principal: Principal = Depends(current_principal)
):
    row = _state(request).store.get_policy_version(principal.app_id, name, version)
    return serializers.policy_version(row, name)


@router.get(
    "/policies/{name}/live",
    summary="The live version with its artefact (ETag / If-None-Match for cheap polling)",
)
def get_live(
    request: Request,
    response: Response,
    name: str,
    principal: Principal = Depends(current_principal),
):
    state = _state(request)
    policy = state.store.get_policy(principal.app_id, name)
    if policy.live_version is None:
        raise APIError(404, "no_live_version", f"policy {name!r} has no live version yet")
    row = state.store.get_policy_version(principal.app_id, name, policy.live_version)
    etag = f'"{row.artifact_sha256 or row.id}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    out = serializers.policy_version(row, name)
    out["artifact_b64"] = base64.b64encode(row.artifact or b"").decode()
    return out


@router.put("/policies/{name}/live", summary="Switch the live version (promote or roll back)")
def set_live(
    request: Request, name: str, body: LiveChange, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    before, policy = state.store.set_live_version(principal.app_id, name, body.version)
    state.decisions.invalidate(principal.app_id)
    state.audit.record(
        principal.actor,
        "policy.set_live",
        "policy",
        name,
        before={"live_version": before},
        after={"live_version": body.version, "reason": body.reason},
    )
    return serializers.policy(policy)


# -- learning tasks --------------------------------------------------------------------------


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:\-]+$",
        description="client-chosen id: a retried trigger returns the same task",
    )
    task: str = Field("learn", pattern="^(learn)$", description="what to run; today: learn")
    policy: str = Field(..., min_length=1, max_length=200)
    force: bool = Field(False, description="register the candidate even if it does not beat live")
    make_live: bool = Field(True, description="make a registered candidate live at once")
    max_examples: int | None = Field(None, ge=1, le=10_000_000)


@router.post("/tasks", status_code=202, summary="Trigger a learning task")
def create_task(
    request: Request, body: TaskCreate, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    state.store.get_policy(principal.app_id, body.policy)  # 404 before queueing
    # A learning task may make live only what passed the gate; forcing past it is a promotion
    # by hand, the same right as `PUT /policies/{name}/live`.
    if body.force and body.make_live and not principal.can(_promote()):
        raise APIError(
            403,
            "forbidden",
            "forcing a candidate past the off-policy gate and making it live needs the "
            "policy:promote right; send make_live: false to register it without serving it",
        )
    if state.controller is None:
        raise APIError(503, "learning_unavailable", "the learning controller is not running")
    from agent_lightning.controller import TaskError

    try:
        task = state.controller.submit(
            principal.app_id, body.model_dump(exclude_none=True), actor=principal.actor
        )
    except TaskError as exc:
        raise APIError(422, "invalid_task", str(exc)) from None
    return serializers.task(task)


@router.get("/tasks", summary="List tasks, newest first")
def list_tasks(
    request: Request,
    status: str | None = Query(None, pattern="^(queued|running|succeeded|failed)$"),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
):
    page = _state(request).store.list_tasks(
        principal.app_id, Filters(status=status), cursor=cursor, limit=limit
    )
    return serializers.page(page, serializers.task)


@router.get("/tasks/{task_id}", summary="One task: status and result")
def get_task(request: Request, task_id: str, principal: Principal = Depends(current_principal)):
    return serializers.task(_state(request).store.get_task(principal.app_id, task_id))
