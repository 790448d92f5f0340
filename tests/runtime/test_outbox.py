"""The durable outbox: nothing acknowledged is lost, everything arrives exactly once.

The server here is the real agent-lightning app (the `api` fixture) reached through the SDK's
in-process ASGI transport; "flaky" wraps that transport so some requests never reach the app and
some are processed by it but their answer is lost (the worst case for exactly-once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent_lightning.ingestion.schemas import DecisionIn, EventIn, RewardIn
from agent_lightning.runtime.outbox import Outbox, OutboxFullError
from agent_lightning.sdk import AgentLightningClient, SyncASGITransport

ACTIONS = [{"id": "CreateTicket"}, {"id": "CheckStatus"}, {"id": "Escalate"}]


def decision(i: int, **extra) -> DecisionIn:
    return DecisionIn(
        id=f"d-{i}",
        decision_point="intent",
        context={"text": f"message {i}"},
        actions=ACTIONS,
        action_id="CreateTicket",
        propensity=0.5,
        session_id=f"s-{i % 7}",
        **extra,
    )


def reward(i: int, value: float = 1.0) -> RewardIn:
    return RewardIn(id=f"r-{i}", decision_id=f"d-{i}", value=value, source="system")


class FlakyTransport(httpx.BaseTransport):
    """Forwards to the real app; request n fails before (n % 3 == 1) or after (n % 3 == 2) the
    app handled it, while `down` is set every request fails. Token requests always pass."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.n = 0
        self.down = False
        self.lost_answers = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            return self.inner.handle_request(request)
        if self.down:
            raise httpx.ConnectError("server away", request=request)
        self.n += 1
        if self.n % 3 == 1:
            raise httpx.ConnectError("connection refused", request=request)
        response = self.inner.handle_request(request)
        if self.n % 3 == 2:
            self.lost_answers += 1
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response


