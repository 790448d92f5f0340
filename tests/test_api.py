"""The REST API in-process (httpx ASGITransport): the contract an agent and an operator see."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from agent_lightning.config import Settings
from agent_lightning.store import Store
from tests.conftest import Api, make_api


def test_health_is_public_and_everything_else_needs_a_token(api: Api) -> None:
    assert api.client.get("/v1/health").json()["status"] == "ok"
    assert api.client.get("/v1/ready").json()["status"] == "ready"
    response = api.client.get("/v1/events")
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == "unauthorized" and body["request_id"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    bad = api.client.get("/v1/events", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_token"


def test_token_endpoint_client_credentials(api: Api) -> None:
    new = api.new_client("acme", ("Developer",))
    ok = api.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new.client_id,
            "client_secret": new.secret,
        },
    )
    assert ok.status_code == 200
    token = ok.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.json() == {
        "subject": new.client_id,
        "app": "acme",
        "roles": ["Developer"],
        "kind": "client",
    }
    # HTTP Basic works too (RFC 6749 §2.3.1).
    basic = api.client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(new.client_id, new.secret),
    )
    assert basic.status_code == 200
    wrong = api.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new.client_id,
            "client_secret": "wrong",
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert new.secret not in wrong.text
    grant = api.client.post("/v1/oauth/token", data={"grant_type": "password"})
    assert grant.json()["error"] == "unsupported_grant_type"


def test_revoked_client_token_stops_working(api: Api) -> None:
    new = api.new_client("acme", ("AgentAdmin",))
    token = api.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new.client_id,
            "client_secret": new.secret,
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    admin = api.auth("acme")
    assert api.client.delete(f"/v1/clients/{new.client_id}", headers=admin).status_code == 200
    assert api.client.get("/v1/me", headers=headers).status_code == 401


def test_events_single_batch_read_back_and_idempotency(api: Api) -> None:
    h = api.auth("acme", ("Agent",))
    created = api.client.post(
        "/v1/events",
        json={
            "id": "e-1",
            "text": "card not arrived",
            "user_id": "u1",
            "session_id": "s1",
            "intent_prediction": "card_arrival",
            "confidence": 0.62,
            "feedback_score": 1.0,
        },
        headers=h,
    )
    assert created.status_code == 201 and created.json() == {"id": "e-1", "status": "created"}
    again = api.client.post(
        "/v1/events",
        json={
            "id": "e-1",
            "text": "card not arrived",
            "user_id": "u1",
            "session_id": "s1",
            "intent_prediction": "card_arrival",
            "confidence": 0.62,
            "feedback_score": 1.0,
        },
        headers=h,
    )
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    clash = api.client.post("/v1/events", json={"id": "e-1", "text": "other"}, headers=h)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "id_conflict"

    batch = api.client.post(
        "/v1/events/batch",
        json=[{"text": "a"}, {"text": "b", "confidence": "high"}, {"text": "c"}],
        headers=h,
    )
    assert batch.status_code == 200
    body = batch.json()
    assert body["created"] == 2 and [r["index"] for r in body["rejected"]] == [1]

    reader = api.auth("acme", ("Analyst",))
    listing = api.client.get("/v1/events", params={"limit": 2}, headers=reader).json()
    assert [e["text"] for e in listing["items"]] == ["card not arrived", "a"]
    rest = api.client.get(
        "/v1/events", params={"cursor": listing["next_cursor"]}, headers=reader
    ).json()
    assert [e["text"] for e in rest["items"]] == ["c"] and rest["next_cursor"] is None
    one = api.client.get("/v1/events/e-1", headers=reader).json()
    assert one["intent_prediction"] == "card_arrival" and one["confidence"] == 0.62
    by_session = api.client.get("/v1/events", params={"session_id": "s1"}, headers=reader)
    assert [e["id"] for e in by_session.json()["items"]] == ["e-1"]


def test_bad_input_gets_clear_4xx_and_stores_nothing(api: Api) -> None:
    h = api.auth("acme", ("Agent",))
    headers = {**h, "Content-Type": "application/json"}
    malformed = api.client.post("/v1/events", content=b'{"text": "unterminated', headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    unknown = api.client.post("/v1/events", json={"txt": "typo"}, headers=h)
    assert unknown.status_code == 422 and "txt" in unknown.json()["error"]["message"]
    wrong_type = api.client.post("/v1/events", json={"confidence": "high"}, headers=h)
    assert wrong_type.status_code == 422
    not_object = api.client.post("/v1/events", json=[1, 2], headers=h)
    assert not_object.status_code == 422
    huge = api.client.post(
        "/v1/events/batch", content=json.dumps([{"text": "x" * 1000}] * 2000), headers=headers
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
    # Policy artifacts are megabytes: their upload route has its own, larger ceiling.
    big = {"artifact_b64": "A" * (2 * 1024 * 1024), "parent_version": 1}
    upload = api.client.post("/v1/policies/nope/versions", json=big, headers=api.auth())
    assert upload.status_code != 413 and upload.status_code < 500
    elsewhere = api.client.post("/v1/events", json={"text": "x" * (2 * 1024 * 1024)}, headers=h)
    assert elsewhere.status_code == 413
    bad_cursor = api.client.get("/v1/events", params={"cursor": "zzz"}, headers=api.auth())
    assert bad_cursor.status_code == 400
    assert api.store.count_records("events", "acme") == 0


def test_decide_reward_loop_without_a_policy_is_uniform(api: Api) -> None:
    h = api.auth("acme", ("Agent",))
    response = api.client.post(
        "/v1/decisions",
        json={
            "decision_point": "intent",
            "context": {"text": "my card was charged twice, mail bob@example.com"},
            "actions": [{"id": "refund"}, {"id": "card_lost"}, {"id": "escalate"}],
            "exclude": ["escalate"],
            "session_id": "s9",
        },
        headers=h,
    )
    assert response.status_code == 201
    decision = response.json()
    assert decision["probabilities"] == {"refund": 0.5, "card_lost": 0.5}
    assert decision["action_id"] in ("refund", "card_lost") and decision["propensity"] == 0.5
    stored = api.store.get_record("decisions", "acme", decision["decision_id"])
    assert "<EMAIL>" in stored.context["text"]
    # Logged over what it could choose, so learning and evaluation judge the served policy.
    assert [a["id"] for a in stored.actions] == ["refund", "card_lost"]
    assert (stored.attributes["excluded"], stored.attributes["excluded_count"]) == (["escalate"], 1)

    rid = decision["decision_id"]
    ok = api.client.post(f"/v1/decisions/{rid}/rewards", json={"value": 1.0}, headers=h)
    assert ok.status_code == 201
    session = api.client.post("/v1/rewards", json={"session_id": "s9", "value": 0.5}, headers=h)
    assert session.status_code == 201
    unknown = api.client.post("/v1/decisions/nope/rewards", json={"value": 1.0}, headers=h)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_decision"
    nan = api.client.post(
        "/v1/rewards",
        content=b'{"decision_id": "%s", "value": NaN}' % rid.encode(),
        headers={**h, "Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    out_of_range = api.client.post("/v1/rewards", json={"decision_id": rid, "value": 42}, headers=h)
    assert out_of_range.status_code == 422
    assert out_of_range.json()["error"]["code"] == "reward_out_of_range"
    rewards = api.client.get("/v1/rewards", params={"decision_id": rid}, headers=api.auth())
    assert [r["value"] for r in rewards.json()["items"]] == [1.0]


def test_a_retried_decide_returns_the_same_decision(api: Api) -> None:
    h = api.auth("acme", ("Agent",))
    body = {"id": "dec-1", "actions": [{"id": str(i)} for i in range(20)]}
    first = api.client.post("/v1/decisions", json=body, headers=h)
    second = api.client.post("/v1/decisions", json=body, headers=h)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["action_id"] == second.json()["action_id"]
    assert api.store.count_records("decisions", "acme") == 1
    # The same id for another question is a conflict, not the old answer: that could name an
    # action the caller did not offer.
    for other in (
        {**body, "actions": [{"id": "q"}, {"id": "r"}]},
        {**body, "decision_point": "tool"},
    ):
        reused = api.client.post("/v1/decisions", json=other, headers=h)
        assert reused.status_code == 409 and reused.json()["error"]["code"] == "id_conflict"
        assert "a new decision needs a new id" in reused.json()["error"]["message"]
    assert api.store.count_records("decisions", "acme") == 1


def test_decide_refuses_bad_candidate_lists(api: Api) -> None:
    h = api.auth("acme", ("Agent",))
    dup = api.client.post("/v1/decisions", json={"actions": [{"id": "a"}, {"id": "a"}]}, headers=h)
    assert dup.status_code == 422 and "twice" in dup.json()["error"]["message"]
    empty = api.client.post("/v1/decisions", json={"actions": []}, headers=h)
    assert empty.status_code == 422
    all_excluded = api.client.post(
        "/v1/decisions", json={"actions": [{"id": "a"}], "exclude": ["a"]}, headers=h
    )
    assert all_excluded.status_code == 422


def test_app_settings_change_is_audited_and_audit_verifies(api: Api) -> None:
    admin = api.auth("acme")
    patched = api.client.patch(
        "/v1/app", json={"reward_wait_seconds": 60, "reward_aggregation": "last"}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["reward_aggregation"] == "last"
    bad = api.client.patch("/v1/app", json={"reward_aggregation": "median"}, headers=admin)
    assert bad.status_code == 422
    entries = api.client.get("/v1/audit", headers=admin).json()["items"]
    settings_change = [e for e in entries if e["action"] == "app.settings"][0]
    assert settings_change["before"]["reward_aggregation"] == "sum"
    assert settings_change["after"]["reward_aggregation"] == "last"
    assert api.client.get("/v1/audit/verify", headers=admin).json()["ok"] is True
    export = api.client.get("/v1/audit/export", headers=admin)
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)


def test_audit_verify_describes_only_the_callers_own_entries(api: Api) -> None:
    from sqlalchemy import text

    acme, globex = api.auth("acme"), api.auth("globex")
    for headers in (acme, globex):
        api.client.patch("/v1/app", json={"reward_wait_seconds": 60}, headers=headers)
    last = {
        app: [e for e in api.client.get("/v1/audit", headers=h).json()["items"]][-1]["seq"]
        for app, h in (("acme", acme), ("globex", globex))
    }
    with api.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = :s"),
                     {"s": last["globex"]})  # fmt: skip
    theirs = api.client.get("/v1/audit/verify", headers=acme).json()
    assert theirs["ok"] is False and theirs["broken_seq"] is None
    assert "outside this app" in theirs["message"] and "app.settings" not in theirs["message"]
    own = api.client.get("/v1/audit/verify", headers=globex).json()
    assert own["ok"] is False and own["broken_seq"] == last["globex"]
    assert "was modified" in own["message"]


def test_database_down_gives_503_with_retry_after(settings: Settings, tmp_path) -> None:
    healthy = Store(settings.database_url)
    api = make_api(settings, healthy)
    token = api.token("acme", ("Agent",))
    # The same app, its database now unreachable (nothing listens on port 1).
    down = Store("postgresql://postgres@127.0.0.1:1/test", migrate=False)
    api.app.state.agl.store = down
    api.app.state.agl.pipeline.store = down
    api.app.state.agl.decisions.store = down
    response = api.client.post(
        "/v1/events", json={"text": "hi"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert api.client.get("/v1/ready").status_code == 503
    down.close()
    healthy.close()


def test_openapi_docs_are_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/v1/decisions" in spec["paths"] and "/v1/oauth/token" in spec["paths"]
    assert api.client.get("/docs").status_code == 200


@pytest.mark.parametrize("path", ["/v1/events", "/v1/decisions", "/v1/rewards"])
def test_list_limits_are_validated(api: Api, path: str) -> None:
    response = api.client.get(path, params={"limit": 0}, headers=api.auth())
    assert response.status_code == 422


def test_request_id_is_echoed(api: Api) -> None:
    response = api.client.get("/v1/health", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert httpx.Headers(response.headers).get("cache-control") == "no-store"


def test_policy_artifact_uploads_have_their_own_ceiling(tmp_path: Path) -> None:
    from dataclasses import replace

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'agl.db'}",
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
    )
    store = Store(settings.database_url)
    api = make_api(replace(settings, max_artifact_bytes=100_000), store)
    try:
        over = api.client.post(
            "/v1/policies/p/versions", json={"artifact_b64": "A" * 200_000}, headers=api.auth()
        )
        assert over.status_code == 413 and "100000 bytes" in over.json()["error"]["message"]
    finally:
        api.client.close()
        store.close()
