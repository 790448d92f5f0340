"""Action schemas (contract tests) and the template language."""

from __future__ import annotations

import pytest

from agent_lightning.runtime import ACTION_SCHEMAS, ACTION_TYPES, TemplateError, validate_action
from agent_lightning.runtime.templating import render, render_value

VALID = {
    "reply": {"type": "reply", "template": "Hello {{user_id}}"},
    "fetch_kb": {"type": "fetch_kb", "connector": "kb", "endpoint": "search",
                 "query": "{{message}}"},
    "call_api": {"type": "call_api", "connector": "tickets", "endpoint": "create", "method": "POST",
                 "payload": {"subject": "{{message}}"}},
    "escalate": {"type": "escalate", "queue": "tier1", "reason": "asked for a person"},
    "update_policy": {"type": "update_policy", "parameters": {"maxRetries": 1, "timeoutMs": 500}},
}  # fmt: skip
REQUIRED = {
    "reply": "template",  # template or generate: dropping the only one fails
    "fetch_kb": "connector",
    "call_api": "endpoint",
    "escalate": "queue",
    "update_policy": "parameters",
}
WRONG_TYPE = {
    "reply": ("template", 3, "must be a string, got integer 3"),
    "fetch_kb": ("top_k", "three", "must be an integer, got string 'three'"),
    "call_api": ("payload", "x", "must be an object, got string 'x'"),
    "escalate": ("reason", ["a"], "must be a string, got list ['a']"),
    "update_policy": ("parameters", {"timeoutMs": 5}, "must be >= 100, got 5"),
}


def test_every_action_type_has_a_schema_and_a_valid_example() -> None:
    assert set(ACTION_SCHEMAS) == set(VALID) == set(ACTION_TYPES)
    for action in VALID.values():
        assert validate_action(action) == []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_missing_field_is_rejected_with_its_name(kind: str) -> None:
    action = {k: v for k, v in VALID[kind].items() if k != REQUIRED[kind]}
    (problem,) = validate_action(action)
    if kind == "reply":
        assert problem == ((), "a reply needs 'template' or 'generate: {prompt}' (or both)")
    else:
        assert problem == ((), f"missing required field '{REQUIRED[kind]}'")


@pytest.mark.parametrize("kind", sorted(VALID))
def test_wrong_field_type_is_rejected_with_a_clear_message(kind: str) -> None:
    field, value, message = WRONG_TYPE[kind]
    problems = validate_action({**VALID[kind], field: value})
    assert len(problems) == 1
    path, text = problems[0]
    assert path[0] == field and text == message


@pytest.mark.parametrize("kind", sorted(VALID))
def test_unknown_field_is_rejected_and_the_allowed_ones_listed(kind: str) -> None:
    ((path, text),) = validate_action({**VALID[kind], "colour": "red"})
    assert path == () and text.startswith(f"unknown field 'colour' for {kind} (allowed: ")


def test_bounds_enums_and_nested_fields() -> None:
    assert validate_action({**VALID["fetch_kb"], "top_k": 0}) == [
        (("top_k",), "must be >= 1, got 0")
    ]
    assert validate_action({**VALID["call_api"], "method": "FETCH"})[0][1].startswith(
        "must be one of GET, POST"
    )
    bad = {"type": "update_policy", "parameters": {"confidence_threshold": 2}}
    assert validate_action(bad) == [(("parameters", "confidence_threshold"), "must be <= 1, got 2")]
    assert validate_action({"type": "update_policy", "parameters": {}}) == [
        (("parameters",), "must set at least one field")
    ]
    assert validate_action({"type": "reply", "generate": {}}) == [
        (("generate",), "missing required field 'prompt'")
    ]
    assert validate_action({"template": "x"}) == [
        ((), "missing required field 'type' (one of call_api, escalate, fetch_kb, reply, "
         "update_policy)")
    ]  # fmt: skip
    assert validate_action("reply")[0][1].startswith("an action must be a mapping")


def test_templates_render_paths_and_refuse_unknown_variables() -> None:
    scope = {"message": "hi", "user_id": None, "last": {"id": 7}, "kb": [{"title": "Reset"}]}
    assert render("{{ message }} #{{last.id}} {{kb.0.title}} [{{user_id}}]", scope) == (
        "hi #7 Reset []"
    )
    assert render_value({"n": "{{last.id}}", "s": "x{{last.id}}", "l": ["{{message}}"]}, scope) == {
        "n": 7,
        "s": "x7",
        "l": ["hi"],
    }
    with pytest.raises(TemplateError, match=r"unknown variable 'mesage' \(known: kb, last, "):
        render("{{mesage}}", scope)
    with pytest.raises(TemplateError, match=r"'kb.1.title': 'kb' has no '1'"):
        render("{{kb.1.title}}", scope)
    with pytest.raises(TemplateError, match=r"'last.id.x': 'last.id' has no 'x' \(int\)"):
        render("{{last.id.x}}", scope)
    # Nothing is evaluated: an expression is just text that is not a variable.
    assert render("{{ 1 + 1 }} {{__import__('os')}}", scope) == "{{ 1 + 1 }} {{__import__('os')}}"
