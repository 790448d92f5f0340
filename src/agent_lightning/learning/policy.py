"""Policy: a versioned, serialisable decision function for one decision point.

A `Policy` composes a featurizer (text -> vector), a warm-start prior (zero-shot similarity
between the context and each action's description, and/or a rule-based policy to imitate), a
learner (residual reward per action) and an exploration strategy (scores -> probabilities)::

    score(x, a) = prior(x, a) + learner(x, a)        prior = scale * <x, phi(a)> [+ rule bonus]
    P(a | x)    = exploration(scores)

A correction (the right action, named after the fact) also teaches the `hard_negatives` actions
the policy ranked highest that it was not: they are the ones it would wrongly choose next time.

Learning never happens in place on a live version: `candidate = live.clone(); candidate.learn(..)`.
`to_bytes()` / `Policy.from_bytes()` use a documented binary format (see `_serialize`), not
pickle. `make_policy(spec)` builds a policy from a plain dict.
"""

from __future__ import annotations

import copy
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from agent_lightning.learning import _serialize
from agent_lightning.learning.errors import PolicyFormatError, SpecError
from agent_lightning.learning.exploration import Exploration, Greedy, make_exploration
from agent_lightning.learning.featurizers import (
    Featurizer,
    HashingFeaturizer,
    action_text,
    make_featurizer,
)
from agent_lightning.learning.learners import Learner, make_learner
from agent_lightning.learning.types import (
    Action,
    Context,
    Decision,
    LoggedDecision,
    context_features,
    context_text,
)

Rules = Callable[[Context, Sequence[Action]], str]
WARM_STARTS = ("zero_shot", "rules", "none")


def _as_actions(actions: Iterable[Action | str]) -> list[Action]:
    out = [a if isinstance(a, Action) else Action(str(a)) for a in actions]
    if not out:
        raise SpecError("at least one action is required")
    ids = [a.id for a in out]
    if len(set(ids)) != len(ids):
        raise SpecError("action ids must be unique")
    return out


def _rng_from(seed: int | None, rng: np.random.Generator | None, own: np.random.Generator):
    if seed is not None:
        return np.random.default_rng(seed)
    return rng if rng is not None else own


