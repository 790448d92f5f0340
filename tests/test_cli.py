"""The command line: help that explains, readable errors, scripts-friendly JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agent_lightning.cli import app as cli
from agent_lightning.security.passwords import verify_secret
from agent_lightning.store import Store

runner = CliRunner()


def test_help_explains_every_command() -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "init", "clients", "events", "audit", "retention"):
        assert command in result.output
    for sub in (["serve"], ["clients", "create"], ["events", "tail"], ["audit", "verify"]):
        sub_help = runner.invoke(cli, [*sub, "--help"])
        assert sub_help.exit_code == 0 and len(sub_help.output) > 200, sub


def test_version() -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "agent-lightning" in result.output


def test_init_creates_the_skeleton_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "support-bot"
    result = runner.invoke(cli, ["init", str(target)])
    assert result.exit_code == 0, result.output
    runtime = (target / "runtimes" / "runtime.yaml").read_text()
    assert "api_key_env: OPENAI_API_KEY" in runtime and "azure_openai" in runtime
    assert (target / "policies").is_dir() and (target / "config").is_dir()
    import yaml

    assert yaml.safe_load(runtime)["runtimes"]["default"]["kind"] == "openai"
    again = runner.invoke(cli, ["init", str(target)])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(cli, ["init", str(tmp_path / "x"), "--template", "nope"])
    assert bad.exit_code == 1 and "unknown template" in bad.output


def test_clients_create_json_stores_only_a_hash(sqlite_url: str) -> None:
    result = runner.invoke(
        cli,
        [
            "clients",
            "create",
            "--app",
            "acme",
            "--role",
            "Developer",
            "--role",
            "Analyst",
            "--json",
            "--database-url",
            sqlite_url,
        ],
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert set(made) == {"client_id", "secret", "app", "roles"}
    assert made["roles"] == ["Developer", "Analyst"] and made["app"] == "acme"
    store = Store(sqlite_url)
    stored = store.get_client(made["client_id"])
    assert made["secret"] not in stored.secret_hash
    assert verify_secret(made["secret"], stored.secret_hash)
    listing = runner.invoke(cli, ["clients", "list", "--json", "--database-url", sqlite_url])
    assert json.loads(listing.output)["client_id"] == made["client_id"]
    assert made["secret"] not in listing.output
    audit = runner.invoke(cli, ["audit", "verify", "--database-url", sqlite_url])
    assert audit.exit_code == 0 and "1 entries" in audit.output
    store.close()


def test_unknown_role_is_a_readable_error(sqlite_url: str) -> None:
    result = runner.invoke(
        cli,
        ["clients", "create", "--app", "acme", "--role", "Wizard", "--database-url", sqlite_url],
    )
    assert result.exit_code == 1
    assert "unknown role 'Wizard'" in result.output and "Traceback" not in result.output


def test_bad_database_url_is_a_readable_error() -> None:
    result = runner.invoke(cli, ["audit", "verify", "--database-url", "mysql://nope"])
    assert result.exit_code == 1 and "unsupported database" in result.output


def test_events_tail_prints_stored_events(sqlite_url: str) -> None:
    from agent_lightning.ingestion import DataIngestionPipeline

    store = Store(sqlite_url)
    store.ensure_app("acme")
    DataIngestionPipeline(store).ingest_events(
        "acme", [{"text": f"hello {i}", "session_id": "s1"} for i in range(3)]
    )
    result = runner.invoke(
        cli, ["events", "tail", "--app", "acme", "-n", "2", "--json", "--database-url", sqlite_url]
    )
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [e["text"] for e in lines] == ["hello 1", "hello 2"]
    store.close()


def test_events_tail_prints_what_customers_wrote_verbatim(sqlite_url: str) -> None:
    # Customer text is not Rich markup: "[/]" stopped the command with a MarkupError.
    from agent_lightning.ingestion import DataIngestionPipeline

    store = Store(sqlite_url)
    store.ensure_app("acme")
    texts = ["close it [/] now", "[bold]urgent[/bold] :100: refund"]
    DataIngestionPipeline(store).ingest_events("acme", [{"text": t} for t in texts])
    result = runner.invoke(cli, ["events", "tail", "--app", "acme", "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    for text in texts:
        assert text in result.output
    store.close()


def test_an_unknown_app_is_an_error_not_an_empty_answer(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.ensure_app("acme")
    db = ["--database-url", sqlite_url]
    for args in (
        ["train", "--app", "acme-typo", "--policy", "intents"],
        ["events", "tail", "--app", "acme-typo"],
        ["erase-user", "u1", "--app", "acme-typo", "--yes"],
        ["clients", "list", "--app", "acme-typo"],
        ["rollout", "list", "--app", "acme-typo"],
    ):
        result = runner.invoke(cli, [*args, *db])
        assert result.exit_code == 1, args
        assert "no app 'acme-typo' in this database (apps: acme)" in result.output, args
        assert "Traceback" not in result.output
    # A known app: an unknown policy is the task's reason; no events is said, not silent.
    result = runner.invoke(cli, ["train", "--app", "acme", "--policy", "intents", *db])
    assert result.exit_code == 1 and "policy 'intents' not found" in result.output
    result = runner.invoke(cli, ["events", "tail", "--app", "acme", *db])
    assert result.exit_code == 0 and "no events in 'acme' yet" in result.output
    store.close()


def test_retention_apply_compact_shrinks_the_file_and_is_audited(sqlite_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from agent_lightning.ingestion import DataIngestionPipeline
    from agent_lightning.security.audit import AuditLog

    store = Store(sqlite_url)
    store.ensure_app("acme")
    DataIngestionPipeline(store).ingest_events(
        "acme", [{"text": f"ticket {i} " + "words " * 500, "session_id": "s1"} for i in range(500)]
    )
    store.delete_older_than("acme", "events", datetime.now(UTC) + timedelta(days=1))
    result = runner.invoke(cli, ["retention", "apply", "--compact", "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    sizes = [float(mb) for mb in re.findall(r"([\d.]+) MB", result.output)]
    assert len(sizes) == 2 and sizes[1] < sizes[0], result.output
    entries = [e for e in AuditLog(store).iter_all() if e.action == "store.compact"]
    assert len(entries) == 1 and entries[0].after["after_bytes"] < entries[0].after["before_bytes"]
    store.close()


def test_retention_apply_compact_on_a_busy_database_is_a_readable_error(
    sqlite_url: str, monkeypatch
) -> None:
    # A real lock would hold the CLI for the 30 s busy timeout; the error it ends in is raised
    # directly instead.
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from agent_lightning.security import retention

    def locked(*_args, **_kwargs):
        raise OperationalError("VACUUM", {}, sqlite3.OperationalError("database is locked"))

    Store(sqlite_url).close()
    monkeypatch.setattr(retention, "compact", locked)
    result = runner.invoke(cli, ["retention", "apply", "--compact", "--database-url", sqlite_url])
    assert result.exit_code == 1
    assert "database is locked" in result.output and "Traceback" not in result.output
    assert "retention run above is done" in result.output


def test_console_script_runs() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "agent_lightning.cli", "--help"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and "agent-lightning" in completed.stdout


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["serve", "--tls-cert", str(tmp_path / "c.pem")])
    assert result.exit_code == 1 and "--tls-key" in result.output


def test_demo_says_where_it_looked_for_banking77(tmp_path: Path, monkeypatch) -> None:
    from agent_lightning.cli.demo import banking77_dir

    result = runner.invoke(cli, ["demo", "--banking77", str(tmp_path)])
    assert result.exit_code == 1
    words = " ".join(result.output.split())
    assert f"{tmp_path} has no train.csv" in words and "--banking77 DIR" in words
    # The environment variable is the same option.
    monkeypatch.setenv("AGL_BANKING77", str(tmp_path))
    assert banking77_dir() is None
    (tmp_path / "train.csv").write_text("text,category\nhi,greeting\n")
    assert banking77_dir() == tmp_path


def test_demo_reports_bad_banking77_files_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,category\nwhere is my card,\n")
    result = runner.invoke(cli, ["demo", "--banking77", str(tmp_path)])
    assert result.exit_code == 1
    assert "line 2: empty category" in result.output and "Traceback" not in result.output
    (tmp_path / "train.csv").write_text("text,category\nwhere is my card,card_arrival\n")
    (tmp_path / "categories.json").write_text('{"card_arrival": 1}')
    result = runner.invoke(cli, ["demo", "--banking77", str(tmp_path)])
    assert result.exit_code == 1
    assert "must be a JSON list of intent names" in " ".join(result.output.split())


def test_bench_reports_a_bad_csv_and_a_bad_json_path_before_running(tmp_path: Path) -> None:
    data = tmp_path / "intents.csv"
    data.write_text("query,label\nwhere is my card,card_arrival\n")
    args = ["bench", "intents", "--train", str(data), "--test", str(data)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "needs the columns text,category (found: query,label)" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    data.write_text("text,category\nwhere is my card,card_arrival\n")
    result = runner.invoke(cli, [*args, "--json", str(tmp_path / "no-such-dir" / "out.json")])
    assert result.exit_code == 1
    assert "the folder" in result.output and "does not exist" in result.output


def test_bench_and_demo_refuse_a_negative_seed_or_no_learning_interval(tmp_path: Path) -> None:
    # --retrain-every 0 used to run the whole benchmark on the default interval, and a
    # negative seed to stop with numpy's "expected non-negative integer", naming no flag.
    data = tmp_path / "intents.csv"
    data.write_text("text,category\nwhere is my card,card_arrival\n")
    bench = ["bench", "intents", "--train", str(data), "--test", str(data)]
    for args, flag in (
        ([*bench, "--seed", "-1"], "'--seed'"),
        ([*bench, "--retrain-every", "0"], "'--retrain-every'"),
        (["demo", "--seed", "-1"], "'--seed'"),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, args
        assert f"Invalid value for {flag}" in result.output and "Traceback" not in result.output


def test_serve_with_a_database_it_cannot_open_is_one_line(tmp_path: Path, monkeypatch) -> None:
    # It opened the database inside uvicorn: a server that was down printed ~180 lines.
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setenv("AGL_DATABASE_URL", "")  # serve sets it; undone after the test
    monkeypatch.chdir(tmp_path)
    url = "postgresql://postgres@127.0.0.1:1/nothing-listens-here"
    result = runner.invoke(cli, ["serve", "--database-url", url])
    assert result.exit_code == 1
    assert "cannot open the database" in result.output and "Traceback" not in result.output


def test_serve_applies_the_projects_settings_file(tmp_path: Path, monkeypatch) -> None:
    # `init` writes config/agent-lightning.yaml; nothing read it, so edits to it did nothing.
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)  # start, do not serve
    monkeypatch.setenv("AGL_DATABASE_URL", "")  # serve sets it; undone after the test
    project = tmp_path / "support-bot"
    assert runner.invoke(cli, ["init", str(project)]).exit_code == 0
    config = project / "config" / "agent-lightning.yaml"
    text = config.read_text()
    for old, new in (
        ("wait_seconds: 3600", "wait_seconds: 5"),
        ("default: 0.0", "default: 0.5"),
        ("aggregation: sum", "aggregation: last"),
        ("events: 30", "events: 7"),
    ):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    monkeypatch.chdir(project)
    first = runner.invoke(cli, ["serve"])
    assert first.exit_code == 0, first.output
    assert "reward_wait_seconds 3600.0 → 5.0" in first.output
    assert "retention of events 30 → 7 days" in first.output
    store = Store(f"sqlite:///{project / '.agl' / 'agent-lightning.db'}")
    app = store.get_app("support-bot")
    assert (app.reward_wait_seconds, app.default_reward, app.reward_aggregation) == (5, 0.5, "last")
    from agent_lightning.security import retention
    from agent_lightning.security.audit import AuditLog

    assert retention.rules(store, "support-bot")["events"] == 7
    actors = {e.actor for e in AuditLog(store).entries("support-bot")}
    assert "config/agent-lightning.yaml" in actors
    store.close()
    again = runner.invoke(cli, ["serve"])
    assert "already in effect" in again.output
    config.write_text(text.replace("aggregation: last", "aggregation: median"))
    bad = runner.invoke(cli, ["serve"])
    assert bad.exit_code == 1
    line = 1 + next(i for i, row in enumerate(text.splitlines()) if "aggregation:" in row)
    assert f"agent-lightning.yaml:{line}: reward.aggregation" in " ".join(bad.output.split())


def test_featurizer_choices_are_the_benchmark_presets(tmp_path: Path) -> None:
    from agent_lightning.cli.main import FEATURIZER_CHOICES
    from agent_lightning.learning.simulation import DEFAULT_SPECS

    assert set(FEATURIZER_CHOICES) == set(DEFAULT_SPECS)
    data = tmp_path / "intents.csv"
    data.write_text("text,category\nwhere is my card,card_arrival\n")
    result = runner.invoke(
        cli, ["bench", "intents", "--train", str(data), "--test", str(data), "--featurizer", "bert"]
    )
    assert result.exit_code == 1
    assert "--featurizer must be one of hybrid, hashing, minilm, minilm_hybrid" in " ".join(
        result.output.split()
    )


def test_errors_print_their_text_not_rich_markup(tmp_path: Path) -> None:
    # "line 100:" used to print as an emoji and "[reply]" to vanish: the message is user data.
    data = tmp_path / "intents.csv"
    data.write_text("text,category\nwhere is my card,card_arrival\n")
    missing = tmp_path / "x:100:[reply].csv"
    result = runner.invoke(cli, ["bench", "intents", "--train", str(missing), "--test", str(data)])
    assert result.exit_code == 1
    assert "x:100:[reply].csv does not exist" in " ".join(result.output.split())
