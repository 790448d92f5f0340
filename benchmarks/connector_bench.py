"""Connector benchmark (a script, not a test).

    .venv/bin/python benchmarks/connector_bench.py [--seconds 5] [--threads 4]

Measures, on this machine, against the reference service under uvicorn in a thread on loopback
(FastAPI + SQLite FTS5): the latency p50/p99 and throughput of `RestConnector.call` for a KB
search and a ticket creation, from one and from several threads sharing one connector (one
pooled httpx client), with bearer auth and response-schema validation on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from agent_lightning.connectors import ConnectorRegistry
from agent_lightning.refservices.testing import RefServiceServer

TOKEN = "bench-token-0123456789"
QUERIES = ["I forgot my password", "vpn not connecting", "card delivery", "refund status"]


def run(connector, endpoint: str, seconds: float, threads: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def work(worker: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            if endpoint == "search":
                response = connector.call("search", params={"q": QUERIES[n % len(QUERIES)]})
            else:
                response = connector.call("create", json={"subject": f"bench {worker}-{n}"})
            with lock:
                latencies.append(response.latency_ms)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RefServiceServer(Path(tmp) / "r.db", TOKEN) as ref:
        config = {
            "base_url": ref.url,
            "auth": {"type": "bearer", "token_env": "T"},
            "endpoints": {
                "search": {
                    "path": "/kb/search",
                    "params": {"limit": 5},
                    "response_schema": {"type": "object", "required": ["results"]},
                },
                "create": {"method": "POST", "path": "/tickets"},
            },
        }
        with ConnectorRegistry.from_config({"ref": config}, env={"T": TOKEN}) as registry:
            connector = registry["ref"]
            for endpoint in ("search", "create"):
                for threads in sorted({1, args.threads}):
                    lat, elapsed = run(connector, endpoint, args.seconds, threads)
                    q = statistics.quantiles(lat, n=100)
                    print(
                        f"{endpoint:7} threads={threads}: {len(lat) / elapsed:7.0f} calls/s  "
                        f"p50 {q[49]:6.2f} ms  p99 {q[98]:6.2f} ms  ({len(lat)} calls)"
                    )


if __name__ == "__main__":
    main()
