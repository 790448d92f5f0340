"""`bootstrap-policy`, `init --template` and `eval`, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_lightning.cli import app as cli
from agent_lightning.runtime import LocalDecider, load_policy_spec
from agent_lightning.runtime.evaluate import load_transcripts, run_eval
from agent_lightning.scaffold import available_templates

runner = CliRunner()


def test_bootstrap_qna_round_trips_through_the_loader(tmp_path: Path) -> None:
    out = tmp_path / "policies" / "intro-qa.yaml"
    args = ["bootstrap-policy", "--name", "intro-qa", "--type", "qna", "--output", str(out),
            "--qa-pairs", "What are your opening hours?", "9 to 5, Monday to Friday.",
            "Where is your office?", "12 Rue de Rivoli, Paris."]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    spec = load_policy_spec(out)
    assert spec.name == "intro-qa"
    assert spec.intent_names == ["WhatAreYourOpeningHours", "WhereIsYourOffice", "Escalate"]
    hours = spec.intent("WhatAreYourOpeningHours")
    assert hours.actions[0].params == {"template": "9 to 5, Monday to Friday."}
    assert spec.intent("Escalate").actions[0].type == "escalate"
    # The answer is served for a paraphrase of its question.
    decider = LocalDecider(spec, explore=False)
    choice = decider.choose("when are you open? what hours", spec.candidate_actions())
    assert choice.intent == "WhatAreYourOpeningHours"
    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    odd = runner.invoke(cli, args[:-1])
    assert odd.exit_code == 1 and "has no answer" in odd.output


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bootstrap_intents_from_labelled_files(tmp_path: Path, fmt: str) -> None:
    rows = [("my card has not arrived", "card_arrival"), ("where is my new card", "card_arrival"),
            ("I was charged twice", "duplicate charge"),
            ("double payment on my card", "duplicate charge")]  # fmt: skip
    src = tmp_path / f"labels.{fmt}"
    if fmt == "csv":
        src.write_text("text,category\n" + "".join(f'"{t}",{c}\n' for t, c in rows))
    else:
        src.write_text("".join(json.dumps({"text": t, "intent": c}) + "\n" for t, c in rows))
    out = tmp_path / "bank.yaml"
    result = runner.invoke(
        cli,
        [
            "bootstrap-policy",
            "--name",
            "bank",
            "--type",
            "intents",
            "--from",
            str(src),
            "-o",
            str(out),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    spec = load_policy_spec(out)
    assert spec.intent_names == ["card_arrival", "DuplicateCharge", "Escalate"]
    arrival = spec.intent("card_arrival")
    assert arrival.utterances == ["my card has not arrived", "where is my new card"]
    assert arrival.actions[0].params["template"].startswith("TODO")
    assert "TODO" in out.read_text().splitlines()[1]


def test_bootstrap_readable_errors(tmp_path: Path) -> None:
    missing = runner.invoke(cli, ["bootstrap-policy", "--name", "x", "--type", "intents",
                                  "--from", str(tmp_path / "nope.csv")])  # fmt: skip
    assert missing.exit_code == 1 and "no such file" in missing.output
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("utterance,label\nhi,x\n")
    wrong = runner.invoke(cli, ["bootstrap-policy", "--name", "x", "--type", "intents",
                                "--from", str(bad_csv)])  # fmt: skip
    assert wrong.exit_code == 1 and "needs a header with 'text' and 'category'" in wrong.output
    name = runner.invoke(cli, ["bootstrap-policy", "--name", "a b", "--qa-pairs", "q", "a"])
    assert name.exit_code == 1 and "policy name 'a b'" in name.output
    assert "Traceback" not in missing.output + wrong.output + name.output


def test_init_template_copies_a_project_whose_policy_loads(tmp_path: Path) -> None:
    assert available_templates() == ["kb-lookup", "support-ticket"]
    target = tmp_path / "desk"
    result = runner.invoke(cli, ["init", str(target), "--template", "support-ticket"])
    assert result.exit_code == 0, result.output
    for rel in ("agent.yaml", "policies/support-ticket.yaml", "transcripts.jsonl", "README.md"):
        assert (target / rel).is_file(), rel
    from agent_lightning.runtime.config import load_runtime_config

    config = load_runtime_config(target / "agent.yaml")
    spec = load_policy_spec(config.policy_path)
    assert {"CreateTicket", "CheckStatus", "Escalate", "KnowledgeQuestion"} <= set(
        spec.intent_names
    )
    assert set(config.connectors) == {"kb", "tickets", "crm"}
    assert config.connectors["kb"]["auth"] == {"type": "bearer", "token_env": "REFSERVICES_TOKEN"}
    assert len(load_transcripts(target / "transcripts.jsonl", spec)) >= 40
    again = runner.invoke(cli, ["init", str(target), "--template", "support-ticket"])
    assert again.exit_code == 1 and "not empty" in again.output
    unknown = runner.invoke(cli, ["init", str(tmp_path / "y"), "--template", "nope"])
    assert unknown.exit_code == 1
    assert "unknown template 'nope'; choose from blank, kb-lookup, support-ticket" in unknown.output
    assert "kb-lookup" in runner.invoke(cli, ["init", "--help"]).output


@pytest.mark.parametrize("template", ["support-ticket", "kb-lookup"])
def test_eval_offline_on_each_template_beats_chance(tmp_path: Path, template: str) -> None:
    target = tmp_path / template
    assert runner.invoke(cli, ["init", str(target), "--template", template]).exit_code == 0
    out = tmp_path / "figures.json"
    result = runner.invoke(cli, ["eval", "--project", str(target), "--offline", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "intent accuracy" in result.output and "satisfaction" in result.output
    figures = json.loads(out.read_text())
    assert figures["mode"] == "offline" and figures["turns"] == len(figures["results"])
    # Better than always answering the most common intent, and rarely wrong about the outcome.
    assert figures["intent_accuracy"] > figures["chance_accuracy"]
    assert figures["intent_accuracy"] >= 0.8 and figures["outcome_accuracy"] >= 0.8
    assert 0 < figures["escalation_rate"] < 0.5 and 0 < figures["resolution_rate"] <= 1
    assert figures["error_rate"] == 0.0 and 0.5 < figures["satisfaction"] <= 1


def test_eval_figures_follow_the_policy(tmp_path: Path) -> None:
    # The same transcripts on a policy that never recognises anything: everything is clarified.
    src = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
    spec = load_policy_spec(src / "policies/support-ticket.yaml")
    turns = load_transcripts(src / "transcripts.jsonl", spec)
    good = run_eval(spec, turns)
    strict = run_eval(spec.model_copy(update={"confidence_threshold": 1.0, "rules": []}), turns)
    assert strict.clarification_rate == 1.0 and strict.resolution_rate == 0.0
    assert strict.satisfaction < good.satisfaction


def test_eval_readable_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "desk"
    runner.invoke(cli, ["init", str(target), "--template", "support-ticket"])
    monkeypatch.delenv("REFSERVICES_TOKEN", raising=False)
    no_token = runner.invoke(cli, ["eval", "--project", str(target)])
    assert no_token.exit_code == 1 and "REFSERVICES_TOKEN" in no_token.output
    assert "--offline" in no_token.output
    monkeypatch.setenv("REFSERVICES_TOKEN", "t")
    text = (target / "agent.yaml").read_text().replace("127.0.0.1:8801", "127.0.0.1:9")
    (target / "agent.yaml").write_text(text)
    down = runner.invoke(cli, ["eval", "--project", str(target)])
    assert down.exit_code == 1 and "is not usable" in down.output
    policy = target / "policies/support-ticket.yaml"
    policy.write_text(policy.read_text().replace("type: escalate,", "type: send_fax,"))
    bad = runner.invoke(cli, ["eval", "--project", str(target), "--offline"])
    assert bad.exit_code == 1 and "support-ticket.yaml:" in bad.output
    assert "unknown action type 'send_fax'" in bad.output
    empty = runner.invoke(cli, ["eval", "--project", str(tmp_path / "none")])
    assert empty.exit_code == 1 and "agent.yaml not found" in " ".join(empty.output.split())
    assert "Traceback" not in no_token.output + down.output + bad.output + empty.output
