"""RolloutManager: canaries, A/B tests, blue/green switches and feature flags, with guardrails.

Strategies (``kind``):

- ``canary``: the candidate serves ``steps[i]`` percent of units (default 5 → 25 → 50 → 100).
  Each step needs ``min_decisions_per_step`` candidate decisions with no guardrail regression
  before the next one; after the last step the candidate is promoted (made live).
- ``ab``: a fixed 50/50 split; concluded as soon as the always-valid interval of the difference in
  mean reward excludes zero (with at least ``min_decisions_per_step`` decisions per arm): the
  winner is live afterwards (candidate promoted, or the rollout ends keeping the baseline).
- ``blue_green``: every unit switches to the candidate at once; the baseline stays registered
  and live-able, so ``rollback`` is an instant switch back (also after promotion). Guardrails
  compare against the baseline's decisions of the day before the switch; after
  ``min_decisions_per_step`` decisions without regression the switch is committed (promoted).
- ``flag``: the candidate serves only a segment (``{attribute, values}`` matched against the
  decide call's attributes, or ``user_id`` / ``session_id``); never promoted automatically.

Every transition is a compare-and-set on the row's ``revision`` (so the background evaluator and
an operator, or two replicas, cannot both move a rollout), is appended to the rollout's history
with its evidence, is written to the audit log, and invalidates the serving caches. Pausing
freezes the share (users keep their arm) and stops advancing, but guardrails keep watching: a
regression still rolls a paused rollout back.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent_lightning.publisher.guardrails import (
    DEFAULT_GUARDRAILS,
    MIN_SAMPLES,
    RHO,
    ArmStats,
    Guardrail,
    ab_verdict,
    arm_stats,
    check_guardrails,
)
from agent_lightning.publisher.models import ACTIVE, KINDS, STATUSES, Rollout
from agent_lightning.security.audit import SYSTEM, Actor, AuditLog
from agent_lightning.store import (
    Conflict,
    Decision,
    NotFound,
    Policy,
    PolicyVersion,
    Store,
    artifact_pruned_message,
    new_id,
    outcome_settings,
    utcnow,
)

log = logging.getLogger("agent_lightning.publisher")

DEFAULT_STEPS: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
MAX_STEPS = 20
MAX_GUARDRAILS = 10
BLUE_GREEN_BASELINE_WINDOW = timedelta(days=1)
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"


class RolloutError(ValueError):
    """A rollout request that cannot be carried out as asked (the API answers 422)."""


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    from agent_lightning.store.store import as_utc

    return as_utc(value).isoformat()


def rollout_json(row: Rollout) -> dict[str, Any]:
    """A rollout as the API and the CLI show it."""
    return {
        "id": row.id,
        "policy": row.policy_name,
        "kind": row.kind,
        "status": row.status,
        "baseline_version": row.baseline_version,
        "candidate_version": row.candidate_version,
        "steps": list(row.steps or []),
        "step_index": row.step_index,
        "percent": float(row.percent),
        "min_decisions_per_step": row.min_decisions_per_step,
        "segment": row.segment,
        "salt": row.salt,
        "guardrails": list(row.guardrails or []),
        "alpha": row.alpha,
        "reason": row.reason,
        "created_by": row.created_by,
        "started_at": _ts(row.started_at),
        "step_started_at": _ts(row.step_started_at),
        "updated_at": _ts(row.updated_at),
        "ended_at": _ts(row.ended_at),
        "revision": row.revision,
        "history": list(row.history or []),
    }


def _target(row: Rollout) -> str:
    # "<policy>@..." so the dashboard's history groups rollout entries under their policy.
    return f"{row.policy_name}@rollout:{row.id}"


# -- validation -----------------------------------------------------------------------------


def validate_steps(kind: str, steps: Sequence[float] | None) -> list[float]:
    """The share schedule for a kind, with a message that says what is wrong."""
    if kind == "ab":
        if steps is not None and [float(s) for s in steps] != [50.0]:
            raise RolloutError("an A/B test splits 50/50: leave steps out (or give [50])")
        return [50.0]
    if kind == "blue_green":
        if steps is not None and [float(s) for s in steps] != [100.0]:
            raise RolloutError("a blue/green switch moves everyone at once: leave steps out")
        return [100.0]
    if steps is None:
        return [100.0] if kind == "flag" else list(DEFAULT_STEPS)
    values = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int | float):
            raise RolloutError(f"steps: {step!r} is not a number")
        value = float(step)
        if not math.isfinite(value) or not 0 < value <= 100:
            raise RolloutError(f"steps: each step is a percentage in (0, 100], got {step!r}")
        values.append(value)
    if not values:
        raise RolloutError("steps: give at least one percentage, e.g. [5, 25, 50, 100]")
    if len(values) > MAX_STEPS:
        raise RolloutError(f"steps: at most {MAX_STEPS} steps")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise RolloutError(f"steps must increase strictly, got {values}")
    if kind == "flag" and len(values) != 1:
        raise RolloutError("a feature flag has one share: steps=[percent of the segment]")
    return values


def validate_segment(segment: Mapping[str, Any] | None, kind: str) -> dict[str, Any] | None:
    import re

    if segment is None:
        if kind == "flag":
            raise RolloutError(
                "a feature flag needs a segment: {'attribute': 'plan', 'values': ['pro']}"
            )
        return None
    unknown = set(segment) - {"attribute", "values"}
    if unknown:
        raise RolloutError(f"segment: unknown field(s) {', '.join(sorted(unknown))}")
    attribute = segment.get("attribute")
    if not isinstance(attribute, str) or not re.match(ATTRIBUTE_PATTERN, attribute):
        raise RolloutError("segment.attribute: 1-100 characters of letters, digits, _.:-")
    values = segment.get("values")
    if not isinstance(values, list) or not values or len(values) > 1000:
        raise RolloutError("segment.values: a list of 1 to 1000 values")
    clean = []
    for value in values:
        if isinstance(value, dict | list) or value is None:
            raise RolloutError("segment.values: each value is a string or a number")
        text = str(value)
        if not text or len(text) > 200:
            raise RolloutError("segment.values: each value is 1 to 200 characters")
        clean.append(text)
    return {"attribute": attribute, "values": sorted(set(clean))}


def validate_guardrails(raw: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    items = list(DEFAULT_GUARDRAILS if raw is None else raw)
    if len(items) > MAX_GUARDRAILS:
        raise RolloutError(f"guardrails: at most {MAX_GUARDRAILS}")
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RolloutError(f"guardrails[{i}]: expected an object")
        try:
            parsed.append(Guardrail.parse(item).as_dict())
        except (TypeError, ValueError) as exc:
            raise RolloutError(f"guardrails[{i}]: {exc}") from None
    return parsed


# -- the manager ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation saw and did: `action` is none, advance, promote, rollback or abort."""

    rollout: Rollout
    action: str
    evidence: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "rollout": rollout_json(self.rollout),
            "evidence": self.evidence,
        }


