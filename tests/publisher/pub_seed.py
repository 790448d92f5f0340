"""Shared seeding for the publisher tests: a policy with real learned versions, and traffic.

Traffic goes through the real ingestion pipeline, as a runtime's recorder would send it:
decisions naming the policy version that acted, then rewards for them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import Api, make_api

from agent_lightning.config import Settings
from agent_lightning.ingestion import DataIngestionPipeline
from agent_lightning.learning import Action, LoggedDecision, make_policy
from agent_lightning.security.audit import Actor
from agent_lightning.store import Policy, PolicyVersion, Store, new_id

APP = "acme"
POLICY = "support"
ADMIN = Actor("alice", "client", APP)
ACTIONS = [{"id": "reply"}, {"id": "fetch_kb"}, {"id": "escalate"}]


def _artifact(seed: int, learn: int) -> bytes:
    """A real learned policy: `learn` logged examples make the versions differ in parameters."""
    policy = make_policy({"featurizer": "hashing", "learner": "linucb", "seed": seed})
    actions = tuple(Action(a["id"]) for a in ACTIONS)
    rng = random.Random(seed)
    examples = [
        LoggedDecision(
            {"text": f"my printer {i} is broken"},
            actions,
            "reply" if i % 2 else "fetch_kb",
            0.5,
            reward=float(rng.random() < 0.5),
        )
        for i in range(learn)
    ]
    return (policy.learn(examples) if examples else policy).to_bytes()


def seed_policy(store: Store, app_id: str = APP, name: str = POLICY, versions: int = 3) -> Policy:
    """A policy with `versions` learned versions, each the parent of the next; v1 is live."""
    store.ensure_app(app_id)
    policy = store.create_policy(
        Policy(id=new_id(), app_id=app_id, name=name, decision_point="intent", spec={})
    )
    for i in range(versions):
        store.add_policy_version(
            PolicyVersion(
                id=new_id(),
                policy_id=policy.id,
                parent_version=i or None,
                artifact=_artifact(i, 10 * i),
                metrics={"gate": {"lower_bound": 0.5 + 0.05 * i}, "examples": 10 * i},
                notes=f"version {i + 1}",
                created_by="trainer",
            ),
            make_live=i == 0,
        )
    return store.get_policy(app_id, name)


@contextmanager
def publisher_api(database_url: str, tmp_path: Path, versions: int = 3) -> Iterator[Api]:
    """The real app on `database_url`, with `seed_policy(versions=...)` already in the store."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
        token_burst=1000,
        token_rate=1000.0,
    )
    store = Store(database_url)
    seed_policy(store, versions=versions)
    made = make_api(settings, store)
    try:
        yield made
    finally:
        made.client.close()
        store.close()


def record(
    store: Store,
    version: int,
    n: int,
    *,
    p_success: float,
    seed: int,
    prefix: str,
    app_id: str = APP,
    policy: str = POLICY,
    attributes: dict[str, Any] | None = None,
    action: str = "reply",
) -> list[str]:
    """`n` decisions of `version`, each rewarded 1 with probability `p_success`, else 0."""
    pipeline = DataIngestionPipeline(store)
    rng = random.Random(seed)
    decisions = [
        {
            "id": f"{prefix}-{i}",
            "decision_point": "intent",
            "actions": ACTIONS,
            "action_id": action,
            "propensity": 0.5,
            "policy_name": policy,
            "policy_version": version,
            "user_id": f"{prefix}-user-{i}",
            "attributes": dict(attributes or {}),
        }
        for i in range(n)
    ]
    result = pipeline.ingest_decisions(app_id, decisions)
    assert not result.rejected, result.rejected[:1]
    rewards = [
        {"decision_id": d["id"], "value": 1.0 if rng.random() < p_success else 0.0}
        for d in decisions
    ]
    result = pipeline.ingest_rewards(app_id, rewards)
    assert not result.rejected, result.rejected[:1]
    return [d["id"] for d in decisions]


def sse_events(response: Any) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream (an httpx streaming response)."""
    event, data = None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and event:
            yield event, "\n".join(data)
            event, data = None, []
