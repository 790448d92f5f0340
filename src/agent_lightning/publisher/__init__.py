"""UpdatePublisher: ship learned policy versions to running agents like OS updates.

Signed bundles (`bundle`), sticky assignment of users to rollout arms (`assignment`), rollouts
with guardrails and automatic rollback (`rollouts`, `guardrails`), the serving hook
(`selector`), distribution to runtimes (`distribution`) and the registry (`registry`).

The names below load lazily, so a runtime that only needs `bundle` and `assignment` does not
import the store.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "RolloutManager": "agent_lightning.publisher.rollouts",
    "RolloutError": "agent_lightning.publisher.rollouts",
    "RolloutEvaluator": "agent_lightning.publisher.rollouts",
    "auto_rollout": "agent_lightning.publisher.rollouts",
    "auto_rollout_config": "agent_lightning.publisher.rollouts",
    "versions_in_rollouts": "agent_lightning.publisher.rollouts",
    "RolloutSelector": "agent_lightning.publisher.selector",
    "build_manifest": "agent_lightning.publisher.distribution",
    "manifest_etag": "agent_lightning.publisher.distribution",
    "diff_versions": "agent_lightning.publisher.registry",
    "export_bundle": "agent_lightning.publisher.registry",
    "import_bundle": "agent_lightning.publisher.registry",
    "install_publisher": "agent_lightning.publisher.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_lightning.publisher' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