def sdk_client(api, transport: httpx.BaseTransport) -> AgentLightningClient:
    new = api.new_client("acme", ("Agent",))
    return AgentLightningClient(
        new.client_id, new.secret, "http://testserver", transport=transport, max_retries=0
    )


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_records_are_on_disk_when_record_returns(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")  # no client: queue only
    outbox.record_decision(decision(1))
    outbox.record_event(EventIn(id="e-1", text="hello", session_id="s"))
    outbox.record_reward(reward(1))
    # A second connection (another process would see the same) finds all three, in order.
    reopened = Outbox(tmp_path / "outbox.db")
    assert [r["id"] for r in reopened.pending_records()] == ["d-1", "e-1", "r-1"]
    assert reopened.pending() == 3 and reopened.pending("rewards") == 1
    outbox.close(0)
    reopened.close(0)


def test_a_resent_record_is_queued_once_and_a_conflicting_one_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.record_decision(decision(1))
        outbox.record_decision(decision(1))
        assert outbox.pending() == 1
        with pytest.raises(ValueError, match="already queued with other content"):
            outbox.record_decision(decision(1, user_id="someone-else"))


def test_full_outbox_refuses_new_records_and_keeps_old_ones(tmp_path: Path, caplog) -> None:
    outbox = Outbox(tmp_path / "o.db", max_records=10)
    for i in range(10):
        outbox.record_decision(decision(i))
    assert "80% full" in caplog.text
    with pytest.raises(OutboxFullError, match="10 undelivered records"):
        outbox.record_decision(decision(99))
    assert outbox.pending() == 10
    assert [r["id"] for r in outbox.pending_records()][:2] == ["d-0", "d-1"]
    outbox.close(0)


def test_upload_exactly_once_through_a_flaky_server(api, tmp_path: Path) -> None:
    flaky = FlakyTransport(SyncASGITransport(api.app))
    client = sdk_client(api, flaky)
    outbox = Outbox(tmp_path / "o.db", client, batch_size=7, min_backoff=0.01, max_backoff=0.05)
    outbox.start()
    for i in range(60):
        outbox.record_decision(decision(i))
        if i % 2 == 0:
            outbox.record_reward(reward(i))
        outbox.record_event(EventIn(id=f"e-{i}", text=f"event {i}"))
    wait_for(lambda: outbox.pending() == 0, what="the outbox to drain")
    assert flaky.lost_answers > 0  # some batches were stored but their answer was lost
    assert api.store.count_records("decisions", "acme") == 60
    assert api.store.count_records("rewards", "acme") == 30
    assert api.store.count_records("events", "acme") == 60
    assert outbox.rejected() == []  # every reward found its decision: decisions went first
    assert outbox.sent_total() == 150
    outbox.close()
    client.close()


def test_outbox_waits_for_the_server_and_then_delivers(api, tmp_path: Path) -> None:
    flaky = FlakyTransport(SyncASGITransport(api.app))
    flaky.down = True
    client = sdk_client(api, flaky)
    outbox = Outbox(tmp_path / "o.db", client, min_backoff=0.01, max_backoff=0.1)
    outbox.start()
    for i in range(5):
        outbox.record_decision(decision(i))
    wait_for(lambda: outbox.server_reachable is False, what="a failed upload")
    assert outbox.pending() == 5 and "upload failed" in outbox.status()["last_error"]
    flaky.down = False
    outbox.nudge()
    wait_for(lambda: outbox.pending() == 0, what="delivery after the server came back")
    assert api.store.count_records("decisions", "acme") == 5
    assert outbox.status()["server_reachable"] is True
    outbox.close()
    client.close()


def test_refused_records_are_kept_aside_with_the_reason(api, tmp_path: Path) -> None:
    transport = SyncASGITransport(api.app)
    client = sdk_client(api, transport)
    seen = []
    outbox = Outbox(tmp_path / "o.db", client, on_rejected=seen.extend)
    outbox.record_decision(decision(1))
    outbox.record_reward(reward(1))
    outbox.record_reward(RewardIn(id="r-orphan", decision_id="d-missing", value=1.0))
    outbox.record_reward(RewardIn(id="r-big", decision_id="d-1", value=1e9))
    assert outbox.flush(10)
    kept = {row.record_id: row for row in outbox.rejected()}
    assert set(kept) == {"r-orphan", "r-big"}
    assert kept["r-orphan"].reason == "unknown_decision"
    assert kept["r-big"].reason == "reward_out_of_range"
    assert kept["r-big"].record["value"] == 1e9  # the record itself, to fix or resend
    assert {row.record_id for row in seen} == {"r-orphan", "r-big"}
    assert api.store.count_records("rewards", "acme") == 1
    # The refused records survive a restart and can be requeued once the cause is fixed.
    outbox.close()
    again = Outbox(tmp_path / "o.db", client)
    assert len(again.rejected()) == 2
    assert again.requeue() == 2 and again.pending() == 2 and again.rejected() == []
    again.close(0)
    client.close()


WRITER = textwrap.dedent(
    """
    import sys
    from agent_lightning.ingestion.schemas import DecisionIn, RewardIn
    from agent_lightning.runtime.outbox import Outbox

    outbox = Outbox(sys.argv[1])
    actions = [{"id": "a"}, {"id": "b"}]
    i = 0
    while True:
        outbox.record_decision(DecisionIn(id=f"d-{i}", actions=actions, action_id="a",
                                          propensity=0.5, context={"text": "x" * 200}))
        print(f"d-{i}", flush=True)
        outbox.record_reward(RewardIn(id=f"r-{i}", decision_id=f"d-{i}", value=1.0))
        print(f"r-{i}", flush=True)
        i += 1
    """
)


def test_kill_9_mid_stream_loses_nothing_acknowledged(api, tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acknowledged: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= 300:
            break
    proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is still appending
    proc.wait(timeout=10)
    acknowledged.extend(line.strip() for line in proc.stdout.read().splitlines())
    proc.stdout.close()

    client = sdk_client(api, SyncASGITransport(api.app))
    outbox = Outbox(db, client)
    queued = [r["id"] for r in outbox.pending_records()]
    assert set(acknowledged) <= set(queued)  # everything acknowledged survived the kill
    assert len(queued) == len(set(queued))
    assert outbox.flush(30)
    assert outbox.rejected() == []
    decisions = sum(1 for q in queued if q.startswith("d-"))
    assert api.store.count_records("decisions", "acme") == decisions
    assert api.store.count_records("rewards", "acme") == len(queued) - decisions
    outbox.close()
    client.close()


def test_concurrent_writers_and_uploader(api, tmp_path: Path) -> None:
    client = sdk_client(api, SyncASGITransport(api.app))
    outbox = Outbox(tmp_path / "o.db", client, batch_size=50)
    outbox.start()

    def write(worker: int) -> None:
        for i in range(40):
            n = worker * 1000 + i
            outbox.record_decision(decision(n))
            outbox.record_reward(reward(n))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: outbox.pending() == 0, what="the outbox to drain")
    assert api.store.count_records("decisions", "acme") == 160
    assert api.store.count_records("rewards", "acme") == 160
    assert json.dumps(outbox.status())  # the status is plain JSON
    outbox.close()
    client.close()
