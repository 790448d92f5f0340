"""Sticky assignment of users (or sessions) to rollout arms.

The server (for `POST /v1/decisions`) and every runtime (deciding locally from bundles) must put
the same user in the same arm, so the rule is a pure function of a rollout's salt and the unit
key: the first 8 bytes of SHA-256 over ``salt + ":" + key`` read as a fraction in [0, 1). A user
is in the candidate arm while that fraction is below the rollout's current share; raising the
share from 5% to 25% only moves users *into* the candidate, never back and forth.
"""

from __future__ import annotations

import hashlib


def bucket(salt: str, key: str) -> float:
    """A stable fraction in [0, 1) for one unit key under one rollout's salt."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_candidate(salt: str, key: str, percent: float) -> bool:
    """True when the unit with ``key`` is served the candidate at ``percent`` (0-100)."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return bucket(salt, key) < percent / 100.0


def unit_key(user_id: str | None, session_id: str | None, fallback: str) -> str:
    """What assignment is sticky on: the user, else the session, else a per-request fallback."""
    if user_id:
        return f"user:{user_id}"
    if session_id:
        return f"session:{session_id}"
    return f"request:{fallback}"


__all__ = ["bucket", "in_candidate", "unit_key"]
