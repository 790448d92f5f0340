"""Dashboard soak benchmark: API latency with a million events in the store (a script, not a test).

    .venv/bin/python benchmarks/dashboard_soak.py [--events 1000000] [--days 30]
        [--db sqlite|postgres|both] [--repeat 40] [--writer-rate 100] [--keep]

For each database (SQLite file; PostgreSQL in a fresh schema of AGL_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test, dropped afterwards):

1. Generates the data directly with SQLAlchemy Core bulk inserts in batches of 10,000 rows, NOT
   through the HTTP API (which would take hours at a million events and measure ingestion, not
   the dashboard): `--events` events spread evenly over the last `--days` days for one app, one
   decision per event, a reward for 90% of decisions (arriving 5-60 s later), a gateway model
   call for 10% of events, 10 policy versions (resolution improving from version to version),
   60 learning tasks with off-policy estimates, and audit entries. Rows are inserted in time
   order, as production writes them. PostgreSQL gets an ANALYZE afterwards (autovacuum would do
   it in production).
2. Serves the real app with the dashboard (uvicorn on loopback, the full stack: auth, RBAC,
   JSON) and, while a writer thread adds `--writer-rate` events (+ decisions, rewards) per
   second, times every dashboard API call over HTTP:
   - cold: the first call after a restart (every cache emptied before each call);
   - steady: the rollup of closed buckets warm, the 5 s answer cache emptied before each call,
     so every call queries the database for the open buckets (what one auto-refreshing
     dashboard sees after its first load);
   - cached: repeated calls within the answer cache's 5 s (a wall of dashboards).

The pass mark is the steady p95 under 200 ms. Every figure measured is printed, and written to
bench-results/dashboard_soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agent_lightning.config import Settings  # noqa: E402
from agent_lightning.dashboard import mount_dashboard, router  # noqa: E402
from agent_lightning.gateway.models import GatewaySpan  # noqa: E402
from agent_lightning.security.audit import Actor, AuditLog  # noqa: E402
from agent_lightning.security.identities import create_client  # noqa: E402
from agent_lightning.store import (  # noqa: E402
    Decision,
    Event,
    Policy,
    PolicyVersion,
    Reward,
    Store,
    Task,
    new_id,
)

POSTGRES_URL = os.environ.get("AGL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
APP = "soak-app"
BATCH = 10_000
VERSIONS = 10
INTENTS = [f"intent_{i:02d}" for i in range(77)] + ["escalate"]


# -- data --------------------------------------------------------------------------------------


def _version_at(i: int, n: int) -> int:
    return 1 + min(VERSIONS - 1, i * VERSIONS // n)


def _chunk_rows(
    start: int, stop: int, n: int, t0: datetime, span: float, rng: random.Random
) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    events, decisions, rewards, calls = [], [], [], []
    for i in range(start, stop):
        at = t0 + timedelta(seconds=span * i / n)
        version = _version_at(i, n)
        session = f"s{i // 3}"
        user = f"u{(i // 3) % 20_000}"
        truth = INTENTS[rng.randrange(77)]
        resolved = rng.random() < 0.35 + 0.04 * version
        chosen = truth if resolved else INTENTS[rng.randrange(len(INTENTS))]
        events.append(
            {
                "id": f"e{i}",
                "app_id": APP,
                "user_id": user,
                "session_id": session,
                "text": f"question about {truth} from <EMAIL>",
                "intent_prediction": chosen,
                "confidence": 0.6,
                "feedback_score": float(resolved) if i % 2 else None,
                "policy_name": "intents",
                "policy_version": version,
                "attributes": {},
                "pii_counts": {"EMAIL": 1},
                "content_hash": "",
                "occurred_at": at,
                "created_at": at,
            }
        )
        candidates = [chosen, *rng.sample(INTENTS, 4)]
        probs = {a: 0.05 for a in candidates}
        probs[chosen] = 0.8
        decisions.append(
            {
                "id": f"d{i}",
                "app_id": APP,
                "decision_point": "intent",
                "session_id": session,
                "user_id": user,
                "context": {"text": f"question about {truth}"},
                "actions": [{"id": a} for a in dict.fromkeys(candidates)],
                "action_id": chosen,
                "propensity": 0.8,
                "probabilities": probs,
                "policy_name": "intents",
                "policy_version": version,
                "attributes": {},
                "pii_counts": {},
                "content_hash": "",
                "created_at": at,
            }
        )
        if i % 10:
            rewards.append(
                {
                    "id": f"r{i}",
                    "app_id": APP,
                    "decision_id": f"d{i}",
                    "session_id": None,
                    "user_id": user,
                    "value": float(resolved),
                    "source": "user",
                    "correct_action_id": None,
                    "attributes": {},
                    "content_hash": "",
                    "created_at": at + timedelta(seconds=5 + (i % 56)),
                }
            )
        if i % 10 == 3:
            latency = rng.lognormvariate(math.log(700), 0.6)
            calls.append(
                {
                    "id": f"g{i}",
                    "app_id": APP,
                    "session_id": session,
                    "user_id": user,
                    "endpoint": "chat.completions",
                    "model": "gpt-4o-mini",
                    "upstream": "openai",
                    "upstream_model": "gpt-4o-mini",
                    "stream": False,
                    "request": None,
                    "response": None,
                    "usage": {"total_tokens": 420},
                    "status": "ok" if rng.random() > 0.01 else "upstream_error",
                    "http_status": 200,
                    "error": None,
                    "latency_ms": latency,
                    "ttft_ms": None,
                    "retries": 0,
                    "policy_name": "intents",
                    "decision_id": f"d{i}",
                    "variant_id": None,
                    "pii_counts": {},
                    "created_at": at + timedelta(milliseconds=50),
                }
            )
    # Rewards arrive later than the decisions of their chunk: keep insert order = time order.
    rewards.sort(key=lambda r: r["created_at"])
    return events, decisions, rewards, calls


def generate(store: Store, events: int, days: float, seed: int = 1) -> dict[str, Any]:
    """Bulk-insert the data set with SQLAlchemy Core; returns counts and timings."""
    rng = random.Random(seed)
    store.ensure_app(APP)
    audit = AuditLog(store)
    now = datetime.now(UTC)
    t0 = now - timedelta(days=days)
    span = (now - t0).total_seconds() - 120
    policy = store.create_policy(
        Policy(id=new_id(), app_id=APP, name="intents", decision_point="intent")
    )
    started = time.perf_counter()
    counts = {"events": 0, "decisions": 0, "rewards": 0, "model_calls": 0}
    tables = (Event.__table__, Decision.__table__, Reward.__table__, GatewaySpan.__table__)
    for start in range(0, events, BATCH):
        chunk = _chunk_rows(start, min(events, start + BATCH), events, t0, span, rng)
        with store.engine.begin() as conn:
            for table, rows, name in zip(tables, chunk, counts, strict=True):
                if rows:
                    conn.execute(table.insert(), rows)
                    counts[name] += len(rows)
        if (start // BATCH) % 10 == 9:
            rate = counts["events"] / (time.perf_counter() - started)
            print(f"    {counts['events']:>9,} events inserted ({rate:,.0f}/s)", flush=True)
    for version in range(1, VERSIONS + 1):
        base = 0.35 + 0.04 * (version - 1)
        metrics = {
            "trained_on": 1000,
            "evaluated_on": 1000,
            "ope": {
                "estimator": "dr",
                "n": 1000,
                "candidate": {"value": base + 0.04, "ci_low": base + 0.01, "ci_high": base + 0.07},
                "live": {"value": base, "ci_low": base - 0.02, "ci_high": base + 0.02},
                "difference": {"value": 0.04, "ci_low": 0.01, "ci_high": 0.07},
            },
            "gate": {"estimator": "dr", "passed": True, "difference_ci_low": 0.01},
        }
        store.add_policy_version(
            PolicyVersion(
                id=new_id(),
                policy_id=policy.id,
                parent_version=version - 1 or None,
                artifact=os.urandom(64 * 1024),  # artefacts are not read by the dashboard
                metrics=metrics if version > 1 else {},
                notes="soak",
            ),
            make_live=True,
        )
        audit.record(
            Actor("soak"),
            "policy_version.create",
            "policy_version",
            f"intents@{version}",
            app_id=APP,
            after={"version": version, "parent": version - 1 or None, "live": True},
        )
    for k in range(60):
        at = t0 + timedelta(seconds=span * k / 60)
        version = 1 + k * VERSIONS // 60
        base = 0.35 + 0.04 * (version - 1)
        store.create_task(
            Task(
                id=f"task-{k}",
                app_id=APP,
                kind="learn",
                params={"task": "learn", "policy": "intents"},
                status="succeeded",
                result={
                    "examples": events // 60,
                    "registered": k % 6 == 5,
                    "version": version + 1 if k % 6 == 5 else None,
                    "metrics": {
                        "trained_on": events // 60,
                        "evaluated_on": 2000,
                        "ope": {
                            "estimator": "dr",
                            "candidate": {
                                "value": base + 0.03,
                                "ci_low": base,
                                "ci_high": base + 0.06,
                            },
                            "live": {"value": base, "ci_low": base - 0.02, "ci_high": base + 0.02},
                        },
                        "gate": {"passed": k % 6 == 5},
                    },
                },
                created_at=at,
                started_at=at,
                finished_at=at + timedelta(seconds=3),
            )
        )
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:  # committed: a rolled-back ANALYZE keeps no stats
            conn.exec_driver_sql("ANALYZE")
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


class Writer(threading.Thread):
    """Keeps telemetry arriving during the measurement, the way agents would."""

    def __init__(self, store: Store, rate: float) -> None:
        super().__init__(name="soak-writer", daemon=True)
        self.store = store
        self.rate = rate
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        if self.rate <= 0:
            return
        tick, per_tick, n = 0.1, max(1, int(self.rate * 0.1)), 0
        rng = random.Random(2)
        while not self.stop.wait(tick):
            now = datetime.now(UTC)
            tag = uuid.uuid4().hex[:8]
            events, decisions, rewards, calls = _chunk_rows(0, per_tick, per_tick, now, 0, rng)
            for group in (events, decisions, rewards, calls):
                for row in group:
                    row["id"] = f"{row['id']}-{tag}"
                    if "decision_id" in row and row["decision_id"]:
                        row["decision_id"] = f"{row['decision_id']}-{tag}"
                    if row.get("session_id"):  # new conversations, as in production
                        row["session_id"] = f"{row['session_id']}-{tag}"
                    row["created_at"] = now
            with self.store.engine.begin() as conn:
                conn.execute(Event.__table__.insert(), events)
                conn.execute(Decision.__table__.insert(), decisions)
                if rewards:
                    conn.execute(Reward.__table__.insert(), rewards)
                if calls:
                    conn.execute(GatewaySpan.__table__.insert(), calls)
            n += len(events)
            self.written = n


# -- measurement -------------------------------------------------------------------------------


def calls_to_time(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    def iso(delta: timedelta) -> str:
        return (now - delta).isoformat()

    return [
        ("overview 24h/hour (default)", "/v1/dashboard/overview", {"bucket": "hour"}),
        (
            "overview 7d/hour",
            "/v1/dashboard/overview",
            {"bucket": "hour", "since": iso(timedelta(days=7))},
        ),
        (
            "overview 30d/day (all data)",
            "/v1/dashboard/overview",
            {"bucket": "day", "since": iso(timedelta(days=30))},
        ),
        (
            "overview 1h/minute",
            "/v1/dashboard/overview",
            {"bucket": "minute", "since": iso(timedelta(hours=1))},
        ),
        ("learning", "/v1/dashboard/learning", {}),
        ("rollouts", "/v1/dashboard/rollouts", {}),
        ("sessions (50 newest)", "/v1/dashboard/sessions", {"limit": 50}),
        ("session timeline", "/v1/dashboard/session", {"session_id": "s1000"}),
        ("audit (50 newest)", "/v1/dashboard/audit", {"limit": 50}),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.5), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
        "mean_ms": round(statistics.fmean(samples), 1),
    }


def measure(url: str, token: str, extras: dict, repeat: int) -> dict[str, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, dict] = {}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:

        def timed(path: str, params: dict) -> float:
            started = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            return elapsed

        def forget_everything() -> None:
            data = extras.get("dashboard")
            if data is not None:
                data.rollup.clear()
                data._floors.clear()
            if extras.get("dashboard_responses") is not None:
                extras["dashboard_responses"].clear()

        now = datetime.now(UTC)
        for label, path, params in calls_to_time(now):
            cold = []
            for _ in range(3):
                forget_everything()
                cold.append(timed(path, params))
            steady = []
            for _ in range(repeat):
                extras["dashboard_responses"].clear()
                steady.append(timed(path, params))
            cached = [timed(path, params) for _ in range(repeat)]
            results[label] = {
                "cold": summarize(cold),
                "steady": summarize(steady),
                "cached": summarize(cached),
            }
            row = results[label]
            verdict = "ok" if row["steady"]["p95_ms"] < 200 else "OVER 200 ms"
            print(
                f"  {label:<30} cold {row['cold']['p50_ms']:>8.1f} ms (max "
                f"{row['cold']['max_ms']:>7.1f})   steady p50 {row['steady']['p50_ms']:>6.1f} "
                f"p95 {row['steady']['p95_ms']:>6.1f} ms   cached p95 "
                f"{row['cached']['p95_ms']:>5.1f} ms   {verdict}",
                flush=True,
            )
    return results


@contextlib.contextmanager
def database(kind: str, keep: bool) -> Iterator[str]:
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="agl-soak-"))
        yield f"sqlite:///{directory / 'soak.db'}"
        if not keep:
            for path in directory.iterdir():
                path.unlink()
            directory.rmdir()
        else:
            print(f"  kept {directory / 'soak.db'}")
        return
    import psycopg

    schema = f"agl_soak_{uuid.uuid4().hex[:10]}"
    raw = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in raw else "?"
    try:
        yield f"{raw}{sep}options=-csearch_path%3D{schema}"
    finally:
        if keep:
            print(f"  kept schema {schema}")
        else:
            with psycopg.connect(raw, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from agent_lightning.gateway.testing import ThreadedServer
    from agent_lightning.server.app import create_app
    from agent_lightning.server.state import build_state

    print(f"\n== {kind} ==", flush=True)
    with database(kind, args.keep) as url:
        store = Store(url, pool_size=8)
        print(
            f"  generating {args.events:,} events (+ decisions, rewards, model calls) over "
            f"{args.days:g} days with SQLAlchemy Core bulk inserts, not the HTTP API",
            flush=True,
        )
        generated = generate(store, args.events, args.days)
        print(f"  generated in {generated['seconds']} s: {generated}", flush=True)
        settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="agl-soak-data-")),
            database_url=url,
            jwt_secret="soak-signing-key-0123456789abcdef0123456789",
            token_burst=1000,
            token_rate=1000.0,
        )
        state = build_state(settings, store)
        app = create_app(settings, state=state, start_background=False)
        if not any(getattr(r, "path", "") == "/v1/dashboard/overview" for r in app.routes):
            state.extras.setdefault("routers", []).append(router)
            app = create_app(settings, state=state, start_background=False)
        mount_dashboard(app)
        admin = create_client(store, state.audit, APP, ["AgentAdmin"], Actor("soak"))
        writer = Writer(store, args.writer_rate)
        with ThreadedServer(app) as server:
            token = httpx.post(
                f"{server.url}/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": admin.client_id,
                    "client_secret": admin.secret,
                },
            ).json()["access_token"]
            writer.start()
            try:
                results = measure(server.url, token, state.extras, args.repeat)
            finally:
                writer.stop.set()
                writer.join()
        store.close()
        print(f"  writer added {writer.written:,} events during the measurement")
        return {"generated": generated, "writer_events": writer.written, "calls": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--writer-rate", type=float, default=100.0, help="events/s during timing")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    args = parser.parse_args()
    print(
        f"dashboard soak: {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; steady p95 must stay under 200 ms"
    )
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    report = {
        "events": args.events,
        "days": args.days,
        "repeat": args.repeat,
        "writer_rate": args.writer_rate,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": {kind: run(kind, args) for kind in kinds},
    }
    out = ROOT / "bench-results" / "dashboard_soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    worst = max(
        call["steady"]["p95_ms"]
        for result in report["results"].values()
        for call in result["calls"].values()
    )
    print(f"\nworst steady p95: {worst:.1f} ms ({'under' if worst < 200 else 'OVER'} 200 ms)")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
