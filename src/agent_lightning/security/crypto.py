"""Encrypting connector credentials at rest, with key rotation.

:class:`SecretBox` wraps :class:`cryptography.fernet.MultiFernet` (AES-128-CBC + HMAC-SHA256,
authenticated). Keys come from:

- the environment variable ``AGL_ENCRYPTION_KEYS``: comma-separated Fernet keys, or
- a key file: one key per line, blank lines and ``#`` comments ignored, created with mode
  0600 and a fresh key by :func:`load_or_create_keyfile` when it does not exist.

The first key is the primary: everything is encrypted under it. The others are only tried
for decryption. To rotate: put a new key (``generate_key()``) first, keep the old ones after
it, re-encrypt every stored value with :meth:`SecretBox.rotate`, then drop the old keys.

This module also holds :func:`write_private_file`, the atomic create-once writer used for key
material (here and for the JWT signing key in :mod:`.tokens`).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from cryptography.fernet import InvalidToken as FernetInvalidToken

from agent_lightning.security.errors import DecryptionError

ENV_VAR = "AGL_ENCRYPTION_KEYS"

log = logging.getLogger(__name__)


def write_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` and mode 0600, atomically, unless it already exists.

    Returns True if this call created the file, False if another writer got there first (the
    caller then reads theirs). The content is written to a temporary file and hard-linked into
    place: readers never see a half-written key, and unlike ``os.replace`` a racing process
    cannot overwrite a key that someone is already using.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never follow or reuse something planted at the temporary name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # A filesystem without hard links: fall back to an exclusive create. Not atomic for
            # readers, but still never overwrites an existing key.
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def warn_if_exposed(path: Path) -> None:
    """Log a warning when a key file is readable or writable by group or others."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:  # pragma: no cover - the caller just read it
        return
    if mode & 0o077:
        log.warning("key file %s is accessible by other users (mode %o); chmod 600 it", path, mode)


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes), as text."""
    return Fernet.generate_key().decode("ascii")


def _parse_keyfile(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


def load_or_create_keyfile(path: Path) -> list[str]:
    """Read the keys in ``path`` (primary first), creating it with one new key if missing."""
    path = Path(path)
    if not path.exists():
        header = "# agent-lightning encryption keys: first line is the primary. Keep secret.\n"
        write_private_file(path, (header + generate_key() + "\n").encode("ascii"))
    warn_if_exposed(path)
    keys = _parse_keyfile(path.read_text(encoding="ascii"))
    if not keys:
        raise ValueError(f"encryption key file {path} contains no keys")
    return keys


class SecretBox:
    """Authenticated encryption of small secrets under a primary key plus older keys."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, str | bytes):
            # A lone string would be iterated character by character: refuse it loudly.
            raise TypeError("SecretBox takes a list of keys, primary first")
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.strip() if isinstance(key, str | bytes) else key))
            except (ValueError, TypeError):
                # Say which key, never what it is.
                raise ValueError(
                    f"encryption key #{index + 1} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes; see generate_key())"
                ) from None
        if not fernets:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        return f"SecretBox(keys={self.key_count})"

    @classmethod
    def from_env(cls, var: str = ENV_VAR, environ: Mapping[str, str] | None = None) -> SecretBox:
        """Keys from a comma-separated environment variable (default ``AGL_ENCRYPTION_KEYS``)."""
        value = (os.environ if environ is None else environ).get(var, "")
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError(f"{var} is not set or holds no keys")
        return cls(keys)

    @classmethod
    def from_keyfile(cls, path: Path) -> SecretBox:
        """Keys from a key file, created with a new key if missing."""
        return cls(load_or_create_keyfile(path))

    def encrypt(self, plaintext: str | bytes) -> str:
        """Encrypt under the primary key; str input is UTF-8 encoded. Returns ASCII text."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
        return self._fernet.encrypt(data).decode("ascii")

    def decrypt(self, token: str | bytes) -> bytes:
        """Decrypt with whichever key matches; :class:`DecryptionError` if none does."""
        try:
            return self._fernet.decrypt(token)
        except (FernetInvalidToken, TypeError, ValueError):
            raise DecryptionError(
                "decryption_failed",
                "the value could not be decrypted: wrong key, or corrupted or tampered data",
            ) from None

    def rotate(self, token: str | bytes) -> str:
        """Re-encrypt ``token`` under the current primary key (decrypting with any key)."""
        try:
            return self._fernet.rotate(token).decode("ascii")
        except (FernetInvalidToken, TypeError, ValueError):
            raise DecryptionError(
                "decryption_failed",
                "the value could not be re-encrypted: no key decrypts it",
            ) from None
