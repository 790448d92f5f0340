"""Every route × every role × own app / other app, against the access table.

The walk is driven by the routes the app actually serves (its OpenAPI paths), so a new route
without an entry here or in `rbac.ROUTE_PERMISSIONS` makes this test fail.
"""

from __future__ import annotations

import pytest

from agent_lightning.publisher.rollouts import RolloutManager
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_api_key, create_client
from agent_lightning.security.rbac import ROUTE_PERMISSIONS, Role, allowed
from agent_lightning.store import Policy, PolicyVersion, Task, content_hash, new_id
from tests.conftest import Api

# Path parameters that name a record of one app: another app's value must give 404.
OWNED_PARAMS = {
    "event_id",
    "decision_id",
    "name",
    "version",
    "task_id",
    "client_id",
    "key_id",
    "rollout_id",
}
# Path parameters that scope an operation to the caller's own app (no record is named).
SCOPED_PARAMS = {"user_id", "kind", "session_id"}

LEAK_MARKERS = {"event_id", "decision_id", "name", "task_id", "client_id", "key_id", "rollout_id"}

BODIES = {
    ("POST", "/v1/events"): {"text": "hello"},
    ("POST", "/v1/events/batch"): [{"text": "hello"}],
    ("POST", "/v1/decisions"): {"actions": [{"id": "a"}, {"id": "b"}]},
    ("POST", "/v1/decisions/batch"): [
        {"actions": [{"id": "a"}], "action_id": "a", "propensity": 1.0}
    ],
    ("POST", "/v1/decisions/{decision_id}/rewards"): {"value": 1.0},
    ("POST", "/v1/rewards"): {"session_id": "s", "value": 1.0},
    ("POST", "/v1/rewards/batch"): [{"session_id": "s", "value": 1.0}],
    ("POST", "/v1/policies"): {"name": "fresh"},
    ("POST", "/v1/policies/{name}/versions"): {"artifact_b64": "AAAA"},
    ("PUT", "/v1/policies/{name}/live"): {"version": 1},
    ("POST", "/v1/tasks"): {"task": "learn", "policy": "p"},
    ("PATCH", "/v1/app"): {"name": "renamed"},
    ("POST", "/v1/clients"): {"roles": ["Agent"]},
    ("POST", "/v1/api-keys"): {},
    ("PUT", "/v1/retention/{kind}"): {"days": 30},
    ("PUT", "/v1/secrets/{name}"): {"value": "s3cr3t"},
    ("POST", "/v1/traces"): {"resourceSpans": []},
    ("PUT", "/v1/alerts/rules"): {"rules": [{"id": "quiet", "kind": "no_events"}]},
    ("PUT", "/v1/dashboard/rollouts/pause"): {"policy": "p", "paused": True},
    ("POST", "/v1/rollouts"): {"policy": "p", "candidate_version": 2},
    ("POST", "/v1/rollouts/{rollout_id}/pause"): {"reason": "r"},
    ("POST", "/v1/rollouts/{rollout_id}/resume"): {"reason": "r"},
    ("POST", "/v1/rollouts/{rollout_id}/promote"): {"reason": "r"},
    ("POST", "/v1/rollouts/{rollout_id}/rollback"): {"reason": "r"},
    ("POST", "/v1/rollouts/{rollout_id}/evaluate"): {},
    ("POST", "/v1/policies/{name}/bundles"): {"bundle_b64": "AAAA"},
    ("POST", "/v1/runtime/report"): {"runtime_id": "rt-1", "policy": "p", "versions": [1]},
}