class RolloutManager:
    """Starts, moves and ends rollouts; see the module docstring for the strategies."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        on_change: Callable[[str], None] | None = None,
        min_samples: int = MIN_SAMPLES,
        rho: float = RHO,
        blue_green_window: timedelta = BLUE_GREEN_BASELINE_WINDOW,
    ) -> None:
        self.store = store
        self.audit = audit
        self.min_samples = min_samples
        self.rho = rho
        self.blue_green_window = blue_green_window
        self._listeners: list[Callable[[str], None]] = [on_change] if on_change else []

    def add_listener(self, fn: Callable[[str], None]) -> None:
        """Called with the app id after every transition (cache invalidation, push)."""
        self._listeners.append(fn)

    def _changed(self, app_id: str) -> None:
        for fn in self._listeners:
            try:
                fn(app_id)
            except Exception:  # noqa: BLE001 - a listener must not undo a committed change
                log.exception("rollout change listener failed")

    # -- reading ------------------------------------------------------------------------------

    def get(self, app_id: str, rollout_id: str) -> Rollout:
        with self.store.session() as s:
            row = s.scalar(
                select(Rollout).where(Rollout.app_id == app_id, Rollout.id == rollout_id)
            )
            if row is None:
                raise NotFound(f"rollout {rollout_id!r} not found")
            return row

    def list(
        self,
        app_id: str,
        *,
        policy: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Rollout]:
        """Newest first."""
        if status is not None and status not in STATUSES and status != "active":
            raise RolloutError(f"status must be one of {', '.join(STATUSES)} or active")
        with self.store.session() as s:
            query = select(Rollout).where(Rollout.app_id == app_id)
            if policy is not None:
                query = query.where(Rollout.policy_name == policy)
            if status == "active":
                query = query.where(Rollout.status.in_(ACTIVE))
            elif status is not None:
                query = query.where(Rollout.status == status)
            return list(s.scalars(query.order_by(Rollout.pk.desc()).limit(limit)))

    def active(self, app_id: str, policy_name: str) -> Rollout | None:
        with self.store.session() as s:
            return s.scalar(
                select(Rollout).where(
                    Rollout.app_id == app_id,
                    Rollout.policy_name == policy_name,
                    Rollout.active_key.is_not(None),
                )
            )

    def all_active(self) -> list[Rollout]:
        with self.store.session() as s:
            return list(
                s.scalars(select(Rollout).where(Rollout.status.in_(ACTIVE)).order_by(Rollout.pk))
            )

    # -- starting -----------------------------------------------------------------------------

    def start(
        self,
        app_id: str,
        actor: Actor,
        *,
        policy: str,
        candidate_version: int,
        kind: str = "canary",
        baseline_version: int | None = None,
        steps: Sequence[float] | None = None,
        min_decisions_per_step: int = 100,
        segment: Mapping[str, Any] | None = None,
        guardrails: Sequence[Mapping[str, Any]] | None = None,
        alpha: float = 0.05,
        reason: str = "",
    ) -> Rollout:
        """Validate and start a rollout; Conflict if the policy already has an active one."""
        if kind not in KINDS:
            raise RolloutError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not 0 < alpha < 0.5:
            raise RolloutError("alpha must be in (0, 0.5)")
        if isinstance(min_decisions_per_step, bool) or int(min_decisions_per_step) < 1:
            raise RolloutError("min_decisions_per_step must be at least 1")
        schedule = validate_steps(kind, steps)
        seg = validate_segment(segment, kind)
        rails = validate_guardrails(guardrails)
        row = self.store.get_policy(app_id, policy)  # NotFound → 404
        if baseline_version is None:
            baseline_version = row.live_version
            if baseline_version is None:
                raise RolloutError(
                    f"policy {policy!r} has no live version to compare the candidate with; "
                    f"make one live first (PUT /v1/policies/{policy}/live)"
                )
        for label, version in (
            ("baseline_version", baseline_version),
            ("candidate_version", candidate_version),
        ):
            try:
                self.store.get_policy_version(app_id, policy, int(version), with_artifact=False)
            except NotFound:
                raise RolloutError(f"{label}: policy {policy!r} has no version {version}") from None
        if int(candidate_version) == int(baseline_version):
            raise RolloutError(
                f"candidate_version {candidate_version} is the baseline already; "
                "roll out a different version"
            )
        now = utcnow()
        rollout = Rollout(
            id=new_id("ro_"),
            app_id=app_id,
            policy_id=row.id,
            policy_name=policy,
            kind=kind,
            baseline_version=int(baseline_version),
            candidate_version=int(candidate_version),
            steps=schedule,
            step_index=0,
            percent=schedule[0],
            min_decisions_per_step=int(min_decisions_per_step),
            segment=seg,
            salt=new_id(),
            guardrails=rails,
            alpha=float(alpha),
            status="running",
            reason=reason,
            active_key=row.id,
            revision=0,
            started_at=now,
            step_started_at=now,
            updated_at=now,
            created_by=actor.name,
            history=[
                {
                    "at": now.isoformat(),
                    "action": "start",
                    "actor": actor.name,
                    "reason": reason,
                    "percent": schedule[0],
                    "step_index": 0,
                    "evidence": None,
                }
            ],
        )
        try:
            with self.store.session() as s:
                # Under the policy's row lock, the lock retention prunes under: either the
                # versions still have their artifacts and retention will see this rollout pin
                # them, or retention got there first and the rollout is refused.
                s.execute(select(Policy.pk).where(Policy.id == row.id).with_for_update())
                pruned = s.execute(
                    select(PolicyVersion.version, PolicyVersion.artifact_pruned_at).where(
                        PolicyVersion.policy_id == row.id,
                        PolicyVersion.version.in_([rollout.baseline_version, candidate_version]),
                        PolicyVersion.artifact_pruned_at.is_not(None),
                    )
                ).first()
                if pruned is not None:
                    raise RolloutError(artifact_pruned_message(policy, pruned[0], pruned[1]))
                s.add(rollout)
        except IntegrityError:
            current = self.active(app_id, policy)
            which = f" ({current.id}, {current.status})" if current else ""
            raise Conflict(
                f"policy {policy!r} already has an active rollout{which}; "
                "promote, roll back or wait for it first"
            ) from None
        self.audit.record(
            actor,
            "rollout.start",
            "rollout",
            _target(rollout),
            app_id=app_id,
            after={**_brief(rollout), "reason": reason},
        )
        self._changed(app_id)
        return rollout

    # -- transitions --------------------------------------------------------------------------

    def _transition(
        self,
        app_id: str,
        rollout_id: str,
        *,
        action: str,
        verb: str,
        allowed: Sequence[str],
        actor: Actor,
        reason: str,
        values: Callable[[Rollout], dict[str, Any]],
        evidence: dict[str, Any] | None = None,
        live: Callable[[Rollout], int | None] | None = None,
        expect_revision: int | None = None,
        precheck: Callable[[Rollout, Any], None] | None = None,
    ) -> Rollout | None:
        """Move one rollout (and maybe the live version) in one transaction, then audit it.

        Returns None when `expect_revision` no longer matches (someone else moved it first).
        """
        now = utcnow()
        live_change: tuple[int | None, int | None] | None = None
        with self.store.session() as s:
            row = s.scalar(
                select(Rollout).where(Rollout.app_id == app_id, Rollout.id == rollout_id)
            )
            if row is None:
                raise NotFound(f"rollout {rollout_id!r} not found")
            if expect_revision is not None and row.revision != expect_revision:
                return None
            if row.status not in allowed:
                raise Conflict(f"rollout {rollout_id} is {row.status}; it cannot be {verb}")
            if precheck is not None:
                precheck(row, s)
            before = _brief(row)
            changes = values(row)
            entry = {
                "at": now.isoformat(),
                "action": action,
                "actor": actor.name,
                "reason": reason,
                "percent": changes.get("percent", row.percent),
                "step_index": changes.get("step_index", row.step_index),
                "evidence": evidence,
            }
            changes.update(
                revision=row.revision + 1,
                updated_at=now,
                history=[*(row.history or []), entry],
            )
            if changes.get("status") in ("promoted", "rolled_back", "aborted"):
                changes.update(active_key=None, ended_at=row.ended_at or now)
            if reason and "reason" not in changes:
                changes["reason"] = reason
            done = s.execute(
                update(Rollout)
                .where(Rollout.id == row.id, Rollout.revision == row.revision)
                .values(**changes)
            )
            if done.rowcount != 1:
                if expect_revision is not None:
                    return None
                raise Conflict(f"rollout {rollout_id} changed at the same time; try again")
            if live is not None:
                target = live(row)
                policy = s.scalar(
                    select(Policy).where(Policy.id == row.policy_id).with_for_update()
                )
                if policy is None:
                    raise NotFound(f"policy {row.policy_name!r} not found")
                if target is not None and not s.scalar(
                    select(PolicyVersion.pk).where(
                        PolicyVersion.policy_id == policy.id, PolicyVersion.version == target
                    )
                ):
                    raise NotFound(f"policy {row.policy_name!r} has no version {target}")
                live_change = (policy.live_version, target)
                policy.live_version = target
                policy.updated_at = now
            s.flush()
            s.refresh(row)
        self.audit.record(
            actor,
            f"rollout.{action}",
            "rollout",
            _target(row),
            app_id=app_id,
            before=before,
            after={**_brief(row), "reason": reason, "evidence": evidence},
        )
        if live_change is not None:
            # The same record `PUT /v1/policies/{name}/live` writes, so history reads the same.
            self.audit.record(
                actor,
                "policy.set_live",
                "policy",
                row.policy_name,
                app_id=app_id,
                before={"live_version": live_change[0]},
                after={"live_version": live_change[1], "reason": reason, "rollout": row.id},
            )
        self._changed(app_id)
        return row

    def pause(self, app_id: str, rollout_id: str, actor: Actor, reason: str = "") -> Rollout:
        """Freeze the share: units keep their arm, no step is taken (guardrails still watch)."""
        row = self._transition(
            app_id,
            rollout_id,
            action="pause",
            verb="paused",
            allowed=("running",),
            actor=actor,
            reason=reason,
            values=lambda r: {"status": "paused"},
        )
        assert row is not None
        return row

    def resume(self, app_id: str, rollout_id: str, actor: Actor, reason: str = "") -> Rollout:
        row = self._transition(
            app_id,
            rollout_id,
            action="resume",
            verb="resumed",
            allowed=("paused",),
            actor=actor,
            reason=reason,
            values=lambda r: {"status": "running"},
        )
        assert row is not None
        return row

    def promote(
        self,
        app_id: str,
        rollout_id: str,
        actor: Actor,
        reason: str = "",
        *,
        evidence: dict[str, Any] | None = None,
        expect_revision: int | None = None,
    ) -> Rollout | None:
        """Candidate to 100% and live (the same change as `PUT /live`); the rollout ends."""
        return self._transition(
            app_id,
            rollout_id,
            action="promote",
            verb="promoted",
            allowed=ACTIVE,
            actor=actor,
            reason=reason or "promoted",
            values=lambda r: {"status": "promoted", "percent": 100.0},
            evidence=evidence,
            live=lambda r: r.candidate_version,
            expect_revision=expect_revision,
        )

    def rollback(
        self,
        app_id: str,
        rollout_id: str,
        actor: Actor,
        reason: str,
        *,
        evidence: dict[str, Any] | None = None,
        expect_revision: int | None = None,
        status: str = "rolled_back",
        action: str = "rollback",
    ) -> Rollout | None:
        """Everyone back on the baseline, with the reason recorded.

        An active rollout ends; a promoted one switches the live version back to its baseline
        (blue/green's instant switch back), provided the candidate is still live and no other
        rollout of the policy runs.
        """
        if not reason.strip():
            raise RolloutError("a rollback needs a reason")
        current = self.get(app_id, rollout_id)
        if current.status == "promoted":

            def precheck(row: Rollout, s: Any) -> None:
                policy = s.scalar(select(Policy).where(Policy.id == row.policy_id))
                if policy is None or policy.live_version != row.candidate_version:
                    live = None if policy is None else policy.live_version
                    raise Conflict(
                        f"version {row.candidate_version} is no longer live (live: {live}); "
                        "switch with PUT /v1/policies/{name}/live instead"
                    )
                other = s.scalar(select(Rollout.id).where(Rollout.active_key == row.policy_id))
                if other:
                    raise Conflict(f"rollout {other} of this policy is active; roll that back")

            return self._transition(
                app_id,
                rollout_id,
                action="switch_back",
                verb="switched back",
                allowed=("promoted",),
                actor=actor,
                reason=reason,
                values=lambda r: {"status": "rolled_back", "percent": 0.0},
                evidence=evidence,
                live=lambda r: r.baseline_version,
                precheck=precheck,
            )
        return self._transition(
            app_id,
            rollout_id,
            action=action,
            verb="rolled back",
            allowed=ACTIVE,
            actor=actor,
            reason=reason,
            values=lambda r: {"status": status, "percent": 0.0},
            evidence=evidence,
            expect_revision=expect_revision,
        )

    # -- evaluation ---------------------------------------------------------------------------

    def arms(self, row: Rollout) -> tuple[ArmStats, ArmStats]:
        """(candidate, baseline) statistics since the rollout started."""
        app = self.store.get_app(row.app_id)
        escalation, _ = outcome_settings(app)
        options = {"escalation_actions": escalation, "aggregation": app.reward_aggregation}
        candidate = arm_stats(
            self.store,
            row.app_id,
            row.policy_name,
            row.candidate_version,
            row.started_at,
            until=row.ended_at,
            **options,
        )
        baseline_since = row.started_at
        if row.kind == "blue_green":
            # Everyone moved at once: the baseline's own recent past is the comparison.
            baseline_since = row.started_at - self.blue_green_window
        baseline = arm_stats(
            self.store,
            row.app_id,
            row.policy_name,
            row.baseline_version,
            baseline_since,
            until=row.ended_at,
            **options,
        )
        return candidate, baseline

    def step_decisions(self, row: Rollout) -> int:
        """Candidate decisions since the current step began."""
        with self.store.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Decision)
                    .where(
                        Decision.app_id == row.app_id,
                        Decision.policy_name == row.policy_name,
                        Decision.policy_version == row.candidate_version,
                        Decision.created_at >= row.step_started_at,
                    )
                )
                or 0
            )

    def report(self, row: Rollout) -> dict[str, Any]:
        """Live metrics of both arms and every guardrail's test, as evidence and for display."""
        candidate, baseline = self.arms(row)
        rails = [Guardrail.parse(g) for g in row.guardrails or []]
        results = check_guardrails(
            rails, candidate, baseline, row.alpha, min_samples=self.min_samples, rho=self.rho
        )
        out: dict[str, Any] = {
            "candidate": {"version": row.candidate_version, **candidate.summary()},
            "baseline": {"version": row.baseline_version, **baseline.summary()},
            "guardrails": [r.as_dict() for r in results],
            "step_decisions": self.step_decisions(row),
            "min_decisions_per_step": row.min_decisions_per_step,
            "test": "always-valid normal-mixture confidence sequence (mSPRT), "
            "alpha split across guardrails",
        }
        if row.kind == "ab":
            out["ab"] = ab_verdict(
                candidate, baseline, row.alpha, min_samples=self.min_samples, rho=self.rho
            )
        out["_regressions"] = [r for r in results if r.regression]
        return out

    def evaluate(self, app_id: str, rollout_id: str, actor: Actor = SYSTEM) -> Evaluation:
        """Look at the evidence once and take at most one step: advance, promote or roll back."""
        row = self.get(app_id, rollout_id)
        if row.status not in ACTIVE:
            return Evaluation(row, "none", {"note": f"the rollout is {row.status}"})
        policy = self.store.get_policy(app_id, row.policy_name)
        if policy.live_version != row.baseline_version:
            reason = (
                f"the live version changed to {policy.live_version} outside this rollout "
                f"(baseline was {row.baseline_version})"
            )
            moved = self.rollback(
                app_id,
                row.id,
                actor,
                reason,
                expect_revision=row.revision,
                status="aborted",
                action="abort",
            )
            return Evaluation(moved or self.get(app_id, row.id), "abort" if moved else "none", {})
        report = self.report(row)
        regressions = report.pop("_regressions")
        evidence = report
        if regressions:
            reason = "automatic rollback: " + regressions[0].reason()
            moved = self.rollback(
                app_id, row.id, actor, reason, evidence=evidence, expect_revision=row.revision
            )
            return Evaluation(
                moved or self.get(app_id, row.id), "rollback" if moved else "none", evidence
            )
        if row.status != "running":
            return Evaluation(row, "none", evidence)
        if row.kind == "ab":
            return self._evaluate_ab(row, actor, evidence)
        if row.kind == "flag":
            return Evaluation(row, "none", evidence)
        if evidence["step_decisions"] < row.min_decisions_per_step:
            return Evaluation(row, "none", evidence)
        steps = list(row.steps or [])
        summary = _evidence_line(evidence)
        if row.step_index + 1 >= len(steps):
            moved = self.promote(
                app_id,
                row.id,
                actor,
                f"every step passed its guardrails ({summary})",
                evidence=evidence,
                expect_revision=row.revision,
            )
            return Evaluation(
                moved or self.get(app_id, row.id), "promote" if moved else "none", evidence
            )
        nxt = row.step_index + 1
        moved = self._transition(
            app_id,
            row.id,
            action="advance",
            verb="advanced",
            allowed=("running",),
            actor=actor,
            reason=f"step {row.step_index + 1} passed: {steps[row.step_index]:g}% → "
            f"{steps[nxt]:g}% ({summary})",
            values=lambda r: {
                "step_index": nxt,
                "percent": steps[nxt],
                "step_started_at": utcnow(),
            },
            evidence=evidence,
            expect_revision=row.revision,
        )
        return Evaluation(
            moved or self.get(app_id, row.id), "advance" if moved else "none", evidence
        )

    def _evaluate_ab(self, row: Rollout, actor: Actor, evidence: dict[str, Any]) -> Evaluation:
        verdict = evidence["ab"]
        enough = min(verdict["n_candidate"], verdict["n_baseline"]) >= row.min_decisions_per_step
        if not enough or verdict["winner"] is None:
            return Evaluation(row, "none", evidence)
        line = (
            f"mean reward {verdict['candidate']} (candidate, n={verdict['n_candidate']}) vs "
            f"{verdict['baseline']} (baseline, n={verdict['n_baseline']}), "
            f"{1 - row.alpha:.4g} always-valid interval of the difference {verdict['interval']}"
        )
        if verdict["winner"] == "candidate":
            moved = self.promote(
                row.app_id,
                row.id,
                actor,
                f"A/B test concluded: the candidate wins; {line}",
                evidence=evidence,
                expect_revision=row.revision,
            )
            action = "promote"
        else:
            moved = self.rollback(
                row.app_id,
                row.id,
                actor,
                f"A/B test concluded: the baseline wins; {line}",
                evidence=evidence,
                expect_revision=row.revision,
            )
            action = "rollback"
        return Evaluation(
            moved or self.get(row.app_id, row.id), action if moved else "none", evidence
        )

    def evaluate_all(self, actor: Actor = SYSTEM) -> list[Evaluation]:
        """Evaluate every active rollout of every app (what the background job runs)."""
        out = []
        for row in self.all_active():
            try:
                out.append(self.evaluate(row.app_id, row.id, actor))
            except (NotFound, Conflict) as exc:
                log.info("rollout %s skipped: %s", row.id, exc)
            except Exception:  # noqa: BLE001 - one broken rollout must not stop the others
                log.exception("evaluating rollout %s failed", row.id)
        return out


def versions_in_rollouts(session: Session, policy_id: str) -> set[int]:
    """The versions a running or paused rollout of this policy serves (retention keeps them)."""
    rows = session.execute(
        select(Rollout.baseline_version, Rollout.candidate_version).where(
            Rollout.policy_id == policy_id, Rollout.status.in_(ACTIVE)
        )
    )
    return {int(v) for row in rows for v in row}


def _brief(row: Rollout) -> dict[str, Any]:
    return {
        "id": row.id,
        "policy": row.policy_name,
        "kind": row.kind,
        "status": row.status,
        "baseline_version": row.baseline_version,
        "candidate_version": row.candidate_version,
        "percent": float(row.percent),
        "step_index": row.step_index,
        "segment": row.segment,
    }


def _evidence_line(evidence: Mapping[str, Any]) -> str:
    c, b = evidence["candidate"], evidence["baseline"]
    return (
        f"{evidence['step_decisions']} candidate decisions this step; mean reward "
        f"{c['mean_reward']} (n={c['rewarded']}) vs baseline {b['mean_reward']} "
        f"(n={b['rewarded']}); no guardrail regressed"
    )


# -- the background evaluator -----------------------------------------------------------------


def evaluator_interval(env: Mapping[str, str] | None = None) -> float:
    """Seconds between evaluations: `AGL_ROLLOUT_EVAL_SECONDS` (default 5)."""
    raw = (os.environ if env is None else env).get("AGL_ROLLOUT_EVAL_SECONDS") or ""
    if not raw:
        return 5.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"AGL_ROLLOUT_EVAL_SECONDS must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError("AGL_ROLLOUT_EVAL_SECONDS must be positive")
    return value


class RolloutEvaluator:
    """A daemon thread that evaluates every active rollout every `every_seconds`."""

    def __init__(self, manager: RolloutManager, every_seconds: float = 5.0) -> None:
        self.manager = manager
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rollout-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.manager.evaluate_all()
            except Exception:  # noqa: BLE001 - keep watching; the next round may succeed
                log.exception("rollout evaluation round failed")


# -- the learning controller's entry point -----------------------------------------------------


def auto_rollout_config(store: Store, app_id: str, policy_name: str) -> dict[str, Any] | None:
    """The app's `settings.rollouts.<policy>.auto` as start() options, or None when off.

    `true` means a default canary; an object may set kind, steps, min_decisions_per_step,
    segment, guardrails and alpha.
    """
    entry = ((store.get_app(app_id).settings or {}).get("rollouts") or {}).get(policy_name)
    if not isinstance(entry, Mapping):
        return None
    auto = entry.get("auto")
    if auto is True:
        return {}
    if isinstance(auto, Mapping) and auto.get("enabled", True):
        allowed = {"kind", "steps", "min_decisions_per_step", "segment", "guardrails", "alpha"}
        return {k: v for k, v in auto.items() if k in allowed}
    return None


def auto_rollout(
    store: Store,
    audit: AuditLog,
    app_id: str,
    policy_name: str,
    version: int,
    *,
    manager: RolloutManager | None = None,
    actor: Actor = SYSTEM,
) -> Rollout | None:
    """Start a rollout of a freshly learned `version` when the app's settings ask for one.

    Returns None (and the caller keeps its usual behaviour) when `settings.rollouts.<policy>.auto`
    is off, when promotion is paused for the policy, when nothing is live yet to compare with,
    or when a rollout of the policy is already active (the new version then waits as a
    candidate). Register the version with `make_live=False` before calling this.
    """
    config = auto_rollout_config(store, app_id, policy_name)
    if config is None:
        return None
    entry = (store.get_app(app_id).settings or {}).get("rollouts", {}).get(policy_name, {})
    if entry.get("paused"):
        return None
    policy = store.get_policy(app_id, policy_name)
    if policy.live_version is None or policy.live_version == version:
        return None
    manager = manager or RolloutManager(store, audit)
    if manager.active(app_id, policy_name) is not None:
        return None
    try:
        return manager.start(
            app_id,
            actor,
            policy=policy_name,
            candidate_version=version,
            reason=f"automatic rollout of learned version {version}",
            **config,
        )
    except Conflict:
        return None  # another replica started one at the same moment
    except RolloutError as exc:
        log.warning("auto rollout of %s@%s not started: %s", policy_name, version, exc)
        return None


__all__ = [
    "DEFAULT_STEPS",
    "Evaluation",
    "RolloutError",
    "RolloutEvaluator",
    "RolloutManager",
    "auto_rollout",
    "auto_rollout_config",
    "evaluator_interval",
    "rollout_json",
    "validate_guardrails",
    "validate_segment",
    "validate_steps",
]
