"""SpanSink: records in, redacted rows stored. Runs wherever the writer puts it.

Everything CPU-heavy about capture is here (parsing the request and the answer, rebuilding a
streamed answer from its chunks, PII redaction, the insert) so it can run in a process of its
own, away from the server's event loop, or in a thread when that process is not available.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import String
from sqlalchemy.exc import IntegrityError

from agent_lightning.gateway import sse
from agent_lightning.gateway.capture import SpanRecord, parse_json
from agent_lightning.gateway.models import GatewaySpan
from agent_lightning.gateway.redaction import _redact, redact_request, redact_response

log = logging.getLogger("agent_lightning.gateway")

MAX_ERROR_CHARS = 2_000
MAX_RAW_CHARS = 4_096
# Every bounded text column's length: a 300-character model name or variant id is cut to fit,
# as PostgreSQL refuses the whole row otherwise (SQLite does not check lengths).
_LENGTHS = {
    column.name: column.type.length
    for column in GatewaySpan.__table__.columns
    if isinstance(column.type, String) and column.type.length
}


class SpanSink:
    def __init__(
        self, store: Any, redactor: Any | None = None, *, capture_bodies: bool = True
    ) -> None:
        if redactor is None:
            from agent_lightning.security.pii import default_redactor

            redactor = default_redactor()
        self.store = store
        self.redactor = redactor
        self.capture_bodies = capture_bodies

    def write(self, spans: Sequence[SpanRecord]) -> tuple[int, int]:
        """Store a batch in one transaction; returns (written, failed)."""
        rows = []
        failed = 0
        for span in spans:
            try:
                rows.append(self.to_row(span))
            except Exception:  # noqa: BLE001 - one odd span must not lose the batch
                log.exception("could not prepare gateway span %s", span.id)
                failed += 1
        if not rows:
            return 0, failed
        written, lost = self._insert(rows)
        return written, failed + lost

    def _insert(self, rows: list[dict[str, Any]]) -> tuple[int, int]:
        table = GatewaySpan.__table__
        for attempt in range(3):
            try:
                with self.store.engine.begin() as connection:
                    connection.execute(table.insert(), rows)
                return len(rows), 0
            except IntegrityError:
                break  # one bad row (an app that no longer exists ...): isolate it below
            except Exception as exc:  # noqa: BLE001 - database down or locked: retry, then per row
                log.warning("gateway span batch failed (%s), try %d", type(exc).__name__, attempt)
                time.sleep(0.2 * (attempt + 1))
        written = 0
        for row in rows:
            try:
                with self.store.engine.begin() as connection:
                    connection.execute(table.insert(), [row])
                written += 1
            except Exception as exc:  # noqa: BLE001
                log.warning("gateway span %s not stored: %s", row["id"], type(exc).__name__)
        return written, len(rows) - written

    def to_row(self, span: SpanRecord) -> dict[str, Any]:
        request = span.request
        if request is None and span.request_raw:
            try:
                request = parse_json(span.request_raw)
            except ValueError:
                request = {"raw": span.request_raw[:MAX_RAW_CHARS].decode("utf-8", "replace")}
        response, usage, problems = self._response(span)
        error = span.error
        if problems and span.status == "ok":
            error = "; ".join(problems)
        pii: dict[str, int] = {}
        if self.capture_bodies:
            request = self._redacted(redact_request, request, span.request_raw, pii)
            response = self._redacted(redact_response, response, span.response_raw, pii)
            if error:
                error = _redact(self.redactor, error, pii)
        else:
            request = response = None
        row = {
            "id": span.id,
            "app_id": span.app_id,
            "session_id": span.session_id,
            "user_id": span.user_id,
            "endpoint": span.endpoint,
            "model": span.model,
            "upstream": span.upstream,
            "upstream_model": span.upstream_model,
            "stream": span.stream,
            "request": request,
            "response": response,
            "usage": usage if isinstance(usage, dict) else None,
            "status": span.status,
            "http_status": span.http_status,
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "latency_ms": span.latency_ms,
            "ttft_ms": span.ttft_ms,
            "retries": span.retries,
            "policy_name": span.policy_name,
            "decision_id": span.decision_id,
            "variant_id": span.variant_id,
            "pii_counts": pii,
            "created_at": span.created_at,
        }
        for name, length in _LENGTHS.items():
            value = row.get(name)
            if isinstance(value, str) and len(value) > length:
                row[name] = value[:length]
        return row

    def _redacted(
        self, redact: Callable[..., Any], value: Any, raw: bytes | None, pii: dict[str, int]
    ) -> Any:
        found: dict[str, int] = {}
        try:
            value = redact(self.redactor, value, found)
        except RecursionError:
            # Parsed, but nested deeper than the redactor can walk: keep the start of its text,
            # redacted, as for a body that is not JSON.
            found = {}
            text = raw[:MAX_RAW_CHARS].decode("utf-8", "replace") if raw else ""
            value = {"raw": _redact(self.redactor, text, found), "note": "nested too deeply"}
        for name, n in found.items():
            pii[name] = pii.get(name, 0) + n
        return value

    @staticmethod
    def _response(span: SpanRecord) -> tuple[Any, Any, list[str]]:
        if span.chunks is not None and span.endpoint == "responses":
            return sse.final_response(b"".join(span.chunks))
        if span.chunks is not None:
            return sse.assemble(b"".join(span.chunks))
        response: Any = span.response
        if response is None and span.response_raw:
            try:
                response = parse_json(span.response_raw)
            except ValueError:
                text = span.response_raw[:MAX_RAW_CHARS].decode("utf-8", "replace")
                return {"raw": text}, None, ["the answer is not JSON"]
        usage = response.get("usage") if isinstance(response, dict) else None
        return response, usage, []
