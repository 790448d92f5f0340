"""An acknowledged write survives SIGKILL of the server mid-load (real subprocess, real HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_client
from agent_lightning.store import Store
from tests.conftest import postgres_schema_url, require_postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "AGL_DATABASE_URL": database_url,
        "AGL_DATA_DIR": str(data_dir),
        "AGL_JWT_SECRET": "durability-test-key-0123456789abcdef",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_lightning.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not become ready")


def run_kill_test(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    new = create_client(store, AuditLog(store), "acme", ["Agent"], Actor("test"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(database_url, tmp_path / "data", port)
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        wait_ready(base, proc)
        token = httpx.post(
            f"{base}/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": new.client_id,
                "client_secret": new.secret,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def writer(worker: int) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
                n = 0
                while not stop.is_set():
                    batch = [{"id": f"w{worker}-{n}-{i}", "text": f"msg {i}"} for i in range(50)]
                    n += 1
                    try:
                        response = client.post("/v1/events/batch", json=batch)
                    except httpx.HTTPError:
                        return  # the server died under us: this batch was never acknowledged
                    if response.status_code == 200:
                        acknowledged.extend(a["id"] for a in response.json()["accepted"])

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests are in flight
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert len(acknowledged) >= 500, "the load never got going"
    reopened = Store(database_url)
    stored = set()
    cursor = None
    while True:
        page = reopened.list_records("events", "acme", cursor=cursor, limit=1000)
        stored.update(e.id for e in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    reopened.close()
    store.close()


def test_sigkill_loses_no_acknowledged_event_sqlite(tmp_path: Path) -> None:
    run_kill_test(f"sqlite:///{tmp_path / 'agl.db'}", tmp_path)


@pytest.mark.postgres
def test_sigkill_loses_no_acknowledged_event_postgres(tmp_path: Path) -> None:
    require_postgres()
    with postgres_schema_url() as url:
        run_kill_test(url, tmp_path)
