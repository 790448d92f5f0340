"""Shared fixtures for the learning tests (helpers live in `learning_helpers`)."""

from __future__ import annotations

import pytest
from learning_helpers import make_examples


@pytest.fixture
def examples():
    return make_examples(400, seed=1)
