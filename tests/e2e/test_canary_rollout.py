"""Issue 6, end to end, with real processes on loopback.

The reference KB/ticketing service (`agent-lightning refservices serve`), the server
(`agent-lightning serve`) and a runtime on the `support-ticket` template (`agent-lightning run`,
created by `agent-lightning init --template`) run as subprocesses. Simulated customers talk to the
runtime without pause and say whether they were helped (the transcript knows the right intent).

1. A deliberately worse version (trained to send every request to the wrong intent) is published
   as a 10% canary: the runtime serves it to some users without a restart, the publisher's
   guardrails see resolution drop and roll it back on their own, recording why.
2. A version learned from the runtime's own logged decisions and the customers' feedback (the
   learning controller, `POST /v1/tasks`) is published as a 10% canary: it passes 10 → 50 → 100
   and becomes live; the runtime ends up serving it to everyone.

Not one request fails along the way. Nothing is mocked.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from tests.runtime.test_offline import Process, free_port, wait_for

from agent_lightning.learning import LoggedDecision, make_policy
from agent_lightning.runtime import load_policy_spec

CLI = [sys.executable, "-m", "agent_lightning.cli"]
RUNTIME_TOKEN = "e2e-runtime-token"
REF_TOKEN = "e2e-refservices-token"

pytestmark = pytest.mark.slow


def _client(env: dict[str, str], role: str) -> dict:
    created = subprocess.run(
        [*CLI, "clients", "create", "--app", "acme", "--role", role, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(created.stdout)


def _token(server_url: str, identity: dict) -> str:
    response = httpx.post(
        f"{server_url}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": identity["client_id"],
            "client_secret": identity["secret"],
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["access_token"]


class Customers:
    """Customers on many user ids, each message followed by honest feedback."""

    def __init__(self, runtime_url: str, transcripts: list[dict]) -> None:
        self.http = httpx.Client(
            base_url=runtime_url, headers={"Authorization": f"Bearer {RUNTIME_TOKEN}"}, timeout=30
        )
        self.turns = [t for t in transcripts if t.get("expected_intent")]
        self.failures: list[str] = []
        self.served: Counter[tuple[int | None, str | None]] = Counter()
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            turn = self.turns[i % len(self.turns)]
            user = f"customer-{i % 500}"
            try:
                r = self.http.post(
                    "/v1/messages", json={"text": turn["text"], "user_id": user, "session_id": user}
                )
                if r.status_code != 200:
                    self.failures.append(f"message: {r.status_code} {r.text[:200]}")
                    continue
                answer = r.json()
                self.served[(answer.get("policy_version"), answer.get("arm"))] += 1
                helped = answer["intent"] == turn["expected_intent"] and not answer["error"]
                f = self.http.post(
                    "/v1/feedback", json={"decision_id": answer["decision_id"], "resolved": helped}
                )
                if f.status_code != 202:
                    self.failures.append(f"feedback: {f.status_code} {f.text[:200]}")
                self.count += 1
            except httpx.HTTPError as exc:  # a dropped request is a failure of the test
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.http.close()


def _wrong_intent_policy(spec, transcripts: list[dict]) -> bytes:
    """A version trained to pick the wrong intent for everything the scorer decides."""
    actions = tuple(intent.as_action() for intent in spec.intents)
    names = [a.id for a in actions]
    wrong = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
    examples = []
    texts = [(u, i.name) for i in spec.intents for u in i.utterances]
    texts += [(t["text"], t["expected_intent"]) for t in transcripts if t.get("expected_intent")]
    for _ in range(5):
        for text, intent in texts:
            examples.append(
                LoggedDecision(
                    context={"text": text},
                    actions=actions,
                    action_id=wrong[intent],
                    propensity=1.0,
                    reward=1.0,
                    correct_action_id=wrong[intent],
                )
            )
    policy = make_policy(dict(spec.learner))
    return policy.learn(examples).to_bytes()


def test_canary_rolls_back_a_worse_version_and_promotes_a_learned_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "server-data"
    env = {
        **os.environ,
        "AGL_DATA_DIR": str(data_dir),
        "AGL_LOG_LEVEL": "warning",
        "AGL_ROLLOUT_EVAL_SECONDS": "0.5",
        "AGL_MANIFEST_POLL_SECONDS": "0.5",
        "REFSERVICES_TOKEN": REF_TOKEN,
    }
    env.pop("AGL_DATABASE_URL", None)
    admin, agent = _client(env, "AgentAdmin"), _client(env, "Agent")
    ref_port, server_port, runtime_port = free_port(), free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    runtime_url = f"http://127.0.0.1:{runtime_port}"

    # The project, from the template, pointed at this test's ports and the publisher's key.
    project = tmp_path / "support-desk"
    subprocess.run(
        [*CLI, "init", str(project), "--template", "support-ticket"],
        env=env,
        check=True,
        capture_output=True,
    )
    processes: list[Process] = []

    def start(args: list[str], name: str, health: str, process_env: dict[str, str]) -> Process:
        process = Process(args, process_env, tmp_path / f"{name}.log")
        processes.append(process)
        wait_for(
            lambda: httpx.get(health, timeout=1).status_code == 200,
            40,
            f"{name} to answer {health} (log: {process.log.read_text()[-2000:]})",
        )
        return process

    customers: Customers | None = None
    try:
        start(
            [*CLI, "refservices", "serve", "--port", str(ref_port), "--db", str(tmp_path / "r.db")],
            "refservices",
            f"http://127.0.0.1:{ref_port}/health",
            env,
        )
        start(
            [*CLI, "serve", "--port", str(server_port), "--log-level", "warning"],
            "server",
            f"{server_url}/v1/health",
            env,
        )
        admin_http = httpx.Client(
            base_url=server_url,
            headers={"Authorization": f"Bearer {_token(server_url, admin)}"},
            timeout=30,
        )
        keys = admin_http.get("/v1/publisher/keys").json()
        (project / "keys").mkdir(exist_ok=True)
        (project / "keys/publisher.pem").write_text(keys["keys"][0]["pem"])

        config = yaml.safe_load((project / "agent.yaml").read_text())
        config["server"]["url"] = server_url
        config["trusted_keys"] = ["keys/publisher.pem"]
        config["sync"] = {"poll_seconds": 0.3, "stream": True}
        for connector in config["connectors"].values():
            connector["base_url"] = f"http://127.0.0.1:{ref_port}"
        (project / "agent.yaml").write_text(yaml.safe_dump(config))

        spec = load_policy_spec(project / "policies/support-ticket.yaml")
        transcripts = [
            json.loads(line)
            for line in (project / "transcripts.jsonl").read_text().splitlines()
            if line.strip()
        ]
        # The server-side policy: version 1 is the untrained zero-shot policy of the YAML.
        created = admin_http.post(
            "/v1/policies",
            json={"name": spec.name, "decision_point": spec.decision_point, "spec": spec.learner},
        )
        assert created.status_code == 201, created.text
        assert admin_http.get(f"/v1/policies/{spec.name}").json()["live_version"] == 1

        start(
            [*CLI, "run", "--config", str(project / "agent.yaml"), "--port", str(runtime_port)],
            "runtime",
            f"{runtime_url}/health",
            {
                **env,
                "AGL_CLIENT_ID": agent["client_id"],
                "AGL_CLIENT_SECRET": agent["secret"],
                "AGL_RUNTIME_TOKEN": RUNTIME_TOKEN,
            },
        )
        status_http = httpx.Client(
            base_url=runtime_url, headers={"Authorization": f"Bearer {RUNTIME_TOKEN}"}, timeout=10
        )
        wait_for(
            lambda: status_http.get("/v1/status").json()["live_version"] == 1, 30, "runtime on v1"
        )
        customers = Customers(runtime_url, transcripts)
        customers.start()

        def rollout(rollout_id: str) -> dict:
            return admin_http.get(f"/v1/rollouts/{rollout_id}").json()

        # 1. A worse version as a 10% canary: rolled back by the guardrails, with the reason.
        bad = admin_http.post(
            f"/v1/policies/{spec.name}/versions",
            json={
                "artifact_b64": base64.b64encode(_wrong_intent_policy(spec, transcripts)).decode(),
                "parent_version": 1,
                "notes": "deliberately wrong",
            },
        )
        assert bad.status_code == 201, bad.text
        started = admin_http.post(
            "/v1/rollouts",
            json={
                "policy": spec.name,
                "candidate_version": 2,
                "kind": "canary",
                "steps": [10, 50, 100],
                "min_decisions_per_step": 20,
                "reason": "e2e: a worse candidate",
            },
        )
        assert started.status_code == 201, started.text
        bad_id = started.json()["id"]
        wait_for(lambda: rollout(bad_id)["status"] == "rolled_back", 120, "automatic rollback")
        rolled_back = rollout(bad_id)
        assert rolled_back["reason"], rolled_back
        reached = [e["percent"] for e in rolled_back["history"] if e["action"] != "rollback"]
        assert max(reached) < 100, rolled_back["history"]  # caught before it reached everyone
        assert admin_http.get(f"/v1/policies/{spec.name}").json()["live_version"] == 1
        assert customers.served[(2, "candidate")] > 0  # the runtime did serve it, no restart

        # 2. A version learned from what the runtime logged, published as a 10% canary.
        task = admin_http.post(
            "/v1/tasks",
            json={"task": "learn", "policy": spec.name, "force": True, "make_live": False},
        )
        assert task.status_code == 202, task.text
        task_id = task.json()["id"]
        wait_for(
            lambda: (
                admin_http.get(f"/v1/tasks/{task_id}").json()["status"] in ("succeeded", "failed")
            ),
            120,
            "the learning task",
        )
        finished = admin_http.get(f"/v1/tasks/{task_id}").json()
        assert finished["status"] == "succeeded", finished
        learned = finished["result"]["version"]
        assert finished["result"]["live"] is False  # published through a canary, not at once
        started = admin_http.post(
            "/v1/rollouts",
            json={
                "policy": spec.name,
                "candidate_version": learned,
                "kind": "canary",
                "steps": [10, 50, 100],
                "min_decisions_per_step": 20,
                "reason": "e2e: the learned candidate",
            },
        )
        assert started.status_code == 201, started.text
        good_id = started.json()["id"]
        try:
            wait_for(lambda: rollout(good_id)["status"] == "promoted", 180, "promotion to 100%")
        except AssertionError:
            raise AssertionError(
                f"not promoted: {json.dumps(rollout(good_id))[:6000]}; served {customers.served}"
            ) from None
        # Live is the learned version now (or, later, one the scheduler learned on top of it).
        assert admin_http.get(f"/v1/policies/{spec.name}").json()["live_version"] >= learned
        wait_for(
            lambda: status_http.get("/v1/status").json()["live_version"] >= learned,
            30,
            "the runtime to serve the promoted version",
        )

        def on_promoted() -> int:
            return sum(
                n for (v, arm), n in customers.served.items() if v and v >= learned and not arm
            )

        before = on_promoted()
        wait_for(lambda: on_promoted() > before + 5, 30, "everyone on the promoted version")
        customers.stop()
        assert customers.failures == [], customers.failures[:5]
        steps = [entry["percent"] for entry in rollout(good_id)["history"]]
        assert 10 in steps and 50 in steps and 100 in steps, steps
    finally:
        if customers is not None:
            customers.stop()
        for process in reversed(processes):
            process.stop()
