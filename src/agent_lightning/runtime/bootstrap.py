"""A first policy from what a team already has: Q&A pairs, or utterances labelled with intents.

    bootstrap_qna("intro-qa", [("What are your hours?", "9 to 5, Monday to Friday."), ...])
    bootstrap_intents("bank", read_labelled("train.csv"))    # text,category CSV or JSONL

Each returns policy YAML text that `load_policy_spec` accepts (it is checked before it is
returned), with an `Escalate` intent added so the agent can always hand over to a person.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent_lightning.runtime.spec import NAME_PATTERN, parse_policy_spec

ESCALATE_UTTERANCES = [
    "I want to talk to a person",
    "connect me to a human agent",
    "this did not help, I want to complain",
    "get me a manager",
]
ESCALATE_RULE = ["speak to a human", "talk to a person", "human agent", "real person"]


class BootstrapError(ValueError):
    """The input cannot make a policy (bad name, no pairs, unreadable file, ...)."""


def _check_name(name: str) -> None:
    if not re.match(NAME_PATTERN, name or ""):
        raise BootstrapError(f"policy name {name!r} must use only letters, digits, '.', '_', '-'")


def _threshold(n_intents: int) -> float:
    # A confidence equal to chance (1/k) means "no idea"; ask back unless the best intent is
    # clearly ahead of chance. Few intents need a higher bar than many.
    return round(max(0.35, min(0.9, 1.0 / n_intents + 0.25)), 2)


def _intent_name(text: str, taken: set[str]) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    base = "".join(w[:1].upper() + w[1:].lower() for w in words)[:40] or "Intent"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name.lower())
    return name


def _no_template_syntax(text: str, what: str) -> str:
    if "{{" in text:
        raise BootstrapError(f"{what} contains '{{{{', which policy templates reserve: {text!r}")
    return text


def _document(name: str, description: str, intents: list[dict[str, Any]]) -> dict[str, Any]:
    taken = {i["name"].lower() for i in intents}
    if "escalate" not in taken:
        intents.append(
            {
                "name": "Escalate",
                "description": "The user wants a person, or nothing here answers them.",
                "utterances": list(ESCALATE_UTTERANCES),
                "allowed_actions": ["escalate"],
                "actions": [{"type": "escalate", "queue": "default", "reason": "user asked"}],
            }
        )
    doc = {
        "apiVersion": "agent-lightning/v1",
        "kind": "AgentPolicy",
        "name": name,
        "version": 1,
        "description": description,
        "decision_point": "intent",
        "learner": {"featurizer": "hybrid", "learner": "linucb", "warm_start": "zero_shot"},
        "confidence_threshold": _threshold(len(intents)),
        "low_confidence": "clarify",
        "clarify_message": "Sorry, I did not understand. Could you rephrase your question?",
        "escalation": {"queue": "default", "message": "I'm handing you to a colleague."},
        "parameters": {"maxRetries": 2, "timeoutMs": 3000},
        "intents": intents,
    }
    escalate = next(i["name"] for i in intents if i["name"].lower() == "escalate")
    doc["rules"] = [{"contains": list(ESCALATE_RULE), "intent": escalate}]
    return doc


def _dump(doc: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    text = header + body
    parse_policy_spec(text, f"{doc['name']}.yaml")  # what we write must load
    return text


def bootstrap_qna(name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Policy YAML with one intent per question, each replying with its answer."""
    _check_name(name)
    if not pairs:
        raise BootstrapError("give at least one question/answer pair")
    taken: set[str] = {"escalate"}
    intents = []
    asked: dict[str, int] = {}
    for n, (question, answer) in enumerate(pairs, 1):
        question, answer = question.strip(), answer.strip()
        if not question or not answer:
            raise BootstrapError(f"pair {n}: the question and the answer must not be empty")
        # Two intents with the same utterance split its score: neither would be confident.
        key = " ".join(re.findall(r"\w+", question.casefold())) or question.casefold()
        if key in asked:
            raise BootstrapError(
                f"pair {n}: the question {question!r} repeats pair {asked[key]}; give each "
                "question once, with one answer"
            )
        asked[key] = n
        intents.append(
            {
                "name": _intent_name(question, taken),
                "description": _no_template_syntax(question, f"question {n}"),
                "utterances": [question],
                "allowed_actions": ["reply", "escalate"],
                "actions": [
                    {"type": "reply", "template": _no_template_syntax(answer, f"answer {n}")}
                ],
            }
        )
    header = (
        f"# Policy {name!r}, bootstrapped from {len(pairs)} question/answer pair(s).\n"
        "# Add more ways of asking each question under `utterances`: it sharpens the matching.\n"
    )
    return _dump(_document(name, f"Answers {len(pairs)} frequent questions.", intents), header)


