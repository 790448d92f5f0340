"""Structured logs: one JSON object per line, tied to its request, scrubbed of secrets and PII.

Every line carries `time`, `level`, `logger`, `message`, and, while a request is being served,
its `request_id` (the same id the client gets back in `x-request-id`) and `route` template; the
access line adds `method`, `status` and `duration_ms`. Log aggregators can then join a user's
complaint ("request 3f2a… failed") to every line the server wrote for it.

Logs leave the process, so nothing sensitive may reach them: `RedactingFilter` runs the PII
redactor over each message and exception text, masks `Authorization`/cookie/API-key header values
and bearer tokens, and drops any extra field whose name says secret, token, password,
authorization, cookie, credential or API key.
"""

from __future__ import annotations

import json as _json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

from agent_lightning.observability._context import current_route, request_id_var

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
SENSITIVE_NAME = re.compile(
    r"secret|token|passw|authorization|cookie|credential|api[_-]?key", re.IGNORECASE
)
_HEADER_VALUE = re.compile(
    r"(?i)\b(proxy-authorization|authorization|set-cookie|cookie|x-api-key|api-key)"
    r"(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
_MASK = "<SECRET>"


class RedactingFilter(logging.Filter):
    """Scrubs a record in place: message, exception and stack text, and extra fields.

    Attach it to handlers (a logger's own filters do not see records propagated from child
    loggers). The record's arguments are merged into the message first, so a secret passed as
    `log.info("token %s", token)` is scrubbed too.
    """

    def __init__(self, redactor: Any = None) -> None:
        super().__init__()
        if redactor is None:
            from agent_lightning.security.pii import default_redactor

            redactor = default_redactor()
        self.redactor = redactor

    def scrub(self, text: str) -> str:
        text = _HEADER_VALUE.sub(lambda m: m.group(1) + m.group(2) + _MASK, text)
        text = _BEARER.sub(lambda m: m.group(1) + " " + _MASK, text)
        return self.redactor.redact(text).text

    def scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {
                k: self.scrub_value(v)
                for k, v in value.items()
                if not (isinstance(k, str) and SENSITIVE_NAME.search(k))
            }
        if isinstance(value, list | tuple):
            return [self.scrub_value(v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_agl_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.scrub(message), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key in [k for k in vars(record) if k not in _STANDARD]:
            if SENSITIVE_NAME.search(key):
                delattr(record, key)
            else:
                setattr(record, key, self.scrub_value(getattr(record, key)))
        record._agl_scrubbed = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines inside values are escaped, never emitted)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        route = getattr(record, "route", None) or current_route()
        if request_id:
            out["request_id"] = request_id
        if route:
            out["route"] = route
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return _json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the request id, for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(_agl_request)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record._agl_request = getattr(record, "request_id", None) or request_id_var.get() or "-"
        return super().format(record)


_HANDLER_MARK = "_agl_observability_handler"


def configure_logging(
    level: str | int = "INFO",
    json: bool = True,
    *,
    stream: IO[str] | None = None,
    replace: bool = True,
    redactor: Any = None,
) -> logging.Handler:
    """Send every log line through one scrubbing handler on the root logger.

    `replace` removes the root logger's other handlers (as `logging.basicConfig(force=True)`
    does), so no unscrubbed copy of a line is written elsewhere, and routes uvicorn's loggers
    through the root (its access log is quietened: the middleware's access line supersedes it).
    Calling it again replaces the handler it installed before. Returns the handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if replace or getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    if replace:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return handler


def configure_logging_from_env() -> logging.Handler:
    """`AGL_LOG_LEVEL` (default INFO) and `AGL_LOG_FORMAT` (`json`, the default, or `text`)."""
    return configure_logging(
        os.environ.get("AGL_LOG_LEVEL") or "INFO",
        json=(os.environ.get("AGL_LOG_FORMAT") or "json").lower() != "text",
    )
