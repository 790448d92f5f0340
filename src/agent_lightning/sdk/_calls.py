"""Requests and answers without I/O: what each method sends and how its answer is read.

Both clients build the same `Call`s here and differ only in how they send them (blocking or
awaited), so the REST mapping exists once.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx

from agent_lightning.sdk._exceptions import APIError, error_for_reason, unexpected_response
from agent_lightning.sdk._models import BatchResult, Decision

T = TypeVar("T")

API = "/v1"
MAX_BATCH = 500  # records per batch request; the server's default limit is 1000
MAX_BYTES = 900 * 1024  # JSON per batch request; the server's default limit is 1 MiB
KINDS = ("decisions", "events", "rewards")  # flush order: a reward may point at a decision


@dataclass(frozen=True)
class Call:
    """One API request. `idempotent` says whether resending it after an unknown outcome (a read
    timeout, a 502 from a proxy) is safe; writes that carry a client id are."""

    method: str
    path: str
    json: Any = field(default=None, repr=False)
    data: dict[str, str] | None = field(default=None, repr=False)  # form: holds the secret
    params: dict[str, Any] | None = None
    auth: bool = True
    idempotent: bool = True
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def new_id() -> str:
    """A client-side record id: lets the server deduplicate a resent record."""
    return uuid.uuid4().hex


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset fields: the server's schema has defaults and refuses null for lists/dicts."""
    out = {k: v for k, v in record.items() if v is not None}
    check_json(out)
    return out


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, Any]] = (
            (f"{path}.{k}" if path else str(k), v) for k, v in value.items()
        )
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub in items:
        found = _non_finite(sub, sub_path)
        if found:
            return found
    return None


def check_json(record: Mapping[str, Any], what: str = "") -> None:
    """Refuse at the call what JSON cannot carry (NaN, infinity, arbitrary objects).

    Otherwise the request would fail only when sent; in buffered mode that is in the flusher,
    where one such record would hold back every record queued behind it.
    """
    try:
        json.dumps(record, allow_nan=False)
    except ValueError:
        path, value = _non_finite(record, what) or (what or "a field", float("nan"))
        raise ValueError(
            f"{path} must be a finite number, got {value!r} (JSON has no NaN or infinity)"
        ) from None
    except TypeError as exc:
        raise TypeError(f"{what or 'the record'} cannot be sent as JSON: {exc}") from None


