"""A session's timeline: every kind of record in time order, bounded, one app only."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from obs_harness import ObsApi, obs_api_fixture  # noqa: F401

from agent_lightning.observability import TraceSpan, session_timeline
from agent_lightning.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _seed(store: Store, app_id: str = "acme", session: str = "s-1") -> None:
    store.ensure_app(app_id)
    store.insert_records(
        "events",
        app_id,
        [
            {
                "id": f"e-{session}",
                "text": "where is my card?",
                "session_id": session,
                "occurred_at": T0,
                "content_hash": "e1",
            }
        ],
    )
    store.insert_records(
        "decisions",
        app_id,
        [
            {
                "id": f"d-{session}",
                "decision_point": "support",
                "session_id": session,
                "actions": [{"id": "reply"}, {"id": "escalate"}],
                "action_id": "escalate",
                "propensity": 0.25,
                "probabilities": {"reply": 0.75, "escalate": 0.25},
                "content_hash": "d1",
                "created_at": T0,  # same instant as the event: the event comes first
            }
        ],
    )
    store.insert_records(
        "rewards",
        app_id,
        [
            {
                "id": f"r-{session}",
                "decision_id": f"d-{session}",
                "session_id": session,
                "value": 1.0,
                "content_hash": "r1",
                "created_at": T0 + timedelta(seconds=3),
            }
        ],
    )
    with store.session() as s:
        s.add(
            TraceSpan(
                app_id=app_id,
                trace_id="ab" * 16,
                span_id=hashlib.sha256(session.encode()).hexdigest()[:16],
                name="ChatOpenAI",
                kind="client",
                start_time=T0 + timedelta(seconds=1),
                end_time=T0 + timedelta(seconds=2),
                duration_ms=1000.0,
                status_code="ok",
                session_id=session,
            )
        )
    try:
        from agent_lightning.gateway.models import GatewaySpan
    except ImportError:  # the gateway is optional
        return
    with store.session() as s:
        s.add(
            GatewaySpan(
                id=f"g-{session}",
                app_id=app_id,
                session_id=session,
                endpoint="chat.completions",
                model="support-bot",
                stream=False,
                status="ok",
                latency_ms=500.0,
                retries=0,
                pii_counts={},
                created_at=T0 + timedelta(seconds=2),
            )
        )


def _has_gateway() -> bool:
    try:
        import agent_lightning.gateway.models  # noqa: F401
    except ImportError:
        return False
    return True


def test_items_come_in_time_order_with_their_details(store: Store) -> None:
    _seed(store)
    timeline = session_timeline(store, "acme", "s-1")
    kinds = [item["type"] for item in timeline["items"]]
    calls = ["llm_call"] if _has_gateway() else []
    assert kinds == ["event", "decision", "span", *calls, "reward"]
    assert timeline["truncated"] is False
    by_type = {item["type"]: item for item in timeline["items"]}
    event, decision, span, reward = (by_type[k] for k in ("event", "decision", "span", "reward"))
    assert event["time"] == T0.isoformat() and event["text"] == "where is my card?"
    assert decision["probabilities"] == {"reply": 0.75, "escalate": 0.25}
    assert decision["action_id"] == "escalate" and decision["propensity"] == 0.25
    assert span["trace_id"] == "ab" * 16 and span["duration_ms"] == 1000.0
    if calls:
        call = by_type["llm_call"]
        assert call["model"] == "support-bot"
        assert call["end_time"] == (T0 + timedelta(seconds=2.5)).isoformat()
    assert reward["value"] == 1.0 and reward["decision_id"] == "d-s-1"


def test_limit_truncates_and_other_sessions_and_apps_stay_out(store: Store) -> None:
    _seed(store)
    _seed(store, session="s-2")
    _seed(store, app_id="globex")
    first_two = session_timeline(store, "acme", "s-1", limit=2)
    assert [i["type"] for i in first_two["items"]] == ["event", "decision"]
    assert first_two["truncated"] is True
    everything = session_timeline(store, "acme", "s-1")
    assert {i["id"] for i in everything["items"]} >= {"e-s-1", "d-s-1", "r-s-1"}
    assert len(everything["items"]) == len(session_timeline(store, "globex", "s-1")["items"])
    assert session_timeline(store, "acme", "nobody")["items"] == []


def test_timeline_route_needs_telemetry_read(obs_api: ObsApi) -> None:
    _seed(obs_api.store)
    url = "/v1/sessions/s-1/timeline?limit=3"
    assert obs_api.client.get(url).status_code == 401
    assert obs_api.client.get(url, headers=obs_api.auth("acme", ("Agent",))).status_code == 403
    response = obs_api.client.get(url, headers=obs_api.auth("acme", ("Analyst",)))
    assert response.status_code == 200
    assert len(response.json()["items"]) == 3 and response.json()["truncated"] is True
    bad = obs_api.client.get(
        "/v1/sessions/s-1/timeline?limit=0", headers=obs_api.auth("acme", ("Analyst",))
    )
    assert bad.status_code == 422
