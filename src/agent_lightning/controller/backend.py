"""PlatformBackend: the learning benchmark and the demo, driven through the real platform.

Each decide goes through `DecisionService` (the code behind `POST /v1/decisions`: live version,
propensity, PII redaction, logged and committed), each reward through the ingestion pipeline
(the code behind `POST /v1/rewards`), and learning through `LearningController` tasks (the code
behind `POST /v1/tasks`): versions are registered only past the off-policy gate, exactly as in
production. Only the HTTP framing is skipped, so the benchmark measures learning, not JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_lightning.controller.controller import LearningController, LearnSettings
from agent_lightning.ingestion import ActionIn, Context, DataIngestionPipeline, RankRequest
from agent_lightning.policy_engine import DecisionService
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import Policy, PolicyVersion, Store, new_id


class PlatformBackend:
    def __init__(
        self,
        store: Store,
        spec: dict[str, Any],
        *,
        app_id: str = "bench",
        policy_name: str = "intents",
        decision_point: str = "intent",
        retrain_every: int = 250,
        seed: int = 0,
        learn_settings: LearnSettings = LearnSettings(),
        reward_batch: int = 100,
    ) -> None:
        from agent_lightning.learning import make_policy

        self.store = store
        self.app_id = app_id
        self.policy_name = policy_name
        self.decision_point = decision_point
        self.retrain_every = retrain_every
        self.actor = Actor("benchmark", "system", app_id)
        store.ensure_app(app_id)
        store.update_app(app_id, reward_wait_seconds=86_400.0, reward_min=0.0, reward_max=1.0)
        self.pipeline = DataIngestionPipeline(store, max_batch=10_000)
        self.decisions = DecisionService(store, self.pipeline, seed=seed)
        self.audit = AuditLog(store)
        self.controller = LearningController(
            store,
            self.audit,
            settings=learn_settings,
            every_decisions=None,
            every_seconds=None,
            on_version=lambda app, _name, _version: self.decisions.invalidate(app),
            version_cache=self.decisions,
        )
        initial = make_policy(spec)
        policy = store.create_policy(
            Policy(
                id=new_id(),
                app_id=app_id,
                name=policy_name,
                decision_point=decision_point,
                spec=spec,
                created_by=self.actor.name,
            )
        )
        store.add_policy_version(
            PolicyVersion(
                id=new_id(),
                policy_id=policy.id,
                artifact=initial.to_bytes(),
                notes="initial version: warm start, nothing learned yet",
                created_by=self.actor.name,
            ),
            make_live=True,
        )
        self._since_learn = 0
        self.tasks: list[dict[str, Any]] = []
        # Rewards are sent in batches, as the SDK's buffered mode does (`POST /v1/rewards`
        # takes a list): every batch goes through the same validation and is committed before
        # `flush` returns, and a learning task always starts after a flush, so it sees every
        # reward given so far.
        self.reward_batch = max(1, int(reward_batch))
        self._rewards: list[dict[str, Any]] = []

    @staticmethod
    def _actions(actions: Sequence[Any]) -> list[ActionIn]:
        out = []
        for action in actions:
            features = dict(getattr(action, "features", None) or {})
            out.append(
                ActionIn(
                    id=action.id, description=getattr(action, "description", ""), features=features
                )
            )
        return out

    def decide(self, context: dict[str, Any], actions: Sequence[Any]) -> tuple[str, str, dict]:
        request = RankRequest(
            decision_point=self.decision_point,
            context=Context(**context),
            actions=self._actions(actions),
        )
        outcome = self.decisions.decide(self.app_id, request)
        return outcome.decision_id, outcome.action_id, outcome.probabilities

    def reward(self, decision_id: str, value: float, correct_action_id: str | None = None) -> None:
        record: dict[str, Any] = {"decision_id": decision_id, "value": value, "source": "user"}
        if correct_action_id is not None:
            record["correct_action_id"] = correct_action_id
            record["source"] = "human_correction"
        self._rewards.append(record)
        self._since_learn += 1
        if len(self._rewards) >= self.reward_batch:
            self.flush()

    def flush(self) -> None:
        """Send the buffered rewards (one batch through the ingestion pipeline)."""
        batch, self._rewards = self._rewards, []
        for start in range(0, len(batch), self.pipeline.max_batch):
            result = self.pipeline.ingest_rewards(
                self.app_id, batch[start : start + self.pipeline.max_batch]
            )
            if result.rejected:
                raise RuntimeError(result.rejected[0].message)

    def maybe_learn(self) -> int | None:
        """Run a learning task every `retrain_every` rewards; the new live version, if any."""
        if self._since_learn < self.retrain_every:
            return None
        self._since_learn = 0
        self.flush()
        task = self.controller.run(
            self.app_id, {"task": "learn", "policy": self.policy_name}, actor=self.actor
        )
        self.tasks.append({"status": task.status, "result": task.result, "error": task.error})
        if task.status != "succeeded":
            raise RuntimeError(f"learning task failed: {task.error}")
        if task.result.get("registered"):
            return int(task.result["version"])
        return None

    def predict(self, context: dict[str, Any], actions: Sequence[Any]) -> str:
        """Greedy choice of the live version, not logged (for measuring accuracy)."""
        return self.predict_many([context], actions)[0]

    def predict_many(self, contexts: Sequence[dict[str, Any]], actions: Sequence[Any]) -> list[str]:
        """`predict` for many contexts at once (one load of the live version, batched scoring)."""
        self.flush()
        return list(self.live_policy().greedy_many(list(contexts), list(actions)))

    def live_policy(self) -> Any:
        policy = self.store.get_policy(self.app_id, self.policy_name)
        return self.decisions.load_version(policy, policy.live_version)

    def versions(self) -> list[PolicyVersion]:
        self.flush()
        return self.store.list_policy_versions(self.app_id, self.policy_name, limit=1000).items
