"""The UpdatePublisher's API: rollouts, the registry (diff, signed bundles), and distribution.

| route | permission |
| --- | --- |
| `POST /v1/rollouts`, `POST /v1/rollouts/{id}/pause|resume|promote|rollback|evaluate` | `policy:promote` |
| `GET /v1/rollouts`, `GET /v1/rollouts/{id}`, `GET /v1/policies/{name}/diff` | `policy:read` |
| `GET /v1/runtime/manifest`, `GET /v1/runtime/stream`, `GET .../versions/{v}/bundle` | `policy:live:read` |
| `POST /v1/policies/{name}/bundles` | `policy:write` (+ `policy:promote` to make it live) |
| `POST /v1/runtime/report` | `telemetry:write`; `GET /v1/runtime/reports`: `policy:read` |
| `GET /v1/publisher/keys` | `identity` (public keys; any signed-in caller) |
"""  # noqa: E501

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agent_lightning.publisher import distribution, keys, registry
from agent_lightning.publisher.bundle import BundleError
from agent_lightning.publisher.rollouts import RolloutError, rollout_json
from agent_lightning.publisher.service import Publisher, install_publisher
from agent_lightning.server import serializers
from agent_lightning.server.auth import Principal, credentials_still_valid, current_principal
from agent_lightning.server.errors import APIError
from agent_lightning.store import NotFound

router = APIRouter(tags=["rollouts"])

PolicyName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")]
Reason = Annotated[str, Field(max_length=2000)]
STREAM_KEEPALIVE_SECONDS = 15.0
# How often an open stream rechecks its caller's credentials (revoked? expired?): a few database
# lookups, so not on every 0.2 s tick.
STREAM_RECHECK_SECONDS = 5.0
Metric = Literal["mean_reward", "resolution_rate", "escalation_rate", "error_rate", "latency_p99"]


def _state(request: Request) -> Any:
    return request.app.state.agl


def _publisher(request: Request) -> Publisher:
    return install_publisher(_state(request))


class GuardrailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Metric
    max_drop: float = Field(
        0.0, ge=0, le=1e9, description="how much worse than the baseline is tolerated"
    )
    threshold: float | None = Field(
        None, ge=-1e9, le=1e9, description="absolute limit on the candidate instead of a drop"
    )
    direction: Literal["higher_is_better", "lower_is_better"] | None = None


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attribute: str = Field(..., pattern=r"^[A-Za-z0-9_.:\-]{1,100}$")
    values: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        ..., min_length=1, max_length=1000
    )


class RolloutStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: PolicyName
    candidate_version: int = Field(..., ge=1)
    kind: Literal["canary", "ab", "blue_green", "flag"] = "canary"
    baseline_version: int | None = Field(None, ge=1, description="default: the live version")
    steps: list[float] | None = Field(
        None,
        max_length=20,
        description="percent of units on the candidate per step, strictly increasing in "
        "(0, 100]; default [5, 25, 50, 100] (canary), [100] (flag)",
    )
    min_decisions_per_step: int = Field(100, ge=1, le=100_000_000)
    segment: SegmentIn | None = None
    guardrails: list[GuardrailIn] | None = Field(None, max_length=10)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    reason: Reason = ""


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = ""


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=2000)


class BundleImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle_b64: str = Field(..., min_length=1, max_length=200_000_000)
    make_live: bool = False
    create_policy: bool = Field(False, description="create the policy if it does not exist")


class RuntimeReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime_id: str = Field(..., min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@\-]+$")
    policy: PolicyName
    versions: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=100)
    arms: dict[str, Any] = Field(default_factory=dict)
    queued: int | None = Field(None, ge=0)
    last_sync: str | None = Field(None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict)


def _invalid(exc: Exception) -> APIError:
    return APIError(422, "invalid_rollout", str(exc))


# -- rollouts ---------------------------------------------------------------------------------


@router.post("/rollouts", status_code=201, summary="Start a canary, A/B test, blue/green or flag")
def start_rollout(
    request: Request, body: RolloutStart, principal: Principal = Depends(current_principal)
):
    manager = _publisher(request).manager
    try:
        row = manager.start(
            principal.app_id,
            principal.actor,
            policy=body.policy,
            candidate_version=body.candidate_version,
            kind=body.kind,
            baseline_version=body.baseline_version,
            steps=body.steps,
            min_decisions_per_step=body.min_decisions_per_step,
            segment=body.segment.model_dump() if body.segment else None,
            guardrails=(
                [g.model_dump(exclude_none=True) for g in body.guardrails]
                if body.guardrails is not None
                else None
            ),
            alpha=body.alpha,
            reason=body.reason,
        )
    except RolloutError as exc:
        raise _invalid(exc) from None
    return rollout_json(row)


@router.get("/rollouts", summary="Rollouts, newest first")
def list_rollouts(
    request: Request,
    policy: str | None = Query(None, max_length=200),
    status: str | None = Query(
        None, pattern="^(running|paused|promoted|rolled_back|aborted|active)$"
    ),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(current_principal),
):
    rows = _publisher(request).manager.list(
        principal.app_id, policy=policy, status=status, limit=limit
    )
    return {"items": [rollout_json(r) for r in rows]}