def _seed(api: Api, app_id: str) -> dict[str, str]:
    store = api.store
    store.ensure_app(app_id)
    store.insert_records(
        "events",
        app_id,
        [
            {
                "id": f"ev-{app_id}",
                "text": "x",
                "user_id": f"u-{app_id}",
                "content_hash": content_hash({"t": 1}),
            }
        ],
    )
    store.insert_records(
        "decisions",
        app_id,
        [
            {
                "id": f"dec-{app_id}",
                "decision_point": "default",
                "context": {},
                "actions": [{"id": "a"}],
                "action_id": "a",
                "propensity": 1.0,
                "probabilities": {"a": 1.0},
                "content_hash": content_hash({"d": 1}),
            }
        ],
    )
    policy = store.create_policy(
        Policy(id=new_id(), app_id=app_id, name=f"pol-{app_id}", decision_point="default")
    )
    store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=None), make_live=True
    )
    task = store.create_task(Task(id=f"task-{app_id}", app_id=app_id, kind="learn"))
    audit = AuditLog(store)
    store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=None), make_live=False
    )
    rollout = RolloutManager(store, audit).start(
        app_id, Actor("seed"), policy=policy.name, candidate_version=2
    )
    target = create_client(store, audit, app_id, ["Agent"], Actor("seed"))
    key = create_api_key(store, audit, app_id, "someone", ["Analyst"], Actor("seed"))
    return {
        "event_id": f"ev-{app_id}",
        "decision_id": f"dec-{app_id}",
        "name": policy.name,
        "version": "1",
        "task_id": task.id,
        "client_id": target.client_id,
        "key_id": key.key_id,
        "user_id": f"u-{app_id}",
        "kind": "events",
        "rollout_id": rollout.id,
    }


def _fill(path: str, values: dict[str, str], secret_name: str = "crm") -> str:
    out = path
    for param, value in values.items():
        out = out.replace("{" + param + "}", value)
    if "/secrets/{name}" in path:
        out = path.replace("{name}", secret_name)
    return out


def test_every_route_every_role_own_and_other_app(api: Api) -> None:
    own = _seed(api, "acme")
    other = _seed(api, "globex")
    served = [
        (method.upper(), path)
        for path, ops in api.app.openapi()["paths"].items()
        for method in ops
        if path.startswith("/v1/")
    ]
    assert set(served) == set(ROUTE_PERMISSIONS), "route table and served routes differ"
    tokens = {role: api.token("acme", (role.value,)) for role in Role}
    checked = 0
    for method, path in sorted(served):
        permission = ROUTE_PERMISSIONS[(method, path)]
        params = {p.strip("{}") for p in path.split("/") if p.startswith("{")}
        if path.startswith("/v1/secrets/"):
            # PUT /v1/secrets/{name} writes the caller's own app's secret: scoped, not owned.
            params = {"kind"}
        unknown = params - OWNED_PARAMS - SCOPED_PARAMS
        assert not unknown, f"{method} {path}: add {unknown} to this test"
        body = BODIES.get((method, path))
        if method in ("POST", "PUT", "PATCH"):
            assert (
                (method, path) in BODIES
                or path == "/v1/oauth/token"
                or path.endswith("/retention/apply")
            ), f"{method} {path}: add a request body to this test"
        for role in Role:
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            for side, values in (("own", own), ("other", other)):
                url = _fill(path, values)
                if path == "/v1/oauth/token":
                    response = api.client.post(url, data={"grant_type": "client_credentials"})
                    assert response.status_code == 401
                    continue
                response = api.client.request(method, url, json=body, headers=headers)
                label = f"{role.value} {method} {url} ({side})"
                if not allowed((role,), permission):
                    assert response.status_code == 403, label
                    assert response.json()["error"]["code"] == "forbidden", label
                else:
                    assert response.status_code not in (401, 403), f"{label}: {response.text}"
                    if side == "other" and params & OWNED_PARAMS:
                        assert response.status_code == 404, f"{label}: {response.text}"
                    if not (side == "other" and params & OWNED_PARAMS):
                        # Nothing of the other app's records shows up in what acme can see.
                        leaked = [
                            v for k, v in other.items() if k in LEAK_MARKERS and v in response.text
                        ]
                        assert not leaked, f"{label}: leaked {leaked}"
                checked += 1
    assert checked > len(served) * len(Role)
    # Nothing acme did reached globex's records.
    assert api.store.count_records("events", "globex") == 1
    assert api.store.count_records("decisions", "globex") == 1
    assert api.store.get_policy("globex", "pol-globex").live_version == 1
    assert api.store.get_client(other["client_id"]).revoked_at is None


@pytest.mark.parametrize("role", list(Role))
def test_unauthenticated_is_401_on_every_protected_route(api: Api, role: Role) -> None:
    for (method, path), permission in ROUTE_PERMISSIONS.items():
        if permission is None:
            continue
        url = path.replace("{", "").replace("}", "")
        response = api.client.request(method, url, json=BODIES.get((method, path)))
        assert response.status_code == 401, f"{method} {path}"
