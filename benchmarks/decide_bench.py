"""Decide latency of one policy in-process, per featurizer and learner (a script, not a test).

    .venv/bin/python benchmarks/decide_bench.py [--decides 2000] [--actions 77] [--learn 500]

Builds three policies over the Banking77 intents (the first `--actions` of them; generated names
when the data is not beside the project): `hashing` and `hybrid` (the default featurizer:
hashing plus WordLlama static vectors) with the default learner of `make_policy` (LinUCB), and
`hybrid+knn`, the templates' learner (`KNNMemory` beside LinUCB; it reads its memory of learned
rows on every decision, so its cost grows with `--learn` up to the memory's 10,000 rows). Each
first learns from `--learn` logged decisions of its own (bandit reward: 1 when it chose the
labelled intent), so the learner has state, as a live policy does. Then all decide on the same
`--decides` queries they have not seen, taking turns on each query (the order rotates, so load
from other work on the machine falls on all alike), and the wall time of each `Policy.decide`
call is recorded: featurize the text, score every action, sample one. Every featurizer memo
forgets the query before each timed call, so each one featurizes afresh. Nothing is written to
a store: this is the policy alone, not `DecisionService`.

Prints p50, p99 and mean per policy, and each one's ratio to `hashing`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agent_lightning.learning import Action, LoggedDecision, make_policy  # noqa: E402
from agent_lightning.learning.featurizers import _MEMOS  # noqa: E402
from agent_lightning.learning.simulation import load_intent_csv  # noqa: E402

BANKING = Path(os.environ.get("AGL_BANKING77", ROOT.parent / "shared" / "data" / "banking77"))
# name -> policy spec (the seed is added)
POLICIES: dict[str, dict] = {
    "hashing": {"featurizer": "hashing"},
    "hybrid": {"featurizer": "hybrid"},
    "hybrid+knn": {"featurizer": "hybrid", "learner": "knn"},
}
FILLER = ["my", "the", "please", "why", "is", "how", "can", "i", "still", "today", "help"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def workload(n_actions: int, n_texts: int, seed: int) -> tuple[list[Action], list[tuple[str, str]]]:
    """(actions, shuffled (text, intent) queries whose intent is one of the actions)."""
    rng = random.Random(seed)
    if (BANKING / "train.csv").exists() and (BANKING / "categories.json").exists():
        names = json.loads((BANKING / "categories.json").read_text())[:n_actions]
        keep = set(names)
        rows = [(t, y) for t, y in load_intent_csv(BANKING / "train.csv") if y in keep]
    else:
        names = [f"intent_{i}_name" for i in range(n_actions)]
        rows = [
            (" ".join([*name.split("_")[:2], *rng.sample(FILLER, 4), str(i)]), name)
            for i in range(n_texts)
            for name in [rng.choice(names)]
        ]
    rng.shuffle(rows)
    actions = [Action(name, description=name.replace("_", " ")) for name in names]
    return actions, rows


def learned_policy(spec: dict, actions: list[Action], rows: list[tuple[str, str]], seed: int):
    policy = make_policy({**spec, "seed": seed})
    logs = []
    for text, label in rows:
        context = {"text": text}
        d = policy.decide(context, actions)
        reward = float(d.action_id == label)
        logs.append(LoggedDecision(context, tuple(actions), d.action_id, d.propensity, reward))
    return policy.learn(logs) if logs else policy


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decides", type=int, default=2000, help="timed decides per policy")
    parser.add_argument("--actions", type=int, default=77, help="candidate actions per decide")
    parser.add_argument("--learn", type=int, default=500, help="logged decisions learned first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.decides < 100 or args.actions < 2 or args.learn < 0:
        parser.error("need --decides >= 100, --actions >= 2, --learn >= 0")

    actions, rows = workload(args.actions, args.learn + args.decides, args.seed)
    if len(rows) < args.learn + args.decides:
        parser.error(f"only {len(rows)} queries available for --learn + --decides")
    learn_rows, timed = rows[: args.learn], rows[args.learn : args.learn + args.decides]
    source = "Banking77 train" if (BANKING / "train.csv").exists() else "generated queries"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(
        f"{len(actions)} actions, {len(timed):,} timed decides per policy on unseen queries "
        f"({source}), each policy first learned from {len(learn_rows):,} logged decisions"
    )

    policies = {}
    for name, spec in POLICIES.items():
        t0 = time.perf_counter()
        policies[name] = learned_policy(spec, actions, learn_rows, args.seed)
        print(f"  {name:<10} built and learned in {time.perf_counter() - t0:.1f} s")

    names = list(POLICIES)
    ms: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for i, (text, _) in enumerate(timed):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            for memo in _MEMOS.values():  # featurize afresh, as for a new customer message
                memo.pop(text, None)
            context = {"text": text}
            t0 = clock()
            policies[name].decide(context, actions)
            ms[name].append((clock() - t0) * 1000)

    print()
    print(f"{'policy':<12}{'p50':>10}{'p99':>10}{'mean':>10}   / hashing (p50, p99, mean)")
    stats = {}
    for name in names:
        stats[name] = (percentile(ms[name], 0.5), percentile(ms[name], 0.99),
                       statistics.fmean(ms[name]))  # fmt: skip
        p50, p99, mean = stats[name]
        ratios = ", ".join(
            f"{v / b:.2f}x" for v, b in zip(stats[name], stats["hashing"], strict=True)
        )
        print(f"{name:<12}{p50:>8.2f}ms{p99:>8.2f}ms{mean:>8.2f}ms   {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
