"""Fixes for the security probe: revocation reaches API keys and open streams; no secret in audit.

- Revoking a client revokes the API keys it owns (audited), and a key whose owner is revoked is
  refused even if the key itself was never revoked (keys from before the fix, CLI revocations).
- An open `GET /v1/runtime/stream` ends once its client or key is revoked or its token expires.
- A failed login records an unknown client_id (often a secret in the wrong field) only hashed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from tests.conftest import Api, migrated_sqlite_url
from tests.publisher.pub_seed import APP, POLICY, seed_policy
from tests.publisher.pub_seed import sse_events as _events

from agent_lightning.config import Settings
from agent_lightning.security.audit import Actor, AuditLog, to_dict
from agent_lightning.security.identities import create_client, revoke_client
from agent_lightning.server import app as server_app
from agent_lightning.server.routes import rollouts
from agent_lightning.store import Store


def _login(client: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def _client_with_key(api: Api) -> tuple[str, dict, dict, str]:
    """A Developer+Agent client, its JWT headers, and a personal API key it made for itself."""
    new = api.new_client("acme", ("Developer", "Agent"))
    token = _login(api.client, new.client_id, new.secret).json()["access_token"]
    jwt = {"Authorization": f"Bearer {token}"}
    made = api.client.post("/v1/api-keys", json={"name": "script"}, headers=jwt)
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    # Used once, so the server's API key cache holds it.
    assert api.client.get("/v1/me", headers=key).status_code == 200
    return new.client_id, jwt, key, made.json()["key_id"]


# -- 1. a revoked client's API keys ----------------------------------------------------------


def test_revoking_a_client_revokes_its_api_keys_at_once_and_audits_it(api: Api) -> None:
    client_id, jwt, key, key_id = _client_with_key(api)
    _, _, other_key, other_key_id = _client_with_key(api)
    admin = api.auth("acme")

    revoked = api.client.delete(f"/v1/clients/{client_id}", headers=admin)
    assert revoked.status_code == 200

    assert api.client.get("/v1/me", headers=jwt).status_code == 401
    assert api.client.get("/v1/me", headers=key).status_code == 401
    assert api.client.post("/v1/events", json={"text": "hi"}, headers=key).status_code == 401
    assert api.store.get_api_key(key_id).revoked_at is not None
    assert revoked.json()["api_keys_revoked"] == [key_id]
    # Another client's key is untouched.
    assert api.client.get("/v1/me", headers=other_key).status_code == 200
    assert api.store.get_api_key(other_key_id).revoked_at is None

    entries = api.app.state.agl.audit.entries("acme")
    client_entry = next(e for e in entries if e.action == "client.revoke")
    assert client_entry.target_id == client_id
    assert client_entry.after["api_keys_revoked"] == [key_id]
    key_entries = [e for e in entries if e.action == "api_key.revoke"]
    assert [e.target_id for e in key_entries] == [key_id]
    assert key_entries[0].after["owner"] == client_id and key_entries[0].after["revoked"] is True
    assert key_entries[0].app_id == "acme" and key_entries[0].seq > client_entry.seq


def test_an_api_key_whose_owner_is_revoked_is_refused_even_if_the_key_was_not(api: Api) -> None:
    # As for a key left over from before revocation swept keys: only the client is revoked, in
    # the store and outside this process (no cache cleared), as the CLI does.
    client_id, _, key, key_id = _client_with_key(api)
    api.store.revoke_client("acme", client_id)
    assert api.store.get_api_key(key_id).revoked_at is None
    refused = api.client.get("/v1/me", headers=key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


def test_revoking_through_the_cli_path_also_stops_a_cached_key_at_once(api: Api) -> None:
    client_id, _, key, key_id = _client_with_key(api)
    store = Store(api.app.state.agl.settings.database_url)  # another process's view
    try:
        swept = revoke_client(store, AuditLog(store), "acme", client_id, Actor("ops", "cli"))
    finally:
        store.close()
    assert api.client.get("/v1/me", headers=key).status_code == 401
    assert swept == [key_id]


def test_revoking_a_client_again_sweeps_keys_it_still_owns(api: Api) -> None:
    client_id, _, _, key_id = _client_with_key(api)
    api.store.revoke_client("acme", client_id)  # revoked before keys were swept
    admin = api.auth("acme")
    again = api.client.delete(f"/v1/clients/{client_id}", headers=admin)
    assert again.status_code == 200
    assert api.store.get_api_key(key_id).revoked_at is not None
    assert again.json()["api_keys_revoked"] == [key_id]


# -- 2. open SSE streams -----------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path, monkeypatch) -> Iterator[Callable[..., tuple[str, Store]]]:
    """Start the real app on a loopback socket (uvicorn in a thread), as tests/publisher does."""
    monkeypatch.setattr(rollouts, "STREAM_RECHECK_SECONDS", 0.3, raising=False)
    started: list[tuple[uvicorn.Server, threading.Thread, Store]] = []

    def start(token_ttl_seconds: int = 900) -> tuple[str, Store]:
        url = migrated_sqlite_url(tmp_path / "agl.db")
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
            token_ttl_seconds=token_ttl_seconds,
            token_burst=1000,
            token_rate=1000.0,
        )
        store = Store(url)
        seed_policy(store)
        app = server_app.create_app(settings, store=store)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.started, "uvicorn did not start"
        started.append((srv, thread, store))
        port = srv.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}", store

    yield start
    for srv, thread, store in started:
        srv.should_exit = True
        thread.join(timeout=10)
        store.close()


def _stream_ends_after(base: str, headers: dict, cut: Callable[[], None]) -> list[str]:
    """Open the stream, see the first manifest, call `cut`, and return the events that follow
    until the server ends the stream (a read timeout means it never did)."""
    timeout = httpx.Timeout(10.0, read=8.0)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        with client.stream("GET", f"/v1/runtime/stream?policy={POLICY}", headers=headers) as s:
            assert s.status_code == 200
            events = _events(s)
            assert next(events)[0] == "manifest"
            cut()
            began = time.monotonic()
            rest = [kind for kind, _ in events]
            assert time.monotonic() - began < 5
            return rest


def _jwt(base: str, store: Store, roles: list[str]) -> tuple[str, dict]:
    made = create_client(store, AuditLog(store), APP, roles, Actor("test"))
    response = httpx.post(
        f"{base}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": made.client_id,
            "client_secret": made.secret,
        },
    )
    assert response.status_code == 200, response.text
    return made.client_id, {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_an_open_stream_ends_when_its_client_is_revoked(serve) -> None:
    base, store = serve()
    client_id, agent = _jwt(base, store, ["Agent"])
    # Revoked from outside the server process's API, as `agent-lightning clients revoke` does.
    rest = _stream_ends_after(
        base, agent, lambda: revoke_client(store, AuditLog(store), APP, client_id, Actor("ops"))
    )
    assert rest == ["error"]


def test_an_open_stream_on_an_api_key_ends_when_the_key_owner_is_revoked(serve) -> None:
    base, store = serve()
    client_id, jwt = _jwt(base, store, ["Developer", "Agent"])  # Agent alone has no keys:own
    made = httpx.post(f"{base}/v1/api-keys", json={"name": "runtime"}, headers=jwt)
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    # Only the owner is revoked (the key itself is not): the stream must still end.
    rest = _stream_ends_after(base, key, lambda: store.revoke_client(APP, client_id))
    assert rest == ["error"]


def test_an_open_stream_ends_when_its_token_expires(serve) -> None:
    base, store = serve(token_ttl_seconds=2)
    _, agent = _jwt(base, store, ["Agent"])
    rest = _stream_ends_after(base, agent, lambda: None)
    assert rest == ["error"]


# -- 3. no secret in the audit log from a failed login ---------------------------------------


def test_a_secret_typed_as_client_id_leaves_no_trace_in_the_audit_log(api: Api) -> None:
    new = api.new_client("acme", ("Analyst",))
    # The usual swap mistake: the secret in client_id, the id in client_secret.
    swapped = _login(api.client, new.secret, new.client_id)
    assert swapped.status_code == 401
    basic = api.client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(new.secret, "wrong"),
    )
    assert basic.status_code == 401
    wrong_secret = _login(api.client, new.client_id, "not-the-secret")
    assert wrong_secret.status_code == 401

    entries = [to_dict(e) for e in api.app.state.agl.audit.entries()]
    assert new.secret not in json.dumps(entries)
    denied = [e for e in entries if e["action"] == "auth.token_denied"]
    assert len(denied) == 3
    unknown, unknown_basic, known = denied
    assert unknown["actor"] == unknown["target_id"] == unknown_basic["actor"]
    assert unknown["actor"].startswith("unknown:") and len(unknown["actor"]) == len("unknown:") + 12
    # A client that exists is still named, with its app, so an admin can see who is failing.
    assert known["actor"] == known["target_id"] == new.client_id and known["app_id"] == "acme"
