"""DecisionService: the serving path of the loop.

A decide call finds the policy registered for its decision point, asks the version that should
serve it (the live version, or the one a rollout assigns) for a probability over the candidate
actions, samples one, and logs the decision with that probability (its propensity) through the
ingestion pipeline, so it can be learned from and evaluated later. With no policy yet, the choice
is uniform at random: still a valid, learnable log.

Loaded versions are cached by (policy id, version); versions are immutable, so the cache never
needs invalidation, only bounding. Training runs elsewhere and never blocks this path.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_lightning.ingestion import DataIngestionPipeline, DecisionIn, RankRequest
from agent_lightning.store import Conflict, NotFound, Policy, Store, artifact_pruned_message


@dataclass(frozen=True)
class DecisionOutcome:
    decision_id: str
    action_id: str
    propensity: float
    probabilities: dict[str, float]
    policy_name: str | None
    policy_version: int | None
    status: str = "created"

    @classmethod
    def stored(cls, decision: Any) -> DecisionOutcome:
        """The outcome of a decision already stored (a retry gets it back, not a new sample)."""
        return cls(
            decision.id,
            decision.action_id,
            decision.propensity,
            dict(decision.probabilities),
            decision.policy_name,
            decision.policy_version,
            "duplicate",
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "action_id": self.action_id,
            "propensity": self.propensity,
            "probabilities": self.probabilities,
            "policy": {"name": self.policy_name, "version": self.policy_version},
        }


# (app_id, policy row, request) -> version number to serve; the UpdatePublisher plugs in here.
VersionSelector = Callable[[str, Policy, RankRequest], "int | None"]


class DecisionService:
    def __init__(
        self,
        store: Store,
        pipeline: DataIngestionPipeline,
        *,
        seed: int | None = None,
        cache_size: int = 64,
        version_selector: VersionSelector | None = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.cache_size = cache_size
        self.version_selector = version_selector
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], Any] = OrderedDict()
        # Which policy serves a decision point: looked up at most once a second per point, so a
        # promotion or rollback reaches every decision within a second (or at once, in-process,
        # through `invalidate`).
        self.policy_ttl = 1.0
        self._policies: dict[tuple[str, str], tuple[float, Policy | None]] = {}

    def invalidate(self, app_id: str | None = None) -> None:
        with self._lock:
            if app_id is None:
                self._policies.clear()
            else:
                for key in [k for k in self._policies if k[0] == app_id]:
                    del self._policies[key]

    def serving_policy(self, app_id: str, decision_point: str) -> Policy | None:
        key = (app_id, decision_point)
        now = time.monotonic()
        with self._lock:
            hit = self._policies.get(key)
            if hit and hit[0] > now:
                return hit[1]
        policy = self.store.policy_for_decision_point(app_id, decision_point)
        with self._lock:
            if len(self._policies) > 10_000:
                self._policies.clear()
            self._policies[key] = (now + self.policy_ttl, policy)
        return policy

    def load_version(self, policy: Policy, version: int) -> Any:
        """The learned policy object of one version (cached; versions never change)."""
        key = (policy.id, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        row = self.store.get_policy_version(policy.app_id, policy.name, version)
        if row.artifact_pruned_at is not None:
            # Never answer with an untrained policy in its place. Retention keeps the live
            # version's and running rollouts' artifacts, so this means a race or a hand edit.
            raise Conflict(artifact_pruned_message(policy.name, version, row.artifact_pruned_at))
        model = None
        if row.artifact:
            from agent_lightning.learning import Policy as LearnedPolicy

            model = LearnedPolicy.from_bytes(row.artifact)
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return model

    def prime(self, policy_id: str, version: int, model: Any) -> None:
        """Put a version the caller already holds in memory into the cache (saves a load)."""
        with self._lock:
            self._cache[(policy_id, version)] = model
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def decide(self, app_id: str, request: RankRequest) -> DecisionOutcome:
        if request.id is not None:
            # A retried decide returns the decision already made, not a fresh sample.
            try:
                return self._stored(app_id, request)
            except NotFound:
                pass
        policy = self.serving_policy(app_id, request.decision_point)
        version = None
        if policy is not None:
            version = policy.live_version
            if self.version_selector is not None:
                version = self.version_selector(app_id, policy, request)
        model = self.load_version(policy, version) if policy and version else None

        excluded = set(request.exclude)
        candidates = [a for a in request.actions if a.id not in excluded]
        if model is None:
            probabilities = {a.id: 1.0 / len(candidates) for a in candidates}
            with self._lock:
                chosen = self._rng.choice(candidates).id
        else:
            probabilities, chosen = self._ask(model, request)

        # The decision is logged over the actions it could choose: learning and off-policy
        # evaluation then judge the policy that was served (an excluded action had no chance,
        # and counting it would credit the policy with a choice it could not make).
        attributes = request.attributes
        if excluded:
            gone = [a.id for a in request.actions if a.id in excluded]
            attributes = {**attributes, "excluded": gone[:100], "excluded_count": len(gone)}
        record = DecisionIn(
            id=request.id,
            decision_point=request.decision_point,
            context=request.context,
            actions=candidates,
            action_id=chosen,
            propensity=max(probabilities[chosen], 1e-12),
            probabilities=probabilities,
            policy_name=policy.name if policy else None,
            policy_version=version if model is not None else None,
            session_id=request.session_id,
            user_id=request.user_id,
            attributes=attributes,
        )
        result = self.pipeline.ingest_decisions(app_id, [record])
        if result.rejected:
            rejected = result.rejected[0]
            if rejected.reason == "id_conflict" and request.id is not None:
                # A concurrent retry of the same decide won the race: answer with its decision.
                return self._stored(app_id, request)
            raise DecisionRejected(rejected.reason, rejected.message)
        accepted = result.accepted[0]
        return DecisionOutcome(
            accepted.id,
            chosen,
            record.propensity,
            probabilities,
            record.policy_name,
            record.policy_version,
            accepted.status,
        )

    def _stored(self, app_id: str, request: RankRequest) -> DecisionOutcome:
        done = self.store.get_record("decisions", app_id, request.id)
        # A retry asks the same question. The same id at another decision point, or over other
        # actions, is another decision: answering with the stored one could name an action the
        # caller did not offer.
        excluded = set(request.exclude)
        offered = [a.id for a in request.actions if a.id not in excluded]
        if (
            done.decision_point != request.decision_point
            or [a.get("id") for a in done.actions] != offered
        ):
            raise DecisionRejected(
                "id_conflict",
                f"decision id {request.id!r} is already used by a decision at "
                f"{done.decision_point!r} over other actions; a retry sends the same request, "
                "a new decision needs a new id",
            )
        return DecisionOutcome.stored(done)

    def _ask(self, model: Any, request: RankRequest) -> tuple[dict[str, float], str]:
        from agent_lightning.learning import Action

        actions = [
            Action(id=a.id, description=a.description, features=a.features or None)
            for a in request.actions
        ]
        context = request.context.model_dump()
        with self._lock:
            seed = self._rng.getrandbits(63)
        decision = model.decide(context, actions, exclude=tuple(request.exclude), seed=seed)
        return dict(decision.probabilities), decision.action_id


class DecisionRejected(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


__all__ = ["DecisionOutcome", "DecisionRejected", "DecisionService", "NotFound"]
