"""OTLP/HTTP trace ingest: spans from agents that are already instrumented, stored redacted.

Agents instrumented with OpenInference or OpenLLMetry (LangChain, the OpenAI SDK, ...) point their
OTLP exporter at `POST /v1/traces` with their agent-lightning token in `Authorization` and their
LLM calls, tool calls and chains land beside the decisions and rewards of the same session.

Follows the OTLP/HTTP specification: binary protobuf (`application/x-protobuf`) or JSON
(`application/json`, where trace and span ids are hex strings, not base64), optionally gzip
compressed; the answer is an `ExportTraceServiceResponse` in the request's encoding, with
`partial_success` counting the spans refused and why. An undecodable body is 400 with a
`google.rpc.Status` saying what is wrong (JSON bodies also get the API's usual error object).

Each span is stored once (key: app, trace id, span id; an exporter's retry is a no-op), with its
attributes, events, links and resource attributes run through the PII redactor. Its session is
read from the attributes instrumentations use (`SESSION_KEYS`), then the resource's, and spans of
a trace that carries a session anywhere (in this request or stored before) inherit it.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from agent_lightning.observability.models import TraceSpan
from agent_lightning.store import Store, utcnow

PROTOBUF = "protobuf"
JSON = "json"

SESSION_KEYS = (
    "agl.session_id",
    "session.id",
    "session_id",
    "gen_ai.conversation.id",
    "langsmith.metadata.session_id",
    "langsmith.metadata.thread_id",
    "langsmith.metadata.conversation_id",
    "traceloop.association.properties.session_id",
    "traceloop.association.properties.thread_id",
    "langfuse.session.id",
    "ai.telemetry.metadata.sessionId",
    "conversation.id",
    "thread.id",
)
USER_KEYS = (
    "agl.user_id",
    "user.id",
    "enduser.id",
    "langsmith.metadata.user_id",
    "traceloop.association.properties.user_id",
    "langfuse.user.id",
    "ai.telemetry.metadata.userId",
)
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NANOS = 253_402_300_799 * 10**9  # 9999-12-31: what a datetime can hold


class OtlpError(Exception):
    """The request cannot be processed at all; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# -- decoding ---------------------------------------------------------------------------------