def _when(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def with_ids(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the records to send, each with an id.

    A record without an id gets one written into the caller's dict as well, so sending the
    same list again (after a TransportError, say) is idempotent too, and the caller can see it.
    """
    out = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"record {index} is a {type(record).__name__}, not a dict")
        if not record.get("id") and isinstance(record, MutableMapping):
            record["id"] = new_id()
        copy = dict(record)
        if not copy.get("id"):
            copy["id"] = new_id()
        if isinstance(copy.get("timestamp"), datetime):
            copy["timestamp"] = copy["timestamp"].isoformat()
        check_json(copy, f"records[{index}]")
        out.append(copy)
    return out


# -- records ------------------------------------------------------------------------------------


def event_record(
    text: str | None,
    *,
    user_id: str | None,
    session_id: str | None,
    intent_prediction: str | None,
    confidence: float | None,
    feedback_score: float | None,
    attributes: dict[str, Any] | None,
    id: str | None,
    timestamp: datetime | str | None,
) -> dict[str, Any]:
    return _clean(
        {
            "id": id or new_id(),
            "text": text,
            "user_id": user_id,
            "session_id": session_id,
            "intent_prediction": intent_prediction,
            "confidence": confidence,
            "feedback_score": feedback_score,
            "attributes": attributes,
            "timestamp": _when(timestamp),
        }
    )


def _actions(actions: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(actions, str | bytes) or not isinstance(actions, Sequence):
        raise TypeError("actions must be a list of action ids or of dicts with an 'id'")
    return [{"id": a} if isinstance(a, str) else dict(a) for a in actions]


def _exclude(exclude: Sequence[str] | None) -> list[str] | None:
    # list("escalate") would exclude the letters e, s, c, ... and not the action.
    if isinstance(exclude, str | bytes):
        raise TypeError("exclude must be a list of action ids, not a str")
    return list(exclude) if exclude is not None else None


def _context(
    context: Mapping[str, Any] | str | None,
    text: str | None,
    features: Mapping[str, float] | None,
) -> dict[str, Any]:
    if isinstance(context, str):
        out: dict[str, Any] = {"text": context}
    else:
        out = dict(context or {})
    if text is not None:
        out["text"] = text
    if features is not None:
        out["features"] = dict(features)
    return out


def decide_body(
    actions: Sequence[str | Mapping[str, Any]],
    context: Mapping[str, Any] | str | None,
    *,
    decision_point: str,
    text: str | None,
    features: Mapping[str, float] | None,
    exclude: Sequence[str] | None,
    session_id: str | None,
    user_id: str | None,
    attributes: dict[str, Any] | None,
    id: str | None,
) -> dict[str, Any]:
    return _clean(
        {
            "id": id or new_id(),
            "decision_point": decision_point,
            "context": _context(context, text, features),
            "actions": _actions(actions),
            "exclude": _exclude(exclude),
            "session_id": session_id,
            "user_id": user_id,
            "attributes": attributes,
        }
    )


def decision_record(
    action_id: str,
    actions: Sequence[str | Mapping[str, Any]],
    propensity: float,
    context: Mapping[str, Any] | str | None,
    *,
    decision_point: str,
    text: str | None,
    features: Mapping[str, float] | None,
    probabilities: Mapping[str, float] | None,
    policy_name: str | None,
    policy_version: int | None,
    session_id: str | None,
    user_id: str | None,
    attributes: dict[str, Any] | None,
    id: str | None,
) -> dict[str, Any]:
    return _clean(
        {
            "id": id or new_id(),
            "decision_point": decision_point,
            "context": _context(context, text, features),
            "actions": _actions(actions),
            "action_id": action_id,
            "propensity": propensity,
            "probabilities": dict(probabilities) if probabilities is not None else None,
            "policy_name": policy_name,
            "policy_version": policy_version,
            "session_id": session_id,
            "user_id": user_id,
            "attributes": attributes,
        }
    )


def reward_record(
    decision_id: str | None,
    value: float | None,
    *,
    session_id: str | None,
    user_id: str | None,
    source: str,
    correct_action_id: str | None,
    attributes: dict[str, Any] | None,
    id: str | None,
) -> dict[str, Any]:
    if value is None:
        raise TypeError("reward() needs a value")
    if not decision_id and not session_id:
        raise ValueError("reward() needs a decision_id or a session_id")
    return _clean(
        {
            "id": id or new_id(),
            "decision_id": decision_id,
            "session_id": session_id,
            "user_id": user_id,
            "value": value,
            "source": source,
            "correct_action_id": correct_action_id,
            "attributes": attributes,
        }
    )


# -- calls --------------------------------------------------------------------------------------


def token(client_id: str, secret: str) -> Call:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return Call("POST", f"{API}/oauth/token", data=form, auth=False)


def post_one(kind: str, record: dict[str, Any]) -> Call:
    return Call("POST", f"{API}/{kind}", json=record)


def post_batch(kind: str, records: list[dict[str, Any]]) -> Call:
    return Call("POST", f"{API}/{kind}/batch", json=records)


def decide(body: dict[str, Any]) -> Call:
    return Call("POST", f"{API}/decisions", json=body)


def trigger_task(spec: Mapping[str, Any]) -> Call:
    # The server has no client id for tasks: resending after an unknown outcome could queue
    # the task twice, so only failures where nothing was processed are retried.
    return Call("POST", f"{API}/tasks", json=dict(spec), idempotent=False)


def get(path: str, params: dict[str, Any] | None = None, *, auth: bool = True) -> Call:
    return Call("GET", f"{API}{path}", params=params, auth=auth)


def create_policy(
    name: str, decision_point: str, spec: Mapping[str, Any] | None, description: str
) -> Call:
    body = {
        "name": name,
        "decision_point": decision_point,
        "description": description,
        "spec": dict(spec or {}),
    }
    return Call("POST", f"{API}/policies", json=body, idempotent=False)


def list_params(filters: Mapping[str, Any], page_size: int) -> dict[str, Any]:
    params = {k: _when(v) for k, v in filters.items() if v is not None}
    params["limit"] = page_size
    return params


def path_segment(value: str) -> str:
    """An id or name as one URL path segment (never a path traversal)."""
    from urllib.parse import quote

    if not value:
        raise ValueError("an id or name is required")
    return quote(str(value), safe="")


# -- answers ------------------------------------------------------------------------------------


def read(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """`parse` applied to a success answer's JSON. A body no agent-lightning server sends (a
    captive portal's HTML, another service's JSON) is an UnexpectedResponseError, not a
    JSONDecodeError or KeyError from inside the SDK."""
    try:
        body = response.json()
    except ValueError:
        raise unexpected_response(response, "the body is not JSON") from None
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"a field is missing or malformed ({type(exc).__name__}: {exc})"
        raise unexpected_response(response, problem) from None


def an_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def a_page(body: Any) -> dict[str, Any]:
    if not isinstance(an_object(body).get("items"), list):
        raise KeyError("items")
    return body


def _an_id(body: Any) -> str:
    value = an_object(body)["id"]
    if not isinstance(value, str) or not value:
        raise TypeError("id is not a string")
    return value


def created_id(response: httpx.Response) -> str:
    return read(response, _an_id)


def batch_result(response: httpx.Response, offset: int = 0) -> BatchResult:
    def parse(body: Any) -> BatchResult:
        # Both lists are always there: an answer without them would settle nothing silently.
        for key in ("accepted", "rejected"):
            if not isinstance(an_object(body).get(key), list):
                raise KeyError(key)
        return BatchResult.from_api(body, offset)

    return read(response, parse)


def decision(response: httpx.Response) -> Decision:
    status = "duplicate" if response.status_code == 200 else "created"
    return read(response, lambda body: Decision.from_api(an_object(body), status))


def chunks(
    records: list[dict[str, Any]], size: int = MAX_BATCH, max_bytes: int = MAX_BYTES
) -> list[list[dict[str, Any]]]:
    """Batches of at most `size` records and about `max_bytes` of JSON. A record larger than
    that goes alone: a server configured with a higher limit takes it."""
    out: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    used = 2  # the brackets
    for record in records:
        # json.dumps' defaults (ASCII escapes, spaces) never encode shorter than httpx does.
        n = len(json.dumps(record)) + 1  # and its comma
        if batch and (len(batch) >= size or used + n > max_bytes):
            out.append(batch)
            batch, used = [], 2
        batch.append(record)
        used += n
    if batch:
        out.append(batch)
    return out


def halves(batch: list[dict[str, Any]], offset: int, error: APIError) -> list[list[dict[str, Any]]]:
    """A batch the server refused as too large (413: its limit is lower than ours), in two; a
    single record too large by itself is an error that names its index in the caller's list."""
    if len(batch) == 1:
        message = f"records[{offset}] alone is larger than the server accepts: {error.message}"
        raise APIError(413, error.code, message, error.request_id) from error
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]


def only_id(result: BatchResult, request_id: str | None = None) -> str:
    """The id of a one-record batch, or the error its rejection means."""
    if result.rejected:
        r = result.rejected[0]
        raise error_for_reason(r.reason, r.message, request_id, r.errors or None)
    return result.accepted[0].id
