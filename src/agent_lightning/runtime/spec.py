"""Policy YAML -> a validated `PolicySpec`, with errors that name the file, the line and the field.

    spec = load_policy_spec("policies/support-ticket.yaml")

Every problem found is reported at once (not just the first), each as
`support.yaml:14: intents[0].actions[1]: unknown action type 'send_fax' (expected one of ...)`.
Three passes: YAML is composed node by node so every value keeps its line; each action is checked
against its JSON schema (`runtime.actions`); the whole file against the Pydantic models below;
then the cross-references no schema can express (duplicate intents, actions outside
`allowed_actions`, rules naming unknown intents, template variables that cannot exist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from agent_lightning import learning
from agent_lightning.runtime.actions import ACTION_TYPES, validate_action
from agent_lightning.runtime.templating import variables

NAME_PATTERN = r"^[A-Za-z0-9._\-]+$"
TEMPLATE_ROOTS = ("message", "user_id", "session_id", "intent", "last", "kb", "slots", "attributes")
DEFAULT_LEARNER: dict[str, Any] = {
    "featurizer": "hybrid",
    "learner": "linucb",
    "warm_start": "zero_shot",
}

MAX_DESCRIPTION = 2000
# Values a policy file may expand to: YAML aliases can make a few lines stand for billions.
MAX_VALUES = 100_000

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.reason}"


class PolicySpecError(ValueError):
    """A policy file is not valid; `problems` lists every problem found, each with its line."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ActionSpec(_Model):
    """One action of an intent; in YAML a flat mapping `{type: reply, template: ...}`."""

    type: str
    params: dict[str, Any] = Field(default_factory=dict)

    @_model_validator(mode="before")
    @classmethod
    def _from_flat(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "params" not in value:
            return {
                "type": value.get("type"),
                "params": {k: v for k, v in value.items() if k != "type"},
            }
        return value

    @_model_validator(mode="after")
    def _schema(self) -> ActionSpec:
        problems = validate_action(self.as_mapping())
        if problems:
            raise ValueError(problems[0][1])
        return self

    def as_mapping(self) -> dict[str, Any]:
        """The flat YAML form."""
        return {**self.params, "type": self.type}


class SlotSpec(_Model):
    """A value pulled out of the message by a regex (its first group, else the whole match)."""

    pattern: str = Field(min_length=1)
    ask: str = Field(min_length=1, description="the clarifying question when it is missing")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def extract(self, text: str) -> str | None:
        m = re.search(self.pattern, text)
        if not m:
            return None
        return m.group(1) if m.groups() else m.group(0)


class IntentSpec(_Model):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    description: str = ""
    utterances: list[str] = Field(default_factory=list)
    allowed_actions: list[str] | None = None  # default: the types of `actions`
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    actions: list[ActionSpec] = Field(min_length=1)

    @property
    def allowed(self) -> frozenset[str]:
        if self.allowed_actions is None:
            return frozenset(a.type for a in self.actions)
        return frozenset(self.allowed_actions)

    def as_action(self) -> learning.Action:
        """This intent as a candidate for the learned scorer (description + utterances)."""
        parts = [self.description.strip(), *(u.strip() for u in self.utterances)]
        # Capped at what a logged decision may carry (ActionIn.description), so the server
        # featurizes exactly the text the runtime scored.
        return learning.Action(self.name, ". ".join(p for p in parts if p)[:MAX_DESCRIPTION])


def _phrase(value: str) -> str:
    if not value.strip():
        raise ValueError("a phrase must not be empty or blank (it would match every message)")
    return value


class RuleSpec(_Model):
    """An override checked before the scorer: any phrase (case-insensitive) or a regex."""

    contains: list[Annotated[str, AfterValidator(_phrase)]] | None = Field(
        default=None, min_length=1
    )
    pattern: str | None = Field(default=None, min_length=1)  # "" would match every message
    intent: str = Field(min_length=1)

    @_model_validator(mode="after")
    def _one_matcher(self) -> RuleSpec:
        if (self.contains is None) == (self.pattern is None):
            raise ValueError("a rule needs exactly one of 'contains' or 'pattern'")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a valid regular expression: {exc}") from None
        return self

    def matches(self, text: str) -> bool:
        if self.pattern is not None:
            return re.search(self.pattern, text, re.IGNORECASE) is not None
        low = text.casefold()
        return any(p.casefold() in low for p in self.contains or ())


class EscalationSpec(_Model):
    queue: str = Field(default="default", min_length=1, pattern=NAME_PATTERN)
    message: str = "I'm handing you to a colleague."


# Numbers are strict: in lax mode `true` would read as 1 (or 1.0) and change behaviour silently.
class ParametersSpec(_Model):
    maxRetries: int = Field(default=2, ge=0, le=10, strict=True)
    timeoutMs: int = Field(default=3000, ge=100, le=60_000, strict=True)


class PolicySpec(_Model):
    """A validated policy file. Build it with `load_policy_spec`, which reports lines."""

    apiVersion: Literal["agent-lightning/v1"] = "agent-lightning/v1"
    kind: Literal["AgentPolicy"] = "AgentPolicy"
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    version: int = Field(default=1, ge=1, strict=True)
    description: str = ""
    decision_point: str = Field(default="intent", min_length=1, max_length=200)
    learner: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_LEARNER))
    confidence_threshold: float = Field(default=0.35, ge=0.0, le=1.0, strict=True)
    low_confidence: Literal["clarify", "escalate"] = "clarify"
    clarify_message: str = Field(
        default="Could you tell me a bit more about what you need?", min_length=1
    )
    escalation: EscalationSpec = Field(default_factory=EscalationSpec)
    parameters: ParametersSpec = Field(default_factory=ParametersSpec)
    intents: list[IntentSpec] = Field(min_length=1)
    rules: list[RuleSpec] = Field(default_factory=list)

    def intent(self, name: str) -> IntentSpec:
        for intent in self.intents:
            if intent.name == name:
                return intent
        raise KeyError(name)

    @property
    def intent_names(self) -> list[str]:
        return [i.name for i in self.intents]

    def candidate_actions(self) -> list[learning.Action]:
        """The decision's candidates: one `learning.Action` per intent."""
        return [i.as_action() for i in self.intents]

    def match_rule(self, text: str) -> str | None:
        """The intent of the first rule that matches `text`, if any."""
        for rule in self.rules:
            if rule.matches(text):
                return rule.intent
        return None

    def runtime_parameters(self) -> dict[str, Any]:
        """The parameters `update_policy` may change, with their starting values."""
        return {**self.parameters.model_dump(), "confidence_threshold": self.confidence_threshold}

    def connector_problems(self, connectors: Any | None) -> list[str]:
        """The connectors and endpoints the actions name that `connectors` (a
        `ConnectorRegistry`; None: agent.yaml defines none) lacks. `eval` and `run` refuse a
        policy with any, rather than escalate every message that needs one."""
        calls = [
            (intent.name, a.params["connector"], a.params.get("endpoint"))
            for intent in self.intents
            for a in intent.actions
            if "connector" in a.params
        ]
        if not calls:
            return []
        if connectors is None:
            used = sorted({c for _, c, _ in calls})
            return [f"the policy calls connectors ({', '.join(used)}) but agent.yaml defines none"]
        problems: list[str] = []
        for intent, name, endpoint in calls:
            if name not in connectors:
                defined = ", ".join(sorted(connectors)) or "none"
                problem = (
                    f"the policy uses connector {name!r}, which agent.yaml does not define "
                    f"(intent {intent}; connectors: {defined})"
                )
            elif endpoint is not None and endpoint not in connectors[name].endpoints:
                problem = (
                    f"the policy uses endpoint {endpoint!r} of connector {name!r}, which "
                    f"agent.yaml does not define (intent {intent}; endpoints: "
                    f"{', '.join(connectors[name].endpoints) or 'none'})"
                )
            else:
                continue
            if problem not in problems:
                problems.append(problem)
        return problems


