"""`agent-lightning rollout ...` and `agent-lightning policy export|import|diff` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pub_seed import APP, POLICY, record, seed_policy
from typer.testing import CliRunner

from agent_lightning.cli.main import app as cli
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Store

runner = CliRunner()


@pytest.fixture
def db(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AGL_DATA_DIR", str(tmp_path / "data"))  # where the signing key lives
    store = Store(database_url)
    seed_policy(store)
    store.close()
    return database_url


def _run(db: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, [*args, "--database-url", db])
    return result.exit_code, " ".join(result.output.split())  # unwrap the console's line breaks


def test_rollout_commands_drive_a_canary_to_live(db: str) -> None:
    code, out = _run(
        db, "rollout", "start", "--app", APP, "--policy", POLICY, "--candidate", "2",
        "--steps", "20,100", "--min-decisions", "20", "--guardrail", "mean_reward:max_drop=0.1",
        "--reason", "nightly", "--json",
    )  # fmt: skip
    assert code == 0, out
    ro = json.loads(out)
    assert ro["steps"] == [20.0, 100.0] and ro["guardrails"][0]["max_drop"] == 0.1

    code, out = _run(db, "rollout", "list", "--app", APP, "--status", "running")
    assert code == 0 and ro["id"] in out and "20%" in out
    code, out = _run(db, "rollout", "pause", ro["id"], "--app", APP, "--reason", "hold")
    assert code == 0 and "paused" in out
    code, out = _run(db, "rollout", "resume", ro["id"], "--app", APP)
    assert code == 0 and "running" in out

    store = Store(db)
    record(store, 2, 20, p_success=0.7, seed=1, prefix="c")
    record(store, 1, 20, p_success=0.7, seed=2, prefix="b")
    code, out = _run(db, "rollout", "status", ro["id"], "--app", APP, "--evaluate")
    assert code == 0, out
    assert "evaluation: advance" in out and "candidate v2: 20 decisions" in out
    code, out = _run(db, "rollout", "promote", ro["id"], "--app", APP, "--reason", "ship")
    assert code == 0 and "promoted" in out
    assert store.get_policy(APP, POLICY).live_version == 2
    actors = {e.actor for e in AuditLog(store).entries(APP) if e.action.startswith("rollout.")}
    assert len(actors) == 1 and next(iter(actors)).startswith("cli:")
    store.close()

    code, out = _run(db, "rollout", "rollback", ro["id"], "--app", APP, "--reason", "oops")
    assert code == 0 and "rolled_back" in out  # a promoted rollout switches back
    code, out = _run(db, "rollout", "promote", ro["id"], "--app", APP)
    assert code == 1 and "is rolled_back; it cannot be promoted" in out


def test_cli_errors_are_readable(db: str) -> None:
    code, out = _run(
        db, "rollout", "start", "--app", APP, "--policy", POLICY, "--candidate", "2",
        "--steps", "50,10",
    )  # fmt: skip
    assert code == 1 and "error:" in out and "steps must increase strictly" in out
    code, out = _run(db, "rollout", "start", "--app", APP, "--policy", "nope", "--candidate", "2")
    assert code == 1 and "policy 'nope' not found" in out
    code, out = _run(db, "rollout", "status", "ro_missing", "--app", APP)
    assert code == 1 and "rollout 'ro_missing' not found" in out
    result = runner.invoke(cli, ["rollout", "start", "--help"])
    assert result.exit_code == 0 and "--min-decisions" in result.output


def test_policy_export_import_diff_and_tamper(db: str, tmp_path: Path) -> None:
    bundle = tmp_path / "support-v3.json"
    code, out = _run(
        db, "policy", "export", "--app", APP, "--policy", POLICY, "--version", "3", "-o",
        str(bundle),
    )  # fmt: skip
    assert code == 0 and bundle.is_file(), out
    code, out = _run(db, "policy", "import", str(bundle), "--app", "globex", "--create", "--json")
    assert code == 0, out
    assert json.loads(out) == {"policy": POLICY, "version": 1, "created": True}

    document = json.loads(bundle.read_text())
    document["manifest"]["metrics"]["gate"]["lower_bound"] = 0.99  # look better than it is
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    code, out = _run(db, "policy", "import", str(forged), "--app", "globex")
    assert code == 1 and "bundle refused" in out and "bad signature" in out

    code, out = _run(db, "policy", "diff", "--app", APP, "--policy", POLICY, "1", "3", "--json")
    assert code == 0, out
    diff = json.loads(out)
    assert diff["lineage"]["related"] == "ancestor" and diff["metrics"]["examples"]["delta"] == 20
    code, out = _run(db, "policy", "diff", "--app", APP, "--policy", POLICY)
    assert code == 0 and "v2 → v3" in out and "examples seen: 10 → 20" in out


def test_public_key_verifies_the_exported_bundles(db: str, tmp_path: Path) -> None:
    from agent_lightning.publisher.bundle import load_public_key, verify_bundle

    bundle, pem = tmp_path / "v2.json", tmp_path / "keys" / "publisher.pem"
    code, out = _run(
        db, "policy", "export", "--app", APP, "--policy", POLICY, "--version", "2", "-o",
        str(bundle),
    )  # fmt: skip
    assert code == 0, out
    code, out = _run(db, "policy", "public-key", "-o", str(pem))
    assert code == 0 and pem.is_file(), out
    verified = verify_bundle(bundle.read_bytes(), load_public_key(pem.read_text()))
    assert verified.policy == POLICY and verified.version == 2
