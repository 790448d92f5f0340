"""`{{variable}}` templates for replies and payloads: small, safe, strict.

A template names values by dotted paths: `{{message}}`, `{{user_id}}`, `{{last.id}}` (a field of
the previous action's result), `{{kb.0.title}}` (the first knowledge-base hit),
`{{slots.ticket_id}}` (a value the intent pulled out of the message).
Nothing is evaluated: a path only walks mappings (by key) and lists (by index). A path that does
not resolve is an error naming the variable, so a typo in a policy shows up on the first message
instead of as a silent blank in front of a customer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_VAR = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)\s*}}")
_WHOLE = re.compile(r"^\s*{{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)\s*}}\s*$")


class TemplateError(ValueError):
    """A template names a variable that does not exist (or walks into a non-container)."""


def variables(template: str) -> list[str]:
    """The dotted variable paths a template uses, in order."""
    return _VAR.findall(template)


def lookup(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at a dotted path; `TemplateError` if any step is missing."""
    head, *rest = path.split(".")
    if head not in scope:
        known = ", ".join(sorted(scope))
        raise TemplateError(f"unknown variable '{path}' (known: {known})")
    value: Any = scope[head]
    walked = head
    for step in rest:
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif (
            isinstance(value, Sequence)
            and not isinstance(value, str | bytes)
            and step.isdigit()
            and int(step) < len(value)
        ):
            value = value[int(step)]
        else:
            what = "nothing" if value is None else type(value).__name__
            raise TemplateError(f"unknown variable '{path}': '{walked}' has no '{step}' ({what})")
        walked += "." + step
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(template: str, scope: Mapping[str, Any]) -> str:
    """Substitute every `{{path}}` with its value as text (None renders as '')."""
    return _VAR.sub(lambda m: _text(lookup(m.group(1), scope)), template)


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render strings inside a JSON-like value; a string that is one `{{x}}` keeps x's type."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole:
            return lookup(whole.group(1), scope)
        return render(value, scope)
    if isinstance(value, Mapping):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, scope) for v in value]
    return value