# -- loading -----------------------------------------------------------------------------------


def _fmt(path: Path_) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


class _Lines:
    """Line of every value in the document, by path; unknown paths fall back to their parent."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}

    def __call__(self, path: Path_) -> int:
        for n in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return 1


def _compose(text: str, file: str) -> tuple[Any, _Lines, list[SpecProblem]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise PolicySpecError([SpecProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    if root is None:
        raise PolicySpecError([SpecProblem(file, 1, "", "the file is empty")])
    constructor = yaml.constructor.SafeConstructor()
    lines = _Lines()
    problems: list[SpecProblem] = []
    budget = [MAX_VALUES]

    def walk(node: yaml.Node, path: Path_) -> Any:
        lines.lines.setdefault(path, node.start_mark.line + 1)
        budget[0] -= 1
        if budget[0] < 0:  # an alias bomb would otherwise take minutes and gigabytes
            raise PolicySpecError(
                [
                    SpecProblem(
                        file,
                        node.start_mark.line + 1,
                        "",
                        f"the file expands to more than {MAX_VALUES:,} values "
                        "(nested YAML aliases?)",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line = key_node.start_mark.line + 1
                    problems.append(SpecProblem(file, line, _fmt(path), "keys must be scalars"))
                    continue
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool):
                    line = key_node.start_mark.line + 1
                    problems.append(SpecProblem(file, line, _fmt(path), "keys must be scalars"))
                    continue
                if key in out:
                    first = lines.lines.get((*path, key), 0)
                    problems.append(
                        SpecProblem(
                            file,
                            key_node.start_mark.line + 1,
                            _fmt((*path, key)),
                            f"duplicate key (first at line {first})",
                        )
                    )
                lines.lines[(*path, key)] = value_node.start_mark.line + 1
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    try:
        data = walk(root, ())
    except yaml.YAMLError as exc:  # a scalar that cannot be constructed (e.g. a bad timestamp)
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PolicySpecError([SpecProblem(file, line, "", f"invalid YAML: {exc}")]) from None
    return data, lines, problems


_MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): PolicySpec,
    ("intents",): IntentSpec,
    ("rules",): RuleSpec,
    ("escalation",): EscalationSpec,
    ("parameters",): ParametersSpec,
}


def _pydantic_reason(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "missing":
        return f"missing required field '{loc[-1]}'"
    if kind == "extra_forbidden":
        model = _MODEL_AT.get(tuple(s for s in loc[:-1] if isinstance(s, str)))
        allowed = f" (allowed: {', '.join(model.model_fields)})" if model else ""
        return f"unknown field '{loc[-1]}'{allowed}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], dict | list):
        msg += f", got {err['input']!r}"
    return msg


def _check_references(spec: PolicySpec, file: str, lines: _Lines) -> list[SpecProblem]:
    problems: list[SpecProblem] = []

    def add(path: Path_, reason: str) -> None:
        problems.append(SpecProblem(file, lines(path), _fmt(path), reason))

    seen: dict[str, int] = {}
    for i, intent in enumerate(spec.intents):
        if intent.name in seen:
            first = lines(("intents", seen[intent.name], "name"))
            reason = f"duplicate intent name {intent.name!r} (first at line {first})"
            add(("intents", i, "name"), reason)
        else:
            seen[intent.name] = i
        for j, kind in enumerate(intent.allowed_actions or ()):
            if kind not in ACTION_TYPES:
                add(
                    ("intents", i, "allowed_actions", j),
                    f"unknown action type {kind!r} (expected one of {', '.join(ACTION_TYPES)})",
                )
        for j, action in enumerate(intent.actions):
            if action.type not in intent.allowed:
                add(
                    ("intents", i, "actions", j, "type"),
                    f"action type {action.type!r} is not in this intent's allowed_actions "
                    f"[{', '.join(intent.allowed_actions or ())}]",
                )
            for key, template in _templates(action.params):
                for var in variables(template):
                    head, _, rest = var.partition(".")
                    path = ("intents", i, "actions", j, *key)
                    if head not in TEMPLATE_ROOTS:
                        add(path, f"unknown template variable '{var}' (known roots: "
                            f"{', '.join(TEMPLATE_ROOTS)})")  # fmt: skip
                    elif head == "slots" and rest.split(".")[0] not in intent.slots:
                        add(path, f"template variable '{var}' names a slot this intent "
                            "does not declare")  # fmt: skip
    for i, rule in enumerate(spec.rules):
        if rule.intent not in seen:
            add(
                ("rules", i, "intent"),
                f"rule points to unknown intent {rule.intent!r} (intents: {', '.join(seen)})",
            )
    try:
        learning.make_policy(spec.learner)
    except learning.LearningError as exc:
        add(("learner",), f"invalid learner spec: {exc}")
    return problems


def _templates(value: Any, key: Path_ = ()) -> list[tuple[Path_, str]]:
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in _templates(v, (*key, k))]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _templates(v, (*key, i))]
    return []


def parse_policy_spec(text: str, file: str = "<policy>") -> PolicySpec:
    """Validate policy YAML given as text; `file` is the name used in error messages."""
    data, lines, problems = _compose(text, file)

    def add(path: Path_, reason: str) -> None:
        problems.append(SpecProblem(file, lines(path), _fmt(path), reason))

    if not isinstance(data, dict):
        add((), "a policy file must be a mapping (apiVersion, kind, name, intents, ...)")
        raise PolicySpecError(problems)
    bad_actions: set[Path_] = set()
    intents = data.get("intents")
    for i, intent in enumerate(intents if isinstance(intents, list) else []):
        actions = intent.get("actions") if isinstance(intent, dict) else None
        for j, action in enumerate(actions if isinstance(actions, list) else []):
            base: Path_ = ("intents", i, "actions", j)
            for rel, reason in validate_action(action):
                bad_actions.add(base)
                add(base if rel == ("type",) else (*base, *rel), reason)
    spec: PolicySpec | None = None
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if any(loc[: len(b)] == b for b in bad_actions):
                continue  # already reported by the action's JSON schema
            add(loc, _pydantic_reason(err))
    if spec is not None:
        problems.extend(_check_references(spec, file, lines))
    else:  # the cross-reference that does not need a valid document: rules -> intents
        raw = data.get("intents")
        names = {i.get("name") for i in raw if isinstance(i, dict)} if isinstance(raw, list) else {}
        rules = data.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            target = rule.get("intent") if isinstance(rule, dict) else None
            if isinstance(target, str) and names and target not in names:
                add(("rules", i, "intent"), f"rule points to unknown intent {target!r}")
    if problems:
        seen: set[tuple[int, str]] = set()
        unique = []  # one problem per field: the first is the one to fix
        for p in problems:
            if (p.line, p.path) not in seen:
                seen.add((p.line, p.path))
                unique.append(p)
        unique.sort(key=lambda p: p.line)
        raise PolicySpecError(unique)
    assert spec is not None
    return spec


def load_policy_spec(source: str | Path) -> PolicySpec:
    """Load and validate a policy file (a path) or policy YAML text (a str containing a newline).

    Raises `PolicySpecError` listing every problem as `file:line: path: reason`.
    """
    if isinstance(source, Path) or "\n" not in source:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicySpecError([SpecProblem(str(path), 0, "", "no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicySpecError([SpecProblem(str(path), 0, "", f"cannot read: {exc}")]) from None
        return parse_policy_spec(text, path.name)
    return parse_policy_spec(source)
