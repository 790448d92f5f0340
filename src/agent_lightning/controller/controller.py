"""LearningController: turns logged decisions and their rewards into new policy versions.

A learning task, for one policy:

1. starts from the live version (or, for a policy with none yet, from its spec's warm start);
2. reads the decisions logged since the data that version was trained on, joined with their
   rewards (the store applies the app's wait window, default reward and aggregation);
3. holds out every `holdout_every`-th decision (by its sequence number, so every process and
   every retry makes the same split) and trains a candidate on the rest;
4. evaluates candidate and live version off-policy (doubly robust, paired, with the logged
   propensities, importance weights clipped at `max_weight`, default 20) on the newest
   `eval_window` held-out decisions, which neither of them learned from, with
   `learning.ope.gate`: the same rule as the library's `InProcessBackend`, so the platform and
   the library report comparable figures;
5. registers an immutable version (lineage: parent, data range, data hash, metrics) only when
   the lower confidence bound of the difference is above zero — or the operator forced it.
   Held-out decisions that leave the evaluation window are learned by the next candidate, so
   holding out delays data, it does not waste it. A refused candidate is kept (in memory) and
   the next task of the same live version teaches it only what is new.

A task that fails leaves the live version untouched and records why in the task record.

Several servers may share one database. Learning tasks of one policy run one at a time across
all of them (a lock in the database; the second finishes at once, saying so), and a version goes
live only while the version it was gated against is still live (compare-and-set). Each task
records the process running it (`result.runner`: host, pid, heartbeat), so a server that starts
fails only the tasks of processes that are gone, not those other servers are running.

Tasks run on a worker thread; the serving path never waits for them (it keeps answering from the
live version, which is immutable). Triggers: `submit` (the API and SDK), `run` (the CLI, tests),
and a scheduler that starts a task when a policy has `every_decisions` new settled decisions or
`every_seconds` have passed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from agent_lightning.security.audit import SYSTEM, Actor, AuditLog
from agent_lightning.store import (
    LiveMoved,
    NotFound,
    Policy,
    PolicyVersion,
    Store,
    Task,
    TrainingExample,
    as_utc,
    new_id,
    utcnow,
)

if TYPE_CHECKING:  # the learning library is imported when a task runs, not at server start
    from agent_lightning.learning import IncrementalCandidate

log = logging.getLogger("agent_lightning.controller")


def _pid_namespace() -> str:
    try:  # containers sharing a host name (host networking) still have their own pids
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


# Who runs a task: pids are only comparable on the same host and pid namespace; `boot` tells
# this process from an earlier one that had the same pid (pid 1 in a restarted container).
_HOST, _PIDNS, _BOOT = socket.gethostname(), _pid_namespace(), new_id()


def _lock_name(app_id: str, policy_name: str) -> str:
    """The database lock a learning task of this policy holds (see `Store.try_lock`)."""
    return f"agl.learn {app_id} {policy_name}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


class TaskError(Exception):
    """A task could not run; the message says why (and lands in the task record)."""


@dataclass(frozen=True)
class LearnSettings:
    """The gate's rules (see the module docstring); defaults match `InProcessBackend`'s."""

    holdout_every: int = 10  # every Nth settled decision is held out of training for the gate
    eval_window: int = 300  # the newest held-out decisions the gate evaluates on
    min_eval: int = 30  # fewer held-out decisions than this: the gate cannot pass (unless forced)
    confidence: float = 0.95  # two-sided level of the interval whose lower bound must be > 0
    estimator: str = "dr"  # ips | snips | dm | dr (see learning.ope)
    max_weight: float | None = 20.0  # importance weights clipped here (ope.GATE_MAX_WEIGHT)

    def __post_init__(self) -> None:
        if self.holdout_every < 2:
            raise ValueError("holdout_every must be >= 2")
        if self.eval_window < 1 or self.min_eval < 1:
            raise ValueError("eval_window and min_eval must be >= 1")
        if self.max_weight is not None and not self.max_weight >= 1.0:
            raise ValueError("max_weight must be >= 1, or None for no clipping")


def data_hash(examples: list[TrainingExample]) -> str:
    """Identifies exactly which records (and rewards) a version was trained on."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(
            f"{example.decision.id}:{example.reward!r}:{example.correct_action_id};".encode()
        )
    return digest.hexdigest()


def _actions_key(actions: list[dict[str, Any]]) -> tuple:
    return tuple(
        (a["id"], a.get("description", ""), tuple(sorted((a.get("features") or {}).items())))
        for a in actions
    )


