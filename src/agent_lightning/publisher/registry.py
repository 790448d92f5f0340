"""The registry side of the publisher: compare two versions, export one as a signed bundle, and
import a bundle as a new version after verifying its signature.

Versions are immutable, so an import never overwrites anything: it appends a version whose notes
and metrics name where it came from (the bundle's app, policy, version and signing key).
Importing the same artifact twice returns the version registered the first time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select

from agent_lightning.publisher.bundle import Bundle, BundleError, sign_bundle, verify_bundle
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import (
    NotFound,
    Policy,
    PolicyVersion,
    Store,
    artifact_pruned_message,
    new_id,
)

MAX_ARRAY_DIFFS = 20
MAX_ARRAY_ELEMENTS = 5_000_000


class RegistryError(ValueError):
    """A diff, export or import that cannot be done as asked (the API answers 422)."""


class ArtifactRemoved(RegistryError):
    """The version exists but retention removed its artifact (the API answers 409)."""


def _ts(value: Any) -> str | None:
    from agent_lightning.store.store import as_utc

    return None if value is None else as_utc(value).isoformat()


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _lineage(store: Store, app_id: str, policy: str, older: int, newer: int) -> dict[str, Any]:
    """Walk `newer`'s parents: is `older` an ancestor, and by which path?"""
    path = [newer]
    seen = {newer}
    current = store.get_policy_version(app_id, policy, newer)
    while current.parent_version is not None and current.parent_version not in seen:
        path.append(current.parent_version)
        seen.add(current.parent_version)
        if current.parent_version == older:
            return {"related": "ancestor", "path": path}
        try:
            current = store.get_policy_version(app_id, policy, current.parent_version)
        except NotFound:
            break
    return {"related": "unrelated", "path": path}


def _arrays(artifact: bytes) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """(params, {name: array}, examples_seen) of a learned artefact, or None if it won't load."""
    try:
        from agent_lightning.learning import LearningError
        from agent_lightning.learning import Policy as LearnedPolicy

        model = LearnedPolicy.from_bytes(artifact)
    except (ImportError, LearningError, ValueError):
        return None
    learner = getattr(model, "learner", None)
    if learner is None:  # a uniform policy: nothing learned
        return {"kind": getattr(model, "kind", "uniform")}, {}, 0
    meta, arrays = learner.get_state()
    # Name per-arm arrays by the arm's id, not its position, so two versions line up.
    arms = meta.get("arms") if isinstance(meta, Mapping) else None
    named: dict[str, Any] = {}
    for key, value in arrays.items():
        match = re.match(r"^arm(\d+)\.(.*)$", key)
        if match and isinstance(arms, list) and int(match.group(1)) < len(arms):
            key = f"arm[{arms[int(match.group(1))].get('id')}].{match.group(2)}"
        named[key] = value
    return model.get_params(), named, int(getattr(model, "examples_seen", 0))


def _parameter_deltas(old: bytes | None, new: bytes | None) -> dict[str, Any] | None:
    if not old or not new:
        return None
    a, b = _arrays(old), _arrays(new)
    if a is None or b is None:
        return {"comparable": False, "note": "one of the artefacts could not be loaded"}
    import numpy as np

    params_a, arrays_a, seen_a = a
    params_b, arrays_b, seen_b = b
    flat_a, flat_b = _flatten(params_a), _flatten(params_b)
    config = {
        k: {"from": flat_a.get(k), "to": flat_b.get(k)}
        for k in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(k) != flat_b.get(k)
    }
    deltas = []
    resized = []
    for key in sorted(set(arrays_a) & set(arrays_b)):
        x, y = np.asarray(arrays_a[key]), np.asarray(arrays_b[key])
        if x.shape != y.shape:
            # Kernel-style learners (LinUCB) keep per-example state: it grows, it is not moved.
            resized.append({"name": key, "from_shape": list(x.shape), "to_shape": list(y.shape)})
            continue
        if x.size > MAX_ARRAY_ELEMENTS or not x.size:
            continue
        if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
            continue
        diff = y.astype(np.float64) - x.astype(np.float64)
        norm = float(np.linalg.norm(x.astype(np.float64)))
        l2 = float(np.linalg.norm(diff))
        deltas.append(
            {
                "name": key,
                "shape": list(x.shape),
                "l2_delta": round(l2, 6),
                "max_abs_delta": round(float(np.max(np.abs(diff))), 6),
                "relative_delta": round(l2 / norm, 6) if norm > 0 else None,
            }
        )
    deltas.sort(key=lambda d: d["l2_delta"], reverse=True)
    return {
        "comparable": True,
        "config_changes": config,
        "examples_seen": {"from": seen_a, "to": seen_b, "delta": seen_b - seen_a},
        "arrays_added": sorted(set(arrays_b) - set(arrays_a)),
        "arrays_removed": sorted(set(arrays_a) - set(arrays_b)),
        "largest_changes": deltas[:MAX_ARRAY_DIFFS],
        "arrays_compared": len(deltas),
        "arrays_resized": resized[:MAX_ARRAY_DIFFS],
    }


