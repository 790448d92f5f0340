"""Reference knowledge-base / ticketing / CRM service that templates and tests run against.

``create_app(db_path, token)`` is a FastAPI app over SQLite; ``agent-lightning refservices
serve`` runs it. ``agent_lightning.refservices.testing.RefServiceServer`` runs it on loopback in
a thread.
"""

from agent_lightning.refservices.app import create_app
from agent_lightning.refservices.faults import Fault, Faults
from agent_lightning.refservices.store import RefStore

__all__ = ["Fault", "Faults", "RefStore", "create_app"]
