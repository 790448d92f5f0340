"""agent-lightning: make deployed AI agents learn from their own mistakes.

The import path is the API: components live in their own packages
(`store`, `ingestion`, `security`, `learning`, `server`, `sdk`, `cli`), and the names a user
needs every day are re-exported here.
"""

from agent_lightning._version import __version__

__all__ = ["AgentLightningClient", "AsyncAgentLightningClient", "__version__"]


def __getattr__(name: str):  # lazy: `import agent_lightning` must stay cheap for the CLI
    if name in ("AgentLightningClient", "AsyncAgentLightningClient"):
        from agent_lightning import sdk

        return getattr(sdk, name)
    raise AttributeError(name)
