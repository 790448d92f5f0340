"""DataIngestionPipeline: validate → redact PII → assign ids → store, one batch at a time.

Each record is validated on its own, so one bad record is refused with its reason while the rest
of the batch is kept. Everything accepted is committed in one transaction before the call
returns: an acknowledged record is durable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from agent_lightning.ingestion.schemas import DecisionIn, EventIn, RewardIn
from agent_lightning.store import Store, content_hash, new_id


class Redactor(Protocol):
    def redact_value(self, value: Any) -> tuple[Any, dict[str, int]]: ...


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    message: str
    id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "reason": self.reason, "message": self.message}
        if self.id is not None:
            out["id"] = self.id
        if self.errors:
            out["errors"] = self.errors
        return out


@dataclass(frozen=True)
class Accepted:
    index: int
    id: str
    status: str  # "created" or "duplicate"


@dataclass
class BatchResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    pii_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": [a.__dict__ for a in self.accepted],
            "rejected": [r.as_dict() for r in self.rejected],
            "created": sum(1 for a in self.accepted if a.status == "created"),
            "duplicates": sum(1 for a in self.accepted if a.status == "duplicate"),
        }


class BatchTooLarge(ValueError):
    pass


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input (it may hold PII or secrets)."""
    return [
        {"loc": [str(p) for p in err["loc"]], "type": err["type"], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def describe(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(first["loc"]) or "record"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(model: type[BaseModel]) -> TypeAdapter:
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


class DataIngestionPipeline:
    def __init__(
        self,
        store: Store,
        redactor: Redactor | None = None,
        *,
        max_batch: int = 1000,
        on_ingest: Callable[[str, str, int, dict[str, int]], None] | None = None,
    ) -> None:
        if redactor is None:
            from agent_lightning.security.pii import default_redactor

            redactor = default_redactor()
        self.store = store
        self.redactor = redactor
        self.max_batch = max_batch
        # Observability hook: (kind, app_id, created, pii_counts); never sees record contents.
        self.on_ingest = on_ingest
        # Action descriptions recur with every decision of a decision point: remember the ones
        # with nothing to redact, so each is scanned once (bounded, cleared when full).
        self._clean_descriptions: set[str] = set()

    # -- public entry points --------------------------------------------------------------------

    def ingest_events(self, app_id: str, records: Sequence[Any]) -> BatchResult:
        return self._ingest("events", EventIn, app_id, records, self._event_row)

    def ingest_decisions(self, app_id: str, records: Sequence[Any]) -> BatchResult:
        return self._ingest("decisions", DecisionIn, app_id, records, self._decision_row)

    def ingest_rewards(self, app_id: str, records: Sequence[Any]) -> BatchResult:
        app = self.store.get_app(app_id)
        parsed, result = self._validate(RewardIn, records)
        # Rewards must point at a decision of this app and lie in the app's configured range;
        # a correction must name one of the actions that decision offered.
        wanted = {r.decision_id for _, r in parsed if r.decision_id}
        known = self.store.existing_decision_ids(app_id, wanted) if wanted else set()
        corrected = {r.decision_id for _, r in parsed if r.decision_id and r.correct_action_id}
        offered = self.store.decision_action_ids(app_id, corrected) if corrected else {}
        kept: list[tuple[int, BaseModel]] = []
        for index, reward in parsed:
            assert isinstance(reward, RewardIn)
            if reward.decision_id and reward.decision_id not in known:
                result.rejected.append(
                    Rejected(
                        index,
                        "unknown_decision",
                        f"no decision {reward.decision_id!r} in this app",
                        reward.id,
                    )
                )
            elif (
                reward.decision_id
                and reward.correct_action_id
                and (reward.correct_action_id not in offered.get(reward.decision_id, ()))
            ):
                ids = sorted(offered.get(reward.decision_id, ()))
                shown = ", ".join(ids[:10]) + (
                    f", ... ({len(ids)} in all)" if len(ids) > 10 else ""
                )
                result.rejected.append(
                    Rejected(
                        index,
                        "unknown_action",
                        f"correct_action_id {reward.correct_action_id!r} is not among the "
                        f"actions decision {reward.decision_id!r} offered ({shown})",
                        reward.id,
                    )
                )
            elif not app.reward_min <= reward.value <= app.reward_max:
                result.rejected.append(
                    Rejected(
                        index,
                        "reward_out_of_range",
                        f"reward {reward.value} is outside this app's range "
                        f"[{app.reward_min}, {app.reward_max}]",
                        reward.id,
                    )
                )
            else:
                kept.append((index, reward))
        return self._store("rewards", app_id, kept, result, self._reward_row)

    # -- the stages -----------------------------------------------------------------------------

    def _ingest(self, kind, model, app_id, records, to_row) -> BatchResult:
        parsed, result = self._validate(model, records)
        return self._store(kind, app_id, parsed, result, to_row)

    def _validate(self, model: type[BaseModel], records: Sequence[Any]):
        if len(records) > self.max_batch:
            raise BatchTooLarge(
                f"a batch holds at most {self.max_batch} records; got {len(records)}"
            )
        result = BatchResult()
        parsed: list[tuple[int, BaseModel]] = []
        adapter = _adapter(model)
        for index, record in enumerate(records):
            if isinstance(record, model):
                parsed.append((index, record))
                continue
            if not isinstance(record, dict):
                result.rejected.append(
                    Rejected(index, "invalid", "each record must be a JSON object")
                )
                continue
            try:
                parsed.append((index, adapter.validate_python(record)))
            except ValidationError as exc:
                errors = validation_errors(exc)
                raw_id = record.get("id")
                result.rejected.append(
                    Rejected(
                        index,
                        "invalid",
                        describe(errors),
                        raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None,
                        errors,
                    )
                )
        return parsed, result

    def _store(self, kind, app_id, parsed, result: BatchResult, to_row) -> BatchResult:
        rows: list[dict[str, Any]] = []
        indexes: list[int] = []
        generated: set[str] = set()
        for index, record in parsed:
            row = to_row(record)
            if record.id:
                row["id"] = record.id
                # The hash covers what the client sent (before redaction), so a retry matches.
                payload = record.model_dump(mode="json", exclude={"id"})
                row["content_hash"] = content_hash(payload)
            else:
                # Minted here: no retry can carry this id, so there is nothing to compare.
                row["id"] = new_id()
                row["content_hash"] = ""
                generated.add(row["id"])
            found: dict[str, int] = {}
            if kind == "decisions" and row.get("actions"):
                row["actions"] = self._redact_actions(row["actions"], found)
            rows.append(self._redact_row(self.redactor, kind, row, result.pii_counts, found))
            indexes.append(index)
        if rows:
            outcomes = self.store.insert_records(kind, app_id, rows, generated_ids=generated)
            for index, outcome in zip(indexes, outcomes, strict=True):
                if outcome.status == "conflict":
                    result.rejected.append(
                        Rejected(
                            index,
                            "id_conflict",
                            f"id {outcome.id!r} is already stored with different content",
                            outcome.id,
                        )
                    )
                else:
                    result.accepted.append(Accepted(index, outcome.id, outcome.status))
        result.rejected.sort(key=lambda r: r.index)
        result.accepted.sort(key=lambda a: a.index)
        if self.on_ingest is not None:
            created = sum(1 for a in result.accepted if a.status == "created")
            self.on_ingest(kind, app_id, created, result.pii_counts)
        return result

    def _redact_actions(
        self, actions: list[dict[str, Any]], found: dict[str, int]
    ) -> list[dict[str, Any]]:
        """Actions with their descriptions redacted (ids stay: the decision refers to them)."""
        out = []
        for action in actions:
            description = action.get("description")
            if description and description not in self._clean_descriptions:
                redacted, counts = self.redactor.redact_value(description)
                if counts:
                    action = {**action, "description": redacted}
                    for name, n in counts.items():
                        found[name] = found.get(name, 0) + n
                else:
                    if len(self._clean_descriptions) >= 50_000:
                        self._clean_descriptions.clear()
                    self._clean_descriptions.add(description)
            out.append(action)
        return out

    @staticmethod
    def _redact_row(
        redactor: Redactor,
        kind: str,
        row: dict[str, Any],
        totals: dict[str, int],
        found: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        counts_for_row: dict[str, int] = dict(found or {})
        for key in ("text", "context", "attributes"):
            if row.get(key):
                row[key], counts = redactor.redact_value(row[key])
                for name, n in counts.items():
                    counts_for_row[name] = counts_for_row.get(name, 0) + n
        if kind != "rewards":  # rewards carry no free text of their own to count
            row["pii_counts"] = counts_for_row
        for name, n in counts_for_row.items():
            totals[name] = totals.get(name, 0) + n
        return row

    # -- record → row ---------------------------------------------------------------------------

    @staticmethod
    def _event_row(event: EventIn) -> dict[str, Any]:
        row = event.model_dump(exclude={"id", "timestamp"})
        if event.timestamp is not None:
            row["occurred_at"] = event.timestamp
        return row

    @staticmethod
    def _decision_row(decision: DecisionIn) -> dict[str, Any]:
        row = decision.model_dump(exclude={"id"})
        if not row["probabilities"]:
            row["probabilities"] = {decision.action_id: decision.propensity}
        return row

    @staticmethod
    def _reward_row(reward: RewardIn) -> dict[str, Any]:
        row = reward.model_dump(exclude={"id"})
        row["source"] = reward.source.value
        if not math.isfinite(row["value"]):  # also refused by the schema; belt and braces
            raise ValueError("reward must be finite")
        return row