@router.get("/rollouts/{rollout_id}", summary="One rollout with live guardrail metrics")
def get_rollout(
    request: Request, rollout_id: str, principal: Principal = Depends(current_principal)
):
    manager = _publisher(request).manager
    row = manager.get(principal.app_id, rollout_id)
    out = rollout_json(row)
    metrics = manager.report(row)
    metrics.pop("_regressions", None)
    out["metrics"] = metrics
    return out


def _move(request: Request, rollout_id: str, principal: Principal, verb: str, reason: str):
    manager = _publisher(request).manager
    app_id, actor = principal.app_id, principal.actor
    try:
        if verb == "pause":
            row = manager.pause(app_id, rollout_id, actor, reason)
        elif verb == "resume":
            row = manager.resume(app_id, rollout_id, actor, reason)
        elif verb == "promote":
            row = manager.promote(app_id, rollout_id, actor, reason or "promoted by an operator")
        else:
            row = manager.rollback(app_id, rollout_id, actor, reason)
    except RolloutError as exc:
        raise _invalid(exc) from None
    assert row is not None
    return rollout_json(row)


@router.post("/rollouts/{rollout_id}/pause", summary="Freeze the share (guardrails keep watching)")
def pause_rollout(
    request: Request,
    rollout_id: str,
    body: ReasonIn | None = None,
    principal: Principal = Depends(current_principal),
):
    return _move(request, rollout_id, principal, "pause", body.reason if body else "")


@router.post("/rollouts/{rollout_id}/resume", summary="Resume a paused rollout")
def resume_rollout(
    request: Request,
    rollout_id: str,
    body: ReasonIn | None = None,
    principal: Principal = Depends(current_principal),
):
    return _move(request, rollout_id, principal, "resume", body.reason if body else "")


@router.post("/rollouts/{rollout_id}/promote", summary="Candidate to 100% and live now")
def promote_rollout(
    request: Request,
    rollout_id: str,
    body: ReasonIn | None = None,
    principal: Principal = Depends(current_principal),
):
    return _move(request, rollout_id, principal, "promote", body.reason if body else "")


@router.post(
    "/rollouts/{rollout_id}/rollback",
    summary="Everyone back on the baseline (also switches back a promoted rollout)",
)
def rollback_rollout(
    request: Request,
    rollout_id: str,
    body: RollbackIn,
    principal: Principal = Depends(current_principal),
):
    return _move(request, rollout_id, principal, "rollback", body.reason)


@router.post("/rollouts/{rollout_id}/evaluate", summary="Check guardrails now; maybe take a step")
def evaluate_rollout(
    request: Request,
    rollout_id: str,
    body: ReasonIn | None = None,
    principal: Principal = Depends(current_principal),
):
    _ = body  # accepted for symmetry with the other actions; evaluation needs no reason
    result = _publisher(request).manager.evaluate(principal.app_id, rollout_id, principal.actor)
    return result.as_dict()


# -- registry ---------------------------------------------------------------------------------


@router.get("/policies/{name}/diff", summary="Compare two versions of a policy")
def diff_policy(
    request: Request,
    name: str,
    from_version: int | None = Query(None, alias="from", ge=1),
    to_version: int | None = Query(None, alias="to", ge=1),
    principal: Principal = Depends(current_principal),
):
    try:
        return registry.diff_versions(
            _state(request).store, principal.app_id, name, from_version, to_version
        )
    except registry.RegistryError as exc:
        raise APIError(422, "invalid_diff", str(exc)) from None


@router.get("/policies/{name}/versions/{version}/bundle", summary="One version as a signed bundle")
def export_bundle(
    request: Request, name: str, version: int, principal: Principal = Depends(current_principal)
):
    state = _state(request)
    signing_key = keys.signing_key(state.settings.data_dir)
    try:
        data = registry.export_bundle(state.store, principal.app_id, name, version, signing_key)
    except registry.ArtifactRemoved as exc:
        raise APIError(409, "artifact_removed", str(exc)) from None
    return Response(
        content=data,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}-v{version}.bundle.json"'},
    )


