"""`agent-lightning policy create`: the step between a runtime's policy YAML and `rollout start`.

The CLI writes to the store of the real server app (the `api` fixture); a runtime's PolicySync
then reaches that app through the SDK's ASGI transport: real routes, real RBAC (an `Agent`
client), real signed bundles.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_lightning import learning
from agent_lightning.cli.main import app as cli
from agent_lightning.publisher.bundle import load_public_key
from agent_lightning.runtime.edge import PolicySync, ServerSession
from agent_lightning.runtime.spec import load_policy_spec
from agent_lightning.sdk import SyncASGITransport
from agent_lightning.security.audit import AuditLog

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
APP = "my-app"
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api) -> Path:
    """A project as `init --template support-ticket` makes it, as the current directory."""
    root = tmp_path / "support-desk"
    (root / "policies").mkdir(parents=True)
    shutil.copy(TEMPLATE / "policies/support-ticket.yaml", root / "policies")
    shutil.copy(TEMPLATE / "agent.yaml", root / "agent.yaml")
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGL_DATA_DIR", str(api.app.state.agl.settings.data_dir))  # server's key
    return root


def _run(api, *args: str) -> tuple[int, str]:
    url = api.app.state.agl.settings.database_url
    result = runner.invoke(cli, [*args, "--database-url", url])
    return result.exit_code, " ".join(result.output.split())


def test_policy_create_lets_the_runtime_sync_and_a_rollout_start(api, project, tmp_path) -> None:
    agent = api.new_client(APP, ("Agent",))  # `clients create --app my-app --role Agent`
    transport = SyncASGITransport(api.app)
    session = ServerSession("http://testserver", agent.client_id, agent.secret, transport=transport)
    keys = session.request("GET", "/v1/publisher/keys").json()["keys"]
    sync = PolicySync(
        tmp_path / "state", "support-ticket", [load_public_key(k["pem"]) for k in keys],
        session=session,
    )  # fmt: skip
    # Before: the server has no such policy, and a rollout cannot start.
    assert sync.sync_once() == "error" and "policy 'support-ticket' not found" in (
        sync.status.last_error or ""
    )
    code, out = _run(api, "rollout", "start", "--app", APP, "--policy", "support-ticket",
                     "--candidate", "2")  # fmt: skip
    assert code == 1 and "policy 'support-ticket' not found" in out

    code, out = _run(api, "policy", "create", "--app", APP)  # the YAML agent.yaml names
    assert code == 0, out
    assert "created policy support-ticket in app my-app (decision point intent) with v1 live" in out

    spec = load_policy_spec(project / "policies/support-ticket.yaml")
    row = api.store.get_policy(APP, "support-ticket")
    assert row.decision_point == spec.decision_point and row.spec == spec.learner
    assert row.live_version == 1
    version = api.store.get_policy_version(APP, "support-ticket", 1)
    learning.Policy.from_bytes(version.artifact)  # a real, loadable (untrained) policy
    actions = [e.action for e in AuditLog(api.store).entries(APP)]
    assert "policy.create" in actions and "policy_version.create" in actions

    # The runtime now syncs v1 and clears its error.
    assert sync.sync_once() == "updated", sync.status.last_error
    assert sync.versions_served() == [1] and sync.status.last_error is None
    # And a rollout gets past "policy not found" (to the version it names).
    code, out = _run(api, "rollout", "start", "--app", APP, "--policy", "support-ticket",
                     "--candidate", "2")  # fmt: skip
    assert code == 1 and "has no version 2" in out
    session.close()


def test_policy_create_is_safe_to_repeat_and_refuses_what_does_not_fit(api, project) -> None:
    api.new_client(APP, ("Agent",))
    code, out = _run(api, "policy", "create", "--app", "nope")
    assert code == 1 and "no app 'nope' in this database" in out

    policy = project / "policies/support-ticket.yaml"
    code, out = _run(api, "policy", "create", "--app", APP, "--from", str(policy), "--json")
    assert code == 0 and json.loads(out) == {
        "policy": "support-ticket", "live_version": 1, "created": True
    }  # fmt: skip
    code, out = _run(api, "policy", "create", "--app", APP)
    assert code == 0
    assert "policy support-ticket already exists in app my-app (live version: 1); nothing" in out
    assert len(api.store.list_policy_versions(APP, "support-ticket").items) == 1

    # The same name for another decision point is a conflict, not "already exists".
    policy.write_text(policy.read_text().replace("decision_point: intent", "decision_point: x"))
    code, out = _run(api, "policy", "create", "--app", APP)
    assert code == 1 and "for decision point 'intent', not 'x'" in out
    # An invalid YAML is refused with its line.
    policy.write_text(
        policy.read_text().replace("confidence_threshold: 0.35", "confidence_threshold: true")
    )
    code, out = _run(api, "policy", "create", "--app", APP)
    assert code == 1 and "support-ticket.yaml:" in out and "confidence_threshold" in out
