"""Opaque cursors for keyset pagination over the monotonic `pk` column."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not produced by us (or was altered)."""


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_cursor(pk: int, order: str) -> str:
    raw = json.dumps({"pk": pk, "o": order}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        pk = data["pk"]
        if not isinstance(pk, int) or isinstance(pk, bool) or data.get("o") != order:
            raise ValueError
        return pk
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidCursor("cursor is not valid for this listing; start again without it") from exc
