"""Learning library: contextual bandits that make a deployed agent learn from its mistakes.

The import path is the API. A `Policy` (one decision point) composes a featurizer, a warm-start
prior, a learner and an exploration strategy; `ope` judges candidates off-policy from logs, and
`simulation` replays a labelled dataset as live traffic::

    from agent_lightning.learning import Action, make_policy

    policy = make_policy({"featurizer": "hashing", "learner": "linucb", "seed": 0})
    decision = policy.decide({"text": "my card hasn't arrived"}, [Action("card_arrival"), ...])
    candidate = policy.clone().learn(logged_decisions)

Errors: `LearningError` ⊃ `FeaturizerUnavailable`, `PolicyFormatError`, `SpecError`.
"""

from agent_lightning.learning.candidates import IncrementalCandidate
from agent_lightning.learning.errors import (
    FeaturizerUnavailable,
    LearningError,
    PolicyFormatError,
    SpecError,
)
from agent_lightning.learning.exploration import (
    EpsilonGreedy,
    Exploration,
    Greedy,
    Softmax,
    SquareCB,
    Thompson,
    make_exploration,
)
from agent_lightning.learning.featurizers import (
    Featurizer,
    HashingFeaturizer,
    MiniLMFeaturizer,
    StaticEmbeddingFeaturizer,
    UnionFeaturizer,
    action_text,
    make_featurizer,
    register_featurizer,
)
from agent_lightning.learning.learners import (
    IWRegression,
    KNNMemory,
    Learner,
    LinUCB,
    make_learner,
)
from agent_lightning.learning.ope import (
    Estimate,
    direct_method,
    doubly_robust,
    evaluate,
    ips,
    snips,
)
from agent_lightning.learning.policy import Policy, UniformPolicy, load_policy, make_policy
from agent_lightning.learning.simulation import (
    BenchmarkResult,
    DecisionBackend,
    InProcessBackend,
    load_intent_csv,
    run_intent_benchmark,
)
from agent_lightning.learning.types import Action, Context, Decision, LoggedDecision

__all__ = [
    "Action",
    "BenchmarkResult",
    "Context",
    "Decision",
    "DecisionBackend",
    "EpsilonGreedy",
    "Estimate",
    "Exploration",
    "Featurizer",
    "FeaturizerUnavailable",
    "Greedy",
    "HashingFeaturizer",
    "IWRegression",
    "InProcessBackend",
    "IncrementalCandidate",
    "KNNMemory",
    "Learner",
    "LearningError",
    "LinUCB",
    "LoggedDecision",
    "MiniLMFeaturizer",
    "Policy",
    "PolicyFormatError",
    "Softmax",
    "SpecError",
    "SquareCB",
    "StaticEmbeddingFeaturizer",
    "Thompson",
    "UniformPolicy",
    "UnionFeaturizer",
    "action_text",
    "direct_method",
    "doubly_robust",
    "evaluate",
    "ips",
    "load_intent_csv",
    "load_policy",
    "make_exploration",
    "make_featurizer",
    "make_learner",
    "make_policy",
    "register_featurizer",
    "run_intent_benchmark",
    "snips",
]
