"""Secrets echoed by a failing service stay out of logs and errors; a 3xx is never a success.

The service is a small ``http.server`` on loopback: it echoes the Authorization header in its
error bodies (as some misbehaving services do) and answers with redirects, which the reference
service never does.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent_lightning.connectors import ConnectorError, ConnectorRegistry, RestConnector

TOKEN = "s3cr3t-token-9f8e7d6c5b4a"
USER, PASSWORD = "agent", "pw-0123456789-zyxw"
ENV = {"SVC_TOKEN": TOKEN, "SVC_USER": USER, "SVC_PW": PASSWORD}
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (TOKEN, PASSWORD, BASIC)
AUTHS = {
    "bearer": {"type": "bearer", "token_env": "SVC_TOKEN"},
    "api_key": {"type": "api_key", "token_env": "SVC_TOKEN"},
    "basic": {"type": "basic", "username_env": "SVC_USER", "password_env": "SVC_PW"},
}


class EchoService:
    """Answers per path; ``hits`` counts requests by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer()

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._answer()

            def _send(self, status: int, body: str, ctype: str, **headers: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self) -> None:
                path = self.path.split("?")[0]
                service.hits[path] += 1
                sent = self.headers.get("Authorization") or self.headers.get("X-API-Key") or ""
                bare = sent.split()[-1] if sent else ""  # the credentials without the scheme
                echo = f"you sent {sent!r}, credentials {bare}"
                if path == "/echo-503":
                    body = json.dumps({"detail": f"backend down; {echo}"})
                    self._send(503, body, "application/json")
                elif path == "/echo-400-long":  # the secret straddles the 200-character cut
                    self._send(400, "x" * 185 + f" {echo}", "text/plain")
                elif path == "/echo-html":  # the secret straddles the 80-character snippet
                    self._send(200, "<html>" + "y" * 60 + f" {echo}</html>", "text/html")
                elif path == "/login-redirect":
                    self._send(302, "", "text/plain", Location="http://127.0.0.1:1/login?next=/x")
                elif path == "/token-redirect":
                    self._send(307, "", "text/plain", Location=f"https://sso.example/?t={bare}")
                elif path == "/moved":
                    self._send(301, "", "text/plain", Location="/v2/moved")
                elif path == "/not-modified":
                    self._send(304, "", "text/plain")
                else:
                    self._send(200, json.dumps({"ok": True}), "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def echo_service() -> Iterator[EchoService]:
    with EchoService() as service:
        yield service


@pytest.fixture
def svc(echo_service: EchoService) -> EchoService:
    echo_service.hits.clear()
    return echo_service


def connector(url: str, auth: str = "bearer", **overrides: Any) -> RestConnector:
    config: dict[str, Any] = {
        "base_url": url,
        "auth": AUTHS[auth],
        "timeout_ms": 2000,
        "retries": 2,
        "backoff_ms": 5,
        "test": "redirect",
        "endpoints": {
            "echo503": {"path": "/echo-503"},
            "echo400": {"path": "/echo-400-long"},
            "html": {"path": "/echo-html", "response_schema": {"type": "object"}},
            "redirect": {"path": "/login-redirect"},
            "token_redirect": {"path": "/token-redirect"},
            "moved": {"path": "/moved", "response_schema": {"type": "object"}},
            "not_modified": {"path": "/not-modified"},
            "create": {"method": "POST", "path": "/login-redirect", "idempotent": True},
        },
    }
    config.update(overrides)
    return ConnectorRegistry.from_config({"svc": config}, env=ENV)["svc"]


def failure(conn: RestConnector, endpoint: str) -> ConnectorError:
    with pytest.raises(ConnectorError) as info:
        conn.call(endpoint)
    return info.value


def shown(err: ConnectorError) -> str:
    return "\n".join([str(err), repr(err), err.message, *err.problems])


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Every logger at INFO (httpx's request line included), ours at DEBUG. httpcore's DEBUG
    # trace prints raw response headers, which no connector can redact.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, "agent_lightning")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
        assert secret[:8] not in text  # nor a piece of one cut off by truncation


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_echoed_credentials_never_reach_logs_or_errors(
    svc: EchoService, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture_logs(caplog)
    with connector(svc.url, auth) as conn:
        errors = [failure(conn, ep) for ep in ("echo503", "echo400", "html")]
    retried, long_body, html = errors
    assert (retried.kind, retried.status, retried.attempts) == ("http_error", 503, 3)
    assert (long_body.kind, long_body.status) == ("http_error", 400)
    assert (html.kind, html.status) == ("invalid_response", 200)
    assert "backend down; you sent '***', credentials ***" in retried.message
    retry_lines = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retry_lines) == 2
    assert "svc.echo503: HTTP 503 from GET /echo-503: backend down" in retry_lines[0].getMessage()
    for record in caplog.records:
        assert_no_secret(record.getMessage())
    assert_no_secret(caplog.text)
    for err in errors:
        assert_no_secret(shown(err))


# -- redirects ---------------------------------------------------------------------------------


def test_a_redirect_is_an_error_naming_the_target_and_is_not_retried(svc: EchoService) -> None:
    with connector(svc.url) as conn:
        err = failure(conn, "redirect")
        post = failure(conn, "create")
    assert (err.kind, err.status, err.attempts) == ("http_error", 302, 1)
    assert str(err) == (
        "svc.redirect: HTTP 302 from GET /login-redirect: the service redirected to "
        "http://127.0.0.1:1/login?next=/x; redirects are not followed, so point "
        "connectors.svc.base_url (or the endpoint's path) at the final address"
    )
    assert (post.kind, post.status, post.attempts) == ("http_error", 302, 1)
    assert svc.hits["/login-redirect"] == 2  # one each: a redirect is not retried


def test_a_relative_redirect_is_shown_in_full_and_beats_the_schema(svc: EchoService) -> None:
    with connector(svc.url) as conn:
        err = failure(conn, "moved")
    assert (err.kind, err.status) == ("http_error", 301)
    assert f"redirected to {svc.url}/v2/moved;" in err.message
    assert "schema" not in err.message


def test_a_redirect_target_is_redacted(svc: EchoService, caplog: pytest.LogCaptureFixture) -> None:
    capture_logs(caplog)
    with connector(svc.url) as conn:
        err = failure(conn, "token_redirect")
    assert err.status == 307 and "redirected to https://sso.example/?t=***;" in err.message
    assert_no_secret(shown(err) + caplog.text)


def test_not_modified_is_an_error_too(svc: EchoService) -> None:
    with connector(svc.url) as conn:
        err = failure(conn, "not_modified")
    assert (err.kind, err.status, err.attempts) == ("http_error", 304, 1)
    assert err.message == (
        "HTTP 304 from GET /not-modified: Not Modified, so no data; connectors send no "
        "conditional requests, check connectors.svc.headers and any proxy in between"
    )


def test_connector_test_reports_a_redirect(svc: EchoService) -> None:
    with connector(svc.url) as conn:
        report = conn.test()
    assert not report.ok and report.status == 302
    assert "redirected to http://127.0.0.1:1/login" in report.problems[0]
