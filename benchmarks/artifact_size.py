"""Size of a saved policy version after learning from Banking77 traffic (a script, not a test).

    .venv/bin/python benchmarks/artifact_size.py [--featurizer hybrid] [--rows 8000]

Replays the first `--rows` queries of Banking77 train through a policy with the benchmark's
preset for `--featurizer` (`simulation.DEFAULT_SPECS`: LinUCB plus the nearest-neighbour
memory for `hybrid`), learning every 500 decisions, once with bandit rewards and once with
corrections. Then it saves the policy (`Policy.to_bytes`) and prints the artifact's size, the
share of its parts, the size of the same state in the layout written before the memory shared
LinUCB's rows (format 2: the memory stores every row it remembers), and, as the peer, in the
layout written before LinUCB pooled its rows (format 1: each action's window stored on its own).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import zlib
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agent_lightning.learning import LoggedDecision, _serialize, make_policy  # noqa: E402
from agent_lightning.learning.learners import _RowPool  # noqa: E402
from agent_lightning.learning.simulation import (  # noqa: E402
    DEFAULT_SPECS,
    intent_actions,
    load_intent_csv,
)

BANKING = Path(os.environ.get("AGL_BANKING77", ROOT.parent / "shared" / "data" / "banking77"))


def trained(featurizer: str, rows: list[tuple[str, str]], correction: bool):
    actions = intent_actions([y for _, y in rows])
    policy = make_policy({**DEFAULT_SPECS[featurizer], "seed": 0})
    rng = np.random.default_rng(0)
    for start in range(0, len(rows), 500):
        logs = []
        for text, label in rows[start : start + 500]:
            d = policy.decide({"text": text}, actions, rng=rng)
            reward = float(d.action_id == label)
            logs.append(
                LoggedDecision(
                    {"text": text},
                    tuple(actions),
                    d.action_id,
                    d.propensity,
                    reward,
                    label if correction else None,
                )  # fmt: skip
            )
        policy = policy.clone().learn(logs)
    return policy


def unshared(featurizer: str, meta: dict, arrays: dict) -> tuple[dict, dict]:
    """The same state with the nearest-neighbour memory storing all its rows (format 2)."""
    state = meta["learner_state"]
    if not state.get("rows_source"):
        return meta, arrays
    learner = make_policy({**DEFAULT_SPECS[featurizer], "seed": 0}).learner
    learner.set_state(state, {k[len("learner/") :]: v for k, v in arrays.items()})
    rows = learner._rows
    out = {k: v for k, v in arrays.items() if not k.startswith("learner/rows.")}
    if sparse.issparse(rows):
        out["learner/rows.data"] = rows.data.astype(np.float16)
        out["learner/rows.indices"] = rows.indices
        out["learner/rows.indptr"] = rows.indptr
    else:
        out["learner/rows"] = rows.astype(np.float16)
    meta = {**meta, "learner_state": {k: v for k, v in state.items() if k != "rows_source"}}
    return meta, out


def unpooled(meta: dict, arrays: dict) -> tuple[dict, dict]:
    """The same state with LinUCB's rows stored per action (format 1's layout)."""
    prefix = "learner/base." if any(k.startswith("learner/base.") for k in arrays) else "learner/"
    state = meta["learner_state"].get("base", meta["learner_state"])
    key = prefix + "pool.X"
    own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    pool = _RowPool.read(own, state.get("sparse"), state["dim"])
    out = {k: v for k, v in arrays.items() if not k.startswith(key)}
    for i, arm in enumerate(state["arms"]):
        refs = out.pop(f"{prefix}arm{i}.X.rows", None)
        if not arm["n"]:
            continue
        X = pool[refs]
        if sparse.issparse(X):
            out.update({f"{prefix}arm{i}.X.{part}": getattr(X, part)
                        for part in ("data", "indices", "indptr")})  # fmt: skip
        else:
            out[f"{prefix}arm{i}.X"] = X
    return meta, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--featurizer", default="hybrid", choices=sorted(DEFAULT_SPECS))
    ap.add_argument("--rows", type=int, default=8000, help="queries learned from")
    args = ap.parse_args()
    data = load_intent_csv(BANKING / "train.csv")
    rng = np.random.default_rng(0)
    rows = [data[i] for i in rng.permutation(len(data))[: args.rows]]
    mb = 1_000_000
    for feedback in ("bandit", "correction"):
        policy = trained(args.featurizer, rows, correction=feedback == "correction")
        blob = policy.to_bytes()
        meta, arrays = _serialize.load(blob)
        format_2 = unshared(args.featurizer, meta, arrays)
        own = len(_serialize.dump(*format_2))
        peer = len(_serialize.dump(*unpooled(*format_2)))
        print(f"{args.featurizer}, {feedback}, {len(rows):,} queries: artifact "
              f"{len(blob) / mb:.1f} MB; memory storing its own rows (format 2) {own / mb:.1f} MB; "
              f"unpooled rows (format 1, peer) {peer / mb:.1f} MB; "
              f"today / format 1 = {len(blob) / peer:.2f}")  # fmt: skip
        parts: collections.Counter = collections.Counter()
        for k, v in arrays.items():
            parts[re.sub(r"arm\d+", "arm*", k)] += len(zlib.compress(v.tobytes(), 6))
        for name, size in parts.most_common(4):
            print(f"    {name:<36} {size / mb:6.2f} MB compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