class _Encoder:
    """Context/action -> feature row: featurized text plus a small hashed block of features."""

    def __init__(self, featurizer: Featurizer, structured_dim: int) -> None:
        self.featurizer = featurizer
        self.structured_dim = structured_dim
        self.sparse = featurizer.sparse
        self.dim = featurizer.dim + structured_dim
        self._action_rows: OrderedDict[tuple, Any] = OrderedDict()
        self._action_mats: OrderedDict[tuple, Any] = OrderedDict()
        self._context_rows: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.cache_size = 20000

    def _block(self, feats: Sequence[Mapping[str, float]]) -> np.ndarray:
        out = np.zeros((len(feats), self.structured_dim), dtype=np.float32)
        if self.structured_dim:
            for i, f in enumerate(feats):
                for name, value in f.items():
                    col = zlib.crc32(("f:" + str(name)).encode()) % self.structured_dim
                    out[i, col] += float(value)
        return out

    def encode(self, texts: Sequence[str], feats: Sequence[Mapping[str, float]]):
        T = self.featurizer.transform(list(texts))
        if not self.sparse:
            T = np.asarray(T, dtype=np.float32)
            return np.hstack([T, self._block(feats)]) if self.structured_dim else T
        T = sparse.csr_matrix(T, dtype=np.float32)
        if not self.structured_dim or not any(feats):
            # Same rows, wider matrix: no copy of the data.
            return sparse.csr_matrix((T.data, T.indices, T.indptr), shape=(T.shape[0], self.dim))
        B = self._block(feats)
        return sparse.hstack([T, sparse.csr_matrix(B)], format="csr", dtype=np.float32)

    def contexts(self, contexts: Sequence[Context]):
        texts = [context_text(c) for c in contexts]
        feats = [context_features(c) for c in contexts]
        if len(contexts) == 1 or not self.sparse:
            return self.encode(texts, feats)
        # Batches (evaluation, learning) reuse rows: featurizing text is the expensive part.
        keys = [(t, tuple(sorted(f.items()))) for t, f in zip(texts, feats, strict=True)]
        todo = [i for i, k in enumerate(keys) if k not in self._context_rows]
        if todo:
            M = self.encode([texts[i] for i in todo], [feats[i] for i in todo])
            for m, i in enumerate(todo):
                lo, hi = M.indptr[m], M.indptr[m + 1]
                self._context_rows[keys[i]] = (M.indices[lo:hi], M.data[lo:hi])
            while len(self._context_rows) > self.cache_size:
                self._context_rows.popitem(last=False)
        rows = [self._context_rows.get(k) for k in keys]
        if any(r is None for r in rows):  # evicted within this very batch: no cache
            return self.encode(texts, feats)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([r[0].shape[0] for r in rows])
        return sparse.csr_matrix(
            (np.concatenate([r[1] for r in rows]), np.concatenate([r[0] for r in rows]), indptr),
            shape=(len(rows), self.dim),
        )

    def actions(self, actions: Sequence[Action]):
        keys = tuple(a.key() for a in actions)
        hit = self._action_mats.get(keys)
        if hit is not None:
            self._action_mats.move_to_end(keys)
            return hit
        missing = [a for a in actions if a.key() not in self._action_rows]
        if missing:
            M = self.encode([action_text(a) for a in missing], [a.features or {} for a in missing])
            for i, a in enumerate(missing):
                self._action_rows[a.key()] = M[i : i + 1] if self.sparse else M[i]
            while len(self._action_rows) > 4096:  # bounded: drop the least recently added
                self._action_rows.popitem(last=False)
        rows = [self._action_rows[k] for k in keys]
        # Stored transposed, (dim, k), ready for X @ A.
        mat = sparse.vstack(rows, format="csr").T.tocsr() if self.sparse else np.vstack(rows).T
        self._action_mats[keys] = mat
        while len(self._action_mats) > 16:
            self._action_mats.popitem(last=False)
        return mat


def _dot_rows(X, AT) -> np.ndarray:
    """(n, k) matrix of <X_i, A_j>, given the transposed action matrix."""
    out = X @ AT
    if sparse.issparse(out):
        out = out.toarray()
    return np.asarray(out, dtype=np.float64)


def _upgrade_featurizer_config(config: Any) -> Any:
    """A saved featurizer config, with the values older releases implied for newer keys."""
    if isinstance(config, Mapping) and config.get("kind") == HashingFeaturizer.name:
        return {**HashingFeaturizer.LEGACY, **config}
    return config


