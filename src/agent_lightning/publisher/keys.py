"""The publisher's Ed25519 keys: the one it signs bundles with, and the ones it trusts on import.

The signing key lives in the data dir (``publisher_ed25519.pem``, mode 0600, created on first
use). Bundles are trusted on import when signed by that key or by a public key (PEM) placed in
``<data dir>/trusted_keys/`` or named in ``AGL_PUBLISHER_TRUSTED_KEYS`` (paths separated by the
OS path separator): that is how a production server accepts versions exported by staging.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent_lightning.publisher.bundle import (
    BundleError,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    public_key_pem,
)

KEY_FILE = "publisher_ed25519.pem"
TRUSTED_DIR = "trusted_keys"
TRUSTED_ENV = "AGL_PUBLISHER_TRUSTED_KEYS"


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The publisher's signing key (created on first use)."""
    return load_or_create_signing_key(Path(data_dir) / KEY_FILE)


def extra_trusted_keys(data_dir: Path, env: dict[str, str] | None = None) -> list[Ed25519PublicKey]:
    """Public keys besides our own that may sign imported bundles; a bad file is an error."""
    env = dict(os.environ) if env is None else env
    paths = sorted((Path(data_dir) / TRUSTED_DIR).glob("*.pem"))
    paths += [Path(p) for p in (env.get(TRUSTED_ENV) or "").split(os.pathsep) if p.strip()]
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(path.read_bytes()))
        except OSError as exc:
            raise BundleError(f"cannot read trusted key {path}: {exc.strerror}") from None
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return keys


def trusted_keys(
    data_dir: Path, extra: list[Ed25519PublicKey] | None = None
) -> list[Ed25519PublicKey]:
    """Our own public key first, then the configured ones, then `extra` (e.g. from the CLI)."""
    return [signing_key(data_dir).public_key(), *extra_trusted_keys(data_dir), *(extra or [])]


def public_keys(data_dir: Path) -> list[dict[str, Any]]:
    """What `GET /v1/publisher/keys` serves: our signing key (primary) and the trusted ones."""
    own = signing_key(data_dir).public_key()
    out = [{"key_id": key_id(own), "pem": public_key_pem(own), "primary": True}]
    seen = {out[0]["key_id"]}
    for key in extra_trusted_keys(data_dir):
        if key_id(key) not in seen:
            seen.add(key_id(key))
            out.append({"key_id": key_id(key), "pem": public_key_pem(key), "primary": False})
    return out


__all__ = ["KEY_FILE", "extra_trusted_keys", "public_keys", "signing_key", "trusted_keys"]
