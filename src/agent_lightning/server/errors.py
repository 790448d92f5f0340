"""Every error the API returns has one shape, a machine-readable code and a human sentence:

    {"error": {"code": "invalid_request", "message": "text: ...", "details": [...]},
     "request_id": "..."}

Nothing here ever echoes request bodies, tokens or tracebacks back to the caller.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_lightning.ingestion import BatchTooLarge
from agent_lightning.store import Conflict, InvalidCursor, NotFound

log = logging.getLogger("agent_lightning.server")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_body(code: str, message: str, request: Request, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error, "request_id": getattr(request.state, "request_id", None)}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, request, details), status_code=status, headers=headers
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    details = []
    code, message = "invalid_request", ""
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            code = "malformed_json"
            message = "the request body is not valid JSON"
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        details.append({"loc": loc, "type": err.get("type"), "msg": err.get("msg")})
    if not message and details:
        first = details[0]
        where = ".".join(first["loc"]) or "body"
        more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
        message = f"{where}: {first['msg']}{more}"
    return code, message or "the request is not valid", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = _validation_details(exc)
        status = 400 if code == "malformed_json" else 422
        return error_response(request, status, code, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(request, exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(request, 404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(request, 409, "conflict", str(exc))

    @app.exception_handler(InvalidCursor)
    async def _cursor(request: Request, exc: InvalidCursor) -> JSONResponse:
        return error_response(request, 400, "invalid_cursor", str(exc))

    @app.exception_handler(BatchTooLarge)
    async def _batch(request: Request, exc: BatchTooLarge) -> JSONResponse:
        return error_response(request, 413, "batch_too_large", str(exc))

    @app.exception_handler(json.JSONDecodeError)
    async def _json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(request, 400, "malformed_json", "the request body is not valid JSON")

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(
            request,
            503,
            "database_unavailable",
            "the database is not reachable right now; nothing was stored, retry later",
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(PoolTimeout, _database_down)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        log.error("database error on %s %s: %s", request.method, request.url.path, type(exc))
        return error_response(request, 500, "internal_error", "an internal error occurred")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "internal_error", "an internal error occurred; it has been logged"
        )
