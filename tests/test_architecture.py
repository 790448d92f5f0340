"""Dependencies point one way: the server, dashboard and CLI depend on components, never back.

Reads every module's imports (including imports inside functions, which a lazy import would
otherwise hide) and fails naming the file, line and import that crosses a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "agent_lightning"

# The front doors: they compose components into a product. No component may import them.
FRONT_DOORS = {"server", "dashboard", "cli"}
# Front doors that may import each other (the server mounts the dashboard; the CLI starts both).
MAY_IMPORT = {"server": {"dashboard"}, "cli": {"server", "dashboard"}, "dashboard": set()}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "agent_lightning" else None


def _violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        owner = rel.parts[0] if len(rel.parts) > 1 else None
        for line, module in _imports(path):
            target = _top(module)
            if target not in FRONT_DOORS or target == owner:
                continue
            if owner in FRONT_DOORS and target in MAY_IMPORT[owner]:
                continue
            out.append(f"{rel}:{line} imports {module} ({owner or 'package root'} -> {target})")
    return out


def test_components_never_import_the_front_doors() -> None:
    assert _violations() == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    # The rule would be toothless if an import inside a function went unseen.
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from agent_lightning.server.auth import Principal\n")
    assert (2, "agent_lightning.server.auth") in _imports(module)


@pytest.mark.parametrize("door", sorted(FRONT_DOORS))
def test_every_front_door_exists(door: str) -> None:
    # A renamed package would make the rule silently vacuous.
    assert (PACKAGE / door).is_dir()
