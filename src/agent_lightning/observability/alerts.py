"""Alert evaluation: every app's rules checked on a timer, each firing recorded and delivered.

A rule (see `alert_rules`) is checked per *subject* (a policy for `resolution_drop`, the app for
the others). When its condition starts to hold, an episode opens in `alert_firings` and an
`alert.firing` notification is queued; when it stops holding (or the rule is removed or
disabled), the episode is closed and `alert.resolved` is queued. A condition that cannot be
judged for lack of data counts as not holding: an alert is a claim, and no data backs it.

Evaluation runs on one background thread (`start`/`stop`, wired to the server's lifespan) and
can be driven directly with `evaluate_once()`; time comes from an injected clock. Notifications
go out from other threads, one per app with something to send, so a slow webhook never delays
evaluation or another app's notifications. Several replicas may evaluate the same rules: the
open-episode key is unique per app, so only one replica opens (and only one closes) each
episode, and only it notifies (see `firings`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from agent_lightning.observability.alert_rules import (
    AlertRules,
    ErrorRateRule,
    NoEventsRule,
    ResolutionDropRule,
    parse_rules,
)
from agent_lightning.observability.firings import (
    Firings,
    Verdict,
    as_utc,
    iso,
    open_key,
    public_firing,
)
from agent_lightning.observability.metrics import AppTally, Metrics
from agent_lightning.observability.webhooks import WebhookClient
from agent_lightning.store import Decision, Event, NotFound, Reward, Store, utcnow

log = logging.getLogger("agent_lightning.observability.alerts")

__all__ = ["AlertEvaluator", "Notifier", "resolution_rate"]


# -- conditions -------------------------------------------------------------------------------


def resolution_rate(
    store: Store,
    app_id: str,
    policy: str,
    version: int | None,
    since: datetime,
    until: datetime,
) -> tuple[float | None, int]:
    """(share of rewarded decisions with a reward > 0, how many were rewarded) in a window.

    Reads decisions through `(app_id, created_at)`, their rewards through
    `(app_id, decision_id)`; `version` None means any version of the policy.
    """
    conditions = [
        Decision.app_id == app_id,
        Decision.created_at >= since,
        Decision.created_at < until,
        Decision.policy_name == policy,
    ]
    if version is not None:
        conditions.append(Decision.policy_version == version)
    best = (
        select(Decision.id.label("id"), func.max(Reward.value).label("best"))
        .join(Reward, and_(Reward.app_id == Decision.app_id, Reward.decision_id == Decision.id))
        .where(*conditions)
        .group_by(Decision.id)
        .subquery()
    )
    with store.session() as s:
        rewarded, resolved = s.execute(
            select(func.count(), func.sum(case((best.c.best > 0, 1), else_=0)))
        ).one()
    rewarded = int(rewarded or 0)
    return ((int(resolved or 0) / rewarded) if rewarded else None), rewarded


class _RequestWindow:
    """Samples of one app's (responses, errors) counters over time, for windowed rates."""

    def __init__(self) -> None:
        self.samples: deque[tuple[datetime, int, int]] = deque()

    def add(self, now: datetime, total: int, errors: int, keep: timedelta) -> None:
        self.samples.append((now, total, errors))
        while len(self.samples) > 2 and self.samples[1][0] <= now - keep:
            self.samples.popleft()

    def delta(self, now: datetime, window: timedelta) -> tuple[int, int]:
        """Requests and errors since the newest sample at least `window` old (or the oldest)."""
        _, total, errors = self.samples[-1]
        base = self.samples[0]
        for sample in self.samples:
            if sample[0] <= now - window:
                base = sample
        return total - base[1], errors - base[2]


# -- the evaluator ----------------------------------------------------------------------------


