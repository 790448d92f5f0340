"""Signed policy bundles: one policy version, exported as a file a runtime can verify.

A bundle is a JSON document::

    {"format": "agl-bundle/1",
     "manifest": {app_id, policy, decision_point, version, parent_version, artifact_sha256,
                  data_hash, data_range, metrics, notes, created_by, created_at, exported_at,
                  spec, key_id},
     "artifact": "<base64 of the learned policy's bytes, or null for an untrained version>",
     "signature": "<base64 Ed25519 signature>"}

The signature covers the canonical JSON of ``{"format", "manifest", "artifact_sha256"}``
(sorted keys, no spaces), and the manifest pins the artifact's SHA-256, so changing any byte of
the manifest or of the artifact makes :func:`verify_bundle` refuse the bundle. ``key_id`` is
the first 16 hex digits of SHA-256 over the raw public key, so a runtime that trusts several
keys (during a rotation) knows which one to try.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

FORMAT = "agl-bundle/1"


class BundleError(ValueError):
    """A bundle that is malformed, tampered with, or signed by a key we do not trust."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("the public key is not an Ed25519 key")
    return key


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The publisher's signing key, created (mode 0600, atomically) on first use."""
    from agent_lightning.security.crypto import write_private_file

    path = Path(path)
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} does not hold an Ed25519 private key")
    return key


def _signed_bytes(fmt: str, manifest: Mapping[str, Any], artifact_sha256: str | None) -> bytes:
    body = {"format": fmt, "manifest": manifest, "artifact_sha256": artifact_sha256}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    artifact: bytes | None

    @property
    def policy(self) -> str:
        return self.manifest["policy"]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def sign_bundle(
    manifest: Mapping[str, Any], artifact: bytes | None, signing_key: Ed25519PrivateKey
) -> bytes:
    """Serialise and sign one version. ``manifest`` needs at least ``policy`` and ``version``."""
    for field in ("policy", "version"):
        if field not in manifest:
            raise BundleError(f"a bundle manifest needs {field!r}")
    manifest = dict(manifest)
    manifest["artifact_sha256"] = hashlib.sha256(artifact).hexdigest() if artifact else None
    manifest["key_id"] = key_id(signing_key.public_key())
    manifest.setdefault("exported_at", datetime.now(UTC).isoformat())
    manifest = json.loads(json.dumps(manifest, default=str))  # plain JSON types only
    signature = signing_key.sign(_signed_bytes(FORMAT, manifest, manifest["artifact_sha256"]))
    document = {
        "format": FORMAT,
        "manifest": manifest,
        "artifact": base64.b64encode(artifact).decode() if artifact else None,
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(document, sort_keys=True).encode()


def verify_bundle(
    data: bytes, trusted_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]
) -> Bundle:
    """Parse and verify a bundle; raise :class:`BundleError` saying what is wrong."""
    keys = [trusted_keys] if isinstance(trusted_keys, Ed25519PublicKey) else list(trusted_keys)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not a bundle (invalid JSON: {exc})") from None
    if not isinstance(document, dict):
        raise BundleError("not a bundle (expected a JSON object)")
    fmt = document.get("format")
    if fmt != FORMAT:
        raise BundleError(f"unsupported bundle format {fmt!r} (this build reads {FORMAT!r})")
    manifest = document.get("manifest")
    if not isinstance(manifest, dict) or "policy" not in manifest or "version" not in manifest:
        raise BundleError("the bundle has no valid manifest")
    try:
        signature = base64.b64decode(document.get("signature") or "", validate=True)
        encoded = document.get("artifact")
        artifact = base64.b64decode(encoded, validate=True) if encoded else None
    except (binascii.Error, TypeError):
        raise BundleError("the bundle's signature or artifact is not valid base64") from None
    expected = manifest.get("artifact_sha256")
    actual = hashlib.sha256(artifact).hexdigest() if artifact else None
    if expected != actual:
        raise BundleError("the artifact does not match the manifest's SHA-256 (tampered?)")
    candidates = [k for k in keys if key_id(k) == manifest.get("key_id")] or keys
    if not candidates:
        raise BundleError("no trusted public key to verify the bundle with")
    signed = _signed_bytes(fmt, manifest, expected)
    for key in candidates:
        try:
            key.verify(signature, signed)
            return Bundle(manifest=manifest, artifact=artifact)
        except InvalidSignature:
            continue
    raise BundleError("bad signature: the bundle was altered or signed by an untrusted key")


__all__ = [
    "FORMAT",
    "Bundle",
    "BundleError",
    "key_id",
    "load_or_create_signing_key",
    "load_public_key",
    "public_key_pem",
    "sign_bundle",
    "verify_bundle",
]
