"""Response-shape problems as short readable paths: ``results[0].title: expected string``."""

from __future__ import annotations

from collections import deque
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
MAX_PROBLEMS = 20


def json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def format_path(path: deque[Any] | list[Any]) -> str:
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
    return out or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: ValidationError) -> str:
    v, expected = error.validator, error.validator_value
    if v == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(names)}, got {json_type(error.instance)}"
    if v == "required":
        # jsonschema reports one error per missing property; its message names it first.
        missing = error.message.split(" is a required property")[0].strip("'\"")
        return f"missing required field '{missing}'"
    if v == "enum":
        return f"expected one of {', '.join(map(str, expected))}, got {_short(error.instance)}"
    if v == "const":
        return f"expected {_short(expected)}, got {_short(error.instance)}"
    if v == "additionalProperties":
        return "unexpected field(s): " + error.message.split("(")[-1].rstrip(")")
    if v in ("minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum"):
        return f"{v} {expected}, got {_short(error.instance)}"
    return error.message if len(error.message) <= 160 else error.message[:157] + "..."


def shape_problems(schema: dict[str, Any], data: Any) -> list[str]:
    """Every way ``data`` breaks ``schema``, sorted by path; empty when it conforms."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.path)), e.message))
    problems = [f"{format_path(e.path)}: {_describe(e)}" for e in errors[:MAX_PROBLEMS]]
    if len(errors) > MAX_PROBLEMS:
        problems.append(f"... and {len(errors) - MAX_PROBLEMS} more")
    return problems
