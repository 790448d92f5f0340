"""The `agent-lightning` command line (Typer + Rich)."""

from agent_lightning.cli.main import app, main

__all__ = ["app", "main"]