def to_logged(example: TrainingExample, action_cache: dict[tuple, tuple] | None = None) -> Any:
    """A stored decision with its settled reward, as the learning library takes it.

    Agents usually offer the same candidate list again and again; `action_cache` shares one
    tuple of `Action`s between them instead of rebuilding it per decision.
    """
    from agent_lightning.learning import Action, LoggedDecision

    decision = example.decision
    key = _actions_key(decision.actions)
    actions = action_cache.get(key) if action_cache is not None else None
    if actions is None:
        actions = tuple(Action(id=i, description=d, features=dict(f) or None) for i, d, f in key)
        if action_cache is not None:
            if len(action_cache) > 256:
                action_cache.clear()
            action_cache[key] = actions
    return LoggedDecision(
        context=dict(decision.context or {}),
        actions=actions,
        action_id=decision.action_id,
        propensity=decision.propensity,
        reward=example.reward,
        correct_action_id=example.correct_action_id,
    )


@dataclass
class _Reads:
    after_pk: int  # the live version's data end: where these reads started
    last_pk: int
    examples: list[TrainingExample]
    logged: list[tuple[int, Any]]


class LearningController:
    honours_pause = True

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        settings: LearnSettings = LearnSettings(),
        every_decisions: int | None = 500,
        every_seconds: float | None = 600.0,
        poll_seconds: float = 5.0,
        on_version: Any = None,
        version_cache: Any = None,
        rollouts: Any = None,
        heartbeat_seconds: float = 30.0,
    ) -> None:
        self.store = store
        # The UpdatePublisher's hooks (`publisher.service.ControllerRollouts`), or None: while a
        # rollout of a policy is active, new versions wait as candidates instead of going live;
        # with `settings.rollouts.<policy>.auto`, a new version starts its own canary.
        self.rollouts = rollouts
        self.audit = audit
        self.settings = settings
        self.every_decisions = every_decisions
        self.every_seconds = every_seconds
        self.poll_seconds = poll_seconds
        # Called with (app_id, policy_name, version) after a version goes live (cache refresh).
        self.on_version = on_version
        # Shared with the DecisionService (`load_version` / `prime`): a version is deserialised
        # once per process, and a version this controller just trained is never deserialised.
        self.version_cache = version_cache
        self._action_cache: dict[tuple, tuple] = {}
        self._windows: dict[tuple[str, str], tuple[int, list[tuple[int, Any]]]] = {}
        # (app, policy) -> the last refused candidate, owned by (live version, its data end)
        self._candidates: dict[tuple[str, str], IncrementalCandidate] = {}
        # (app, policy) -> what earlier tasks of the same live version already read (see `_read`)
        self._reads: dict[tuple[str, str], _Reads] = {}
        self._queue: queue.Queue[tuple[str, str, dict, Actor] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running_policies: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._last_run: dict[tuple[str, str], float] = {}
        # Tasks this controller created and has not finished, whose heartbeat it keeps.
        self.heartbeat_seconds = heartbeat_seconds
        self._mine: set[str] = set()
        self._beat: threading.Thread | None = None
        # A heartbeat must not write a task's result back over its final one.
        self._task_lock = threading.Lock()
        self._last_sweep = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._sweep()
        self._stop.clear()
        worker = threading.Thread(target=self._work, name="agl-learning-worker", daemon=True)
        worker.start()
        self._threads = [worker]
        if self.every_decisions or self.every_seconds:
            scheduler = threading.Thread(
                target=self._schedule, name="agl-learning-scheduler", daemon=True
            )
            scheduler.start()
            self._threads.append(scheduler)

    def _runner(self) -> dict[str, Any]:
        return {
            "host": _HOST,
            "pidns": _PIDNS,
            "pid": os.getpid(),
            "boot": _BOOT,
            "heartbeat": utcnow().isoformat(),
        }

    def _dead(self, task: Task) -> bool:
        """Whether the process that runs `task` is gone: on this host, its pid is (or this
        process is a later one); on any host, its heartbeat stopped (tasks recorded before
        heartbeats: started or created that long ago)."""
        runner = (task.result or {}).get("runner") or {}
        try:
            beat = datetime.fromisoformat(runner["heartbeat"])
        except (KeyError, TypeError, ValueError):
            beat = task.started_at or task.created_at
        if utcnow() - as_utc(beat) > timedelta(seconds=10 * self.heartbeat_seconds):
            return True
        if (runner.get("host"), runner.get("pidns")) != (_HOST, _PIDNS):
            return False  # another server's: its heartbeat says when it is gone
        if runner.get("pid") == os.getpid():
            return runner.get("boot") != _BOOT
        return not isinstance(runner.get("pid"), int) or not _pid_alive(runner["pid"])

    def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        failed = self.store.fail_interrupted_tasks(self._dead)
        if failed:
            log.warning("%d task(s) whose server stopped while running them marked failed", failed)

    def _track(self, task_id: str) -> None:
        with self._lock:
            self._mine.add(task_id)
            if self._beat is None or not self._beat.is_alive():
                self._beat = threading.Thread(
                    target=self._heartbeat, name="agl-learning-heartbeat", daemon=True
                )
                self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._lock:
                ids = set(self._mine)
                if not ids:
                    self._beat = None
                    return
            try:
                with self._task_lock:
                    self.store.beat_tasks(ids, self._runner())
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("could not record the learning tasks' heartbeat", exc_info=True)

    def _update(self, task_id: str, **changes: Any) -> None:
        with self._task_lock:
            self.store.update_task(task_id, **changes)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []

    # -- triggers -------------------------------------------------------------------------------

    def submit(self, app_id: str, params: dict[str, Any], *, actor: Actor = SYSTEM) -> Task:
        """Queue a task; returns its record at once (status `queued`)."""
        task, created = self._create(app_id, params, actor)
        if created:
            if self._threads:  # a worker will run it: keep its heartbeat meanwhile
                self._track(task.id)
            self._queue.put((app_id, task.id, params, actor))
        return task

    def run(self, app_id: str, params: dict[str, Any], *, actor: Actor = SYSTEM) -> Task:
        """Run a task now, on this thread; returns the finished record."""
        task, created = self._create(app_id, params, actor)
        if created:
            self._track(task.id)
            self._execute(app_id, task.id, params, actor)
        return self.store.get_task(app_id, task.id)

    def _create(self, app_id: str, params: dict[str, Any], actor: Actor) -> tuple[Task, bool]:
        """The task record; a client-supplied id that exists returns that task (a retry)."""
        if params.get("task", "learn") != "learn":
            raise TaskError(f"unknown task {params.get('task')!r}; today: learn")
        if not params.get("policy"):
            raise TaskError("a learn task needs a policy name")
        try:
            self.store.get_app(app_id)
        except NotFound:
            raise TaskError(f"no app {app_id!r}") from None
        if params.get("id"):
            try:
                return self.store.get_task(app_id, params["id"]), False
            except NotFound:
                pass
        try:
            task = self.store.create_task(
                Task(
                    id=params.get("id") or new_id(),
                    app_id=app_id,
                    kind="learn",
                    params=dict(params),
                    result={"runner": self._runner()},
                    created_by=actor.name,
                )
            )
        except IntegrityError:
            raise TaskError(f"task id {params.get('id')!r} is taken; choose another") from None
        self.audit.record(
            actor,
            "task.create",
            "task",
            task.id,
            app_id=app_id,
            after={"kind": "learn", "params": dict(params)},
        )
        return task, True

    # -- execution ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                self._execute(*item)
            except Exception:  # noqa: BLE001 - e.g. the database was down: keep the worker
                log.exception("learning task %s could not be run", item[1])

    def _execute(self, app_id: str, task_id: str, params: dict[str, Any], actor: Actor) -> None:
        key = (app_id, params["policy"])
        with self._lock:
            busy = key in self._running_policies
            if not busy:
                self._running_policies.add(key)
        if busy:
            self._update(
                task_id,
                status="failed",
                finished_at=utcnow(),
                error="another learning task of this policy is running",
            )
            with self._lock:
                self._mine.discard(task_id)
            return
        started = time.monotonic()
        try:
            # Across servers: two tasks of one policy would train on the same data, and each
            # version would be gated against the same parent.
            with self.store.try_lock(_lock_name(app_id, params["policy"])) as free:
                if not free:
                    raise TaskError(
                        "another learning task of this policy is running (on another server); "
                        "the next task takes up what it leaves"
                    )
                self._update(task_id, status="running", started_at=utcnow())
                result = self.learn(
                    app_id,
                    params["policy"],
                    force=bool(params.get("force")),
                    make_live=params.get("make_live", True),
                    max_examples=params.get("max_examples"),
                    actor=actor,
                )
            result["duration_seconds"] = round(time.monotonic() - started, 3)
            result["runner"] = self._runner()
            # `error` too: a server that wrongly thought this task's process gone may have set it.
            self._update(
                task_id, status="succeeded", result=result, error=None, finished_at=utcnow()
            )
            self.audit.record(
                actor,
                "task.finish",
                "task",
                task_id,
                app_id=app_id,
                after={
                    "status": "succeeded",
                    "registered": result.get("registered"),
                    "version": result.get("version"),
                },
            )
        except Exception as exc:  # noqa: BLE001 - any failure must land in the task record
            message = str(exc) if isinstance(exc, TaskError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, TaskError):
                log.exception("learning task %s failed", task_id)
            self._update(task_id, status="failed", error=message, finished_at=utcnow())
            self.audit.record(
                actor,
                "task.finish",
                "task",
                task_id,
                app_id=app_id,
                outcome="failed",
                after={"status": "failed", "error": message},
            )
        finally:
            with self._lock:
                self._running_policies.discard(key)
                self._last_run[key] = time.monotonic()
                self._mine.discard(task_id)

    def learn(
        self,
        app_id: str,
        policy_name: str,
        *,
        force: bool = False,
        make_live: bool = True,
        max_examples: int | None = None,
        actor: Actor = SYSTEM,
    ) -> dict[str, Any]:
        from agent_lightning.learning import IncrementalCandidate, LearningError, make_policy
        from agent_lightning.learning import Policy as LearnedPolicy

        try:
            policy = self.store.get_policy(app_id, policy_name)
        except NotFound as exc:
            raise TaskError(str(exc)) from None
        parent_row = None
        if policy.live_version is not None:
            parent_row = self.store.get_policy_version(app_id, policy_name, policy.live_version)
        try:
            if parent_row is not None and parent_row.artifact and self.version_cache is not None:
                parent = self.version_cache.load_version(policy, parent_row.version)
            elif parent_row is not None and parent_row.artifact:
                parent = LearnedPolicy.from_bytes(parent_row.artifact)
            elif policy.spec:
                parent = make_policy(policy.spec)
            else:
                raise TaskError(
                    f"policy {policy_name!r} has no live learned version and no spec to start "
                    "from; create it with a spec, e.g. {'learner': 'linucb'}"
                )
        except LearningError as exc:
            raise TaskError(f"cannot load the live version: {exc}") from None
        after_pk = int((parent_row.data_range or {}).get("to_pk", 0)) if parent_row else 0
        examples, logged, last_pk = self._read(app_id, policy, after_pk, max_examples)
        base = {
            "policy": policy_name,
            "parent_version": policy.live_version,
            "examples": len(examples),
        }
        # Decisions after the last one read wait for their rewards: the join reads in order,
        # so one unsettled decision holds back every later one until its window ends.
        waiting = self.store.count_decisions_after(app_id, policy.decision_point, last_pk)
        base["waiting"] = waiting
        if not examples:
            reason = self._nothing_settled(app_id, policy, last_pk)
            return {**base, "registered": False, "reason": reason}
        every = self.settings.holdout_every
        train: list[tuple[int, Any]] = []
        held_new: list[tuple[int, Any]] = []
        for pk, lg in logged:
            (held_new if pk % every == 0 else train).append((pk, lg))
        window = self._held_out_window(app_id, policy, after_pk)
        pool = window + held_new
        overflow = max(0, len(pool) - self.settings.eval_window)
        graduated, evaluation = pool[:overflow], pool[overflow:]
        training = graduated + train
        # The last refused candidate of this live version has learned a prefix of `training`
        # (graduated rows only ever grow from the oldest end, and new rows are newer): it is
        # taught only the rest.
        key = (app_id, policy.name)
        owner = (policy.live_version, after_pk)
        pending = self._candidates.get(key)
        if max_examples is not None or pending is None or pending.owner != owner:
            pending = IncrementalCandidate(parent, owner)
        self._candidates[key] = pending
        try:
            pending.teach(training)
            metrics, passed = self._gate(pending.policy, parent, [lg for _, lg in evaluation])
        except BaseException:
            self._candidates.pop(key, None)  # it may be half-taught: start over next time
            self._reads.pop(key, None)
            raise
        candidate = pending.policy
        metrics.update(trained_on=len(training), held_out=len(held_new), graduated=len(graduated))
        # An operator can pause automatic promotion (dashboard → Rollouts): then a passing
        # candidate is registered but waits for a person to promote it.
        rollouts = (self.store.get_app(app_id).settings or {}).get("rollouts") or {}
        if make_live and (rollouts.get(policy_name) or {}).get("paused"):
            make_live = False
        via_rollout = False
        if make_live and self.rollouts is not None:
            route = self.rollouts.route(app_id, policy_name)
            via_rollout = route == "rollout"
            make_live = route == "live"
        registered = passed or force
        if registered:
            self._candidates.pop(key, None)  # it becomes a version: never taught again
            self._reads.pop(key, None)
        if not registered:
            return {
                **base,
                "registered": False,
                "metrics": metrics,
                "reason": metrics["gate"]["reason"],
            }
        # The new version's data ends at `last_pk`: remember the evaluation window as of there.
        self._windows[(app_id, policy.name)] = (last_pk, evaluation)
        version, moved = self._register(
            policy,
            parent_row,
            candidate,
            examples,
            after_pk,
            last_pk,
            metrics,
            make_live,
            force,
            actor,
        )
        rollout_id = None
        if via_rollout:
            started = self.rollouts.start(app_id, policy_name, version.version)
            rollout_id = getattr(started, "id", None)
        out = {
            **base,
            "registered": True,
            "version": version.version,
            "live": make_live and moved is None,
            "rollout": rollout_id,
            "forced": force and not passed,
            "metrics": metrics,
        }
        if moved is not None:
            now = f"v{moved.live} went live" if moved.live is not None else "live was cleared"
            out["reason"] = f"{now} meanwhile; the next task compares against it"
        return out

    def _read(
        self, app_id: str, policy: Policy, after_pk: int, max_examples: int | None
    ) -> tuple[list[TrainingExample], list[tuple[int, Any]], int]:
        """Settled decisions after `after_pk`: (examples, (pk, logged) pairs, last pk read).

        Until a version is registered every task of a policy starts at the same `after_pk`, so
        the decisions earlier tasks read are kept and only newer ones are read from the store:
        decoding every stored decision again each task was most of a task's time. The kept
        rows are the ones the refused candidate already learned, so both see the same values.
        """
        key = (app_id, policy.name)
        kept = self._reads.get(key) if max_examples is None else None
        if kept is None or kept.after_pk != after_pk:
            kept = _Reads(after_pk, after_pk, [], [])
        new, last_pk = self.store.training_examples(
            app_id, policy.decision_point, after_pk=kept.last_pk, limit=max_examples
        )
        kept.examples.extend(new)
        kept.logged.extend((e.decision.pk, self._logged(e)) for e in new)
        kept.last_pk = max(kept.last_pk, last_pk)
        if max_examples is None:
            self._reads[key] = kept
        return list(kept.examples), list(kept.logged), kept.last_pk

    def _nothing_settled(self, app_id: str, policy: Policy, last_pk: int) -> str:
        first = self.store.first_decision_after(app_id, policy.decision_point, last_pk)
        if first is None:
            return "no new decisions since the live version"
        wait = self.store.get_app(app_id).reward_wait_seconds
        settles = as_utc(first.created_at) + timedelta(seconds=wait)
        return (
            "no new settled decisions since the live version: learning reads decisions in "
            f"order, and the oldest new one ({first.id}) waits for its reward until "
            f"{settles:%Y-%m-%d %H:%M:%S} UTC (the app's reward window, {wait:g} s); the "
            "decisions after it are read once it settles"
        )

    def _logged(self, example: TrainingExample) -> Any:
        return to_logged(example, self._action_cache)

    def _held_out_window(self, app_id: str, policy: Policy, after_pk: int) -> list[tuple[int, Any]]:
        """Held-out decisions up to `after_pk` that no version learned yet, oldest first.

        Kept in memory between tasks of the same policy (tasks run one at a time per policy);
        read from the store when the memory does not end exactly where this task starts (first
        task, restart, another process trained in between).
        """
        key = (app_id, policy.name)
        window = self._windows.get(key)
        if window is not None and window[0] == after_pk:
            return list(window[1])
        if after_pk <= 0:
            return []
        every, size = self.settings.holdout_every, self.settings.eval_window
        recent, _ = self.store.training_examples(
            app_id, policy.decision_point, newest=size * every, upto_pk=after_pk
        )
        held = [(e.decision.pk, self._logged(e)) for e in recent if e.decision.pk % every == 0]
        held = held[-size:]
        self._windows[key] = (after_pk, held)
        return list(held)

    def _gate(self, candidate: Any, parent: Any, held: list[Any]) -> tuple[dict, bool]:
        """Gate `candidate` (a clone of `parent`, taught) against `parent` on `held`.

        `held` holds settled decisions neither version learned from, with the propensities of
        whichever version logged them (see `learning.ope.gate`).
        """
        from agent_lightning.learning import ope

        decision = ope.gate(
            candidate,
            parent,
            held,
            estimator=self.settings.estimator,
            level=self.settings.confidence,
            min_eval=self.settings.min_eval,
            max_weight=self.settings.max_weight,
        )
        metrics: dict[str, Any] = {
            "evaluated_on": decision.n,
            "gate": decision.to_dict(),
        }
        if decision.difference is not None:
            metrics["ope"] = {
                "estimator": decision.estimator,
                "n": decision.n,
                "candidate": decision.candidate.to_dict() if decision.candidate else None,
                "live": decision.live.to_dict() if decision.live else None,
                "difference": decision.difference.to_dict(),
            }
        return metrics, decision.passed

    def _register(
        self,
        policy: Policy,
        parent_row,
        candidate,
        examples,
        after_pk,
        last_pk,
        metrics,
        make_live,
        forced,
        actor,
    ) -> tuple[PolicyVersion, LiveMoved | None]:
        """Add the version; it goes live only over the version it was gated against (returns
        why not, if another went live meanwhile: then it is kept, not live)."""
        first, last = examples[0].decision, examples[-1].decision
        row = PolicyVersion(
            id=new_id(),
            policy_id=policy.id,
            parent_version=parent_row.version if parent_row else None,
            artifact=candidate.to_bytes(),
            data_hash=data_hash(examples),
            data_range={
                "from_pk": after_pk + 1,
                "to_pk": last_pk,
                "count": len(examples),
                "first_decision": first.id,
                "last_decision": last.id,
                "from": first.created_at.isoformat(),
                "to": last.created_at.isoformat(),
            },
            metrics=metrics,
            notes="forced by the operator"
            if forced and not metrics["gate"]["passed"]
            else "passed the off-policy gate",
            created_by=actor.name,
        )
        moved = None
        try:
            version = self.store.add_policy_version(row, make_live=make_live, over_parent=True)
        except LiveMoved as exc:
            moved, make_live = exc, False
            version = self.store.add_policy_version(row, make_live=False)
        self.audit.record(
            actor,
            "policy_version.create",
            "policy_version",
            f"{policy.name}@{version.version}",
            app_id=policy.app_id,
            after={
                "version": version.version,
                "parent": version.parent_version,
                "live": make_live,
                "data_hash": version.data_hash,
                "gate": metrics.get("gate"),
            },
        )
        if self.version_cache is not None:
            self.version_cache.prime(policy.id, version.version, candidate)
        if make_live and self.on_version is not None:
            self.on_version(policy.app_id, policy.name, version.version)
        return version, moved

    # -- scheduling -----------------------------------------------------------------------------

    def due(self) -> list[tuple[str, str]]:
        """Policies with enough new decisions, or whose interval has passed."""
        out = []
        now = time.monotonic()
        for app in self.store.list_apps():
            for policy in self.store.list_policies(app.id, limit=1000).items:
                if not policy.spec and policy.live_version is None:
                    continue
                key = (app.id, policy.name)
                after_pk = 0
                if policy.live_version is not None:
                    row = self.store.get_policy_version(app.id, policy.name, policy.live_version)
                    after_pk = int((row.data_range or {}).get("to_pk", 0))
                pending = self.store.count_decisions_after(app.id, policy.decision_point, after_pk)
                last = self._last_run.get(key, 0.0)
                enough = self.every_decisions and pending >= self.every_decisions
                stale = self.every_seconds and pending and now - last >= self.every_seconds
                if (enough and now - last >= 1.0) or stale:
                    out.append(key)
        return out

    def _schedule(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if time.monotonic() - self._last_sweep >= self.heartbeat_seconds:
                    self._sweep()  # tasks of a server that stopped (its heartbeat is stale)
                for app_id, name in self.due():
                    with self._lock:
                        if (app_id, name) in self._running_policies:
                            continue
                    with self.store.try_lock(_lock_name(app_id, name)) as free:
                        pass
                    if not free:  # another server is learning it: no task bound to fail
                        continue
                    self.submit(app_id, {"task": "learn", "policy": name})
                    self._last_run[(app_id, name)] = time.monotonic()
            except Exception:  # noqa: BLE001 - the scheduler must survive a bad tick
                log.exception("learning scheduler tick failed")