def _meta(row: PolicyVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "parent_version": row.parent_version,
        "artifact_sha256": row.artifact_sha256,
        "artifact_bytes": row.artifact_bytes or 0,
        "artifact_pruned_at": _ts(row.artifact_pruned_at) if row.artifact_pruned_at else None,
        "data_hash": row.data_hash,
        "data_range": row.data_range,
        "notes": row.notes,
        "created_by": row.created_by,
        "created_at": _ts(row.created_at),
    }


def diff_versions(
    store: Store, app_id: str, policy: str, from_version: int | None, to_version: int | None
) -> dict[str, Any]:
    """Metadata, metrics, lineage and (when both load) learned-parameter changes.

    Defaults: `to` is the newest version, `from` is its parent (else the live version).
    """
    row = store.get_policy(app_id, policy)
    if to_version is None:
        with store.session() as s:
            to_version = s.scalar(
                select(func.max(PolicyVersion.version)).where(PolicyVersion.policy_id == row.id)
            )
        if to_version is None:
            raise RegistryError(f"policy {policy!r} has no versions yet")
    new = store.get_policy_version(app_id, policy, to_version)
    if from_version is None:
        from_version = new.parent_version or row.live_version
        if from_version is None or from_version == to_version:
            raise RegistryError(f"give the version to compare {policy}@{to_version} with (from=)")
    old = store.get_policy_version(app_id, policy, from_version)
    meta_a, meta_b = _meta(old), _meta(new)
    metadata = {k: {"from": meta_a[k], "to": meta_b[k]} for k in meta_a if meta_a[k] != meta_b[k]}
    flat_a, flat_b = _flatten(old.metrics or {}), _flatten(new.metrics or {})
    metrics = {}
    for key in sorted(set(flat_a) | set(flat_b)):
        a, b = flat_a.get(key), flat_b.get(key)
        if a == b:
            continue
        entry: dict[str, Any] = {"from": a, "to": b}
        if _number(a) is not None and _number(b) is not None:
            entry["delta"] = round(float(b) - float(a), 9)
        metrics[key] = entry
    if from_version < to_version:
        lineage = _lineage(store, app_id, policy, from_version, to_version)
    else:
        lineage = _lineage(store, app_id, policy, to_version, from_version)
        if lineage["related"] == "ancestor":
            lineage["related"] = "descendant"
    return {
        "policy": policy,
        "from": from_version,
        "to": to_version,
        "live_version": row.live_version,
        "same_artifact": old.artifact_sha256 == new.artifact_sha256,
        "metadata": metadata,
        "metrics": metrics,
        "lineage": lineage,
        "parameters": _parameter_deltas(old.artifact, new.artifact),
    }


def export_bundle(
    store: Store, app_id: str, policy: str, version: int, signing_key: Ed25519PrivateKey
) -> bytes:
    """One version as a signed bundle (see `publisher.bundle` for the format)."""
    row = store.get_policy(app_id, policy)
    ver = store.get_policy_version(app_id, policy, version)
    if ver.artifact_pruned_at is not None:
        raise ArtifactRemoved(artifact_pruned_message(policy, ver.version, ver.artifact_pruned_at))
    manifest = {
        "app_id": app_id,
        "policy": policy,
        "decision_point": row.decision_point,
        "version": ver.version,
        "parent_version": ver.parent_version,
        "data_hash": ver.data_hash,
        "data_range": ver.data_range or {},
        "metrics": ver.metrics or {},
        "notes": ver.notes,
        "created_by": ver.created_by,
        "created_at": _ts(ver.created_at),
        "spec": row.spec or {},
    }
    return sign_bundle(manifest, ver.artifact, signing_key)