class AlertEvaluator:
    def __init__(
        self,
        store: Store,
        rules: AlertRules,
        firings: Firings,
        tally: AppTally,
        notifier: Notifier | None = None,
        *,
        every_seconds: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.rules = rules
        self.firings = firings
        self.tally = tally
        self.notifier = notifier
        self.every_seconds = every_seconds
        self.clock = clock
        self._windows: dict[str, _RequestWindow] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="agl-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.evaluate_once()
            except Exception:  # noqa: BLE001 - keep evaluating; the next tick may succeed
                log.exception("alert evaluation failed")

    def evaluate_once(self) -> list[dict[str, Any]]:
        """Check every app's rules now; returns the transitions (opened and resolved)."""
        now = self.clock()
        transitions: list[dict[str, Any]] = []
        for config in self.rules.configured():
            try:
                transitions += self._evaluate_app(config, now)
            except Exception:  # noqa: BLE001 - one app's failure must not silence the others
                log.exception("alert evaluation failed for app %s", config.app_id)
        return transitions

    def _evaluate_app(self, config: Any, now: datetime) -> list[dict[str, Any]]:
        app_id = config.app_id
        rules = [r for r in parse_rules(list(config.rules or [])) if r.enabled]
        self._sample_requests(app_id, rules, now)
        open_now = self.firings.open_episodes(app_id)
        transitions: list[dict[str, Any]] = []
        judged: set[str] = set()
        for rule in rules:
            for subject, verdict in self._judge(app_id, rule, config, now):
                key = open_key(rule.id, subject)
                judged.add(key)
                episode = open_now.get(key)
                if verdict.firing and episode is None:
                    row = self.firings.open(app_id, rule, subject, verdict, now)
                    if row is not None:
                        transitions.append(self._notify(app_id, row.id, "alert.firing", key))
                elif not verdict.firing and episode is not None:
                    if self.firings.resolve(app_id, episode.id, now, verdict.message):
                        transitions.append(self._notify(app_id, episode.id, "alert.resolved", key))
        for key, episode in open_now.items():
            if key not in judged:  # the rule (or its subject) is gone or disabled
                if self.firings.resolve(app_id, episode.id, now, "the rule no longer applies"):
                    transitions.append(self._notify(app_id, episode.id, "alert.resolved", key))
        return transitions

    def _notify(self, app_id: str, firing_id: str, event: str, key: str) -> dict[str, Any]:
        if self.notifier is not None:
            self.notifier.notify(app_id, firing_id, event)
        return {"app_id": app_id, "firing_id": firing_id, "event": event, "key": key}

    def _sample_requests(self, app_id: str, rules: list[Any], now: datetime) -> None:
        windows = [r.window_minutes for r in rules if isinstance(r, ErrorRateRule)]
        if not windows:
            self._windows.pop(app_id, None)
            return
        total, errors = self.tally.get(app_id)
        keep = timedelta(minutes=max(windows)) + timedelta(seconds=2 * self.every_seconds)
        self._windows.setdefault(app_id, _RequestWindow()).add(now, total, errors, keep)

    def _judge(self, app_id: str, rule: Any, config: Any, now: datetime):
        if isinstance(rule, ResolutionDropRule):
            yield from self._resolution_drop(app_id, rule, now)
        elif isinstance(rule, ErrorRateRule):
            yield "", self._error_rate(app_id, rule, now)
        elif isinstance(rule, NoEventsRule):
            yield "", self._no_events(app_id, rule, config, now)

    def _resolution_drop(self, app_id: str, rule: ResolutionDropRule, now: datetime):
        window = timedelta(minutes=rule.window_minutes)
        for policy in self._live_policies(app_id, rule.policy):
            current, n_current = resolution_rate(
                self.store, app_id, policy.name, policy.live_version, now - window, now
            )
            previous, n_previous = resolution_rate(
                self.store, app_id, policy.name, None, now - 2 * window, now - window
            )
            details = {
                "policy": policy.name,
                "live_version": policy.live_version,
                "current_rate": current,
                "previous_rate": previous,
                "current_samples": n_current,
                "previous_samples": n_previous,
                "window_minutes": rule.window_minutes,
            }
            if current is None or previous is None or min(n_current, n_previous) < rule.min_samples:
                yield (
                    policy.name,
                    Verdict(False, None, rule.drop_points, "not enough data", details),
                )
                continue
            drop = (previous - current) * 100
            message = (
                f"resolution rate of {policy.name} v{policy.live_version} is {current:.1%} over "
                f"the last {rule.window_minutes:g} min, {drop:.1f} points below the previous "
                f"window ({previous:.1%})"
            )
            yield (
                policy.name,
                Verdict(drop > rule.drop_points, drop, rule.drop_points, message, details),
            )

    def _live_policies(self, app_id: str, name: str | None) -> list[Any]:
        if name is not None:
            try:
                policy = self.store.get_policy(app_id, name)
            except NotFound:
                return []
            return [policy] if policy.live_version is not None else []
        page = self.store.list_policies(app_id, limit=1000)
        return [p for p in page.items if p.live_version is not None]

    def _error_rate(self, app_id: str, rule: ErrorRateRule, now: datetime) -> Verdict:
        window = self._windows.get(app_id)
        total, errors = (
            window.delta(now, timedelta(minutes=rule.window_minutes)) if window else (0, 0)
        )
        details = {"requests": total, "errors": errors, "window_minutes": rule.window_minutes}
        if total < rule.min_requests:
            return Verdict(False, None, rule.threshold, "not enough requests", details)
        share = errors / total
        message = (
            f"{share:.1%} of {total} requests failed with 5xx over the last "
            f"{rule.window_minutes:g} min (threshold {rule.threshold:.1%})"
        )
        return Verdict(share >= rule.threshold, share, rule.threshold, message, details)

    def _no_events(self, app_id: str, rule: NoEventsRule, config: Any, now: datetime) -> Verdict:
        with self.store.session() as s:
            last = s.scalar(select(func.max(Event.created_at)).where(Event.app_id == app_id))
        since = max(as_utc(last), as_utc(config.updated_at)) if last else as_utc(config.updated_at)
        silent = (now - since).total_seconds() / 60
        message = f"no events for {silent:.0f} min (limit {rule.minutes:g} min)"
        details = {"last_event_at": iso(last), "silent_minutes": round(silent, 2)}
        return Verdict(silent > rule.minutes, silent, rule.minutes, message, details)


# -- delivery ---------------------------------------------------------------------------------


_Notification = tuple[str, str, str, dict[str, Any] | None]  # app, firing id, event, alert


class Notifier:
    """Sends queued notifications to each app's webhook, on a thread of that app's own.

    Each app has its own queue (a lane), drained in order by a thread that starts when something
    is queued and ends once the lane is empty. A slow or failing webhook (its retries can take
    minutes) so delays only its own app's notifications, and an app's `alert.firing` still goes
    out before its `alert.resolved`. A notification carries the episode as it was when queued,
    and its delivery status is recorded only while the episode is still in that state: a late
    `alert.firing` (from this replica or another) cannot overwrite the delivery status of the
    `alert.resolved` that followed it.
    """

    def __init__(
        self,
        rules: AlertRules,
        firings: Firings,
        client: WebhookClient,
        metrics: Metrics | None = None,
    ) -> None:
        self.rules = rules
        self.firings = firings
        self.client = client
        self.metrics = metrics
        self._cond = threading.Condition()
        self._lanes: dict[str, deque[_Notification]] = {}
        self._draining: set[str] = set()  # apps whose lane has a thread
        self._pending = 0  # queued or being delivered
        self._running = False

    def notify(self, app_id: str, firing_id: str, event: str) -> None:
        try:
            row = self.firings.get(app_id, firing_id)
        except Exception:  # noqa: BLE001 - still queue it; delivery reads the row again
            log.exception("reading alert %s for its notification failed", firing_id)
            row = None
        alert = _alert(row) if row is not None else None
        with self._cond:
            self._lanes.setdefault(app_id, deque()).append((app_id, firing_id, event, alert))
            self._pending += 1
            if self._running:
                self._drain_lane(app_id)

    def start(self) -> None:
        with self._cond:
            self._running = True
            for app_id in list(self._lanes):
                self._drain_lane(app_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, for at most `timeout` seconds in all; the rest stays queued."""
        with self._cond:
            if not self._running:
                return
            self._cond.wait_for(lambda: self._pending == 0, timeout)
            self._running = False  # each lane stops after the delivery it is making
            left = sum(len(lane) for lane in self._lanes.values())
        if left:
            log.warning("%d alert notifications were not delivered before shutdown", left)

    def close(self) -> None:
        """Release the HTTP client (after `stop`, when the process is done with alerts)."""
        self.client.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far has been handled (for tests and shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def run_pending(self) -> int:
        """Deliver what is queued on the calling thread (for lanes that no thread drains)."""
        done = 0
        while True:
            with self._cond:
                lane = next(
                    (q for app_id, q in self._lanes.items() if q and app_id not in self._draining),
                    None,
                )
                if lane is None:
                    return done
                item = lane.popleft()
            try:
                self.deliver(*item)
                done += 1
            finally:
                self._done()

    def _drain_lane(self, app_id: str) -> None:
        """Start a thread on the app's lane unless one runs (the caller holds the lock)."""
        if app_id in self._draining or not self._lanes.get(app_id):
            return
        self._draining.add(app_id)
        threading.Thread(
            target=self._drain, args=(app_id,), name=f"agl-alert-webhooks-{app_id}", daemon=True
        ).start()

    def _drain(self, app_id: str) -> None:
        while True:
            with self._cond:
                lane = self._lanes.get(app_id)
                if not lane or not self._running:
                    self._draining.discard(app_id)
                    if not lane:
                        self._lanes.pop(app_id, None)
                    return
                item = lane.popleft()
            try:
                self.deliver(*item)
            except Exception:  # noqa: BLE001 - one bad delivery must not stop the others
                log.exception("alert delivery failed")
            finally:
                self._done()

    def _done(self) -> None:
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def deliver(
        self, app_id: str, firing_id: str, event: str, alert: dict[str, Any] | None = None
    ) -> None:
        """Send one notification: `alert` as queued (None: the episode as it is now)."""
        if alert is None:
            row = self.firings.get(app_id, firing_id)
            if row is None:
                return
            alert = _alert(row)
        # The state the episode is in while this notification is the one it is waiting for.
        state = "resolved" if event == "alert.resolved" else "firing"
        url, secret = self.rules.webhook(app_id)
        if not url:
            self.firings.set_delivery(app_id, firing_id, "none", 0, None, if_status=state)
            return
        payload = {
            "type": event,
            "app_id": app_id,
            "alert": alert,
            "sent_at": utcnow().isoformat(),
        }
        result = self.client.send(url, secret, payload, f"{firing_id}:{event}")
        status = "delivered" if result.ok else "failed"
        self.firings.set_delivery(
            app_id, firing_id, status, result.attempts, result.error, if_status=state
        )
        if self.metrics is not None:
            self.metrics.alert_notifications.labels(status).inc()
        if not result.ok:
            log.warning("alert %s for app %s was not delivered: %s", event, app_id, result.error)


def _alert(row: Any) -> dict[str, Any]:
    """The episode as a notification shows it (its delivery status is not part of it)."""
    alert = public_firing(row)
    alert.pop("delivery")
    return alert
