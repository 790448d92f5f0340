"""The agent runtime: run an agent on a policy YAML, with guardrails, connectors and a trace.

    from agent_lightning.runtime import AgentRuntime, InMemoryRecorder, LocalDecider
    from agent_lightning.runtime import load_policy_spec

    spec = load_policy_spec("policies/support-ticket.yaml")
    runtime = AgentRuntime(spec, LocalDecider(spec), InMemoryRecorder(), connectors)
    response = runtime.handle("my laptop will not start", user_id="u1")

Errors: `PolicySpecError` (a policy file is invalid; every problem with its line),
`TemplateError` (a template names a value that does not exist), `ActionError` (an action failed;
the runtime turns it into an escalation, so callers of `handle` never see it).
"""

from agent_lightning.runtime.actions import (
    ACTION_SCHEMAS,
    ACTION_TYPES,
    PARAMETER_BOUNDS,
    ActionError,
    openai_generator,
    validate_action,
)
from agent_lightning.runtime.agent import AgentRuntime
from agent_lightning.runtime.config import RuntimeConfig, RuntimeConfigError, load_runtime_config
from agent_lightning.runtime.local import LocalDecider, calibrated_confidence
from agent_lightning.runtime.recorder import InMemoryRecorder
from agent_lightning.runtime.spec import (
    ActionSpec,
    IntentSpec,
    PolicySpec,
    PolicySpecError,
    SpecProblem,
    load_policy_spec,
    parse_policy_spec,
)
from agent_lightning.runtime.templating import TemplateError
from agent_lightning.runtime.types import (
    ActionResult,
    AgentResponse,
    Decider,
    IntentChoice,
    Recorder,
)

__all__ = [
    "ACTION_SCHEMAS",
    "ACTION_TYPES",
    "PARAMETER_BOUNDS",
    "ActionError",
    "ActionResult",
    "ActionSpec",
    "AgentResponse",
    "AgentRuntime",
    "Decider",
    "InMemoryRecorder",
    "IntentChoice",
    "IntentSpec",
    "LocalDecider",
    "PolicySpec",
    "PolicySpecError",
    "Recorder",
    "RuntimeConfig",
    "RuntimeConfigError",
    "SpecProblem",
    "TemplateError",
    "calibrated_confidence",
    "load_policy_spec",
    "load_runtime_config",
    "openai_generator",
    "parse_policy_spec",
    "validate_action",
]
