"""Alerts: rules through the API, evaluation on an injected clock, delivery to a real webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from obs_harness import FakeClock, ObsApi, WebhookReceiver, build_api, wait_until
from sqlalchemy import func, select

from agent_lightning.observability import (
    AlertConfig,
    AlertEvaluator,
    AlertFiring,
    ObservabilitySettings,
    WebhookClient,
)
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Policy, PolicyVersion, new_id

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock, sleeps: list[float]) -> Iterator[ObsApi]:
    made = build_api(tmp_path, clock=clock, sleep=sleeps.append)
    yield made
    made.client.close()
    made.obs.stop()
    made.store.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def _put(api: ObsApi, body: dict, roles: tuple[str, ...] = ("AgentAdmin",)):
    return api.client.put("/v1/alerts/rules", json=body, headers=api.auth("acme", roles))


def _evaluate(api: ObsApi) -> list[dict]:
    transitions = api.obs.evaluator.evaluate_once()
    api.obs.notifier.run_pending()
    return transitions


def _verify(received, secret: str = SECRET) -> dict:
    timestamp = received.headers["x-agl-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256)
    assert hmac.compare_digest(
        received.headers["x-agl-signature"], "sha256=" + expected.hexdigest()
    )
    return received.json()


def test_rules_api_roles_validation_secrecy_and_audit(
    api: ObsApi, receiver: WebhookReceiver
) -> None:
    body = {
        "rules": [
            {"id": "quiet", "kind": "no_events", "minutes": 30},
            {"id": "errors", "kind": "error_rate", "threshold": 0.1, "severity": "critical"},
        ],
        "webhook": {"url": receiver.url, "secret": SECRET},
    }
    assert _put(api, body, ("Developer",)).status_code == 403
    saved = _put(api, body)
    assert saved.status_code == 200, saved.text
    assert saved.json()["webhook"] == {"url": receiver.url, "has_secret": True}
    assert SECRET not in saved.text
    shown = api.client.get("/v1/alerts/rules", headers=api.auth()).json()
    assert [r["id"] for r in shown["rules"]] == ["quiet", "errors"]
    assert shown["rules"][1]["window_minutes"] == 5.0  # defaults filled in
    assert (
        api.client.get("/v1/alerts/rules", headers=api.auth("acme", ("Analyst",))).status_code
        == 403
    )
    assert api.client.get("/v1/alerts", headers=api.auth("acme", ("Analyst",))).status_code == 200
    # Another app has its own (empty) configuration.
    assert api.client.get("/v1/alerts/rules", headers=api.auth("globex")).json()["rules"] == []

    with api.store.session() as s:
        stored = s.scalar(select(AlertConfig).where(AlertConfig.app_id == "acme"))
    assert stored.webhook_secret and SECRET not in stored.webhook_secret  # encrypted at rest
    (entry,) = [e for e in AuditLog(api.store).entries("acme") if e.action.startswith("alerts")]
    assert entry.action == "alerts.rules.update" and entry.target_type == "alert_rules"
    assert entry.before["rules"] == [] and len(entry.after["rules"]) == 2
    assert SECRET not in json.dumps(entry.after)
    assert AuditLog(api.store).verify().ok

    # Omitting the webhook keeps it; a new receiver never inherits the old secret.
    assert _put(api, {"rules": []}).json()["webhook"]["has_secret"] is True
    moved = _put(api, {"rules": [], "webhook": {"url": "https://hooks.example.com/agl"}})
    assert moved.json()["webhook"] == {"url": "https://hooks.example.com/agl", "has_secret": False}

    for bad in (
        {"rules": [{"id": "a", "kind": "no_events"}, {"id": "a", "kind": "no_events"}]},
        {"rules": [{"id": "a", "kind": "cpu_high"}]},
        {"rules": [{"id": "a", "kind": "error_rate", "threshold": 2}]},
        {"rules": [], "webhook": {"url": "http://169.254.169.254/latest/meta-data"}},
        {"rules": [], "webhook": {"url": "ftp://example.com/x"}},
        {"rules": [], "webhook": {"url": "https://example.com", "secret": "short"}},
    ):
        response = _put(api, bad)
        assert response.status_code == 422, bad


def test_no_events_fires_once_delivers_signed_and_resolves(
    api: ObsApi, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    rules = {"rules": [{"id": "quiet", "kind": "no_events", "minutes": 30}]}
    _put(api, {**rules, "webhook": {"url": receiver.url, "secret": SECRET}})
    clock.advance(minutes=10)
    assert _evaluate(api) == []
    clock.advance(minutes=21)
    (opened,) = _evaluate(api)
    assert opened["event"] == "alert.firing"
    (first,) = receiver.wait_for(1)
    payload = _verify(first)
    assert first.headers["x-agl-event"] == "alert.firing"
    assert payload["type"] == "alert.firing" and payload["app_id"] == "acme"
    assert payload["alert"]["rule_id"] == "quiet" and payload["alert"]["status"] == "firing"
    assert payload["alert"]["value"] == pytest.approx(31, abs=0.1)

    clock.advance(minutes=1)
    assert _evaluate(api) == []  # still firing: no second episode, no second notification
    listed = api.client.get("/v1/alerts", headers=api.auth("acme", ("Analyst",))).json()["items"]
    assert len(listed) == 1 and listed[0]["status"] == "firing"
    assert listed[0]["delivery"] == {"status": "delivered", "attempts": 1, "error": None}

    api.store.insert_records(
        "events", "acme", [{"id": "ev", "text": "back", "content_hash": "x", "created_at": clock()}]
    )
    (closed,) = _evaluate(api)
    assert closed["event"] == "alert.resolved" and closed["firing_id"] == opened["firing_id"]
    second = receiver.wait_for(2)[1]
    assert _verify(second)["alert"]["resolved_at"] is not None
    assert second.headers["x-agl-delivery"] == f"{opened['firing_id']}:alert.resolved"
    resolved = api.client.get(
        "/v1/alerts?status=resolved", headers=api.auth("acme", ("Analyst",))
    ).json()["items"]
    assert [r["id"] for r in resolved] == [opened["firing_id"]]
    assert resolved[0]["fired_at"] < resolved[0]["resolved_at"]


def _policy_with_live_version(api: ObsApi, versions: int) -> None:
    api.store.ensure_app("acme")
    policy = api.store.create_policy(
        Policy(id=new_id(), app_id="acme", name="router", decision_point="support")
    )
    for _ in range(versions):
        api.store.add_policy_version(
            PolicyVersion(id=new_id(), policy_id=policy.id, artifact=None), make_live=True
        )


def _decisions(api: ObsApi, prefix: str, version: int, at, resolved: int, unresolved: int) -> None:
    decisions, rewards = [], []
    for i in range(resolved + unresolved):
        ident = f"{prefix}-{i}"
        decisions.append(
            {
                "id": ident,
                "decision_point": "support",
                "action_id": "reply",
                "propensity": 1.0,
                "policy_name": "router",
                "policy_version": version,
                "content_hash": ident,
                "created_at": at,
            }
        )
        value = 1.0 if i < resolved else 0.0
        rewards.append(
            {"id": "r" + ident, "decision_id": ident, "value": value, "content_hash": ident}
        )
    api.store.insert_records("decisions", "acme", decisions)
    api.store.insert_records("rewards", "acme", rewards)


def test_resolution_drop_of_the_live_version_fires_and_resolves(
    api: ObsApi, clock: FakeClock
) -> None:
    _policy_with_live_version(api, 2)
    _put(
        api,
        {
            "rules": [
                {"id": "drop", "kind": "resolution_drop", "drop_points": 20, "min_samples": 10},
                {"id": "picky", "kind": "resolution_drop", "drop_points": 1, "min_samples": 100},
            ]
        },
    )
    now = clock()
    _decisions(api, "old", 1, now - timedelta(minutes=90), resolved=16, unresolved=4)  # 80%
    _decisions(api, "new", 2, now - timedelta(minutes=20), resolved=8, unresolved=12)  # 40%
    _decisions(api, "stale", 1, now - timedelta(minutes=10), resolved=0, unresolved=30)  # not live
    (opened,) = _evaluate(api)
    assert opened["key"] == "drop|router"
    with api.store.session() as s:
        row = s.scalar(select(AlertFiring))
    assert row.value == pytest.approx(40.0) and row.threshold == 20
    assert row.subject == "router" and row.delivery_status == "none"  # no webhook configured
    assert row.details["current_rate"] == 0.4 and row.details["previous_rate"] == 0.8
    assert row.details["live_version"] == 2 and row.details["current_samples"] == 20
    assert "40.0 points below" in row.message

    _decisions(api, "better", 2, now - timedelta(minutes=5), resolved=20, unresolved=0)  # 70%
    (closed,) = _evaluate(api)
    assert closed["event"] == "alert.resolved"


def test_error_rate_over_a_window(api: ObsApi, clock: FakeClock) -> None:
    _put(api, {"rules": [{"id": "5xx", "kind": "error_rate", "threshold": 0.2}]})
    tally = api.obs.metrics.tally
    assert _evaluate(api) == []  # first sample
    for status in [500] * 10 + [200] * 20:
        tally.add("acme", status)
    clock.advance(minutes=1)
    (opened,) = _evaluate(api)
    with api.store.session() as s:
        assert s.scalar(select(AlertFiring.value)) == pytest.approx(1 / 3)
    for _ in range(100):
        tally.add("acme", 200)
    clock.advance(minutes=6)  # the errors are now outside the 5-minute window
    (closed,) = _evaluate(api)
    assert closed["firing_id"] == opened["firing_id"] and closed["event"] == "alert.resolved"


def test_removing_a_rule_resolves_its_episode(api: ObsApi, clock: FakeClock) -> None:
    _put(api, {"rules": [{"id": "quiet", "kind": "no_events", "minutes": 1}]})
    clock.advance(minutes=5)
    assert [t["event"] for t in _evaluate(api)] == ["alert.firing"]
    _put(api, {"rules": [{"id": "quiet", "kind": "no_events", "minutes": 1, "enabled": False}]})
    assert [t["event"] for t in _evaluate(api)] == ["alert.resolved"]
    with api.store.session() as s:
        row = s.scalar(select(AlertFiring))
    assert row.details["resolution"] == "the rule no longer applies"


def test_two_replicas_open_one_episode(api: ObsApi, clock: FakeClock) -> None:
    _put(api, {"rules": [{"id": "quiet", "kind": "no_events", "minutes": 1}]})
    clock.advance(minutes=5)
    obs = api.obs
    other = AlertEvaluator(api.store, obs.alert_rules, obs.firings, obs.metrics.tally, clock=clock)
    assert len(obs.evaluator.evaluate_once()) == 1
    assert other.evaluate_once() == []
    with api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(AlertFiring)) == 1


def test_webhook_retries_with_backoff_and_gives_up_on_client_errors() -> None:
    sleeps: list[float] = []
    client = WebhookClient(attempts=4, backoff=0.5, sleep=sleeps.append)
    with WebhookReceiver(statuses=[503, 503, 200]) as flaky:
        result = client.send(flaky.url, SECRET, {"type": "alert.firing"}, "d-1")
        assert result.ok and result.attempts == 3 and sleeps == [0.5, 1.0]
        deliveries = {r.headers["x-agl-delivery"] for r in flaky.received}
        assert deliveries == {"d-1"}  # the same id on every retry
        _verify(flaky.received[-1])
    with WebhookReceiver(statuses=[404]) as gone:
        result = client.send(gone.url, None, {"type": "alert.firing"}, "d-2")
        assert not result.ok and result.attempts == 1 and "404" in result.error
        assert "x-agl-signature" not in gone.received[0].headers
    refused = client.send("http://169.254.169.254/hook", None, {}, "d-3")
    assert not refused.ok and refused.attempts == 0 and "link-local" in refused.error
    client.close()


def test_webhook_timeout_is_bounded() -> None:
    client = WebhookClient(attempts=2, backoff=0.01, timeout=0.2)
    with WebhookReceiver(delay=1.0) as slow:
        result = client.send(slow.url, None, {"type": "alert.firing"}, "d-4")
    assert not result.ok and result.attempts == 2 and "Timeout" in result.error
    client.close()


def test_failed_delivery_is_recorded(api: ObsApi, clock: FakeClock, sleeps: list[float]) -> None:
    with WebhookReceiver(statuses=[500] * 10) as broken:
        _put(
            api,
            {
                "rules": [{"id": "quiet", "kind": "no_events", "minutes": 1}],
                "webhook": {"url": broken.url},
            },
        )
        clock.advance(minutes=5)
        _evaluate(api)
        assert len(broken.received) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    item = api.client.get("/v1/alerts", headers=api.auth()).json()["items"][0]
    assert item["delivery"]["status"] == "failed" and item["delivery"]["attempts"] == 4
    assert "HTTP 500" in item["delivery"]["error"]


def test_server_lifecycle_runs_the_evaluator_on_a_timer(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    api = build_api(tmp_path, settings=ObservabilitySettings(alerts_every_seconds=0.05))
    assert api.obs.start in api.state.extras["on_startup"]
    assert api.obs.stop in api.state.extras["on_shutdown"]
    _put(
        api,
        {
            "rules": [{"id": "quiet", "kind": "no_events", "minutes": 0.001}],
            "webhook": {"url": receiver.url, "secret": SECRET},
        },
    )
    api.obs.start()
    try:
        assert wait_until(lambda: len(receiver.received) >= 1, timeout=5)
    finally:
        api.obs.stop()
    assert _verify(receiver.received[0])["type"] == "alert.firing"
    api.client.close()
    api.store.close()
