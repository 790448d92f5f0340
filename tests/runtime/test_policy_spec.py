"""Policy YAML validation: every bad input is reported with the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_lightning.runtime import PolicySpecError, load_policy_spec, parse_policy_spec

GOOD = """\
apiVersion: agent-lightning/v1
kind: AgentPolicy
name: support
intents:
  - name: CreateTicket
    description: The customer reports a problem.
    utterances: [my printer is broken, please open a ticket]
    allowed_actions: [call_api, reply]
    actions:
      - {type: call_api, connector: tickets, endpoint: create, method: POST,
         payload: {subject: "{{message}}"}}
      - {type: reply, template: "Ticket {{last.id}} is open."}
  - name: Escalate
    description: The customer wants a person.
    actions:
      - {type: escalate, queue: tier1}
rules:
  - {contains: ["speak to a human"], intent: Escalate}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicySpecError) as info:
        parse_policy_spec(text, "support.yaml")
    return [str(p) for p in info.value.problems]


def test_a_good_policy_loads_with_defaults() -> None:
    spec = parse_policy_spec(GOOD)
    assert spec.intent_names == ["CreateTicket", "Escalate"]
    assert spec.confidence_threshold == 0.35 and spec.low_confidence == "clarify"
    assert spec.parameters.maxRetries == 2 and spec.parameters.timeoutMs == 3000
    assert spec.intent("Escalate").allowed == {"escalate"}  # default: its actions' types
    assert spec.match_rule("Can I SPEAK TO A HUMAN?") == "Escalate"
    create = spec.candidate_actions()[0]
    assert create.id == "CreateTicket" and "printer is broken" in create.description


def test_load_from_a_path_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD.replace("type: reply", "type: send_fax"))
    with pytest.raises(PolicySpecError) as info:
        load_policy_spec(path)
    assert str(info.value).startswith("mine.yaml:12: intents[0].actions[1]: unknown action type")
    with pytest.raises(PolicySpecError, match="no such file"):
        load_policy_spec(tmp_path / "missing.yaml")


def test_unknown_action_type_names_line_path_and_choices() -> None:
    (msg,) = problems(GOOD.replace("type: reply", "type: send_fax"))
    assert msg == (
        "support.yaml:12: intents[0].actions[1]: unknown action type 'send_fax' "
        "(expected one of call_api, escalate, fetch_kb, reply, update_policy)"
    )


def test_action_schema_errors_point_at_the_field() -> None:
    text = GOOD.replace("{type: escalate, queue: tier1}", "{type: escalate, queue: 7, urgent: 1}")
    msgs = problems(text)
    assert "support.yaml:16: intents[1].actions[0]: unknown field 'urgent'" in msgs[0] + msgs[1]
    assert any("intents[1].actions[0].queue: must be a string, got integer 7" in m for m in msgs)
    missing = problems(GOOD.replace("connector: tickets, ", ""))
    assert missing == ["support.yaml:10: intents[0].actions[0]: missing required field 'connector'"]


def test_allowed_actions_violation_is_an_error() -> None:
    (msg,) = problems(
        GOOD.replace("allowed_actions: [call_api, reply]", "allowed_actions: [reply]")
    )
    assert msg.startswith("support.yaml:10: intents[0].actions[0].type: action type 'call_api' "
                          "is not in this intent's allowed_actions [reply]")  # fmt: skip
    (msg,) = problems(GOOD.replace("allowed_actions: [call_api, reply]",
                                   "allowed_actions: [call_api, reply, fax]"))  # fmt: skip
    assert msg.startswith("support.yaml:8: intents[0].allowed_actions[2]: unknown action type")


def test_duplicate_intents_and_rules_to_unknown_intents() -> None:
    text = GOOD.replace("name: Escalate", "name: CreateTicket").replace(
        "intent: Escalate", "intent: Escalate"
    )
    msgs = problems(text)
    assert (
        "support.yaml:13: intents[1].name: duplicate intent name 'CreateTicket' (first at line 5)"
        in msgs
    )
    assert any(m.startswith("support.yaml:18: rules[0].intent: rule points to unknown intent "
                            "'Escalate'") for m in msgs)  # fmt: skip


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("confidence_threshold: 1.5", "support.yaml:4: confidence_threshold: Input should be "
         "less than or equal to 1, got 1.5"),
        ("confidence_threshold: -0.1", "support.yaml:4: confidence_threshold: Input should be "
         "greater than or equal to 0"),
        ("low_confidence: shrug", "support.yaml:4: low_confidence: Input should be 'clarify' or "
         "'escalate'"),
        ("parameters: {maxRetries: 99}", "support.yaml:4: parameters.maxRetries: Input should be "
         "less than or equal to 10"),
        ("colour: blue", "support.yaml:4: colour: unknown field 'colour' (allowed: apiVersion"),
    ],
)  # fmt: skip
def test_bad_top_level_values(line: str, expected: str) -> None:
    text = GOOD.replace("name: support\n", f"name: support\n{line}\n")
    msgs = problems(text)
    assert any(m.startswith(expected) for m in msgs), msgs


def test_missing_fields_and_bad_yaml_and_unknown_template_variables() -> None:
    assert problems("apiVersion: agent-lightning/v1\nkind: AgentPolicy\n") == [
        "support.yaml:1: name: missing required field 'name'",
        "support.yaml:1: intents: missing required field 'intents'",
    ]
    (msg,) = problems("name: x\nintents: [\n")
    assert msg.startswith("support.yaml:3: invalid YAML")
    (msg,) = problems(GOOD.replace("{{last.id}}", "{{lats.id}}"))
    assert msg.startswith("support.yaml:12: intents[0].actions[1].template: unknown template "
                          "variable 'lats.id'")  # fmt: skip
    msgs = problems(GOOD.replace("learner", "x") + "learner: {featurizer: nope}\n")
    assert any(m.startswith("support.yaml:19: learner: invalid learner spec") for m in msgs)


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("type: reply", "type: send_fax").replace("queue: tier1", "queue: ''")
    msgs = problems(text.replace("intent: Escalate", "intent: Nobody"))
    assert len(msgs) == 3 and [m.split(":")[1] for m in msgs] == ["12", "16", "18"]


def test_duplicate_yaml_keys_are_errors() -> None:
    msgs = problems(GOOD.replace("name: support\n", "name: support\nname: other\n"))
    assert "support.yaml:4: name: duplicate key (first at line 3)" in msgs
