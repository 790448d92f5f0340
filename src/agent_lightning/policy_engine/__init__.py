"""Policy engine: answer a decide call from the live policy version, and log the decision."""

from agent_lightning.policy_engine.service import DecisionOutcome, DecisionService

__all__ = ["DecisionOutcome", "DecisionService"]