@router.post(
    "/policies/{name}/bundles", status_code=201, summary="Import a signed bundle as a new version"
)
def import_bundle(
    request: Request,
    name: str,
    body: BundleImport,
    response: Response,
    principal: Principal = Depends(current_principal),
):
    from agent_lightning.security.rbac import Permission

    state = _state(request)
    if not body.create_policy:
        state.store.get_policy(principal.app_id, name)  # 404 before looking at the bundle
    if body.make_live and not principal.can(Permission.POLICY_PROMOTE):
        raise APIError(403, "forbidden", "making a version live needs the policy:promote right")
    try:
        data = base64.b64decode(body.bundle_b64, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "invalid_bundle", "bundle_b64 is not valid base64") from None
    try:
        trusted = keys.trusted_keys(state.settings.data_dir)
        row, created = registry.import_bundle(
            state.store,
            state.audit,
            principal.actor,
            principal.app_id,
            data,
            trusted,
            policy=name,
            create_policy=body.create_policy,
            make_live=body.make_live,
        )
    except BundleError as exc:
        state.audit.record(
            principal.actor,
            "policy_version.import",
            "policy",
            name,
            outcome="refused",
            after={"reason": str(exc)},
        )
        raise APIError(422, "bundle_rejected", f"bundle refused: {exc}") from None
    except registry.RegistryError as exc:
        raise APIError(422, "bundle_rejected", str(exc)) from None
    if body.make_live and created:
        state.decisions.invalidate(principal.app_id)
    if not created:
        response.status_code = 200
    out = serializers.policy_version(row, name)
    out["created"] = created
    return out


@router.get("/publisher/keys", summary="The public keys bundles are signed with")
def publisher_keys(request: Request, principal: Principal = Depends(current_principal)):
    _ = principal
    return {"keys": keys.public_keys(_state(request).settings.data_dir)}


# -- distribution -----------------------------------------------------------------------------


@router.get(
    "/runtime/manifest",
    summary="What a runtime should run (ETag / If-None-Match: 304 when unchanged)",
)
def runtime_manifest(
    request: Request,
    policy: str = Query(..., min_length=1, max_length=200),
    principal: Principal = Depends(current_principal),
):
    manifest = distribution.build_manifest(_state(request).store, principal.app_id, policy)
    etag = distribution.manifest_etag(manifest)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if distribution.etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(content=json.dumps(manifest), media_type="application/json", headers=headers)


def _stream_poll_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("AGL_MANIFEST_POLL_SECONDS") or 2.0))
    except ValueError:
        return 2.0


@router.get("/runtime/stream", summary="Server-sent events: `event: manifest` on every change")
async def runtime_stream(
    request: Request,
    policy: str = Query(..., min_length=1, max_length=200),
    principal: Principal = Depends(current_principal),
):
    state = _state(request)
    app_id = principal.app_id
    publisher = install_publisher(state)
    # Resolve the policy before the stream starts, so an unknown one is a plain 404.
    first = await run_in_threadpool(distribution.build_manifest, state.store, app_id, policy)
    poll = _stream_poll_seconds()

    async def events():
        manifest: dict[str, Any] | None = first
        sent_etag = None
        last_write = time.monotonic()
        seen = publisher.changes.count(app_id)
        last_read = last_check = time.monotonic()
        while True:
            if manifest is not None:
                etag = distribution.manifest_etag(manifest)
                if etag != sent_etag:
                    data = json.dumps(manifest, separators=(",", ":"))
                    yield f"event: manifest\nid: {etag.strip(chr(34))}\ndata: {data}\n\n"
                    sent_etag, last_write = etag, time.monotonic()
            if time.monotonic() - last_write >= STREAM_KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_write = time.monotonic()
            await asyncio.sleep(0.2)
            if await request.is_disconnected():
                return
            # Auth ran once, before the stream; a revoked client or key, or an expired token,
            # must not keep receiving. The runtime reconnects, and signs in again, on its own.
            if time.monotonic() - last_check >= STREAM_RECHECK_SECONDS:
                last_check = time.monotonic()
                try:
                    valid = await run_in_threadpool(credentials_still_valid, state, principal)
                except Exception:  # noqa: BLE001 - cannot tell: fail closed, the caller reconnects
                    valid = False
                if not valid:
                    yield 'event: error\ndata: {"error": "credentials revoked or expired"}\n\n'
                    return
            count = publisher.changes.count(app_id)
            if count == seen and time.monotonic() - last_read < poll:
                manifest = None  # nothing new to compare
                continue
            seen, last_read = count, time.monotonic()
            try:
                manifest = await run_in_threadpool(
                    distribution.build_manifest, state.store, app_id, policy
                )
            except NotFound:
                yield 'event: error\ndata: {"error": "the policy no longer exists"}\n\n'
                return
            except Exception:  # noqa: BLE001 - a database hiccup: keep the stream, retry later
                manifest = None

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/runtime/report", summary="A runtime says which versions it runs")
def runtime_report(
    request: Request, body: RuntimeReportIn, principal: Principal = Depends(current_principal)
):
    details = dict(body.details)
    details.update(arms=body.arms, queued=body.queued, last_sync=body.last_sync)
    row = distribution.record_report(
        _state(request).store,
        principal.app_id,
        body.runtime_id,
        body.policy,
        body.versions,
        details,
        principal.remote_addr,
    )
    return distribution.report_json(row)


@router.get("/runtime/reports", summary="The latest report of every runtime")
def runtime_reports(
    request: Request,
    policy: str | None = Query(None, max_length=200),
    limit: int = Query(500, ge=1, le=5000),
    principal: Principal = Depends(current_principal),
):
    rows = distribution.list_reports(
        _state(request).store, principal.app_id, policy=policy, limit=limit
    )
    return {"items": [distribution.report_json(r) for r in rows]}
