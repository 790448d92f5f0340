"""The README's SDK example runs as written, with the roles its `clients create` line gives."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Api
from tests.test_controller import controller  # noqa: F401 - the fixture

README = Path(__file__).parents[1] / "README.md"


def _using_it() -> tuple[list[str], str]:
    """(roles of the `clients create` line, the Python example) of the README's "Using it"."""
    section = README.read_text().split("## Using it\n", 1)[1].split("\n## ", 1)[0]
    create = next(line for line in section.splitlines() if "clients create" in line)
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    return re.findall(r"--role (\w+)", create), code


def test_the_readmes_sdk_example_runs_with_the_roles_it_creates(api: Api, controller) -> None:  # noqa: F811
    roles, code = _using_it()
    assert "Agent" in roles and 'base_url="http://127.0.0.1:8000"' in code
    identity = api.new_client("support-bot", tuple(roles))
    # The same client, in-process: the example's base_url becomes the app itself.
    code = code.replace('base_url="http://127.0.0.1:8000"', "app=app")
    printed: list[tuple] = []
    controller.start()  # runs queued tasks, as the server does
    try:
        exec(  # noqa: S102 - our own README
            compile(code, str(README), "exec"),
            {
                "client_id": identity.client_id,
                "secret": identity.secret,
                "app": api.app,
                "print": lambda *args: printed.append(args),
            },
        )
    finally:
        controller.stop()
    (result,) = printed[-1]
    assert result["policy"] == "intents" and result["examples"] == 1
    assert result["registered"] is False and "gate needs at least" in result["reason"]
    assert api.store.count_records("rewards", "support-bot") == 1
