"""Optional components a full server adds to the core state (learning controller, ...).

Kept apart from `app.create_app` so tests can build a bare app with only the core.
"""

from __future__ import annotations

from agent_lightning.config import Settings
from agent_lightning.server.state import ServerState, build_state
from agent_lightning.store import Store


def with_components(settings: Settings, store: Store | None = None) -> ServerState:
    state = build_state(settings, store)
    from agent_lightning.security.retention import RetentionScheduler

    retention = RetentionScheduler(state.store, state.audit, settings.retention_every_seconds)
    state.extras.setdefault("on_startup", []).append(retention.start)
    state.extras.setdefault("on_shutdown", []).append(retention.stop)
    from agent_lightning.publisher.service import start_evaluator

    start_evaluator(state)  # rollout guardrails every AGL_ROLLOUT_EVAL_SECONDS (default 5)
    try:
        from agent_lightning.controller import LearningController
    except ImportError:  # the learning track is not installed in this build
        return state
    controller = LearningController(
        state.store,
        state.audit,
        on_version=lambda app_id, _name, _version: state.decisions.invalidate(app_id),
        version_cache=state.decisions,
        rollouts=_controller_rollouts(state),
    )
    state.controller = controller
    state.extras.setdefault("on_startup", []).append(controller.start)
    state.extras.setdefault("on_shutdown", []).append(controller.stop)
    return state


def _controller_rollouts(state: ServerState):
    from agent_lightning.publisher.service import ControllerRollouts, install_publisher

    publisher = install_publisher(state)  # idempotent: create_app installs the same one
    return ControllerRollouts(state.store, state.audit, publisher.manager)
