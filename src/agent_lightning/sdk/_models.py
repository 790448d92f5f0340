"""What the API answers, as small frozen dataclasses. Unknown fields are ignored, so a newer
server does not break an older SDK."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`: the chosen action and the probability it had (its propensity).

    `status` is "created" for a fresh decision and "duplicate" when a retried call (same id)
    returned the decision already made.
    """

    decision_id: str
    action_id: str
    propensity: float
    probabilities: dict[str, float]
    policy_name: str | None = None
    policy_version: int | None = None
    status: str = "created"

    @classmethod
    def from_api(cls, data: dict[str, Any], status: str = "created") -> Decision:
        policy = data.get("policy") or {}
        return cls(
            decision_id=data["decision_id"],
            action_id=data["action_id"],
            propensity=float(data["propensity"]),
            probabilities={k: float(v) for k, v in (data.get("probabilities") or {}).items()},
            policy_name=policy.get("name"),
            policy_version=policy.get("version"),
            status=status,
        )


@dataclass(frozen=True)
class Accepted:
    """One stored record of a batch: its position in what you sent, its id, and whether it was
    "created", a "duplicate" of one already stored, or (buffered mode) "queued"."""

    index: int
    id: str
    status: str


@dataclass(frozen=True)
class Rejected:
    """One refused record of a batch: its position, a reason code and a sentence (no content)."""

    index: int
    reason: str
    message: str
    id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    """Per-record results of a batch write; the accepted part is stored even with rejections."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def created(self) -> int:
        """How many records were newly stored."""
        return sum(1 for a in self.accepted if a.status == "created")

    @property
    def duplicates(self) -> int:
        """How many records were already stored (a retry); they are not stored twice."""
        return sum(1 for a in self.accepted if a.status == "duplicate")

    @property
    def ids(self) -> list[str]:
        """Ids of the accepted records, in the order they were sent."""
        return [a.id for a in self.accepted]

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    @classmethod
    def from_api(cls, data: dict[str, Any], offset: int = 0) -> BatchResult:
        return cls(
            accepted=[
                Accepted(int(a["index"]) + offset, a["id"], a["status"])
                for a in data.get("accepted", [])
            ],
            rejected=[
                Rejected(
                    int(r["index"]) + offset,
                    r.get("reason", "invalid"),
                    r.get("message", ""),
                    r.get("id"),
                    list(r.get("errors") or []),
                )
                for r in data.get("rejected", [])
            ],
        )

    @classmethod
    def merge(cls, parts: list[BatchResult]) -> BatchResult:
        return cls(
            accepted=[a for p in parts for a in p.accepted],
            rejected=[r for p in parts for r in p.rejected],
        )


@dataclass(frozen=True)
class RejectedRecord:
    """Buffered mode: a record the server refused (or that could not be delivered), handed to
    `on_rejected` with the record you logged so you can fix, store or drop it.

    `kind` is "events", "decisions" or "rewards"; `reason` is the server's code, or
    "undelivered" when the client closed before the record could be sent.
    """

    kind: str
    record: dict[str, Any] = field(repr=False)
    reason: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Task:
    """A learning task: `status` is queued, running, succeeded or failed."""

    id: str
    kind: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        """True once the task has succeeded or failed."""
        return self.status in ("succeeded", "failed")

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Task:
        return cls(
            id=data["id"],
            kind=data.get("kind", ""),
            status=data.get("status", ""),
            params=dict(data.get("params") or {}),
            result=data.get("result"),
            error=data.get("error"),
            created_by=data.get("created_by"),
            created_at=data.get("created_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
        )


@dataclass(frozen=True)
class Policy:
    """A policy for one decision point; `live_version` is the version serving decisions."""

    id: str
    name: str
    decision_point: str
    description: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    live_version: int | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Policy:
        return cls(
            id=data["id"],
            name=data["name"],
            decision_point=data.get("decision_point", "default"),
            description=data.get("description") or "",
            spec=dict(data.get("spec") or {}),
            live_version=data.get("live_version"),
            created_by=data.get("created_by"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
        )
