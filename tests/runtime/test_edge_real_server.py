"""PolicySync and RolloutDecider against the real server's distribution routes.

The agent-lightning app (the `api` fixture) is reached in-process through the SDK's ASGI
transport: real routes, real RBAC (an `Agent` client), real signed bundles from the registry.
"""

from __future__ import annotations

from pathlib import Path

from agent_lightning import learning
from agent_lightning.publisher.bundle import load_public_key
from agent_lightning.runtime.edge import PolicySync, RolloutDecider, ServerSession
from agent_lightning.sdk import AgentLightningClient, SyncASGITransport

INTENTS = [learning.Action("CreateTicket"), learning.Action("Escalate")]


def test_sync_with_the_real_server(api, tmp_path: Path) -> None:
    transport = SyncASGITransport(api.app)
    admin = api.new_client("acme", ("AgentAdmin",))
    with AgentLightningClient(
        admin.client_id, admin.secret, "http://testserver", transport=transport
    ) as sdk:
        sdk.create_policy("support-ticket", "intent", {"learner": "linucb"})
    agent = api.new_client("acme", ("Agent",))
    session = ServerSession("http://testserver", agent.client_id, agent.secret, transport=transport)
    keys = session.request("GET", "/v1/publisher/keys").json()["keys"]
    trusted = [load_public_key(k["pem"]) for k in keys]

    sync = PolicySync(tmp_path / "state", "support-ticket", trusted, session=session)
    assert sync.sync_once() == "updated", sync.status.last_error
    assert sync.state.live_version == 1 and set(sync.state.policies) == {1}
    assert sync.sync_once() == "not_modified"  # the server's ETag round-trips
    choice = RolloutDecider(sync).choose(
        "my printer is broken", INTENTS, user_id="u1", session_id=None, attributes={}
    )
    assert choice.policy_version == 1 and choice.policy_name == "support-ticket"

    admin_headers = api.auth("acme", ("AgentAdmin",))
    reports = api.client.get("/v1/runtime/reports", headers=admin_headers).json()
    items = reports["items"] if isinstance(reports, dict) else reports
    mine = [r for r in items if r["runtime_id"] == sync.runtime_id]
    assert mine and mine[0]["versions"] == [1]

    # A runtime that trusts another key refuses the server's bundle and serves nothing learned.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = PolicySync(
        tmp_path / "other",
        "support-ticket",
        [Ed25519PrivateKey.generate().public_key()],
        session=session,
    )
    assert stranger.sync_once() == "refused"
    assert stranger.state.policies == {} and "bad signature" in stranger.status.refused[0]
    session.close()
