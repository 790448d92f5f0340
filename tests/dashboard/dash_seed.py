"""Synthetic but realistic data for the dashboard tests: a support bot that gets better.

Telemetry goes through the real `DataIngestionPipeline` (so validation and PII redaction are the
production ones); afterwards the rows' `created_at` are spread over the past hours, which the
pipeline cannot do (it stamps the arrival time). Versions, tasks and promotions are written
through the store and the audit log the way the learning controller and the API write them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from agent_lightning.ingestion import DataIngestionPipeline
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import (
    Decision,
    Event,
    Policy,
    PolicyVersion,
    Reward,
    Store,
    Task,
    new_id,
    utcnow,
)

INTENTS = [
    "card_arrival",
    "lost_or_stolen_card",
    "exchange_rate",
    "transfer_timing",
    "pending_card_payment",
    "top_up_failed",
    "cash_withdrawal_charge",
    "verify_identity",
    "refund_not_showing_up",
    "escalate",
]
CARD_NUMBER = "4111 1111 1111 1111"
PII_SESSION = "chat-6"  # the first conversation with a card number (n % 37 == 5)
EMAIL = "jane.doe@example.com"
# Resolution probability of each version: the learning curve the data should show.
QUALITY = {1: 0.38, 2: 0.52, 3: 0.66, 4: 0.74}


@dataclass
class Seeded:
    app_id: str
    policy: str
    sessions: list[str] = field(default_factory=list)
    pii_session: str = ""
    live_version: int = 4


def _estimate(value: float, half: float, n: int) -> dict[str, Any]:
    return {
        "value": value,
        "ci_low": value - half,
        "ci_high": value + half,
        "n": n,
        "ess": n * 0.8,
        "level": 0.95,
    }


def _metrics(candidate: float, baseline: float, n: int, passed: bool, shape: str) -> dict:
    gate = {
        "estimator": "snips",
        "candidate_ci_low": candidate - 0.05,
        "live_value": baseline,
        "passed": passed,
    }
    if shape == "per_estimator":  # the controller's original shape: several estimators
        ope: dict[str, Any] = {
            "candidate": {
                "snips": _estimate(candidate, 0.05, n),
                "ips": _estimate(candidate + 0.01, 0.08, n),
            },
            "baseline": {
                "snips": _estimate(baseline, 0.04, n),
                "ips": _estimate(baseline, 0.07, n),
            },
        }
    else:  # `learning.ope.evaluate`: one estimator, with the difference
        ope = {
            "estimator": "snips",
            "n": n,
            "candidate": _estimate(candidate, 0.05, n),
            "baseline": _estimate(baseline, 0.04, n),
            "difference": _estimate(candidate - baseline, 0.06, n),
        }
    return {"train": n * 4, "held_out": n, "ope": ope, "gate": gate}


def seed(
    store: Store,
    app_id: str = "support-bot",
    *,
    sessions: int = 240,
    hours: float = 20.0,
    seed_value: int = 7,
) -> Seeded:
    """A policy with four versions, their learning tasks, and `sessions` conversations."""
    rng = random.Random(seed_value)
    store.ensure_app(app_id)
    audit = AuditLog(store)
    operator = Actor("ops-admin", "client", app_id)
    learner = Actor("system", "system")
    policy = store.create_policy(
        Policy(
            id=new_id(),
            app_id=app_id,
            name="intents",
            decision_point="intent",
            description="which banking intent handles a customer message",
            spec={"featurizer": "hashing"},
            created_by="ops-admin",
        )
    )
    audit.record(operator, "policy.create", "policy", "intents", app_id=app_id, after={})
    store.add_policy_version(
        PolicyVersion(
            id=new_id(),
            policy_id=policy.id,
            artifact=b"v1",
            notes="initial version from the spec",
            created_by="ops-admin",
        ),
        make_live=True,
    )
    audit.record(
        operator,
        "policy_version.create",
        "policy_version",
        "intents@1",
        app_id=app_id,
        after={"version": 1, "parent": None, "live": True},
    )
    # Tasks: v2, v3, v4 registered; one candidate short of the gate; one failure.
    plan = [
        ("registered", 2, 0.52, 0.38, "per_estimator"),
        ("not_passed", None, 0.55, 0.52, "single"),
        ("registered", 3, 0.66, 0.52, "single"),
        ("failed", None, 0.0, 0.0, "single"),
        ("registered", 4, 0.74, 0.66, "single"),
    ]
    now = utcnow()
    for i, (outcome, version, cand, base, shape) in enumerate(plan):
        metrics = _metrics(cand, base, 60 + 20 * i, outcome == "registered", shape)
        result: dict[str, Any] = {"policy": "intents", "examples": 300 + 50 * i}
        status, error = "succeeded", None
        if outcome == "registered":
            store.add_policy_version(
                PolicyVersion(
                    id=new_id(),
                    policy_id=policy.id,
                    parent_version=version - 1,
                    artifact=f"v{version}".encode(),
                    data_range={"count": 300 + 50 * i, "from_pk": 1, "to_pk": 100},
                    data_hash=f"{version:064x}",
                    metrics=metrics,
                    notes="passed the off-policy gate",
                    created_by="system",
                ),
                make_live=True,
            )
            audit.record(
                learner,
                "policy_version.create",
                "policy_version",
                f"intents@{version}",
                app_id=app_id,
                after={"version": version, "parent": version - 1, "live": True},
            )
            result.update(registered=True, version=version, live=True, metrics=metrics)
            result["parent_version"] = version - 1
        elif outcome == "not_passed":
            result.update(registered=False, metrics=metrics, reason="lower bound below live")
        else:
            status, error = "failed", "TaskError: fewer than 20 held-out decisions"
        at = now - timedelta(hours=hours - 3 * i)
        store.create_task(
            Task(
                id=f"task-{i + 1}",
                app_id=app_id,
                kind="learn",
                params={"task": "learn", "policy": "intents"},
                status=status,
                result=result if status == "succeeded" else {},
                error=error,
                created_by="system",
                created_at=at,
                started_at=at,
                finished_at=at + timedelta(seconds=2),
            )
        )

    pipeline = DataIngestionPipeline(store)
    actions = [{"id": name, "description": name.replace("_", " ")} for name in INTENTS]
    events, decisions, rewards = [], [], []
    out = Seeded(app_id=app_id, policy="intents")
    for n in range(sessions):
        share = n / sessions
        version = 1 if share < 0.25 else 2 if share < 0.5 else 3 if share < 0.75 else 4
        session = f"chat-{n + 1}"
        user = f"customer-{n % 40}"
        truth = rng.choice(INTENTS[:-1])
        text = f"Question about {truth.replace('_', ' ')}."
        if n % 37 == 5:
            text += f" My card is {CARD_NUMBER}."
            out.pii_session = out.pii_session or session
        elif n % 37 == 11:
            text += f" Email me at {EMAIL}"
        resolved = rng.random() < QUALITY[version]
        chosen = truth if resolved else ("escalate" if rng.random() < 0.2 else rng.choice(INTENTS))
        if chosen == truth and not resolved:
            resolved = True
        probs = {a: 0.02 for a in INTENTS}
        probs[chosen] = 1.0 - 0.02 * (len(INTENTS) - 1)
        decision_id = f"dec-{n + 1}"
        events.append(
            {
                "id": f"ev-{n + 1}",
                "session_id": session,
                "user_id": user,
                "text": text,
                "intent_prediction": chosen,
                "confidence": probs[chosen],
                "feedback_score": 1.0 if resolved else 0.0,
            }
        )
        decisions.append(
            {
                "id": decision_id,
                "decision_point": "intent",
                "session_id": session,
                "user_id": user,
                "context": {"text": text},
                "actions": actions,
                "action_id": chosen,
                "propensity": probs[chosen],
                "probabilities": probs,
                "policy_name": "intents",
                "policy_version": version,
            }
        )
        rewards.append({"id": f"rw-{n + 1}", "decision_id": decision_id, "value": float(resolved)})
        out.sessions.append(session)
    for start in range(0, sessions, 500):
        assert not pipeline.ingest_events(app_id, events[start : start + 500]).rejected
        assert not pipeline.ingest_decisions(app_id, decisions[start : start + 500]).rejected
        assert not pipeline.ingest_rewards(app_id, rewards[start : start + 500]).rejected
    # Spread the conversations over the past hours (oldest first), a few seconds apart inside.
    with store.session() as s:
        for n in range(sessions):
            at = now - timedelta(hours=hours * (1 - n / sessions))
            for model, record_id, offset in (
                (Event, f"ev-{n + 1}", 0),
                (Decision, f"dec-{n + 1}", 1),
                (Reward, f"rw-{n + 1}", 30),
            ):
                stamp = at + timedelta(seconds=offset)
                values: dict[str, Any] = {"created_at": stamp}
                if model is Event:
                    values["occurred_at"] = stamp
                s.execute(
                    update(model)
                    .where(model.app_id == app_id, model.id == record_id)
                    .values(**values)
                )
    # An operator rolled v3 back once, then promoted v4 again: history with a reason.
    store.set_live_version(app_id, "intents", 3)
    audit.record(
        operator,
        "policy.set_live",
        "policy",
        "intents",
        app_id=app_id,
        before={"live_version": 4},
        after={"live_version": 3, "reason": "escalations doubled after v4"},
    )
    store.set_live_version(app_id, "intents", 4)
    audit.record(
        operator,
        "policy.set_live",
        "policy",
        "intents",
        app_id=app_id,
        before={"live_version": 3},
        after={"live_version": 4, "reason": "false alarm: upstream outage"},
    )
    assert out.pii_session == PII_SESSION or sessions <= 5
    return out


# -- rollouts, through the publisher -----------------------------------------------------------

CANARY_GUARDRAILS = [
    {"metric": "mean_reward", "max_drop": 0.1},
    {"metric": "resolution_rate", "max_drop": 0.1},
    {"metric": "escalation_rate", "max_drop": 0.1},
    {"metric": "latency_p99", "max_drop": 300.0},
]


def arm_traffic(
    store: Store,
    app_id: str,
    policy: str,
    version: int,
    n: int,
    *,
    p_success: float,
    seed_value: int,
    prefix: str,
    latency_ms: float = 180.0,
    actions: list[dict[str, Any]] | None = None,
    context: dict[str, Any] | None = None,
) -> list[str]:
    """`n` decisions of one rollout arm, as a runtime's recorder sends them, then their rewards.

    Each decision is rewarded 1 with probability `p_success` (else 0), names the version that
    acted, and carries a latency around `latency_ms`, so every guardrail has data.
    """
    rng = random.Random(seed_value)
    actions = actions or [{"id": name} for name in INTENTS]
    decisions = []
    for i in range(n):
        chosen = actions[rng.randrange(len(actions))]["id"]
        decisions.append(
            {
                "id": f"{prefix}-{i}",
                "decision_point": "intent",
                "session_id": f"{prefix}-s{i}",
                "user_id": f"{prefix}-u{i}",
                "context": dict(context or {"text": "Where is my card?"}),
                "actions": actions,
                "action_id": chosen,
                "propensity": 1.0 / len(actions),
                "policy_name": policy,
                "policy_version": version,
                "attributes": {"latency_ms": round(latency_ms * (0.6 + 0.8 * rng.random()), 1)},
            }
        )
    pipeline = DataIngestionPipeline(store)
    assert not pipeline.ingest_decisions(app_id, decisions).rejected
    rewards = [
        {"decision_id": d["id"], "value": 1.0 if rng.random() < p_success else 0.0}
        for d in decisions
    ]
    assert not pipeline.ingest_rewards(app_id, rewards).rejected
    return [d["id"] for d in decisions]


@dataclass
class Canaries:
    rolled_back: str  # the first canary's id: its guardrails rolled it back automatically
    running: str  # the second canary's id: one step passed, now at 25%
    baseline: int
    candidate: int


def seed_canaries(store: Store, app_id: str = "support-bot", policy: str = "intents") -> Canaries:
    """Two canaries through the publisher's RolloutManager, against the live version.

    The first (v5) resolves far worse than the live version: its evaluation rolls it back with
    the guardrail's reason. The second (v6) is as good as live: one evaluation advances it from
    5% to 25%, and some more traffic arrives in the new step. Nothing here writes rollout rows.
    """
    from agent_lightning.publisher.rollouts import RolloutManager

    audit = AuditLog(store)
    manager = RolloutManager(store, audit)
    operator = Actor("ops-admin", "client", app_id)
    row = store.get_policy(app_id, policy)
    baseline = row.live_version
    assert baseline is not None
    candidates = []
    for notes in ("retrained on last week's traffic", "retrained with the fixed reward"):
        version = store.add_policy_version(
            PolicyVersion(
                id=new_id(),
                policy_id=row.id,
                parent_version=baseline,
                artifact=notes.encode(),
                notes=notes,
                created_by="system",
            ),
            make_live=False,
        )
        candidates.append(version.version)
    first = manager.start(
        app_id,
        operator,
        policy=policy,
        candidate_version=candidates[0],
        min_decisions_per_step=60,
        guardrails=CANARY_GUARDRAILS,
        reason="nightly model",
    )
    arm_traffic(store, app_id, policy, candidates[0], 80, p_success=0.2, seed_value=1, prefix="c1")
    arm_traffic(store, app_id, policy, baseline, 240, p_success=0.8, seed_value=2, prefix="b1")
    assert manager.evaluate(app_id, first.id).action == "rollback"

    second = manager.start(
        app_id,
        operator,
        policy=policy,
        candidate_version=candidates[1],
        min_decisions_per_step=60,
        guardrails=CANARY_GUARDRAILS,
        reason="second try with the fixed reward",
    )
    arm_traffic(store, app_id, policy, candidates[1], 70, p_success=0.75, seed_value=3, prefix="c2")
    arm_traffic(store, app_id, policy, baseline, 260, p_success=0.72, seed_value=4, prefix="b2")
    assert manager.evaluate(app_id, second.id).action == "advance"
    arm_traffic(store, app_id, policy, candidates[1], 24, p_success=0.75, seed_value=5, prefix="c3")
    return Canaries(first.id, second.id, baseline, candidates[1])
