"""A real reference service on loopback, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from connector_harness import TOKEN

from agent_lightning.refservices.testing import RefServiceServer


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServiceServer]:
    with RefServiceServer(tmp_path_factory.mktemp("ref") / "ref.db", TOKEN) as server:
        yield server


@pytest.fixture
def srv(ref: RefServiceServer) -> Iterator[RefServiceServer]:
    """The module's server with no faults programmed and request counts reset."""
    ref.faults.clear()
    ref.hits.clear()
    yield ref
    ref.faults.clear()
