"""Alert delivery per app: one tenant's slow webhook does not hold up another's notifications,
and a late `alert.firing` cannot overwrite what the `alert.resolved` after it recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from obs_harness import FakeClock, ObsApi, WebhookReceiver, build_api, wait_until

from agent_lightning.observability import AlertEvaluator, Notifier
from agent_lightning.observability.webhooks import WebhookClient


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[ObsApi]:
    made = build_api(tmp_path, clock=clock, sleep=lambda _: None)
    yield made
    made.client.close()
    made.obs.stop()
    made.store.close()


def _quiet_rules(api: ObsApi, app_id: str, url: str, rules: int = 1) -> None:
    body = {
        "rules": [{"id": f"quiet-{i}", "kind": "no_events", "minutes": 1} for i in range(rules)],
        "webhook": {"url": url},
    }
    response = api.client.put("/v1/alerts/rules", json=body, headers=api.auth(app_id))
    assert response.status_code == 200, response.text


def _delivery(api: ObsApi, app_id: str) -> dict:
    items = api.client.get("/v1/alerts", headers=api.auth(app_id)).json()["items"]
    return items[0]["delivery"]


def test_a_slow_webhook_delays_only_its_own_app(api: ObsApi, clock: FakeClock) -> None:
    with WebhookReceiver(delay=1.5) as slow, WebhookReceiver() as fast:
        _quiet_rules(api, "acme", slow.url, rules=3)
        clock.advance(minutes=5)
        api.obs.notifier.start()
        assert len(api.obs.evaluator.evaluate_once()) == 3  # queued first: 3 x 1.5 s to deliver
        _quiet_rules(api, "globex", fast.url)
        clock.advance(minutes=5)
        started = time.monotonic()
        assert [t["app_id"] for t in api.obs.evaluator.evaluate_once()] == ["globex"]
        assert wait_until(lambda: len(fast.received) == 1, timeout=2.0)
        assert time.monotonic() - started < 2.0
        assert len(slow.received) < 3  # acme's are still on their way
        assert wait_until(lambda: len(slow.received) == 3, timeout=10)
        assert api.obs.notifier.join(timeout=5)
    assert _delivery(api, "globex") == {"status": "delivered", "attempts": 1, "error": None}


def test_shutdown_is_bounded_with_a_hanging_webhook(api: ObsApi, clock: FakeClock) -> None:
    with WebhookReceiver(delay=3.0) as hanging:
        _quiet_rules(api, "acme", hanging.url, rules=3)
        clock.advance(minutes=5)
        api.obs.notifier.start()
        api.obs.evaluator.evaluate_once()
        started = time.monotonic()
        api.obs.notifier.stop(timeout=0.5)
        assert time.monotonic() - started < 1.5


def test_a_late_firing_notification_does_not_overwrite_the_resolved_one(
    api: ObsApi, clock: FakeClock
) -> None:
    # Replica 1 opened the episode and queued `alert.firing`; before it got to send it, replica
    # 2 saw the condition clear, closed the episode and delivered `alert.resolved`.
    with WebhookReceiver(statuses=[200, 500, 500, 500, 500]) as receiver:
        _quiet_rules(api, "acme", receiver.url)
        clock.advance(minutes=5)
        assert api.obs.evaluator.evaluate_once()[0]["event"] == "alert.firing"

        obs = api.obs
        replica = Notifier(obs.alert_rules, obs.firings, WebhookClient(sleep=lambda _: None))
        evaluator = AlertEvaluator(
            api.store, obs.alert_rules, obs.firings, obs.metrics.tally, replica, clock=clock
        )
        event = {"id": "ev", "text": "back", "content_hash": "x", "created_at": clock()}
        api.store.insert_records("events", "acme", [event])
        assert evaluator.evaluate_once()[0]["event"] == "alert.resolved"
        assert replica.run_pending() == 1
        replica.close()
        assert _delivery(api, "acme") == {"status": "delivered", "attempts": 1, "error": None}

        assert obs.notifier.run_pending() == 1  # the late firing: it fails after 4 attempts
        assert _delivery(api, "acme") == {"status": "delivered", "attempts": 1, "error": None}
        late = receiver.wait_for(5)[-1].json()
    assert late["type"] == "alert.firing"  # and it says what was true when it was queued
    assert late["alert"]["status"] == "firing" and late["alert"]["resolved_at"] is None