def import_bundle(
    store: Store,
    audit: AuditLog,
    actor: Actor,
    app_id: str,
    data: bytes,
    trusted: Iterable[Ed25519PublicKey],
    *,
    policy: str | None = None,
    create_policy: bool = False,
    make_live: bool = False,
) -> tuple[PolicyVersion, bool]:
    """Verify a bundle and register it as a new version; returns (version, created).

    Raises `BundleError` for a bundle that is tampered with or signed by an untrusted key, and
    `RegistryError` for one that does not fit here (another policy's name, a corrupt artefact).
    """
    bundle: Bundle = verify_bundle(data, list(trusted))
    name = policy or bundle.policy
    if bundle.policy != name:
        raise RegistryError(
            f"the bundle holds policy {bundle.policy!r}, not {name!r}; import it under its own name"
        )
    if bundle.artifact is not None:
        try:
            from agent_lightning.learning import LearningError
            from agent_lightning.learning import Policy as LearnedPolicy

            LearnedPolicy.from_bytes(bundle.artifact)
        except LearningError as exc:
            raise RegistryError(f"the bundle's artefact does not load: {exc}") from None
    manifest = bundle.manifest
    try:
        row = store.get_policy(app_id, name)
    except NotFound:
        if not create_policy:
            raise
        store.ensure_app(app_id)
        row = store.create_policy(
            Policy(
                id=new_id(),
                app_id=app_id,
                name=name,
                decision_point=str(manifest.get("decision_point") or "default"),
                spec=dict(manifest.get("spec") or {}),
                created_by=actor.name,
            )
        )
        audit.record(
            actor,
            "policy.create",
            "policy",
            name,
            app_id=app_id,
            after={"name": name, "from_bundle": True},
        )
    origin = {
        "app_id": manifest.get("app_id"),
        "policy": bundle.policy,
        "version": bundle.version,
        "key_id": manifest.get("key_id"),
        "artifact_sha256": manifest.get("artifact_sha256"),
        "exported_at": manifest.get("exported_at"),
    }
    sha = manifest.get("artifact_sha256")
    if sha:
        with store.session() as s:
            existing = s.scalar(
                select(PolicyVersion).where(
                    PolicyVersion.policy_id == row.id, PolicyVersion.artifact_sha256 == sha
                )
            )
        if existing is not None:
            if existing.artifact_pruned_at is not None and bundle.artifact is not None:
                # Retention removed this version's bytes; the verified bundle brings them back.
                existing = store.restore_policy_artifact(existing.id, bundle.artifact)
                audit.record(
                    actor,
                    "policy_version.restore",
                    "policy_version",
                    f"{name}@{existing.version}",
                    app_id=app_id,
                    after={"artifact_sha256": sha, "from_bundle": origin},
                )
            return existing, False
    metrics = dict(manifest.get("metrics") or {})
    metrics["imported_from"] = origin
    version = store.add_policy_version(
        PolicyVersion(
            id=new_id(),
            policy_id=row.id,
            parent_version=None,
            artifact=bundle.artifact,
            data_hash=manifest.get("data_hash"),
            data_range=dict(manifest.get("data_range") or {}),
            metrics=metrics,
            notes=f"imported from bundle {bundle.policy}@{bundle.version} "
            f"(app {origin['app_id']}, key {origin['key_id']})"
            + (f": {manifest.get('notes')}" if manifest.get("notes") else ""),
            created_by=actor.name,
        ),
        make_live=make_live,
    )
    audit.record(
        actor,
        "policy_version.create",
        "policy_version",
        f"{name}@{version.version}",
        app_id=app_id,
        after={
            "version": version.version,
            "parent": None,
            "live": make_live,
            "imported_from": origin,
        },
    )
    return version, True


__all__ = [
    "BundleError",
    "RegistryError",
    "diff_versions",
    "export_bundle",
    "import_bundle",
]
