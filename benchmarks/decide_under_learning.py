"""Decide latency while a learning task runs beside it, by BLAS thread count (a script, not a test).

    .venv/bin/python benchmarks/decide_under_learning.py [--decides 1000] [--featurizer hybrid]

The server answers decisions on some threads while the LearningController trains a candidate on
another. This replays that inside one process: a policy (the default spec) that has learned from
1,500 Banking77 decisions answers `--decides` unseen queries, first with nothing else running
(quiet), then while a thread clones it and teaches the clone another 1,500 decisions over and
over (what a learning task does). Both phases run twice: with the BLAS libraries' own thread
count (OpenBLAS: one per core) and capped at one thread with threadpoolctl, which is what the
server does by default (`AGL_BLAS_THREADS=1`, see `server.main.limit_blas_threads`). The two
settings take turns (default, capped, default, capped) so drifting load falls on both.

Prints p50 / p99 decide latency per setting and phase, learning tasks per second while serving,
and the default / capped ratio of the p99 while learning.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from agent_lightning.learning import LoggedDecision, make_policy  # noqa: E402
from agent_lightning.learning.simulation import (  # noqa: E402
    DEFAULT_SPECS,
    intent_actions,
    load_intent_csv,
)

BANKING = Path(os.environ.get("AGL_BANKING77", ROOT.parent / "shared" / "data" / "banking77"))


def measure(policy, actions, texts) -> np.ndarray:
    out = []
    for text in texts:
        start = time.perf_counter()
        policy.decide({"text": text}, actions)
        out.append(time.perf_counter() - start)
    return np.asarray(out) * 1000.0


def phase(policy, actions, texts, logs) -> dict[str, float]:
    """Quiet latencies, then latencies while a thread runs learning tasks back to back."""
    quiet = measure(policy, actions, texts)
    stop = threading.Event()
    done = [0]

    def learn_forever() -> None:
        while not stop.is_set():
            policy.clone().learn(logs)
            done[0] += 1

    worker = threading.Thread(target=learn_forever, daemon=True)
    worker.start()
    time.sleep(0.5)  # let the first task get going
    started, before = time.perf_counter(), done[0]
    busy = measure(policy, actions, texts)
    elapsed, tasks = time.perf_counter() - started, done[0] - before
    stop.set()
    worker.join()
    return {
        "quiet_p50": float(np.percentile(quiet, 50)),
        "quiet_p99": float(np.percentile(quiet, 99)),
        "busy_p50": float(np.percentile(busy, 50)),
        "busy_p99": float(np.percentile(busy, 99)),
        "tasks_per_s": tasks / elapsed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decides", type=int, default=1000, help="queries timed per phase")
    ap.add_argument("--featurizer", default="hybrid", choices=sorted(DEFAULT_SPECS))
    args = ap.parse_args()
    if not (BANKING / "train.csv").exists():
        sys.exit(f"Banking77 not found at {BANKING}: set AGL_BANKING77 to the folder of train.csv")
    data = load_intent_csv(BANKING / "train.csv")
    np.random.default_rng(0).shuffle(data)
    actions = intent_actions([y for _, y in data])
    logs = [
        LoggedDecision(
            context={"text": t}, actions=tuple(actions), action_id=y, propensity=0.5, reward=1.0
        )
        for t, y in data[:3000]
    ]
    policy = make_policy({**DEFAULT_SPECS[args.featurizer], "seed": 0})
    policy.learn(logs[:1500])
    texts = [t for t, _ in data[5000 : 5000 + args.decides]]
    measure(policy, actions, texts[:100])  # warm the featurizer and caches

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    default_threads = max((i["num_threads"] for i in blas), default=0)
    runs: dict[str, list[dict[str, float]]] = {"default": [], "capped": []}
    for _ in range(2):
        runs["default"].append(phase(policy, actions, texts, logs[1500:]))
        with threadpool_limits(limits=1, user_api="blas"):
            runs["capped"].append(phase(policy, actions, texts, logs[1500:]))

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.featurizer} features, 77 intents, {args.decides} decides per phase, 2 rounds"
    )
    summary = {}
    for name, label in (("default", f"BLAS default ({default_threads} threads)"),
                        ("capped", "BLAS capped at 1 thread")):  # fmt: skip
        r = {k: float(np.mean([run[k] for run in runs[name]])) for k in runs[name][0]}
        summary[name] = r
        print(
            f"{label:28s} quiet p50/p99 {r['quiet_p50']:.2f}/{r['quiet_p99']:.2f} ms   "
            f"while learning p50/p99 {r['busy_p50']:.2f}/{r['busy_p99']:.2f} ms   "
            f"learning tasks/s {r['tasks_per_s']:.2f}"
        )
    d, c = summary["default"], summary["capped"]
    print(
        f"p99 while learning, default / capped: {d['busy_p99'] / c['busy_p99']:.2f}x; "
        f"learning throughput, capped / default: {c['tasks_per_s'] / d['tasks_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