def read_labelled(path: str | Path) -> list[tuple[str, str]]:
    """(text, label) rows from a CSV with `text,category` (or `text,intent`) columns or a JSONL
    file of `{"text": ..., "intent": ...}` objects."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BootstrapError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BootstrapError(f"{path}: cannot read: {exc}") from None
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson") or raw.lstrip().startswith("{"):
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BootstrapError(f"{path.name}:{n}: not JSON: {exc.msg}") from None
            label = obj.get("intent", obj.get("category")) if isinstance(obj, dict) else None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not label:
                raise BootstrapError(f"{path.name}:{n}: need {{'text': str, 'intent': str}}")
            rows.append((obj["text"], str(label)))
    else:
        reader = csv.DictReader(raw.splitlines())
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        label_col = next((c for c in ("category", "intent", "label") if c in fields), None)
        if "text" not in fields or label_col is None:
            raise BootstrapError(
                f"{path.name}: the CSV needs a header with 'text' and 'category' (or 'intent')"
            )
        names = {f.strip().lower(): f for f in reader.fieldnames or []}
        for n, row in enumerate(reader, 2):
            text, label = row.get(names["text"]), row.get(names[label_col])
            if not text or not label:
                raise BootstrapError(f"{path.name}:{n}: empty text or {label_col}")
            rows.append((text, label))
    if not rows:
        raise BootstrapError(f"{path.name}: no labelled rows")
    return rows


def bootstrap_intents(
    name: str, rows: Iterable[tuple[str, str]], *, max_utterances: int = 20
) -> str:
    """Policy YAML with one intent per label, its texts as utterances, a placeholder reply each."""
    _check_name(name)
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        utterances = by_label.setdefault(label.strip(), [])
        text = " ".join(text.split())
        if text and text not in utterances and len(utterances) < max_utterances:
            utterances.append(text)
    if len(by_label) < 1:
        raise BootstrapError("no labels found")
    taken: set[str] = set()
    intents = []
    for label, utterances in by_label.items():
        if re.match(NAME_PATTERN, label) and label.lower() not in taken:
            intent = label  # labels that are already valid names stay as the data has them
            taken.add(label.lower())
        else:
            intent = _intent_name(label.replace("_", " "), taken)
        is_escalation = intent.lower() == "escalate"
        for u in utterances:
            _no_template_syntax(u, f"an utterance of {label!r}")
        intents.append(
            {
                "name": intent,
                "description": label.replace("_", " "),
                "utterances": utterances,
                "allowed_actions": ["escalate"] if is_escalation else ["reply", "escalate"],
                "actions": [{"type": "escalate", "queue": "default", "reason": "user asked"}]
                if is_escalation
                else [{"type": "reply", "template": f"TODO: write the answer for {label}."}],
            }
        )
    header = (
        f"# Policy {name!r}, bootstrapped from labelled utterances ({len(intents)} intents).\n"
        "# Each reply is a placeholder (TODO): write the real answer, or replace it with\n"
        "# fetch_kb / call_api / escalate actions.\n"
    )
    return _dump(_document(name, f"Recognises {len(intents)} intents.", intents), header)


def write_policy(text: str, path: str | Path, *, force: bool = False) -> Path:
    """Write policy YAML, refusing to overwrite an existing file unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise BootstrapError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
