"""Exceptions raised by the security primitives.

Every error carries a short machine-readable ``reason_code`` and a human-readable ``message``.
Messages are written to be safe to return to a caller or to log: they never contain the token,
the secret, the plaintext or the key that was being checked, and they do not echo
attacker-controlled claim values either (log injection, reflected content).
"""

from __future__ import annotations


class SecurityError(Exception):
    """Root of every error raised by :mod:`agent_lightning.security` primitives."""

    default_code = "security_error"

    def __init__(self, reason_code: str | None = None, message: str = "") -> None:
        self.reason_code = reason_code or self.default_code
        self.message = message or self.reason_code.replace("_", " ")
        super().__init__(self.reason_code, self.message)

    def __str__(self) -> str:
        return f"{self.reason_code}: {self.message}"


class InvalidToken(SecurityError):
    """A bearer token was refused (own access token or external OIDC token).

    Reason codes: ``malformed``, ``unsupported_algorithm``, ``bad_signature``, ``bad_key``,
    ``unknown_key``, ``expired``, ``not_yet_valid``, ``bad_audience``, ``bad_issuer``,
    ``bad_type``, ``missing_claim``, ``idp_unreachable``, ``idp_misconfigured``.
    """

    default_code = "invalid_token"


class DecryptionError(SecurityError):
    """A ciphertext could not be decrypted: wrong key, tampered or not a token at all."""

    default_code = "decryption_failed"
