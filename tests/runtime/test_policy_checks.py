"""Policies that used to load (or start) and then misbehave are refused up front, with the line.

Spec values that silently change behaviour, a YAML alias bomb, a connector or endpoint that
agent.yaml does not define (`run` now refuses it as `eval` does), `run`'s error output, and
duplicate questions given to `bootstrap-policy`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from tests.runtime.test_policy_spec import problems
from typer.testing import CliRunner

from agent_lightning.cli import app as cli
from agent_lightning.runtime import parse_policy_spec
from agent_lightning.runtime.config import load_runtime_config
from agent_lightning.runtime.service import ServiceConfigError, create_runtime_app

TEMPLATE = Path(__file__).parents[2] / "src/agent_lightning/templates/support-ticket"
runner = CliRunner()

POLICY = """\
apiVersion: agent-lightning/v1
kind: AgentPolicy
name: support
confidence_threshold: 0.35
parameters: {maxRetries: 2, timeoutMs: 3000}
intents:
  - name: Search
    utterances: [how do I reset my password]
    actions:
      - {type: fetch_kb, connector: kb, endpoint: search, query: "{{message}}"}
  - name: Escalate
    actions:
      - {type: escalate, queue: tier1}
rules:
  - {contains: ["speak to a human"], intent: Escalate}
"""


# -- values that would silently change behaviour ---------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('["speak to a human"]', '[""]', "support.yaml:15: rules[0].contains[0]: a phrase must "
         "not be empty or blank (it would match every message)"),
        ('["speak to a human"]', '["human", "  "]', "support.yaml:15: rules[0].contains[1]: a "
         "phrase must not be empty"),
        ('contains: ["speak to a human"]', 'pattern: ""', "support.yaml:15: rules[0].pattern: "
         "String should have at least 1 character"),
        ("confidence_threshold: 0.35", "confidence_threshold: true", "support.yaml:4: "
         "confidence_threshold: Input should be a valid number, got True"),
        ("maxRetries: 2", "maxRetries: true", "support.yaml:5: parameters.maxRetries: Input "
         "should be a valid integer, got True"),
        ("timeoutMs: 3000", "timeoutMs: false", "support.yaml:5: parameters.timeoutMs: Input "
         "should be a valid integer, got False"),
        ("name: support", "name: support\nversion: true", "support.yaml:4: version: Input "
         "should be a valid integer, got True"),
    ],
)  # fmt: skip
def test_values_that_change_behaviour_silently_are_errors(old, new, expected) -> None:
    assert old in POLICY
    (msg,) = problems(POLICY.replace(old, new))
    assert msg.startswith(expected), msg


def test_numbers_still_load() -> None:
    spec = parse_policy_spec(
        POLICY.replace("confidence_threshold: 0.35", "confidence_threshold: 1")
    )
    assert spec.confidence_threshold == 1.0 and spec.parameters.maxRetries == 2


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, k in zip("abcdefg", "bcdefgh", strict=True)
    )
    started = time.monotonic()
    (msg,) = problems(bomb)
    assert time.monotonic() - started < 5
    assert "expands to more than 100,000 values" in msg


# -- connectors the policy names must exist ------------------------------------------------------


def _project(root: Path, policy_edit: tuple[str, str] | None) -> Path:
    (root / "policies").mkdir(parents=True)
    text = (TEMPLATE / "policies/support-ticket.yaml").read_text()
    if policy_edit is not None:
        assert policy_edit[0] in text
        text = text.replace(*policy_edit)
    (root / "policies/support-ticket.yaml").write_text(text)
    shutil.copy(TEMPLATE / "agent.yaml", root / "agent.yaml")  # connectors kb, tickets, crm
    shutil.copy(TEMPLATE / "transcripts.jsonl", root / "transcripts.jsonl")
    return root / "agent.yaml"


ENV = {"AGL_RUNTIME_TOKEN": "t", "REFSERVICES_TOKEN": "r"}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("connector: kb,", "connector: kbb,"), "the policy uses connector 'kbb', which "
         "agent.yaml does not define (intent KnowledgeQuestion; connectors: crm, kb, tickets)"),
        (("endpoint: search,", "endpoint: serch,"), "the policy uses endpoint 'serch' of "
         "connector 'kb', which agent.yaml does not define (intent KnowledgeQuestion; "
         "endpoints: health, search)"),
    ],
)  # fmt: skip
def test_run_refuses_a_connector_or_endpoint_agent_yaml_does_not_define(
    tmp_path, monkeypatch, edit, expected
) -> None:
    monkeypatch.setenv("REFSERVICES_TOKEN", "r")
    config = load_runtime_config(_project(tmp_path, edit))
    with pytest.raises(ServiceConfigError) as info:
        create_runtime_app(config, env=ENV, start_background=False)
    assert str(info.value) == expected
    # `eval` refuses it with the same words (before calling any connector).
    result = runner.invoke(cli, ["eval", "--project", str(tmp_path)])
    assert result.exit_code == 1 and expected in " ".join(result.output.split())


def test_run_starts_when_every_connector_exists(tmp_path) -> None:
    config = load_runtime_config(_project(tmp_path, None))
    app = create_runtime_app(config, env=ENV, start_background=False)
    app.state.edge.close(0)


def test_run_prints_errors_as_written(tmp_path, monkeypatch) -> None:
    # The Escalate intent (line 100) runs `escalate` but would only allow `reply`.
    config = _project(tmp_path, ("allowed_actions: [escalate]", "allowed_actions: [reply]"))
    monkeypatch.setenv("AGL_RUNTIME_TOKEN", "t")
    result = runner.invoke(cli, ["run", "--config", str(config)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "support-ticket.yaml:100: intents[4].actions[0].type:" in out  # no 💯
    assert "is not in this intent's allowed_actions [reply]" in out  # the list is kept


# -- bootstrap-policy ------------------------------------------------------------------------


def test_bootstrap_refuses_a_question_given_twice(tmp_path) -> None:
    out = tmp_path / "t2.yaml"
    args = ["bootstrap-policy", "--name", "t2", "-o", str(out), "--qa-pairs",
            "Hours?", "9-5", "Where are you?", "Paris", "hours", "10-6"]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "pair 3: the question 'hours' repeats pair 1" in " ".join(result.output.split())
    assert not out.exists()
