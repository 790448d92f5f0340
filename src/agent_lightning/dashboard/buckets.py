"""Time buckets for dashboard charts: aligning, stepping, and the SQL that groups rows by bucket.

SQLite and PostgreSQL disagree on dates. SQLAlchemy stores a `DateTime` in SQLite as the text
`YYYY-MM-DD HH:MM:SS.ffffff` (UTC, by the store's convention), so a bucket is a prefix of that
text (`substr`), which is cheap and needs no date parsing per row. PostgreSQL stores `timestamptz`;
`date_trunc` over the value seen in UTC gives the bucket. Units are rendered as literals (not bound
parameters) so the SELECT and GROUP BY expressions are textually identical, which PostgreSQL needs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, literal_column

BUCKETS = ("minute", "hour", "day")
STEP = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
# Longest window per bucket size: bounds the points drawn and the memory a rollup holds.
MAX_WINDOW = {
    "minute": timedelta(hours=6),
    "hour": timedelta(days=31),
    "day": timedelta(days=400),
}
_SQLITE_PREFIX = {"minute": 16, "hour": 13, "day": 10}


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything the store writes is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor(value: datetime, bucket: str) -> datetime:
    value = as_utc(value)
    if bucket == "minute":
        return value.replace(second=0, microsecond=0)
    if bucket == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown bucket {bucket!r}; choose from {', '.join(BUCKETS)}")


def ceil(value: datetime, bucket: str) -> datetime:
    down = floor(value, bucket)
    return down if down == as_utc(value) else down + STEP[bucket]


def starts(since: datetime, until: datetime, bucket: str) -> list[datetime]:
    """Every bucket start in [floor(since), until): the x axis, with empty buckets included."""
    out = []
    at = floor(since, bucket)
    while at < until:
        out.append(at)
        at += STEP[bucket]
    return out


def bucket_expr(dialect: str, column: Any, bucket: str) -> Any:
    """SQL grouping `column` (a UTC timestamp) into `bucket`s, for this database."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}")
    if dialect == "sqlite":
        return func.substr(column, literal_column("1"), literal_column(str(_SQLITE_PREFIX[bucket])))
    if dialect == "postgresql":
        return func.date_trunc(
            literal_column(f"'{bucket}'"), func.timezone(literal_column("'UTC'"), column)
        )
    raise ValueError(f"the dashboard does not support the {dialect!r} database")


class BucketParser:
    """Turns what `bucket_expr` returned into an aware UTC datetime (memoised: a few distinct)."""

    def __init__(self) -> None:
        self._seen: dict[Any, datetime] = {}

    def __call__(self, raw: Any) -> datetime:
        hit = self._seen.get(raw)
        if hit is not None:
            return hit
        if isinstance(raw, datetime):
            parsed = as_utc(raw)
        else:
            text = str(raw)
            parsed = datetime(
                int(text[0:4]),
                int(text[5:7]),
                int(text[8:10]),
                int(text[11:13]) if len(text) >= 13 else 0,
                int(text[14:16]) if len(text) >= 16 else 0,
                tzinfo=UTC,
            )
        self._seen[raw] = parsed
        return parsed
