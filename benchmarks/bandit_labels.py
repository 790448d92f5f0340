"""What a bandit pass's rewards can teach (a diagnostic script, not a test).

    .venv/bin/python benchmarks/bandit_labels.py [--passes hashing,hybrid] [--seed 0]

With bandit feedback a success is the only row that names an intent: "resolved" on action a
says a was right, a failure only that a was wrong (one of 76 others is). So a pass over the
traffic can teach at most what its successes label, and which queries end up labelled depends
on how well the policy generalised *during* the pass.

For each featurizer in `--passes` this replays the stream of `learning_sweep.py`'s held-out
split (80% of Banking77 train, never test) once with bandit rewards, through the benchmark's
preset for that featurizer. Then it fits a logistic regression (the supervised ceiling's
model) on the successes the pass collected, on the pass's own features and on `--reader`'s
(default hashing), and prints its accuracy on the held-out fifth beside the pass's learned
greedy accuracy. The peer is the same regression on all labels of the stream.

If the learned policy is close to the regression on its own successes, the learner extracts
what the rewards carry, and the gap to another featurizer is in the labels its pass collected.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_sweep import split  # noqa: E402

from agent_lightning.learning import make_featurizer, make_policy  # noqa: E402
from agent_lightning.learning.simulation import (  # noqa: E402
    DEFAULT_SPECS,
    InProcessBackend,
    run_intent_benchmark,
)


def regression_accuracy(featurizer, texts, labels, held) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X = featurizer.transform(list(texts))
    Xh = featurizer.transform([t for t, _ in held])
    # The supervised ceiling's settings for sparse inputs (simulation.supervised_ceiling).
    clf = LogisticRegression(C=20.0, solver="saga", max_iter=20, tol=1e-3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not getattr(featurizer, "sparse", True):
            clf = LogisticRegression(C=20.0, max_iter=300)
        clf.fit(X, list(labels))
    return float(clf.score(Xh, [y for _, y in held]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", default="hashing,hybrid", help="featurizers to replay with")
    ap.add_argument("--reader", default="hashing", help="featurizer the regressions also read")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    stream, held = split()
    reader = make_featurizer(a.reader)
    stream_texts = [t for t, _ in stream]
    print(f"stream {len(stream):,} queries, held-out {len(held):,} (Banking77 train split)")
    print(
        f"{a.reader} regression on all {len(stream):,} labels: "
        f"{regression_accuracy(reader, stream_texts, [y for _, y in stream], held):.1%}"
    )
    header = ("pass", "successes", "learned", "LR own features", f"LR {a.reader}", "wall")
    print(" | ".join(header))
    for name in a.passes.split(","):
        policy = make_policy({**DEFAULT_SPECS[name], "seed": a.seed})
        backend = InProcessBackend(policy)
        started = time.perf_counter()
        res = run_intent_benchmark(
            stream, held, featurizer=name, seed=a.seed, backend=backend, ceiling=False
        )
        wall = time.perf_counter() - started
        won = [lg for lg in backend.rewarded if lg.reward == 1.0]
        texts = [lg.context["text"] for lg in won]
        labels = [lg.action_id for lg in won]
        own = regression_accuracy(policy.featurizer, texts, labels, held)
        read = regression_accuracy(reader, texts, labels, held)
        share = len(won) / len(backend.rewarded)
        print(
            f"{name} | {len(won):,} ({share:.1%}) | {res.learned_accuracy:.1%} | {own:.1%} | "
            f"{read:.1%} | {wall:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
