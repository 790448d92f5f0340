"""DataIngestionPipeline: validate, redact PII, assign ids, and store telemetry durably."""

from agent_lightning.ingestion.pipeline import (
    Accepted,
    BatchResult,
    BatchTooLarge,
    DataIngestionPipeline,
    Rejected,
    describe,
    validation_errors,
)
from agent_lightning.ingestion.schemas import (
    ActionIn,
    Context,
    DecisionIn,
    EventIn,
    RankRequest,
    RewardIn,
    RewardSource,
)

__all__ = [
    "Accepted",
    "ActionIn",
    "BatchResult",
    "BatchTooLarge",
    "Context",
    "DataIngestionPipeline",
    "DecisionIn",
    "EventIn",
    "RankRequest",
    "Rejected",
    "RewardIn",
    "RewardSource",
    "describe",
    "validation_errors",
]
