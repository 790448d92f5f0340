"""Hashing client secrets and API keys with a slow KDF, and generating them.

Secrets are hashed with stdlib :func:`hashlib.scrypt` (n=2**14, r=8, p=1, 16-byte random salt,
32-byte key) and stored as a self-describing string::

    scrypt$<n>$<r>$<p>$<salt, base64url>$<hash, base64url>

so the parameters can be raised later without invalidating stored hashes (see
:func:`needs_rehash`). Verification never raises on a malformed or hostile encoding: it returns
``False``. The parameters read back from an encoding are bounded, so a corrupted row cannot make
us allocate gigabytes.

API keys look like ``aglk_<key_id>_<secret>``. The key id is not secret: the server looks the
key up by id and then slow-verifies only the secret part against the stored hash, so a lookup
never needs a KDF per stored key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32

API_KEY_PREFIX = "aglk_"
_SCHEME = "scrypt"

# Bounds on parameters read back from storage: scrypt needs about 128 * r * n bytes, and a
# tampered or corrupted hash must not be able to make verification allocate without limit.
_MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
_MAX_R = 32
_MAX_P = 16
_MIN_KEY, _MAX_KEY = 16, 64
# A secret longer than this cannot be one we issued; refusing it early keeps the KDF's
# PBKDF2 pre-pass from being fed megabytes by an unauthenticated caller.
_MAX_SECRET_BYTES = 4096

_KEY_ID_RE = re.compile(r"[A-Za-z0-9]{1,64}")
_KEY_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    # Strict decoding: the lenient urlsafe_b64decode silently drops stray characters.
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _to_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses (ValueError) when the work area exceeds maxmem; give it just enough.
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _params_ok(n: int, r: int, p: int) -> bool:
    return (
        n >= 2
        and n & (n - 1) == 0
        and 1 <= r <= _MAX_R
        and 1 <= p <= _MAX_P
        and 128 * r * n <= _MAX_SCRYPT_MEMORY
    )


def hash_secret(
    secret: str | bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> str:
    """Hash ``secret`` with scrypt and a fresh random salt; returns the encoded string.

    The keyword parameters exist so tests can use a cheaper ``n``; production code should
    keep the defaults.
    """
    if not _params_ok(n, r, p):
        raise ValueError("scrypt parameters out of range (n must be a power of two)")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(_to_bytes(secret), salt, n, r, p, KEY_BYTES)
    return f"{_SCHEME}${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(encoded, str) or len(encoded) > 512:
        return None
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return None
    try:
        # isdigit() first: int() would also accept "+16384", " 16384" or "1_6384".
        if not all(part.isascii() and part.isdigit() for part in parts[1:4]):
            return None
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = _b64d(parts[4]), _b64d(parts[5])
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    if not _params_ok(n, r, p) or not salt or not _MIN_KEY <= len(digest) <= _MAX_KEY:
        return None
    return n, r, p, salt, digest


def verify_secret(secret: str | bytes, encoded: str) -> bool:
    """True iff ``secret`` matches ``encoded`` (from :func:`hash_secret`); never raises."""
    parsed = _parse(encoded)
    if parsed is None or not isinstance(secret, str | bytes):
        return False
    raw = _to_bytes(secret)
    if len(raw) > _MAX_SECRET_BYTES:
        return False
    n, r, p, salt, expected = parsed
    try:
        actual = _scrypt(raw, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):  # pragma: no cover - parameters are bounded above
        return False
    # Constant-time: the comparison must not tell an attacker how many bytes matched.
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    """True if ``encoded`` is malformed or uses weaker parameters than the current defaults.

    Lets the caller upgrade a stored hash after a successful login without forcing a reset.
    """
    parsed = _parse(encoded)
    if parsed is None:
        return True
    n, r, p, salt, digest = parsed
    # scrypt's memory and time cost both scale with n * r.
    weaker_cost = n * r < SCRYPT_N * SCRYPT_R or p < SCRYPT_P
    return weaker_cost or len(salt) < SALT_BYTES or len(digest) < KEY_BYTES


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret, url-safe base64 (43 characters for the default 32 bytes)."""
    if nbytes < 16:
        raise ValueError("a secret needs at least 16 random bytes")
    return secrets.token_urlsafe(nbytes)


def generate_client_id(prefix: str = "agl_") -> str:
    """A new random, non-secret client identifier such as ``agl_3f9c...``."""
    return f"{prefix}{secrets.token_hex(12)}"


def hash_token_fingerprint(token: str | bytes) -> str:
    """Fast SHA-256 hex digest, for indexing or caching by a value without storing it.

    Not a password hash: use it only for high-entropy values (API keys, tokens).
    """
    return hashlib.sha256(_to_bytes(token)).hexdigest()


def make_api_key() -> tuple[str, str]:
    """A new API key: returns ``(key_id, full_key)`` where full_key is ``aglk_<id>_<secret>``.

    Store ``key_id`` and ``hash_secret(secret)``; show ``full_key`` to the user once.
    """
    key_id = secrets.token_hex(8)  # hex: never contains the "_" separator
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(full_key: str) -> tuple[str, str] | None:
    """Split ``aglk_<id>_<secret>`` into ``(key_id, secret)``; None if it is not one of ours."""
    if not isinstance(full_key, str) or not full_key.startswith(API_KEY_PREFIX):
        return None
    # The id has no "_", the url-safe secret may: split on the first separator only.
    key_id, sep, secret = full_key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not _KEY_ID_RE.fullmatch(key_id) or not _KEY_SECRET_RE.fullmatch(secret):
        return None
    return key_id, secret
