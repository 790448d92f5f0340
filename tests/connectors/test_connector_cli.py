"""`agent-lightning connectors test|list` and `refservices serve`, through the real root app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from connector_harness import TOKEN, connector_config, free_port
from typer.testing import CliRunner

from agent_lightning.cli.main import app
from agent_lightning.refservices.testing import RefServiceServer

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def write_agent_yaml(path: Path, connectors: dict) -> Path:
    document = {"name": "support-desk", "policy": "policies/support-ticket.yaml"}
    path.write_text(yaml.safe_dump({**document, "connectors": connectors}))
    return path


@pytest.fixture
def agent_yaml(srv: RefServiceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REF_TOKEN", TOKEN)
    broken = connector_config(srv.url, test="search")
    broken["endpoints"]["search"]["params"] = {"q": "vpn", "limit": 1}
    broken["endpoints"]["search"]["response_schema"] = {
        "type": "object",
        "properties": {"results": {"items": {"properties": {"title": {"type": "integer"}}}}},
    }
    return write_agent_yaml(
        tmp_path / "agent.yaml", {"kb": connector_config(srv.url), "kb_v2": broken}
    )


def test_connectors_test_ok(agent_yaml: Path, srv: RefServiceServer) -> None:
    result = runner.invoke(app, ["connectors", "test", "kb", "--config", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " kb " in line)
    assert "health" in row and "200" in row and " ms" in row and "ok" in row
    assert srv.hits["GET /health"] == 1


def test_connectors_test_shape_problem_exits_1(agent_yaml: Path) -> None:
    result = runner.invoke(app, ["connectors", "test", "kb_v2", "-c", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 1
    assert "1 problem(s)" in result.output
    assert "results[0].title: expected integer, got string" in result.output


def test_connectors_test_all_connectors(agent_yaml: Path) -> None:
    result = runner.invoke(app, ["connectors", "test", "-c", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 1  # kb_v2 is broken
    assert " kb " in result.output and " kb_v2 " in result.output


def test_connectors_test_unknown_connector(agent_yaml: Path) -> None:
    result = runner.invoke(app, ["connectors", "test", "nope", "-c", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 1
    assert f"unknown connector 'nope' in {agent_yaml} (configured: kb, kb_v2)" in result.output


def test_connectors_test_unreachable_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REF_TOKEN", TOKEN)
    port = free_port()
    config = connector_config(f"http://127.0.0.1:{port}", retries=1, backoff_ms=5)
    path = write_agent_yaml(tmp_path / "agent.yaml", {"tickets": config})
    result = runner.invoke(app, ["connectors", "test", "tickets", "-c", str(path)], env=WIDE)
    assert result.exit_code == 1
    assert (
        f"cannot reach http://127.0.0.1:{port} (connection refused) after 2 attempts"
        in result.output
    )


def test_connectors_test_missing_token_env(
    agent_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REF_TOKEN")
    result = runner.invoke(app, ["connectors", "test", "kb", "-c", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 1
    assert "connectors.kb.auth.token_env: environment variable REF_TOKEN is not set" in (
        result.output
    )


def test_connectors_test_bad_files(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["connectors", "test", "kb", "-c", str(tmp_path / "no.yaml")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    empty = write_agent_yaml(tmp_path / "empty.yaml", {})
    result = runner.invoke(app, ["connectors", "test", "kb", "-c", str(empty)])
    assert result.exit_code == 1 and "has no connectors: section" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("connectors:\n  kb: [unclosed\n")
    result = runner.invoke(app, ["connectors", "list", "-c", str(bad)])
    # rich wraps long lines at the terminal width (the tmp path length varies): compare words
    assert result.exit_code == 1 and "not valid YAML" in " ".join(result.output.split())


def test_connectors_test_reports_invalid_config(tmp_path: Path) -> None:
    path = write_agent_yaml(tmp_path / "agent.yaml", {"kb": {"base_url": "http://x", "retry": 3}})
    result = runner.invoke(app, ["connectors", "test", "kb", "-c", str(path)], env=WIDE)
    assert result.exit_code == 1 and "connectors.kb.retry: unknown field" in result.output


def test_connectors_list(agent_yaml: Path, srv: RefServiceServer) -> None:
    result = runner.invoke(app, ["connectors", "list", "-c", str(agent_yaml)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert " kb " in result.output and " kb_v2 " in result.output and "bearer" in result.output
    assert "search (GET /kb/search)" in result.output
    assert TOKEN not in result.output


def test_connectors_test_checks_credentials_and_reads_stored_secrets(
    srv: RefServiceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_lightning.security.crypto import SecretBox, generate_key
    from agent_lightning.security.secrets import put_secret
    from agent_lightning.store import Store

    key, url = generate_key(), f"sqlite:///{tmp_path / 'agl.db'}"
    monkeypatch.setenv("AGL_ENCRYPTION_KEYS", key)
    store = Store(url)
    store.ensure_app("acme")
    put_secret(store, SecretBox([key]), "acme", "ref-token", TOKEN)
    put_secret(store, SecretBox([key]), "acme", "old-token", "revoked-token-000")
    store.close()
    checked = {
        "path": "/health",
        "response_schema": {"properties": {"authenticated": {"const": True}}},
    }
    connectors = {
        name: connector_config(
            srv.url, auth={"type": "bearer", "secret": secret}, endpoints={"health": checked}
        )
        for name, secret in (("good", "ref-token"), ("stale", "old-token"))
    }
    path = write_agent_yaml(tmp_path / "agent.yaml", connectors)
    args = ["connectors", "test", "-c", str(path), "--database-url", url]
    good = runner.invoke(app, [*args[:2], "good", *args[2:], "--app", "acme"], env=WIDE)
    assert good.exit_code == 0, good.output
    stale = runner.invoke(app, [*args[:2], "stale", *args[2:], "--app", "acme"], env=WIDE)
    assert stale.exit_code == 1 and "authenticated: expected True, got False" in stale.output
    assert "revoked-token-000" not in stale.output
    no_app = runner.invoke(app, [*args[:2], "good", *args[2:]], env=WIDE)
    assert no_app.exit_code == 1
    assert "connectors.good.auth.secret: stored secret 'ref-token': give --app APP" in no_app.output


def test_refservices_serve_refuses_to_start_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REFSERVICES_TOKEN", raising=False)
    result = runner.invoke(app, ["refservices", "serve"], env=WIDE)
    assert result.exit_code == 1
    assert "set REFSERVICES_TOKEN to the token clients must present, or pass --no-auth" in (
        result.output
    )


def test_refservices_serve_runs_the_service(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MY_REF_TOKEN": TOKEN, "COLUMNS": "200"}
    command = [
        sys.executable, "-m", "agent_lightning.cli", "refservices", "serve", "--port", str(port),
        "--db", str(tmp_path / "ref.db"), "--token-env", "MY_REF_TOKEN", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "serve exited early"
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        assert health.json()["articles"] >= 30
        assert httpx.get(f"{url}/kb/search", params={"q": "vpn"}).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{url}/kb/search", params={"q": "vpn"}, headers=auth).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert f"reference services on {url}" in output
    assert TOKEN not in output
