"""Gateway benchmark: what the gateway adds on top of calling the upstream directly.

    .venv/bin/python benchmarks/gateway_bench.py [--runs 3] [--competitor-python PATH]

Starts the fake OpenAI-compatible upstream (its own process) and the full server (REST API +
gateway, authentication, capture, SQLite store; its own uvicorn process), then measures, each as
the median of `--runs` runs:

- added latency, p50 and p99, of sequential non-streaming chat completions (gateway - direct);
- requests/s at 32 concurrent clients, and the errors seen;
- added time to the first chunk of a streaming answer (p50);
- that every call made through the gateway is in the store afterwards (and after shutdown).

LiteLLM's proxy and Microsoft's agent-lightning gateway (`agentlightning.LLMProxy`, itself on
LiteLLM) are measured the same way, side by side, when they can be imported: by this Python, or
by the one given with `--competitor-python` / `$AGL_BENCH_COMPETITOR_PYTHON` (they pin other
versions of openai and friends, so they are best kept in their own venv). Targets from the issue:
added p50 <= 2 ms, p99 <= 6 ms, first chunk <= 2 ms, >= 600 requests/s, no errors, no span lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-signing-key-0123456789abcdef0123456789abcdef"
MODEL = "gpt-4o-mini"
BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful support agent."},
            {"role": "user", "content": "Where is my order? It was due yesterday."},
        ],
    }
).encode()
STREAM_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2, headers=headers)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Result:
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    first_chunk_ms: float
    calls: int


@dataclass
class Target:
    name: str
    url: str  # base URL ending in /v1
    headers: dict[str, str] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)


async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    async with session.post(url, data=BODY, headers=headers) as response:
        await response.read()
        return response.status == 200


async def measure(
    target: Target, sequential: int, total: int, concurrency: int, streams: int
) -> Result:
    url = target.url + "/chat/completions"
    headers = {"content-type": "application/json", **target.headers}
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    calls = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(100):  # warm up connections, caches, the JIT-less interpreter's paths
            await _one(session, url, headers)
        calls += 100
        latencies = []
        for _ in range(sequential):
            started = time.perf_counter()
            await _one(session, url, headers)
            latencies.append((time.perf_counter() - started) * 1000)
        calls += sequential
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99) - 1]

        errors = 0
        remaining = total

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                try:
                    if not await _one(session, url, headers):
                        errors += 1
                except aiohttp.ClientError:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rps = total / (time.perf_counter() - started)
        calls += total

        firsts = []
        for _ in range(streams):
            started = time.perf_counter()
            async with session.post(url, data=STREAM_BODY, headers=headers) as response:
                await response.content.readany()
                firsts.append((time.perf_counter() - started) * 1000)
                await response.read()
        calls += streams
    return Result(p50, p99, rps, errors, statistics.median(firsts), calls)


def run_measure(target: Target, args: argparse.Namespace, scale: float = 1.0) -> Result:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    counts = (int(args.sequential * scale), int(args.requests * scale), int(args.streams * scale))
    return runner(measure(target, counts[0], counts[1], args.concurrency, counts[2]))


# -- the systems under test ------------------------------------------------------------------


def start_gateway(tmp: Path, upstream: str) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    (tmp / "runtime.yaml").write_text(
        f"runtimes:\n  default:\n    kind: openai\n    base_url: {upstream}\n"
        "    api_key_env: BENCH_UPSTREAM_KEY\n"
    )
    env = {
        "AGL_DATA_DIR": str(tmp / "data"),
        "AGL_DATABASE_URL": f"sqlite:///{tmp / 'agl.db'}",
        "AGL_JWT_SECRET": JWT_SECRET,
        "AGL_RUNTIME_CONFIG": str(tmp / "runtime.yaml"),
        "BENCH_UPSTREAM_KEY": "sk-fake",
    }
    process = spawn(
        [
            sys.executable, "-m", "uvicorn", "agent_lightning.server.main:app_from_env",
            "--factory", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ],
        env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/v1/health")
    return process, url + "/v1", f"sqlite:///{tmp / 'agl.db'}"


def issue_token(database_url: str) -> str:
    from agent_lightning.security.audit import Actor, AuditLog
    from agent_lightning.security.identities import create_client
    from agent_lightning.security.tokens import TokenIssuer
    from agent_lightning.store import Store

    store = Store(database_url)
    new = create_client(store, AuditLog(store), "bench", ["Agent"], Actor("benchmark"))
    store.close()
    return TokenIssuer(JWT_SECRET).issue(new.client_id, "bench", ["Agent"]).access_token


def count_stored(database_url: str) -> int:
    from agent_lightning.gateway.capture import count_spans
    from agent_lightning.store import Store

    store = Store(database_url, migrate=False)
    try:
        return count_spans(store, "bench")
    finally:
        store.close()


COMPETITOR_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, tempfile, time, urllib.request
    kind, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    models = [{"model_name": "gpt-4o-mini", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": upstream, "api_key": "sk-fake"}}]

    def wait(url):
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("did not start")

    if kind == "litellm":
        import subprocess, yaml
        path = os.path.join(tempfile.mkdtemp(), "litellm.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"model_list": models, "general_settings": {"master_key": "sk-bench"},
                            "litellm_settings": {"num_retries": 0}}, f)
        proxy = subprocess.Popen([sys.executable, "-m", "litellm.proxy.proxy_cli", "--config",
                                  path, "--host", "127.0.0.1", "--port", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(f"http://127.0.0.1:{port}/health/liveliness")
        print("READY /v1 sk-bench", flush=True)
        proxy.wait()
    else:
        import agentlightning as agl
        from agentlightning.store.threading import LightningStoreThreaded

        async def main():
            store = LightningStoreThreaded(agl.InMemoryLightningStore())
            proxy = agl.LLMProxy(port=port, host="127.0.0.1", model_list=models, store=store,
                                 launch_mode="thread")
            await proxy.start()
            rollout = await store.start_rollout({"task": "benchmark"})
            prefix = f"/rollout/{rollout.rollout_id}/attempt/{rollout.attempt.attempt_id}/v1"
            print(f"READY {prefix} -", flush=True)
            while True:
                await asyncio.sleep(3600)

        asyncio.run(main())
    """
)