def request_format(content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("application/x-protobuf", "application/protobuf"):
        return PROTOBUF
    if media == "application/json":
        return JSON
    raise OtlpError(
        415,
        "unsupported_media_type",
        "send OTLP as application/x-protobuf or application/json "
        f"(got {media or 'no Content-Type'})",
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding: gzip`, refusing to inflate past `max_bytes` (zip bombs)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise OtlpError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: use gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpError(400, "malformed_gzip", f"the gzip body cannot be inflated: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise OtlpError(413, "payload_too_large", f"the inflated body is over {max_bytes} bytes")
    if not inflater.eof:
        raise OtlpError(400, "malformed_gzip", "the gzip body is truncated")
    return out


def decode(body: bytes, fmt: str) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    if fmt == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(
                400,
                "malformed_otlp",
                f"the body is not a valid OTLP ExportTraceServiceRequest protobuf ({exc})",
            ) from None
        return message
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested past the parser's limit
        raise OtlpError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise OtlpError(400, "malformed_otlp", "an OTLP JSON body is an object: {resourceSpans}")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise OtlpError(400, "malformed_otlp", f"the OTLP JSON is not valid: {exc}") from None
    return message


_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _hex_ids_to_base64(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP JSON writes ids in hex where protobuf's JSON mapping expects base64."""
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _convert_ids(span)
                for link in _list(span, "links"):
                    _convert_ids(link)
    return document


def _list(container: Any, *names: str) -> list[Any]:
    if not isinstance(container, dict):
        return []
    for name in names:
        value = container.get(name)
        if isinstance(value, list):
            return value
    return []


def _convert_ids(item: Any) -> None:
    if not isinstance(item, dict):
        return
    for name in _ID_FIELDS:
        value = item.get(name)
        if isinstance(value, str) and value:
            try:
                item[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise OtlpError(
                    400, "malformed_otlp", f"{name} must be a hex string, got {value[:40]!r}"
                ) from None


# -- normalising ------------------------------------------------------------------------------


def any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "double_value" and not math.isfinite(value.double_value):
        return str(value.double_value)  # JSON has no NaN or infinity
    return getattr(value, which)


def attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _time(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _first(keys: tuple[str, ...], *sources: dict[str, Any]) -> str | None:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:200]
    return None


@dataclass
class Normalized:
    rows: list[dict[str, Any]]
    rejected: int
    reasons: list[str]


def normalize(message: ExportTraceServiceRequest, max_spans: int) -> Normalized:
    """Spans as table rows (not yet redacted), plus how many were refused and why."""
    rows: list[dict[str, Any]] = []
    rejected = 0
    reasons: dict[str, None] = {}
    seen = 0
    for resource_spans in message.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get("service.name")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                seen += 1
                if seen > max_spans:
                    rejected += 1
                    reasons[f"at most {max_spans} spans per request"] = None
                    continue
                problem = _problem(span)
                if not problem:
                    row = _row(span, resource, service, scope)
                    problem = _text_problem(row)
                if problem:
                    rejected += 1
                    reasons[problem] = None
                    continue
                rows.append(row)
    return Normalized(rows, rejected, list(reasons))


def _problem(span: Any) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "trace_id must be 16 bytes and not all zero"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span_id must be 8 bytes and not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "parent_span_id must be 8 bytes"
    if not 0 < span.start_time_unix_nano < _MAX_NANOS or span.end_time_unix_nano >= _MAX_NANOS:
        return "start_time_unix_nano must be set (and a real time)"
    return None


# Stored in text columns: PostgreSQL cannot hold NUL there, and the ingestion pipeline refuses
# NUL everywhere, so a span with one is refused (the attributes are JSON, which escapes it).
_TEXT_COLUMNS = ("name", "status_message", "service_name", "scope_name", "session_id", "user_id")


def _text_problem(row: dict[str, Any]) -> str | None:
    for column in _TEXT_COLUMNS:
        value = row.get(column)
        if isinstance(value, str) and "\x00" in value:
            return f"{column} must not contain NUL (\\x00) characters"
    return None


def _row(span: Any, resource: dict[str, Any], service: Any, scope: str | None) -> dict[str, Any]:
    attrs = attributes(span.attributes)
    start = span.start_time_unix_nano
    end = max(span.end_time_unix_nano, start)
    parent = span.parent_span_id.hex() if span.parent_span_id and any(span.parent_span_id) else None
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": parent,
        "name": span.name[:500] or "(unnamed)",
        "kind": KINDS.get(span.kind, "unspecified"),
        "start_time": _time(start),
        "end_time": _time(end),
        "duration_ms": (end - start) / 1e6,
        "status_code": STATUS_CODES.get(span.status.code, "unset"),
        "status_message": span.status.message or None,
        "session_id": _first(SESSION_KEYS, attrs, resource),
        "user_id": _first(USER_KEYS, attrs, resource),
        "service_name": str(service)[:200] if service else None,
        "scope_name": scope[:200] if scope else None,
        "attributes": attrs,
        "events": [
            {
                "name": e.name,
                "time": _time(e.time_unix_nano).isoformat() if e.time_unix_nano else None,
                "attributes": attributes(e.attributes),
            }
            for e in span.events
        ],
        "links": [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": attributes(link.attributes),
            }
            for link in span.links
        ],
        "resource": resource,
    }


# -- storing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    rejected: int
    message: str
    pii_counts: dict[str, int]


class TraceIngestor:
    """Decoded OTLP → redacted rows → `trace_spans`, in one transaction per request."""

    def __init__(self, store: Store, redactor: Any, *, max_spans: int = 10_000) -> None:
        self.store = store
        self.redactor = redactor
        self.max_spans = max_spans

    def ingest(self, app_id: str, message: ExportTraceServiceRequest) -> IngestResult:
        normalized = normalize(message, self.max_spans)
        rows = [self._redact(row) for row in normalized.rows]
        self._inherit_sessions(app_id, rows)
        fresh = self._insert(app_id, rows) if rows else []
        totals: dict[str, int] = {}  # what was redacted in what is stored (not in retries)
        for row in fresh:
            for name, n in row["pii_counts"].items():
                totals[name] = totals.get(name, 0) + n
        return IngestResult(
            len(fresh),
            len(rows) - len(fresh),
            normalized.rejected,
            "; ".join(normalized.reasons),
            totals,
        )

    def _redact(self, row: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for key in ("name", "status_message", "attributes", "events", "links", "resource"):
            if row.get(key):
                row[key], found = self.redactor.redact_value(row[key])
                for name, n in found.items():
                    counts[name] = counts.get(name, 0) + n
        row["pii_counts"] = counts
        return row

    def _inherit_sessions(self, app_id: str, rows: list[dict[str, Any]]) -> None:
        known = {r["trace_id"]: r["session_id"] for r in rows if r["session_id"]}
        missing = {r["trace_id"] for r in rows if not r["session_id"]} - set(known)
        if missing:
            with self.store.session() as s:
                for chunk in _chunks(sorted(missing), 500):
                    for trace_id, session_id in s.execute(
                        select(TraceSpan.trace_id, TraceSpan.session_id)
                        .where(
                            TraceSpan.app_id == app_id,
                            TraceSpan.trace_id.in_(chunk),
                            TraceSpan.session_id.is_not(None),
                        )
                        .distinct()
                    ):
                        known.setdefault(trace_id, session_id)
        for row in rows:
            if not row["session_id"]:
                row["session_id"] = known.get(row["trace_id"])

    def _insert(self, app_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for attempt in range(3):
            try:
                return self._insert_once(app_id, rows)
            except IntegrityError:
                if attempt == 2:  # a concurrent retry of the same export keeps winning
                    raise
        raise AssertionError("unreachable")

    def _insert_once(self, app_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert the rows not stored yet; returns them."""
        now = utcnow()
        with self.store.session() as s:
            existing: set[tuple[str, str]] = set()
            for chunk in _chunks(sorted({r["trace_id"] for r in rows}), 500):
                existing.update(
                    (trace_id, span_id)
                    for trace_id, span_id in s.execute(
                        select(TraceSpan.trace_id, TraceSpan.span_id).where(
                            TraceSpan.app_id == app_id, TraceSpan.trace_id.in_(chunk)
                        )
                    )
                )
            fresh = []
            for row in rows:
                key = (row["trace_id"], row["span_id"])
                if key not in existing:
                    existing.add(key)
                    fresh.append({**row, "app_id": app_id, "created_at": now})
            if fresh:
                s.execute(TraceSpan.__table__.insert(), fresh)
            return fresh


def delete_user_spans(store: Store, app_id: str, user_id: str) -> int:
    """Right to erasure: remove the spans attributed to one user of one app."""
    with store.session() as s:
        result = s.execute(
            delete(TraceSpan).where(TraceSpan.app_id == app_id, TraceSpan.user_id == user_id)
        )
        return int(result.rowcount or 0)


def delete_spans_older_than(store: Store, app_id: str, cutoff: datetime) -> int:
    """Retention: remove one app's spans received before `cutoff`."""
    with store.session() as s:
        result = s.execute(
            delete(TraceSpan).where(TraceSpan.app_id == app_id, TraceSpan.created_at < cutoff)
        )
        return int(result.rowcount or 0)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- answers ----------------------------------------------------------------------------------


def response_body(result: IngestResult | None, fmt: str) -> tuple[bytes, str]:
    """`ExportTraceServiceResponse` in the request's encoding (partial success if any refused)."""
    response = ExportTraceServiceResponse()
    if result is not None and result.rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=result.rejected, error_message=result.message[:1000]
            )
        )
    if fmt == PROTOBUF:
        return response.SerializeToString(), "application/x-protobuf"
    return json.dumps(json_format.MessageToDict(response)).encode(), "application/json"


def error_body(error: OtlpError, fmt: str, request_id: str | None) -> tuple[bytes, str]:
    """A `google.rpc.Status` (code 3, INVALID_ARGUMENT, or 8 for too large) in the encoding."""
    from google.rpc.status_pb2 import Status

    code = 8 if error.status == 413 else 3
    if fmt == PROTOBUF:
        return Status(code=code, message=error.message).SerializeToString(), (
            "application/x-protobuf"
        )
    body = {
        "code": code,
        "message": error.message,
        "error": {"code": error.code, "message": error.message},
        "request_id": request_id,
    }
    return json.dumps(body).encode(), "application/json"
