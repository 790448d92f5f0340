"""Structured JSON logs: one object per line, tied to the request, scrubbed of secrets and PII."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from obs_harness import ObsApi, obs_api_fixture  # noqa: F401

from agent_lightning.observability import configure_logging
from agent_lightning.observability.metrics import Metrics
from agent_lightning.observability.middleware import ObservabilityMiddleware

CARD = "4111 1111 1111 1111"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbGkifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", json=True, stream=stream, replace=False)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def _records(stream: io.StringIO) -> list[dict]:
    """Our lines (other libraries log at DEBUG too); every line is one complete JSON object."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in parsed if r["logger"].startswith("agent_lightning")]


def test_card_numbers_and_bearer_tokens_are_redacted(lines: io.StringIO) -> None:
    log = logging.getLogger("agent_lightning.test")
    log.info("charging card %s for %s", CARD, "alice@example.com")
    log.warning("upstream said no; we sent Authorization: Bearer %s", TOKEN)
    log.info('headers {"authorization": "Bearer abc123", "x-api-key": "k-1"}')
    (card, bearer, headers) = _records(lines)
    assert card["message"] == "charging card <CREDIT_CARD> for <EMAIL>"
    assert card["level"] == "INFO" and card["logger"] == "agent_lightning.test"
    assert card["time"].endswith("+00:00")
    assert TOKEN not in bearer["message"] and "Authorization: <SECRET>" in bearer["message"]
    assert "abc123" not in headers["message"] and "k-1" not in headers["message"]


def test_exception_text_is_redacted_and_secret_fields_are_dropped(lines: io.StringIO) -> None:
    log = logging.getLogger("agent_lightning.test")
    try:
        raise ValueError(f"bad card {CARD}")
    except ValueError:
        log.exception(
            "failed",
            extra={
                "password": "hunter2",
                "api_token": "t0k",
                "client_secret": "s",
                "headers": {"Authorization": "Bearer zzz", "accept": "json"},
                "note": f"card {CARD}",
            },
        )
    (record,) = _records(lines)
    assert "Traceback" in record["exception"] and CARD not in record["exception"]
    assert "<CREDIT_CARD>" in record["exception"]
    for dropped in ("password", "api_token", "client_secret"):
        assert dropped not in record
    assert record["headers"] == {"accept": "json"}
    assert record["note"] == "card <CREDIT_CARD>"
    assert "hunter2" not in json.dumps(record)


def test_multiline_messages_stay_on_one_line(lines: io.StringIO) -> None:
    logging.getLogger("agent_lightning.test").error("first\nsecond")
    assert len(lines.getvalue().splitlines()) == 1
    assert _records(lines)[0]["message"] == "first\nsecond"


def test_lines_written_inside_a_request_carry_its_id_and_route(lines: io.StringIO) -> None:
    router = APIRouter()

    @router.get("/orders/{order_id}")
    def order(order_id: str) -> dict:
        logging.getLogger("agent_lightning.orders").info("looking up %s for %s", order_id, CARD)
        return {"ok": True}

    app = FastAPI()
    app.include_router(router, prefix="/v1")
    app.add_middleware(ObservabilityMiddleware, metrics=Metrics())
    response = TestClient(app).get("/v1/orders/o-77", headers={"x-request-id": "req-1234"})
    assert response.status_code == 200
    inner, access = _records(lines)
    assert inner["request_id"] == "req-1234" and inner["route"] == "/v1/orders/{order_id}"
    assert inner["message"] == "looking up o-77 for <CREDIT_CARD>"
    assert access["logger"] == "agent_lightning.access"
    assert access["request_id"] == "req-1234"
    assert access["route"] == "/v1/orders/{order_id}"
    assert access["status"] == 200 and access["method"] == "GET"
    assert access["duration_ms"] >= 0


def test_server_access_lines_match_the_response(obs_api: ObsApi, lines: io.StringIO) -> None:
    response = obs_api.client.get("/v1/events/ev-404", headers=obs_api.auth("acme", ("Analyst",)))
    assert response.status_code == 404
    access = [r for r in _records(lines) if r["logger"] == "agent_lightning.access"]
    assert access[-1]["request_id"] == response.headers["x-request-id"]
    assert access[-1]["route"] == "/v1/events/{event_id}"
    assert access[-1]["status"] == 404
    # The bearer token the client sent appears nowhere in the logs.
    assert obs_api.token("acme", ("Analyst",)) not in lines.getvalue()


def test_text_format_and_replacing_handlers() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", json=False, stream=stream)
        assert len(root.handlers) == 1
        logging.getLogger("x").info("card %s", CARD)
        assert stream.getvalue().rstrip().endswith("[-] card <CREDIT_CARD>")
        again = io.StringIO()
        configure_logging("INFO", json=True, stream=again)
        assert len(root.handlers) == 1
        assert logging.getLogger("uvicorn.access").propagate
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
