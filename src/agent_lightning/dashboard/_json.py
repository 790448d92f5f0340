"""Small helpers shared by the summaries: JSON-safe numbers and ratios."""

from __future__ import annotations

import math
from typing import Any


def clean(value: Any) -> Any:
    """NaN and infinities become null: browsers' JSON.parse refuses them, so must we."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def version_label(policy: str | None, version: int | float | None) -> str:
    if version is None:
        return "no version" if policy is None else f"{policy} (no version)"
    return f"{policy} v{int(version)}" if policy else f"v{int(version)}"
