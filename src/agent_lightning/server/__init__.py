"""The server: one FastAPI app wiring the components behind authentication and RBAC."""

from agent_lightning.server.app import create_app

__all__ = ["create_app"]
