"""Exceptions raised by `agent_lightning.learning`.

One root, so callers can catch everything this package raises on purpose::

    LearningError
    ├── FeaturizerUnavailable   an optional extra (e.g. `embeddings`) is not installed
    ├── PolicyFormatError       bytes that are not a policy, corrupt, or from a newer format
    └── SpecError (ValueError)  a policy spec or constructor argument is invalid
"""

from __future__ import annotations


class LearningError(Exception):
    """Root of every error raised on purpose by the learning library."""


class FeaturizerUnavailable(LearningError):
    """A featurizer needs an optional dependency that is not installed."""


class PolicyFormatError(LearningError):
    """Serialised policy bytes cannot be read."""


class SpecError(LearningError, ValueError):
    """A policy spec or an argument is invalid; the message names the offending key."""
