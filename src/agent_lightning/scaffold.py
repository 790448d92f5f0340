"""Project templates for `agent-lightning init --template NAME` (in agent_lightning/templates).

A template is a directory that becomes the new project as it is: `agent.yaml`, `policies/`,
`transcripts.jsonl`, `README.md`. Adding a directory there adds a template.

Standard library only, outside the `runtime` package: `agent-lightning --help` lists the
templates, and importing the runtime (numpy, scipy, the learning library) for that took 0.7 s.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

GITIGNORE = ".agl/\n.agl-runtime/\n"


def _root() -> Traversable:
    return resources.files("agent_lightning").joinpath("templates")


def available_templates() -> list[str]:
    """Names of the shipped templates, sorted."""
    root = _root()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def _copy(src: Traversable, dest: Path, rel: str, out: list[str]) -> None:
    for child in sorted(src.iterdir(), key=lambda c: c.name):
        if child.name.startswith(".") or child.name == "__pycache__":
            continue
        here = f"{rel}{child.name}"
        if child.is_dir():
            (dest / child.name).mkdir(exist_ok=True)
            _copy(child, dest / child.name, here + "/", out)
        else:
            (dest / child.name).write_bytes(child.read_bytes())
            out.append(here)


def copy_template(name: str, dest: Path) -> list[str]:
    """Copy template `name` into `dest` (which must not exist or be empty); the files written."""
    names = available_templates()
    if name not in names:
        raise ValueError(f"unknown template {name!r}; choose from {', '.join(['blank', *names])}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not empty; choose a new name")
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    _copy(_root().joinpath(name), dest, "", written)
    if not (dest / ".gitignore").exists():
        (dest / ".gitignore").write_text(GITIGNORE)
        written.append(".gitignore")
    return sorted(written)