class Policy:
    """See module docstring. Constructor arguments are public attributes of the same names."""

    kind = "policy"

    def __init__(
        self,
        featurizer: Featurizer | str | Mapping[str, Any] = "hybrid",
        learner: Learner | str | Mapping[str, Any] = "linucb",
        exploration: Exploration | str | Mapping[str, Any] = "squarecb",
        warm_start: str = "zero_shot",
        prior_scale: float = 1.0,
        rules: Rules | None = None,
        rule_weight: float = 1.0,
        structured_dim: int = 16,
        seed: int = 0,
        version: int = 0,
        metadata: Mapping[str, Any] | None = None,
        one_right_action: bool = False,
        hard_negatives: int = 3,
    ) -> None:
        if warm_start not in WARM_STARTS:
            raise SpecError(f"warm_start: must be one of {WARM_STARTS}, got {warm_start!r}")
        if warm_start == "rules" and rules is None:
            raise SpecError("warm_start: 'rules' needs a rules(context, actions) callable")
        if not 0 <= int(structured_dim) <= 4096:
            raise SpecError("structured_dim: must be in [0, 4096]")
        if not 0 <= int(hard_negatives) <= 64:
            raise SpecError("hard_negatives: must be in [0, 64]")
        self.featurizer = make_featurizer(featurizer)
        self.learner = make_learner(learner)
        self.exploration = make_exploration(exploration)
        self.warm_start = warm_start
        self.prior_scale = float(prior_scale)
        self.rules = rules
        self.rule_weight = float(rule_weight)
        self.structured_dim = int(structured_dim)
        self.seed = int(seed)
        self.version = int(version)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.one_right_action = bool(one_right_action)
        self.hard_negatives = int(hard_negatives)
        self._rng = np.random.default_rng(self.seed)
        self._encoder = _Encoder(self.featurizer, self.structured_dim)
        self._examples_seen = 0

    # -- scoring ------------------------------------------------------------------------------

    @property
    def examples_seen(self) -> int:
        """Number of logged decisions this policy (and its ancestors) learned from."""
        return self._examples_seen

    def _prior(self, X, contexts: Sequence[Context], actions: Sequence[Action]) -> np.ndarray:
        n, k = X.shape[0], len(actions)
        prior = np.zeros((n, k))
        if self.warm_start in ("zero_shot", "rules") and self.prior_scale:
            prior += self.prior_scale * _dot_rows(X, self._encoder.actions(actions))
        if self.rules is not None and self.warm_start == "rules":
            index = {a.id: j for j, a in enumerate(actions)}
            for i, ctx in enumerate(contexts):
                j = index.get(self.rules(ctx, actions))
                if j is not None:
                    prior[i, j] += self.rule_weight
        return prior

    def _scores(self, contexts: Sequence[Context], actions: Sequence[Action], optimistic: bool):
        X = self._encoder.contexts(contexts)
        ids = [a.id for a in actions]
        learned = self.learner.score(X, ids) if optimistic else self.learner.predict(X, ids)
        return self._prior(X, contexts, actions) + learned

    def _explore(self, contexts: Sequence[Context], actions: Sequence[Action]):
        """(scores, probabilities) for contexts over actions, widths included when needed."""
        X = self._encoder.contexts(contexts)
        ids = [a.id for a in actions]
        s = self._prior(X, contexts, actions) + self.learner.score(X, ids)
        return s, self._choice_probabilities(X, ids, s)

    def _choice_probabilities(self, X, ids: list[str], scores: np.ndarray) -> np.ndarray:
        """The exploration's probabilities for `scores`, with the learner's widths if needed."""
        widths = None
        width = getattr(self.learner, "width", None)
        if self.exploration.needs_widths and callable(width):
            widths = width(X, ids)
        return self.exploration.probabilities(scores, widths)

    def scores(self, contexts: Sequence[Context], actions: Sequence[Action | str]) -> np.ndarray:
        """Scores (n_contexts, n_actions) used for choosing, including any optimism bonus."""
        return self._scores(list(contexts), _as_actions(actions), optimistic=True)

    def predict_rewards(
        self, contexts: Sequence[Context], actions: Sequence[Action | str]
    ) -> np.ndarray:
        """Expected reward estimates in [0, 1] (prior + learned mean), shape (n, k)."""
        s = self._scores(list(contexts), _as_actions(actions), optimistic=False)
        return np.clip(s, 0.0, 1.0)

    def probabilities_and_rewards(
        self, contexts: Sequence[Context], actions: Sequence[Action | str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(probabilities(contexts, actions), predict_rewards(contexts, actions))`, featurizing
        and scoring once: off-policy evaluation of a candidate needs both on the same rows."""
        contexts, acts = list(contexts), _as_actions(actions)
        X = self._encoder.contexts(contexts)
        ids = [a.id for a in acts]
        prior = self._prior(X, contexts, acts)
        mean, score = self.learner.predict_and_score(X, ids)
        return self._choice_probabilities(X, ids, prior + score), np.clip(prior + mean, 0.0, 1.0)

    def probabilities(
        self,
        contexts: Sequence[Context],
        actions: Sequence[Action | str],
        exclude: Iterable[str] = (),
    ) -> np.ndarray:
        """Action probabilities (n, k) over `actions`; excluded actions get probability 0."""
        acts = _as_actions(actions)
        excluded = set(exclude)
        keep = [j for j, a in enumerate(acts) if a.id not in excluded]
        if not keep:
            raise SpecError("every action is excluded; nothing left to choose")
        out = np.zeros((len(contexts), len(acts)))
        kept = [acts[j] for j in keep]
        out[:, keep] = self._explore(list(contexts), kept)[1]
        return out

    def decide(
        self,
        context: Context,
        actions: Sequence[Action | str],
        exclude: Iterable[str] = (),
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> Decision:
        """Choose one action: probabilities for every non-excluded action, then one sample."""
        acts = _as_actions(actions)
        excluded = set(exclude)
        kept = [a for a in acts if a.id not in excluded]
        if not kept:
            raise SpecError("every action is excluded; nothing left to choose")
        s, P = self._explore([context], kept)
        p = P[0]
        gen = _rng_from(seed, rng, self._rng)
        j = int(
            min(np.searchsorted(np.cumsum(p), gen.random() * p.sum(), side="right"), len(p) - 1)
        )
        ids = [a.id for a in kept]
        return Decision(
            action_id=ids[j],
            probabilities={a: float(v) for a, v in zip(ids, p, strict=True)},
            scores={a: float(v) for a, v in zip(ids, s[0], strict=True)},
        )

    def greedy(
        self, context: Context, actions: Sequence[Action | str], exclude: Iterable[str] = ()
    ) -> str:
        """The best action by posterior mean (no exploration, no optimism)."""
        return self.greedy_many([context], actions, exclude)[0]

    def greedy_many(
        self,
        contexts: Sequence[Context],
        actions: Sequence[Action | str],
        exclude: Iterable[str] = (),
    ) -> list[str]:
        """`greedy` for a batch of contexts sharing one action set (fast for evaluation)."""
        acts = [a for a in _as_actions(actions) if a.id not in set(exclude)]
        if not acts:
            raise SpecError("every action is excluded; nothing left to choose")
        out: list[str] = []
        for start in range(0, len(contexts), 512):
            chunk = list(contexts[start : start + 512])
            s = self._scores(chunk, acts, optimistic=False)
            out.extend(acts[j].id for j in Greedy().probabilities(s).argmax(axis=1))
        return out

    # -- learning -----------------------------------------------------------------------------

    def learn(self, examples: Iterable[LoggedDecision]) -> Policy:
        """Learn from logged decisions in place and return self. Call it on a `clone()`.

        A bandit reward updates the logged action (weighted by 1/propensity for learners that
        importance-weight). A correction is a full label: reward 1 for the correct action and,
        when the chosen action was another one, reward 0 for it. With `one_right_action`
        (intent routing: exactly one action is right for a context) a reward of 1 is read as a
        correction naming the chosen action. For every labelled example, `hard_negatives` of
        the other actions the current policy scores highest also get reward 0: a label says
        they were wrong, and those are the ones that would be chosen in its place.
        """
        exs = list(examples)
        # (example index, action, reward, weight, observed): hard negatives are inferred.
        rows: list[tuple[int, Action, float, float, bool]] = []
        labelled: list[int] = []
        for i, ex in enumerate(exs):
            if not isinstance(ex, LoggedDecision):
                raise SpecError("learn() takes LoggedDecision objects")
            by_id = {a.id: a for a in ex.actions}
            r = ex.observed_reward
            if r is not None:
                rows.append((i, by_id[ex.action_id], r, 1.0 / float(ex.propensity), True))
            c = ex.correct_action_id
            if c is not None and c != ex.action_id:
                rows.append((i, by_id[c], 1.0, 1.0, True))
            if c is not None or (self.one_right_action and r is not None and r >= 1.0):
                labelled.append(i)
        if self.hard_negatives and labelled:
            rows.extend(self._hard_negative_rows(exs, labelled))
            # Each example's rows together, in log order: learners that keep only their newest
            # rows (KNNMemory) or learn in order (IWRegression) see them as they happened.
            rows.sort(key=lambda row: row[0])
        if not rows:
            return self
        X = self._encoder.contexts([ex.context for ex in exs])
        idx = np.asarray([r[0] for r in rows])
        Xr = X[idx]
        acts = [r[1] for r in rows]
        prior = np.zeros(len(rows))
        if self.warm_start in ("zero_shot", "rules") and self.prior_scale:
            A = self._encoder.actions(acts).T
            if sparse.issparse(Xr):
                dots = np.asarray(Xr.multiply(A).sum(axis=1)).ravel()
            else:
                dots = np.einsum("ij,ij->i", Xr, np.asarray(A), dtype=np.float64)
            prior += self.prior_scale * dots
        if self.rules is not None and self.warm_start == "rules":
            for n, (i, a, *_) in enumerate(rows):
                if self.rules(exs[i].context, exs[i].actions) == a.id:
                    prior[n] += self.rule_weight
        targets = np.asarray([r[2] for r in rows]) - prior
        weights = np.asarray([r[3] for r in rows])
        observed = np.asarray([r[4] for r in rows], dtype=bool)
        self.learner.learn(Xr, [a.id for a in acts], targets, weights, observed=observed)
        self._examples_seen += len(exs)
        return self

    def _hard_negative_rows(
        self, exs: list[LoggedDecision], labelled: list[int]
    ) -> list[tuple[int, Action, float, float, bool]]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i in labelled:
            groups.setdefault(tuple(a.id for a in exs[i].actions), []).append(i)
        out: list[tuple[int, Action, float, float, bool]] = []
        for idx in groups.values():
            acts = list(exs[idx[0]].actions)
            s = self._scores([exs[i].context for i in idx], acts, optimistic=False)
            order = np.argsort(-s, axis=1, kind="stable")
            for row, i in enumerate(idx):
                # The chosen action already has its reward row; the right one is not wrong.
                known = (exs[i].correct_action_id or exs[i].action_id, exs[i].action_id)
                wrong = [acts[j] for j in order[row] if acts[j].id not in known]
                out.extend((i, a, 0.0, 1.0, False) for a in wrong[: self.hard_negatives])
        return out

    def clone(self) -> Policy:
        """An independent copy: learning on it never changes this policy.

        The featurizer, its caches and the rules callable are shared (they are pure functions
        of their configuration); learned state, metadata and the RNG are copied.
        """
        twin = copy.copy(self)
        twin.learner = self.learner.clone()
        twin.exploration = copy.deepcopy(self.exploration)
        twin.metadata = copy.deepcopy(self.metadata)
        twin._rng = copy.deepcopy(self._rng)
        return twin

    # -- serialisation ------------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {
            "featurizer": self.featurizer.to_config(),
            "learner": self.learner.to_config(),
            "exploration": self.exploration.to_config(),
            "warm_start": self.warm_start,
            "prior_scale": self.prior_scale,
            "rule_weight": self.rule_weight,
            "structured_dim": self.structured_dim,
            "seed": self.seed,
            "one_right_action": self.one_right_action,
            "hard_negatives": self.hard_negatives,
        }

    def to_bytes(self) -> bytes:
        """Serialise (format: magic + version + checksum + JSON metadata + npz; no pickle)."""
        lmeta, larrays = self.learner.get_state()
        meta = {
            "kind": self.kind,
            "params": self.get_params(),
            "version": self.version,
            "metadata": self.metadata,
            "examples_seen": self._examples_seen,
            "learner_state": lmeta,
            "rng": self._rng.bit_generator.state,
        }
        return _serialize.dump(meta, {"learner/" + k: v for k, v in larrays.items()})

    @classmethod
    def from_bytes(cls, data: bytes, rules: Rules | None = None) -> Policy | UniformPolicy:
        """Load a policy written by `to_bytes` (a `UniformPolicy` too)."""
        meta, arrays = _serialize.load(data)
        kind = meta.get("kind")
        if kind == UniformPolicy.kind:
            return UniformPolicy._from_meta(meta)
        if kind != cls.kind:
            raise PolicyFormatError(f"the policy data has an unknown kind {kind!r}")
        try:
            params = dict(meta["params"])
            params["featurizer"] = _upgrade_featurizer_config(params.get("featurizer"))
            params.setdefault("hard_negatives", 0)  # written before hard negatives existed
            if params.get("warm_start") == "rules" and rules is None:
                raise PolicyFormatError(
                    "this policy was warm-started from rules; pass rules=... to from_bytes()"
                )
            policy = cls(**params, rules=rules, version=meta["version"], metadata=meta["metadata"])
            policy.learner.set_state(
                meta["learner_state"],
                {k[len("learner/") :]: v for k, v in arrays.items() if k.startswith("learner/")},
            )
            policy._examples_seen = int(meta.get("examples_seen", 0))
            policy._rng.bit_generator.state = meta["rng"]
        except PolicyFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyFormatError(f"the policy data is corrupt or inconsistent: {exc!r}") from exc
        return policy

    def __repr__(self) -> str:
        return (
            f"Policy(version={self.version}, featurizer={self.featurizer!r}, "
            f"learner={self.learner!r}, exploration={self.exploration!r}, "
            f"warm_start={self.warm_start!r})"
        )


class UniformPolicy:
    """Uniform random choice: what to serve before anything is learned."""

    kind = "uniform"

    def __init__(self, seed: int = 0, version: int = 0, metadata: Mapping[str, Any] | None = None):
        self.seed = int(seed)
        self.version = int(version)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._rng = np.random.default_rng(self.seed)

    def probabilities(
        self,
        contexts: Sequence[Context],
        actions: Sequence[Action | str],
        exclude: Iterable[str] = (),
    ) -> np.ndarray:
        acts = _as_actions(actions)
        keep = np.array([a.id not in set(exclude) for a in acts], dtype=np.float64)
        if not keep.any():
            raise SpecError("every action is excluded; nothing left to choose")
        return np.tile(keep / keep.sum(), (len(contexts), 1))

    def decide(
        self,
        context: Context,
        actions: Sequence[Action | str],
        exclude: Iterable[str] = (),
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> Decision:
        acts = [a for a in _as_actions(actions) if a.id not in set(exclude)]
        if not acts:
            raise SpecError("every action is excluded; nothing left to choose")
        gen = _rng_from(seed, rng, self._rng)
        j = int(gen.integers(len(acts)))
        p = 1.0 / len(acts)
        return Decision(
            action_id=acts[j].id,
            probabilities={a.id: p for a in acts},
            scores={a.id: 0.0 for a in acts},
        )

    def greedy(
        self, context: Context, actions: Sequence[Action | str], exclude: Iterable[str] = ()
    ) -> str:
        acts = [a for a in _as_actions(actions) if a.id not in set(exclude)]
        if not acts:
            raise SpecError("every action is excluded; nothing left to choose")
        return acts[0].id

    def greedy_many(self, contexts, actions, exclude=()) -> list[str]:
        return [self.greedy(c, actions, exclude) for c in contexts]

    def predict_rewards(self, contexts, actions) -> np.ndarray:
        return np.zeros((len(contexts), len(_as_actions(actions))))

    def learn(self, examples: Iterable[LoggedDecision]) -> UniformPolicy:
        """Nothing to learn; returns self."""
        return self

    def clone(self) -> UniformPolicy:
        return copy.deepcopy(self)

    def to_bytes(self) -> bytes:
        meta = {
            "kind": self.kind,
            "seed": self.seed,
            "version": self.version,
            "metadata": self.metadata,
            "rng": self._rng.bit_generator.state,
        }
        return _serialize.dump(meta, {})

    @classmethod
    def _from_meta(cls, meta: Mapping[str, Any]) -> UniformPolicy:
        try:
            p = cls(seed=meta["seed"], version=meta["version"], metadata=meta["metadata"])
            p._rng.bit_generator.state = meta["rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyFormatError(f"the policy data is corrupt or inconsistent: {exc!r}") from exc
        return p

    @classmethod
    def from_bytes(cls, data: bytes) -> UniformPolicy:
        policy = Policy.from_bytes(data)
        if not isinstance(policy, UniformPolicy):
            raise PolicyFormatError("the policy data holds a learned Policy, not a UniformPolicy")
        return policy

    def __repr__(self) -> str:
        return f"UniformPolicy(version={self.version})"


load_policy = Policy.from_bytes

_SPEC_KEYS = {
    "featurizer", "learner", "exploration", "warm_start", "seed", "structured_dim", "version",
    "metadata", "one_right_action", "hard_negatives",
}  # fmt: skip
# Keys a policy's spec may carry for whoever applies its choices (the gateway's prompt
# `variants`: the arms and what each does); the learner does not read them.
_CARRIED_KEYS = {"variants"}

DEFAULT_SPEC: dict[str, Any] = {
    "featurizer": "hybrid",
    "learner": {"kind": "linucb", "l2": 0.5},
    "exploration": {"kind": "squarecb", "gamma": 10000.0},
    "warm_start": "zero_shot",
    "seed": 0,
}


def make_policy(spec: Mapping[str, Any] | None = None, rules: Rules | None = None) -> Policy:
    """Build a `Policy` from a plain spec; unspecified keys take `DEFAULT_SPEC` values.

    Example: `{"featurizer": "hashing", "learner": "linucb",
    "exploration": {"kind": "squarecb", "gamma": 50}, "warm_start": "zero_shot", "seed": 0}`.
    `warm_start` is a name (`zero_shot`, `rules`, `none`) or `{"kind": ..., "scale": ...,
    "rule_weight": ...}`. `variants` (the gateway's prompt variants) is carried, not read.
    Invalid specs raise `SpecError` naming the bad key.
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError("policy spec must be a mapping")
    unknown = sorted(set(spec) - _SPEC_KEYS - _CARRIED_KEYS)
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown policy spec key; known: {sorted(_SPEC_KEYS)}")
    full = {**DEFAULT_SPEC, **spec}
    warm = full["warm_start"]
    scale, rule_weight = 1.0, 1.0
    if isinstance(warm, Mapping):
        extra = sorted(set(warm) - {"kind", "scale", "rule_weight"})
        if extra:
            raise SpecError(f"warm_start.{extra[0]}: unknown key")
        scale = float(warm.get("scale", 1.0))
        rule_weight = float(warm.get("rule_weight", 1.0))
        warm = warm.get("kind", "zero_shot")
    if warm not in WARM_STARTS:
        raise SpecError(f"warm_start: must be one of {WARM_STARTS}, got {warm!r}")
    if not isinstance(full["seed"], int) or isinstance(full["seed"], bool) or full["seed"] < 0:
        raise SpecError(f"seed: must be a non-negative integer, got {full['seed']!r}")
    return Policy(
        featurizer=full["featurizer"],
        learner=full["learner"],
        exploration=full["exploration"],
        warm_start=warm,
        prior_scale=scale,
        rules=rules,
        rule_weight=rule_weight,
        structured_dim=full.get("structured_dim", 16),
        seed=full["seed"],
        version=full.get("version", 0),
        metadata=full.get("metadata"),
        one_right_action=bool(full.get("one_right_action", False)),
        hard_negatives=_int_key(full, "hard_negatives", 3),
    )


def _int_key(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"{key}: must be an integer")
    return value
