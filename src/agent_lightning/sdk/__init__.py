"""The Python SDK: `AgentLightningClient` (blocking) and `AsyncAgentLightningClient`.

```python
from agent_lightning.sdk import AgentLightningClient

with AgentLightningClient("cl_...", "secret", "https://agl.example.com") as agl:
    agl.log_event("how do I reset my card PIN?", session_id="s1", intent_prediction="pin")
    choice = agl.decide(["reply", "fetch_kb", "escalate"], text="my card was stolen")
    agl.reward(choice.decision_id, 1.0)
    agl.reward(session_id="s1", value=0.5)          # score a whole session
    task = agl.wait_for_task(agl.trigger_task({"task": "learn", "policy": "support"}).id)
```

Every write carries an id assigned by the client, so a resent request (after a timeout, a
502, a 503) is stored once: the server deduplicates by id, and a resent `decide` returns the
decision already made.

Buffered mode (`buffer=True`): `log_event`, `log_events`, `reward`, `log_rewards`,
`log_decision` and `log_decisions` queue and return at once (with the ids); a background
flusher sends batches every `flush_interval` seconds or when 500 are waiting, and on
`flush()`, `close()`, context exit and interpreter exit (bounded wait). Failed sends are
retried with growing pauses and never block the caller. Records the server refuses, and
records still queued when the client closes, go to `on_rejected(list[RejectedRecord])` and
are logged without their content. A full buffer raises `BufferFullError` and queues nothing;
it never drops older records. `decide` is never buffered.

Errors: everything derives from `AgentLightningError`; see `agent_lightning.sdk._exceptions`
for the tree (`APIError` and its per-status subclasses, `UnexpectedResponseError`,
`TransportError`, `BufferFullError`, `ClientClosedError`, `TaskTimeoutError`).
"""

from agent_lightning.sdk._async_client import AsyncAgentLightningClient
from agent_lightning.sdk._client import AgentLightningClient
from agent_lightning.sdk._exceptions import (
    AgentLightningError,
    APIError,
    AuthenticationError,
    BufferFullError,
    ClientClosedError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskTimeoutError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from agent_lightning.sdk._models import (
    Accepted,
    BatchResult,
    Decision,
    Policy,
    Rejected,
    RejectedRecord,
    Task,
)
from agent_lightning.sdk._transports import SyncASGITransport

__all__ = [
    "APIError",
    "Accepted",
    "AgentLightningClient",
    "AgentLightningError",
    "AsyncAgentLightningClient",
    "AuthenticationError",
    "BatchResult",
    "BufferFullError",
    "ClientClosedError",
    "ConflictError",
    "Decision",
    "NotFoundError",
    "PermissionDeniedError",
    "Policy",
    "RateLimitError",
    "Rejected",
    "RejectedRecord",
    "ServerError",
    "SyncASGITransport",
    "Task",
    "TaskTimeoutError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
]
