"""The reference service under uvicorn on loopback, and an authenticated httpx client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from refservice_harness import TOKEN

from agent_lightning.refservices.testing import RefServiceServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServiceServer]:
    with RefServiceServer(tmp_path_factory.mktemp("ref") / "ref.db", TOKEN) as running:
        yield running


@pytest.fixture
def client(server: RefServiceServer) -> Iterator[httpx.Client]:
    server.faults.clear()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as c:
        yield c


@pytest.fixture
def anon(server: RefServiceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c
