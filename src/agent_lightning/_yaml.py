"""YAML configuration files whose errors point at a line: `runtime.yaml:7: field: reason`.

Shared by the gateway's `runtime.yaml` and the agent runtime's `agent.yaml`: parse once for the
data and once for the node tree (which keeps line marks), then map a Pydantic error's location
back to the deepest node that exists.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError


class YamlSyntaxError(ValueError):
    """Text that is not YAML; the message names the file and line."""


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of `text`; raises `YamlSyntaxError` saying where it is broken."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"{where}: not valid YAML: {problem}") from None
    return data, node


def validation_problems(exc: ValidationError, node: yaml.Node | None, source: str) -> list[str]:
    """One `file:line: field.path: message` per error of a model validated from `node`'s data."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function"))]
        line = line_of(node, loc)
        where = f"{source}:{line}" if line else source
        field = ".".join(str(p) for p in loc) or "(top level)"
        problems.append(f"{where}: {field}: {error['msg']}")
    return problems


def line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest node along `loc` that exists in the YAML (a missing key
    points at the mapping that lacks it)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
