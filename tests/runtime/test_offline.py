"""The offline test from issue 6, with real processes on loopback.

`agent-lightning serve` (its own AGL_DATA_DIR) and `agent-lightning run` (the support-ticket
policy) run as subprocesses. The runtime answers while the server is up; then the server is
stopped, the runtime keeps answering and queues, and is even killed with SIGKILL and restarted
while offline; then the server comes back and every queued decision and reward arrives exactly
once, counted in the server's own store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agent_lightning.config import default_database_url
from agent_lightning.store import Store

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
CLI = [sys.executable, "-m", "agent_lightning.cli"]
TOKEN = "offline-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Process:
    """A CLI subprocess whose output goes to a file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self.handle, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.handle.close()


def test_offline_runtime_queues_and_every_event_arrives_exactly_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "server-data"
    base_env = {**os.environ, "AGL_DATA_DIR": str(data_dir), "AGL_LOG_LEVEL": "warning"}
    base_env.pop("AGL_DATABASE_URL", None)
    created = subprocess.run(
        [*CLI, "clients", "create", "--app", "acme", "--role", "Agent", "--json"],
        env=base_env,
        capture_output=True,
        text=True,
        check=True,
    )
    identity = json.loads(created.stdout)

    server_port, runtime_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    runtime_url = f"http://127.0.0.1:{runtime_port}"
    project = tmp_path / "project"
    (project / "policies").mkdir(parents=True)
    shutil.copy(TEMPLATE / "policies/support-ticket.yaml", project / "policies")
    (project / "agent.yaml").write_text(
        "name: support-desk\n"
        "policy: policies/support-ticket.yaml\n"
        f"server: {{url: {server_url}, client_id_env: CID, client_secret_env: CSECRET, "
        "timeout_seconds: 2}\n"
        "state_dir: state\n"
        "token_env: RUNTIME_TOKEN\n"
        "sync: {poll_seconds: 0.2, stream: false}\n"
        "outbox: {max_backoff_seconds: 0.5}\n"
    )
    runtime_env = {
        **os.environ,
        "RUNTIME_TOKEN": TOKEN,
        "CID": identity["client_id"],
        "CSECRET": identity["secret"],
    }
    serve = [*CLI, "serve", "--port", str(server_port), "--log-level", "warning"]
    run = [*CLI, "run", "--config", str(project / "agent.yaml"), "--port", str(runtime_port),
           "--log-level", "warning"]  # fmt: skip
    processes: list[Process] = []

    def start(args: list[str], env: dict[str, str], name: str, health: str) -> Process:
        process = Process(args, env, tmp_path / f"{name}.log")
        processes.append(process)
        wait_for(
            lambda: httpx.get(health, timeout=1).status_code == 200,
            30,
            f"{name} to answer /health (log: {process.log.read_text()[-2000:]})",
        )
        return process

    http = httpx.Client(base_url=runtime_url, headers=AUTH, timeout=10)

    def converse(n: int, tag: str) -> list[str]:
        ids = []
        for i in range(n):
            text = ["hello there", "how do I reset my password", "get me a manager"][i % 3]
            r = http.post("/v1/messages", json={"text": text, "session_id": f"{tag}-{i}"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
            if i % 2 == 0:
                f = http.post("/v1/feedback", json={"decision_id": ids[-1], "resolved": i % 4 == 0})
                assert f.status_code == 202, f.text
        return ids

    def status() -> dict:
        return http.get("/v1/status").json()

    try:
        server = start(serve, base_env, "server", f"{server_url}/v1/health")
        runtime = start(run, runtime_env, "runtime", f"{runtime_url}/health")

        online = converse(4, "online")  # 4 decisions, 2 rewards
        wait_for(lambda: status()["pending"] == 0, 20, "the online records to upload")

        server.stop(signal.SIGKILL)  # the server goes away, abruptly
        offline = converse(10, "offline")  # 10 decisions, 5 rewards
        wait_for(lambda: status()["server_reachable"] is False, 10, "the runtime to notice")
        assert status()["pending"] == 15

        runtime.stop(signal.SIGKILL)  # a crash while offline: the queue is on disk
        runtime = start(run, runtime_env, "runtime-2", f"{runtime_url}/health")
        assert status()["pending"] == 15
        offline += converse(3, "after-crash")  # 3 decisions, 2 rewards
        assert status()["pending"] == 20

        server = start(serve, base_env, "server-2", f"{server_url}/v1/health")  # the server is back
        wait_for(lambda: status()["pending"] == 0, 30, "the queue to drain")
        # The outbox and the policy sync notice the server on their own schedules.
        wait_for(lambda: status()["server_reachable"] is True, 30, "the runtime to see it back")
        final = status()
        assert final["outbox"]["rejected"] == 0 and final["server_reachable"] is True
    finally:
        http.close()
        for process in reversed(processes):
            process.stop()

    store = Store(default_database_url(data_dir))
    try:
        decision_ids = online + offline
        assert store.count_records("decisions", "acme") == len(decision_ids) == 17
        assert store.existing_decision_ids("acme", decision_ids) == set(decision_ids)
        assert store.count_records("rewards", "acme") == 2 + 5 + 2
    finally:
        store.close()
