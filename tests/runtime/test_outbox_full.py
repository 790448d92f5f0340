"""A full outbox: the customer is still answered, and the loss is visible, not silent.

The `run` service on the support-ticket template's policy with a real on-disk outbox (SQLite)
that no server drains, so it fills up.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent_lightning.runtime.config import load_runtime_config
from agent_lightning.runtime.outbox import Outbox
from agent_lightning.runtime.service import create_runtime_app

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
TOKEN = "runtime-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 10  # the smallest outbox agent.yaml allows


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "policies").mkdir()
    shutil.copy(TEMPLATE / "policies/support-ticket.yaml", tmp_path / "policies")
    (tmp_path / "agent.yaml").write_text(
        "name: support-desk\n"
        "policy: policies/support-ticket.yaml\n"
        "state_dir: state\n"
        "token_env: RUNTIME_TOKEN\n"
        f"outbox: {{max_records: {LIMIT}}}\n"
    )
    config = load_runtime_config(tmp_path / "agent.yaml")
    app = create_runtime_app(config, env={"RUNTIME_TOKEN": TOKEN}, start_background=False)
    with TestClient(app) as c:
        yield c


def _say(client: TestClient, text: str = "hello there") -> dict:
    response = client.post("/v1/messages", headers=AUTH, json={"text": text})
    assert response.status_code == 200, response.text
    return response.json()


def test_answers_once_full_say_they_were_not_recorded(client, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        answers = [_say(client) for _ in range(LIMIT + 4)]
    assert [a["recorded"] for a in answers] == [True] * LIMIT + [False] * 4
    assert all(a["text"] for a in answers)  # every customer still got an answer

    status = client.get("/v1/status", headers=AUTH).json()
    assert status["pending"] == LIMIT
    assert status["outbox"]["dropped_full"] == 4

    # One clear line for the operator, not a traceback per message.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "new records are not kept" in errors[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)

    # Feedback on an answer that was not recorded is refused with the reason...
    lost = answers[-1]["decision_id"]
    refused = client.post(
        "/v1/feedback", headers=AUTH, json={"decision_id": lost, "resolved": True}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "decision_not_recorded"
    # ...while feedback on a recorded one is refused because there is no room (503, as before).
    kept = answers[0]["decision_id"]
    full = client.post("/v1/feedback", headers=AUTH, json={"decision_id": kept, "resolved": True})
    assert full.status_code == 503 and full.json()["error"]["code"] == "outbox_full"
    assert client.get("/v1/status", headers=AUTH).json()["outbox"]["dropped_full"] == 5

    # What is on disk is exactly the recorded answers.
    client.app.state.edge.outbox.close(0)
    reopened = Outbox(tmp_path / "state/outbox.db")
    on_disk = {r["id"] for r in reopened.pending_records("decisions")}
    reopened.close(0)
    assert on_disk == {a["decision_id"] for a in answers if a["recorded"]}
