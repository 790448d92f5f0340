"""Security through the API: API keys, brute force, retention, erasure, secrets, attacks."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from agent_lightning.config import Settings
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Store
from tests.conftest import Api, make_api


def test_personal_api_keys_work_and_revoke(api: Api) -> None:
    analyst = api.auth("acme", ("Analyst",))
    made = api.client.post("/v1/api-keys", json={"name": "notebook"}, headers=analyst)
    assert made.status_code == 201
    key = made.json()["key"]
    assert made.json()["roles"] == ["Analyst"]
    with_key = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/v1/events", headers=with_key).status_code == 200
    assert api.client.post("/v1/events", json={"text": "x"}, headers=with_key).status_code == 403
    # A key cannot carry more power than its owner.
    escalate = api.client.post("/v1/api-keys", json={"roles": ["AgentAdmin"]}, headers=analyst)
    assert escalate.status_code == 403
    listing = api.client.get("/v1/api-keys", headers=analyst).json()["items"]
    assert [k["key_id"] for k in listing] == [made.json()["key_id"]]
    assert key not in json.dumps(listing)
    revoked = api.client.delete(f"/v1/api-keys/{made.json()['key_id']}", headers=analyst)
    assert revoked.status_code == 200
    assert api.client.get("/v1/events", headers=with_key).status_code == 401
    forged = key[:-4] + "abcd"
    assert (
        api.client.get("/v1/events", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )


def test_token_endpoint_brute_force_is_rate_limited_and_audited(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        jwt_secret="k" * 40,
        token_rate=0.01,
        token_burst=5,
    )
    store = Store(settings.database_url)
    api = make_api(settings, store)
    new = api.new_client("acme", ("Agent",))
    codes = []
    for i in range(8):
        response = api.client.post(
            "/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": new.client_id,
                "client_secret": f"guess-{i}",
            },
        )
        codes.append(response.status_code)
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    assert int(response.headers["retry-after"]) >= 1
    # Even the right secret is refused while the limit holds: guessing cannot race it.
    right = api.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new.client_id,
            "client_secret": new.secret,
        },
    )
    assert right.status_code == 429
    denied = [e for e in api.app.state.agl.audit.entries() if e.action == "auth.token_denied"]
    assert len(denied) == 5 and denied[0].outcome == "denied"
    assert all("guess" not in json.dumps(e.after or {}) for e in denied)
    # Successful sign-ins are not charged: a fleet of workers sharing a client starts at once
    # (from a fresh address: this one's failures above used up its own bucket).
    api.app.state.agl.token_limiter.clear()
    fleet = api.new_client("acme", ("Agent",))
    form = {"grant_type": "client_credentials", "client_id": fleet.client_id}
    tokens = [
        api.client.post("/v1/oauth/token", data={**form, "client_secret": fleet.secret})
        for _ in range(8)
    ]
    assert {t.status_code for t in tokens} == {200}
    store.close()


def test_erasure_removes_a_user_everywhere_and_is_audited(api: Api) -> None:
    agent = api.auth("acme", ("Agent",))
    for user in ("u1", "u2"):
        api.client.post("/v1/events", json={"text": "hi", "user_id": user}, headers=agent)
        d = api.client.post(
            "/v1/decisions", json={"actions": [{"id": "a"}], "user_id": user}, headers=agent
        ).json()
        api.client.post(
            "/v1/rewards",
            json={"decision_id": d["decision_id"], "value": 1, "user_id": user},
            headers=agent,
        )
    admin = api.auth("acme")
    assert (
        api.client.delete("/v1/users/u1", headers=api.auth("acme", ("Developer",))).status_code
        == 403
    )
    erased = api.client.delete("/v1/users/u1", headers=admin)
    removed = erased.json()["removed"]
    assert (removed["events"], removed["decisions"], removed["rewards"]) == (1, 1, 1)
    assert removed["gateway_spans"] == 0  # other components' tables are swept too
    for kind in ("events", "decisions", "rewards"):
        items = api.client.get(f"/v1/{kind}", headers=admin).json()["items"]
        assert all(item.get("user_id") != "u1" for item in items) and items
    audit = api.client.get("/v1/audit", headers=admin).json()["items"]
    assert any(e["action"] == "user.erase" and e["target_id"] == "u1" for e in audit)


def test_erasure_takes_the_users_sessions_but_not_a_shared_one(api: Api) -> None:
    agent, admin = api.auth("acme", ("Agent",)), api.auth("acme")

    def post(kind: str, **record) -> dict:
        response = api.client.post(f"/v1/{kind}", json=record, headers=agent)
        assert response.status_code == 201, response.text
        return response.json()

    # u9's conversation: only its first event names the user.
    post("events", text="hello, I am u9", user_id="u9", session_id="s-u9")
    post("events", text="my diagnosis is X", session_id="s-u9")
    d = post("decisions", actions=[{"id": "a"}], session_id="s-u9", context={"text": "X"})
    post("rewards", decision_id=d["decision_id"], value=1)
    post("rewards", session_id="s-u9", value=1, attributes={"note": "user said X"})
    # A shared session: u9 and u10 both wrote in it, and one anonymous record.
    post("events", text="u9 in the group", user_id="u9", session_id="s-group")
    post("events", text="u10 in the group", user_id="u10", session_id="s-group")
    post("events", text="anonymous in the group", session_id="s-group")
    post("events", text="someone else entirely", session_id="s-other")

    removed = api.client.delete("/v1/users/u9", headers=admin).json()["removed"]
    assert (removed["sessions"], removed["shared_sessions_kept"]) == (1, 1)
    assert (removed["events"], removed["decisions"], removed["rewards"]) == (3, 1, 2)
    left = api.client.get("/v1/events", headers=admin).json()["items"]
    assert sorted(e["text"] for e in left) == [
        "anonymous in the group",
        "someone else entirely",
        "u10 in the group",
    ]
    assert api.store.count_records("rewards", "acme") == 0
    assert api.store.count_records("decisions", "acme") == 0


def test_retention_rules_apply_and_are_audited(api: Api) -> None:
    admin = api.auth("acme")
    agent = api.auth("acme", ("Agent",))
    assert api.client.get("/v1/retention", headers=admin).json() == {
        "events": 30,
        "decisions": 365,
        "rewards": 365,
        "spans": 30,
        "policy_versions": 30,
    }
    assert (
        api.client.put("/v1/retention/events", json={"days": 7}, headers=admin).status_code == 200
    )
    assert api.client.put("/v1/retention/bogus", json={"days": 7}, headers=admin).status_code == 422
    assert (
        api.client.put("/v1/retention/events", json={"days": 0}, headers=admin).status_code == 422
    )
    for i in range(3):
        api.client.post("/v1/events", json={"id": f"e{i}", "text": "x"}, headers=agent)
    old = datetime.now(UTC) - timedelta(days=10)
    with api.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE events SET created_at = :old WHERE id IN ('e0', 'e1')"), {"old": old}
        )
    applied = api.client.post("/v1/retention/apply", headers=admin).json()
    assert applied["removed"]["events"] == 2
    assert [e["id"] for e in api.client.get("/v1/events", headers=admin).json()["items"]] == ["e2"]
    actions = [e["action"] for e in api.client.get("/v1/audit", headers=admin).json()["items"]]
    assert "retention.set" in actions and "retention.apply" in actions


def test_retention_counts_the_new_rewards_an_old_decision_takes_with_it(api: Api) -> None:
    agent, admin = api.auth("acme", ("Agent",)), api.auth("acme")
    d = api.client.post("/v1/decisions", json={"actions": [{"id": "a"}]}, headers=agent).json()
    api.client.post(
        "/v1/rewards", json={"decision_id": d["decision_id"], "value": 1}, headers=agent
    )
    with api.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE decisions SET created_at = :old WHERE id = :id"),
            {"old": datetime.now(UTC) - timedelta(days=400), "id": d["decision_id"]},
        )
    removed = api.client.post("/v1/retention/apply", headers=admin).json()["removed"]
    assert (removed["decisions"], removed["rewards"]) == (1, 1)  # the reward was 0 before
    assert api.store.count_records("rewards", "acme") == 0
    (entry,) = [e for e in AuditLog(api.store).entries("acme") if e.action == "retention.apply"]
    assert entry.after["rewards"] == 1


def test_connector_secrets_are_encrypted_and_never_returned(api: Api) -> None:
    admin = api.auth("acme")
    secret = "crm-password-Zx81!"
    stored = api.client.put("/v1/secrets/crm", json={"value": secret}, headers=admin)
    assert stored.status_code == 200 and secret not in stored.text
    assert api.client.get("/v1/secrets", headers=admin).json() == {"items": ["crm"]}
    with api.store.engine.connect() as conn:
        ciphertext = conn.execute(text("SELECT ciphertext FROM secrets")).scalar()
    assert secret not in ciphertext and secret.encode() not in base64.urlsafe_b64decode(
        ciphertext + "=="
    )
    from agent_lightning.security.secrets import get_secret

    assert get_secret(api.store, api.app.state.agl.secret_box(), "acme", "crm") == secret
    audit = api.client.get("/v1/audit/export", headers=admin).text
    assert secret not in audit


def test_hostile_strings_are_stored_verbatim_and_break_nothing(api: Api) -> None:
    agent = api.auth("acme", ("Agent",))
    hostile = [
        "'; DROP TABLE events; --",
        '" OR 1=1 --',
        "Robert'); DELETE FROM decisions WHERE ('1'='1",
        "\x00nul byte",
        "emoji 🚀 and RTL \u202e",
    ]
    for value in hostile:
        response = api.client.post(
            "/v1/events", json={"text": value, "session_id": value[:100]}, headers=agent
        )
        assert response.status_code == (422 if "\x00" in value else 201), value
    listed = api.client.get(
        "/v1/events", params={"session_id": "' OR '1'='1"}, headers=api.auth()
    ).json()
    assert listed["items"] == []
    assert api.store.count_records("events", "acme") >= 4
    huge_id = api.client.post("/v1/events", json={"id": "x" * 65, "text": "a"}, headers=agent)
    assert huge_id.status_code == 422
    guess = api.client.get("/v1/events/' OR 1=1 --", headers=api.auth())
    assert guess.status_code == 404


def test_token_errors_do_not_leak_the_token(api: Api) -> None:
    token = api.token("acme", ("Agent",))
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    response = api.client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401 and tampered not in response.text
    header, payload, _ = token.split(".")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    forged = f"{none_alg}.{payload}."
    assert (
        api.client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )


def test_other_settings_change_nothing_without_admin(api: Api, settings: Settings) -> None:
    dev = api.auth("acme", ("Developer",))
    assert api.client.patch("/v1/app", json={"name": "x"}, headers=dev).status_code == 403
    assert api.client.post("/v1/clients", json={}, headers=dev).status_code == 403
    assert replace(settings).max_batch == 1000


def test_encryption_key_rotation_through_the_cli(sqlite_url: str, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from agent_lightning.cli import app as cli
    from agent_lightning.security.crypto import SecretBox, generate_key
    from agent_lightning.security.secrets import get_secret, put_secret

    old, new = generate_key(), generate_key()
    store = Store(sqlite_url)
    store.ensure_app("acme")
    put_secret(store, SecretBox([old]), "acme", "crm", "hunter2")
    monkeypatch.setenv("AGL_ENCRYPTION_KEYS", f"{new},{old}")
    monkeypatch.setenv("AGL_DATA_DIR", str(tmp_path / "d"))
    result = CliRunner().invoke(cli, ["secrets", "rotate", "--database-url", sqlite_url])
    assert result.exit_code == 0 and "re-encrypted 1" in result.output
    assert get_secret(store, SecretBox([new]), "acme", "crm") == "hunter2"  # old key retired
    store.close()
