"""LearningController: learning tasks (scheduled or on demand), the off-policy gate, versions."""

from agent_lightning.controller.controller import (
    LearningController,
    LearnSettings,
    TaskError,
    data_hash,
)

__all__ = ["LearnSettings", "LearningController", "TaskError", "data_hash"]
