"""Ingestion and decide benchmark (a script, not a test).

    .venv/bin/python benchmarks/ingest_bench.py [--seconds 10] [--clients 8] [--no-postgres]

Measures, on this machine:

- events acknowledged per second over real HTTP on loopback (uvicorn in a subprocess, one
  worker, the full stack: auth, validation, PII redaction, commit before acknowledge), in
  batches of 100, from concurrent clients, on SQLite and on PostgreSQL;
- `decide` latency p50/p99 in-process (the DecisionService the route calls, including the
  logged write) and over HTTP, with a learned policy over Banking77's 77 intents when the
  learning extra is importable, else uniform.

Every figure is printed; nothing is assumed.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agent_lightning.security.audit import Actor, AuditLog  # noqa: E402
from agent_lightning.security.identities import create_client  # noqa: E402
from agent_lightning.store import Store  # noqa: E402

POSTGRES_URL = os.environ.get("AGL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BANKING = ROOT.parent / "shared" / "data" / "banking77"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "AGL_DATABASE_URL": database_url,
        "AGL_DATA_DIR": str(data_dir),
        "AGL_JWT_SECRET": "bench-key-0123456789abcdef0123456789",
        "AGL_MAX_BODY_BYTES": str(8 * 1024 * 1024),
    }
    proc = subprocess.Popen(
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
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server did not start")


def token(base: str, store: Store, roles: list[str]) -> str:
    new = create_client(store, AuditLog(store), "bench", roles, Actor("bench"))
    response = httpx.post(
        f"{base}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new.client_id,
            "client_secret": new.secret,
        },
    )
    response.raise_for_status()
    return response.json()["access_token"]


def sample_texts() -> list[str]:
    path = BANKING / "train.csv"
    if not path.exists():
        return [f"where is my card number {i}?" for i in range(1000)]
    import csv

    with path.open() as f:
        return [row["text"] for row in csv.DictReader(f)]


def ingest(base: str, tok: str, seconds: float, clients: int) -> tuple[float, int, int]:
    texts = sample_texts()
    acked = 0
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(w: int) -> None:
        nonlocal acked, errors
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=30
        ) as client:
            n = 0
            while time.monotonic() < stop:
                batch = [
                    {
                        "id": f"{w}-{n}-{i}-{uuid.uuid4().hex[:6]}",
                        "text": texts[(n * 100 + i) % len(texts)],
                        "user_id": f"u{i % 50}",
                        "session_id": f"s{w}-{n}",
                        "intent_prediction": "card_arrival",
                        "confidence": 0.5,
                    }
                    for i in range(100)
                ]
                n += 1
                response = client.post("/v1/events/batch", json=batch)
                with lock:
                    if response.status_code == 200:
                        acked += response.json()["created"]
                    else:
                        errors += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return acked / elapsed, acked, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def intents() -> list[dict]:
    import json

    path = BANKING / "categories.json"
    names = json.loads(path.read_text()) if path.exists() else [f"intent_{i}" for i in range(77)]
    return [{"id": n, "description": n.replace("_", " ")} for n in names]


def decide_latency(base: str, tok: str, store: Store, n: int) -> dict[str, float]:
    from agent_lightning.ingestion import RankRequest

    headers = {"Authorization": f"Bearer {tok}"}
    actions = intents()
    learned = False
    try:
        import agent_lightning.learning  # noqa: F401

        response = httpx.post(
            f"{base}/v1/policies",
            json={
                "name": "intents",
                "decision_point": "intent",
                "spec": {"featurizer": "hashing", "learner": "linucb", "warm_start": "zero_shot"},
            },
            headers=headers,
        )
        learned = response.status_code == 201
    except ImportError:
        pass
    texts = sample_texts()
    http_ms: list[float] = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n):
            body = {
                "decision_point": "intent",
                "context": {"text": texts[i % len(texts)]},
                "actions": actions,
            }
            t0 = time.perf_counter()
            response = client.post("/v1/decisions", json=body)
            http_ms.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
    # In-process: the same service the route calls, on the same database.
    from agent_lightning.ingestion import DataIngestionPipeline
    from agent_lightning.policy_engine import DecisionService

    service = DecisionService(store, DataIngestionPipeline(store))
    local_ms: list[float] = []
    for i in range(n):
        request = RankRequest(
            decision_point="intent", context={"text": texts[i % len(texts)]}, actions=actions
        )
        t0 = time.perf_counter()
        service.decide("bench", request)
        local_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "policy": "learned (hashing, LinUCB, 77 actions)" if learned else "uniform (77 actions)",
        "inprocess_p50": percentile(local_ms, 0.5),
        "inprocess_p99": percentile(local_ms, 0.99),
        "http_p50": percentile(http_ms, 0.5),
        "http_p99": percentile(http_ms, 0.99),
    }


def run(label: str, database_url: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(database_url)
        proc, base = start_server(database_url, Path(tmp))
        try:
            tok = token(base, store, ["Developer"])
            rate, acked, errors = ingest(base, tok, args.seconds, args.clients)
            stored = store.count_records("events", "bench")
            print(
                f"{label:<11} ingest: {rate:>9,.0f} events/s acknowledged "
                f"({acked:,} in {args.seconds:.0f} s, {args.clients} clients, batches of 100, "
                f"{errors} errors; {stored:,} in the store)"
            )
            lat = decide_latency(base, tok, store, args.decides)
            print(
                f"{label:<11} decide [{lat['policy']}]: in-process p50 "
                f"{lat['inprocess_p50']:.2f} ms, p99 {lat['inprocess_p99']:.2f} ms; over HTTP "
                f"p50 {lat['http_p50']:.2f} ms, p99 {lat['http_p99']:.2f} ms"
            )
            if stored < acked:
                print(f"  !! {acked - stored} acknowledged events are missing from the store")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--decides", type=int, default=500)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{tmp}/bench.db", args)
    if not args.no_postgres:
        import psycopg

        schema = f"agl_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            run("PostgreSQL", f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", args)
        finally:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