def competitor_python(args: argparse.Namespace, module: str) -> str | None:
    candidates = [sys.executable]
    if args.competitor_python:
        candidates.insert(0, args.competitor_python)
    for python in candidates:
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return python
    return None


def start_competitor(kind: str, python: str, upstream: str) -> tuple[subprocess.Popen, Target]:
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetching prices from the internet
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    process = subprocess.Popen(
        [python, "-c", COMPETITOR_SCRIPT, kind, str(port), upstream],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until ready (or the script died)
    while line and not line.startswith("READY"):  # skip whatever the proxy prints first
        line = process.stdout.readline()
    if not line:
        stop(process)
        raise RuntimeError(f"{kind} did not start")
    _, prefix, key = line.split()
    headers = {"Authorization": f"Bearer {key}"} if key != "-" else {}
    name = "LiteLLM proxy" if kind == "litellm" else "agentlightning LLMProxy"
    return process, Target(name, f"http://127.0.0.1:{port}{prefix}", headers)


# -- report ----------------------------------------------------------------------------------


def median(results: list[Result], name: str) -> float:
    return statistics.median(getattr(r, name) for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description="gateway benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=6000, help="requests in the 32-way test")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument(
        "--competitor-python", default=os.environ.get("AGL_BENCH_COMPETITOR_PYTHON")
    )
    parser.add_argument("--no-competitors", action="store_true")
    parser.add_argument(
        "--competitor-scale",
        type=float,
        default=0.25,
        help="fraction of the request counts used for the (much slower) competitors",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="agl-gateway-bench-"))
    up_port = free_port()
    upstream = spawn(
        [sys.executable, "-m", "agent_lightning.gateway.testing", "--port", str(up_port)]
    )
    processes = [upstream]
    try:
        wait_for(f"http://127.0.0.1:{up_port}/v1/models")
        upstream_url = f"http://127.0.0.1:{up_port}/v1"
        gateway, gateway_url, database_url = start_gateway(tmp, upstream_url)
        processes.append(gateway)
        token = issue_token(database_url)
        direct = Target("direct (no proxy)", upstream_url)
        ours = Target("agent-lightning gateway", gateway_url, {"Authorization": f"Bearer {token}"})
        targets = [direct, ours]
        if not args.no_competitors:
            for kind, module in (
                ("litellm", "litellm.proxy.proxy_server"),
                ("agl", "agentlightning"),
            ):
                python = competitor_python(args, module)
                if python is None:
                    print(f"-- {module} is not importable: skipped", file=sys.stderr)
                    continue
                try:
                    process, target = start_competitor(kind, python, upstream_url)
                except RuntimeError as exc:
                    print(f"-- {module} did not start: {exc}", file=sys.stderr)
                    continue
                processes.append(process)
                targets.append(target)
        for run in range(args.runs):
            for target in targets:
                scale = 1.0 if target in (direct, ours) else args.competitor_scale
                result = run_measure(target, args, scale)
                target.results.append(result)
                print(
                    f"run {run + 1} {target.name:<26} p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  {result.rps:7.0f} req/s  "
                    f"errors {result.errors}  first chunk {result.first_chunk_ms:6.2f} ms",
                    file=sys.stderr,
                )
        made = sum(r.calls for r in ours.results)
        deadline = time.monotonic() + 30
        stored = count_stored(database_url)
        while stored < made and time.monotonic() < deadline:
            time.sleep(0.2)
            stored = count_stored(database_url)
        stop(gateway)
        stored_after_shutdown = count_stored(database_url)
    finally:
        for process in processes:
            stop(process)

    base = direct.results
    print()
    print(
        f"{'proxy':<26} {'added p50':>10} {'added p99':>10} {'req/s @32':>10} "
        f"{'errors':>7} {'1st chunk +':>12}"
    )
    rows = {}
    for target in targets:
        if target is direct:
            p50, p99 = median(base, "p50_ms"), median(base, "p99_ms")
            print(
                f"{target.name:<26} {p50:>8.2f}ms {p99:>8.2f}ms {median(base, 'rps'):>10.0f} "
                f"{sum(r.errors for r in base):>7} {median(base, 'first_chunk_ms'):>10.2f}ms"
            )
            continue
        added = [
            (r.p50_ms - b.p50_ms, r.p99_ms - b.p99_ms, r.first_chunk_ms - b.first_chunk_ms)
            for r, b in zip(target.results, base, strict=True)
        ]
        row = {
            "p50": statistics.median(a[0] for a in added),
            "p99": statistics.median(a[1] for a in added),
            "first": statistics.median(a[2] for a in added),
            "rps": median(target.results, "rps"),
            "errors": sum(r.errors for r in target.results),
        }
        rows[target.name] = row
        print(
            f"{target.name:<26} {row['p50']:>+8.2f}ms {row['p99']:>+8.2f}ms {row['rps']:>10.0f} "
            f"{row['errors']:>7} {row['first']:>+10.2f}ms"
        )
    print()
    print(f"spans: {made} calls through the gateway, {stored} stored while running, "
          f"{stored_after_shutdown} after shutdown")  # fmt: skip
    mine = rows["agent-lightning gateway"]
    for name, row in rows.items():
        if name == "agent-lightning gateway":
            continue
        print(
            f"vs {name}: {mine['rps'] / row['rps']:.1f}x the requests/s, "
            f"{row['p50'] / mine['p50'] if mine['p50'] > 0 else float('inf'):.1f}x less added p50"
        )
    targets_met = (
        mine["p50"] <= 2.0
        and mine["p99"] <= 6.0
        and mine["first"] <= 2.0
        and mine["rps"] >= 600
        and mine["errors"] == 0
        and stored_after_shutdown == made
    )
    print("targets (p50 <= 2 ms, p99 <= 6 ms, first chunk <= 2 ms, >= 600 req/s, no errors, "
          f"no span lost): {'met' if targets_met else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
