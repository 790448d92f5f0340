"""Tune the learning library's hyper-parameters on Banking77 *train* only.

Splits train.csv into a stream (80%) and a held-out set (20%) with a fixed seed, runs
`run_intent_benchmark` for each configuration (in parallel processes) and prints one JSON line
per run. The test set is never read here.

    .venv/bin/python benchmarks/learning_sweep.py --featurizer hashing --feedback bandit \\
        --configs '[{"retrain_every": 100},
                    {"policy_spec": {"learner": {"kind": "linucb", "l2": 1}}}]'
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from agent_lightning.learning.simulation import load_intent_csv, run_intent_benchmark

DATA = Path(os.environ.get("AGL_BANKING77", Path(__file__).parents[2] / "shared/data/banking77"))


def split(seed: int = 1234, holdout: float = 0.2):
    data = load_intent_csv(DATA / "train.csv")
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(len(data) * (1 - holdout))
    return [data[i] for i in order[:cut]], [data[i] for i in order[cut:]]


def run_one(args: tuple[str, str, dict]) -> dict:
    featurizer, feedback, config = args
    stream, held = split()
    res = run_intent_benchmark(
        stream, held, featurizer=featurizer, feedback=feedback, ceiling=False, **config
    )
    out = res.to_dict()
    out.pop("config")
    return {"featurizer": featurizer, "feedback": feedback, "config": config, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--featurizer", default="hashing")
    ap.add_argument("--feedback", default="bandit")
    ap.add_argument("--configs", default="[{}]", help="JSON list of run_intent_benchmark kwargs")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    configs = json.loads(a.configs)
    jobs = [(a.featurizer, a.feedback, c) for c in configs]
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        for res in pool.map(run_one, jobs):
            keep = ("zero_shot_accuracy", "learned_accuracy", "online_last_1000",
                    "versions_registered", "wall_seconds")  # fmt: skip
            print(json.dumps({"config": res["config"], **{k: res[k] for k in keep}}), flush=True)


if __name__ == "__main__":
    main()
