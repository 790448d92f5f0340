"""Errors the gateway answers with, in the shape OpenAI clients already parse.

    GatewayError                 {"error": {"message", "type", "param", "code"}}
    ├── 400 invalid_request_error    malformed JSON, a body that is not a request
    ├── 401 authentication_error     no token, a bad one, a revoked client
    ├── 403 permission_error         the token's roles may not write telemetry
    ├── 404 not_found_error          a model no route or runtime serves
    ├── 413 invalid_request_error    a body over the limit
    ├── 502 upstream_error           the upstream is unreachable, reset, or sent garbage
    └── 504 timeout                  the upstream did not answer in time

The SDKs (openai, LangChain, AutoGen) read `error.message` and `error.code`, so every answer the
gateway makes itself has both; nothing from the request or a credential is ever echoed.
"""

from __future__ import annotations

import json


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_ or _TYPES.get(status, "api_error")

    def body(self) -> bytes:
        return error_json(self.message, self.type, self.code)


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "upstream_error",
    504: "timeout",
}


def error_json(message: str, type_: str, code: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    ).encode()


def sse_error(message: str, type_: str, code: str) -> bytes:
    """An error inside a stream that already started: the SDKs raise on a `data:` error event."""
    return b"data: " + error_json(message, type_, code) + b"\n\n"


def unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, code, message)


class UpstreamFailure(Exception):
    """Every attempt (retries and fallbacks) failed without an HTTP answer we can pass on."""

    def __init__(self, status: int, code: str, message: str, upstream: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.upstream = upstream
        self.retries = 0

    def as_gateway_error(self) -> GatewayError:
        return GatewayError(self.status, self.code, self.message)
