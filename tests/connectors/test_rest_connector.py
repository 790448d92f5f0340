"""Connectors against the real reference service on loopback: auth, retries, timeouts, shapes."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from connector_harness import ENV, TOKEN, connector_config, free_port

from agent_lightning.connectors import ConnectorError, ConnectorRegistry, RestConnector
from agent_lightning.refservices.testing import RefServiceServer


def connector(url: str, name: str = "kb", **overrides: Any) -> RestConnector:
    return ConnectorRegistry.from_config({name: connector_config(url, **overrides)}, env=ENV)[name]


def failure(conn: RestConnector, endpoint: str, **kwargs: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as info:
        conn.call(endpoint, **kwargs)
    return info.value


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token_env": "REF_TOKEN"},
        {"type": "api_key", "token_env": "REF_TOKEN"},
        {"type": "api_key", "secret": "ref", "header": "X-API-Key"},
        {"type": "basic", "username_env": "REF_USER", "password_env": "REF_TOKEN"},
        {"type": "basic", "username": "agent", "secret": "ref"},
    ],
)
def test_each_auth_type_is_accepted_by_the_service(srv: RefServiceServer, auth: dict) -> None:
    config = {"kb": connector_config(srv.url, auth=auth)}
    with ConnectorRegistry.from_config(config, env=ENV, secrets={"ref": TOKEN}) as reg:
        response = reg["kb"].call("search", params={"q": "reset my password"})
    assert response.status == 200 and response.attempts == 1
    assert response.data["results"][0]["id"] == "password-reset"
    assert response.latency_ms > 0


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "none"},
        {"type": "bearer", "secret": "wrong"},
        {"type": "api_key", "secret": "wrong"},
        {"type": "basic", "username": "mallory", "password_env": "REF_TOKEN"},
    ],
)
def test_bad_credentials_fail_once_with_401(
    srv: RefServiceServer, auth: dict, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "agent_lightning.connectors")
    config = {"kb": connector_config(srv.url, auth=auth)}
    secrets = {"wrong": "not-the-token-0000"}
    with ConnectorRegistry.from_config(config, env=ENV, secrets=secrets) as reg:
        err = failure(reg["kb"], "search", params={"q": "vpn"})
    assert (err.kind, err.status, err.attempts) == ("http_error", 401, 1)
    assert str(err) == "kb.search: HTTP 401 from GET /kb/search: missing or invalid credentials"
    assert srv.hits["GET /kb/search"] == 1  # a 4xx is never retried
    assert TOKEN not in str(err) + repr(err) + caplog.text
    assert "not-the-token-0000" not in str(err) + repr(err) + caplog.text


# -- calls -------------------------------------------------------------------------------------


def test_tickets_round_trip_through_path_params(srv: RefServiceServer) -> None:
    with connector(srv.url, "tickets") as tickets:
        created = tickets.call("create", json={"subject": "Printer offline", "user_id": "u-1004"})
        assert created.status == 201 and created.data["status"] == "open"
        ticket_id = created.data["id"]
        fetched = tickets.call("get", path_params={"id": ticket_id})
        assert fetched.data["subject"] == "Printer offline"
        # a placeholder may also come out of params (how call_api payloads arrive)
        patched = tickets.call("update", params={"id": ticket_id}, json={"status": "resolved"})
        assert patched.data["status"] == "resolved"
        assert srv.hits[f"PATCH /tickets/{ticket_id}"] == 1
        customer = tickets.call("customer", path_params={"id": "u-1004"})
        assert customer.data["name"] == "Dana Kowalski"


def test_path_values_are_escaped(srv: RefServiceServer) -> None:
    with connector(srv.url) as kb:
        err = failure(kb, "customer", path_params={"id": "u-1001?plan=pro"})
    assert err.status == 404 and "customer 'u-1001?plan=pro' not found" in err.message


def test_no_retry_on_4xx_and_the_reason_is_shown(srv: RefServiceServer) -> None:
    with connector(srv.url, "tickets") as tickets:
        missing = failure(tickets, "get", path_params={"id": 999999})
        invalid = failure(tickets, "create", json={"body": "no subject"})
    assert str(missing) == "tickets.get: HTTP 404 from GET /tickets/999999: ticket 999999 not found"
    assert srv.hits["GET /tickets/999999"] == 1
    assert invalid.status == 422 and "body.subject: required field missing" in invalid.message
    assert srv.hits["POST /tickets"] == 1


# -- retries -----------------------------------------------------------------------------------


def test_retries_500_with_backoff_then_succeeds(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", status=500, times=2)
    with connector(srv.url, backoff_ms=40) as kb:
        started = time.perf_counter()
        response = kb.call("search", params={"q": "vpn"})
        elapsed = time.perf_counter() - started
    assert response.status == 200 and response.attempts == 3
    assert srv.hits["GET /kb/search"] == 3
    # equal jitter: at least half of 40 ms, then half of 80 ms
    assert elapsed >= 0.06 and response.latency_ms >= 60


def test_gives_up_after_the_configured_retries(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", status=500, times=None)
    with connector(srv.url, retries=3) as kb:
        err = failure(kb, "search", params={"q": "vpn"})
        one_shot = failure(kb, "search", params={"q": "vpn"}, retries=0)
    assert (err.kind, err.status, err.attempts) == ("http_error", 500, 4)
    assert str(err) == (
        "kb.search: HTTP 500 from GET /kb/search: injected fault: HTTP 500 after 4 attempts"
    )
    assert one_shot.attempts == 1
    assert srv.hits["GET /kb/search"] == 5


def test_429_honours_retry_after(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", status=429, retry_after=0.3, times=1)
    with connector(srv.url, backoff_ms=1) as kb:
        started = time.perf_counter()
        response = kb.call("search", params={"q": "refund"})
    assert response.attempts == 2 and time.perf_counter() - started >= 0.3


def test_retry_after_beyond_the_cap_fails_at_once(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", status=429, retry_after=30, times=1)
    with connector(srv.url, backoff_max_ms=500) as kb:
        started = time.perf_counter()
        err = failure(kb, "search", params={"q": "refund"})
    assert time.perf_counter() - started < 1
    assert (err.kind, err.status, err.attempts) == ("rate_limited", 429, 1)
    assert "asked to retry after 30 s, more than the 500 ms limit" in err.message


def test_post_is_not_resent_after_a_500_but_is_after_a_503(srv: RefServiceServer) -> None:
    srv.faults.add(path="/tickets", method="POST", status=500, times=1)
    with connector(srv.url, "tickets") as tickets:
        err = failure(tickets, "create", json={"subject": "VPN down"})
        assert (err.status, err.attempts) == (500, 1)
        srv.faults.add(path="/tickets", method="POST", status=503, times=1)
        assert tickets.call("create", json={"subject": "VPN down"}).attempts == 2


def test_idempotent_post_retried_after_timeout_opens_one_ticket(srv: RefServiceServer) -> None:
    # The first attempt is slow: the client gives up, but the server still creates the ticket.
    srv.faults.add(path="/tickets", method="POST", delay_ms=600, times=1)
    config = connector_config(srv.url, timeout_ms=200)
    config["endpoints"]["create"]["idempotent"] = True  # the service honours Idempotency-Key
    with ConnectorRegistry.from_config({"tickets": config}, env=ENV) as reg:
        tickets = reg["tickets"]
        user = f"u-idem-{time.monotonic_ns()}"
        response = tickets.call("create", json={"subject": "Card not arrived", "user_id": user})
        assert response.attempts == 2
        time.sleep(0.6)  # let the slow first attempt finish on the server
    with connector(srv.url, "list", endpoints={"list": {"path": "/tickets"}}, test=None) as lister:
        found = lister.call("list", params={"user_id": user}).data["tickets"]
    assert [t["id"] for t in found] == [response.data["id"]]


def test_fault_header_drives_a_server_in_another_process(srv: RefServiceServer) -> None:
    with connector(srv.url, headers={"X-Fault": "status=503"}, retries=1) as kb:
        err = failure(kb, "health")
    assert (err.kind, err.status, err.attempts) == ("http_error", 503, 2)


# -- timeouts and unreachable hosts -------------------------------------------------------------


def test_timeout(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", delay_ms=500, times=None)
    with connector(srv.url, timeout_ms=100, retries=1) as kb:
        started = time.perf_counter()
        err = failure(kb, "search", params={"q": "vpn"})
    assert time.perf_counter() - started < 0.6
    assert (err.kind, err.attempts) == ("timeout", 2)
    assert str(err) == (
        f"kb.search: no response within 100 ms from GET {srv.url}/kb/search after 2 attempts"
    )


def test_per_call_timeout_override(srv: RefServiceServer) -> None:
    srv.faults.add(path="/kb/search", delay_ms=300, times=1)
    with connector(srv.url, timeout_ms=100, retries=0) as kb:
        assert kb.call("search", params={"q": "vpn"}, timeout_ms=1000).status == 200


def test_unreachable_port_gives_a_clear_message() -> None:
    port = free_port()
    with connector(f"http://127.0.0.1:{port}", "tickets", backoff_ms=5) as tickets:
        err = failure(tickets, "create", json={"subject": "x"})
    assert (err.kind, err.attempts, err.status) == ("unreachable", 3, None)
    assert str(err) == (
        f"tickets.create: cannot reach http://127.0.0.1:{port} (connection refused)"
        " after 3 attempts"
    )


# -- response shapes ---------------------------------------------------------------------------


def test_schema_violation_names_the_path(srv: RefServiceServer) -> None:
    config = connector_config(srv.url)
    config["endpoints"]["search"]["response_schema"] = {
        "type": "object",
        "required": ["results", "total"],
        "properties": {
            "results": {
                "type": "array",
                "items": {"required": ["url"], "properties": {"title": {"type": "integer"}}},
            }
        },
    }
    with ConnectorRegistry.from_config({"kb": config}, env=ENV) as reg:
        err = failure(reg["kb"], "search", params={"q": "printer offline", "limit": 1})
    assert (err.kind, err.status) == ("invalid_response", 200)
    assert list(err.problems) == [
        "(top level): missing required field 'total'",
        "results[0]: missing required field 'url'",
        "results[0].title: expected integer, got string",
    ]
    assert "does not match its schema: (top level): missing required field 'total'" in str(err)


def test_non_json_body_is_an_invalid_response(srv: RefServiceServer) -> None:
    endpoints = {"docs": {"path": "/docs", "response_schema": {"type": "object"}}}
    with connector(srv.url, endpoints=endpoints, test=None) as kb:
        err = failure(kb, "docs")
    assert err.kind == "invalid_response" and "text/html" in err.message


# -- rate limits -------------------------------------------------------------------------------


def test_rate_limit_spaces_calls_across_threads(srv: RefServiceServer) -> None:
    with connector(srv.url, rate_limit_per_second=10) as kb:  # burst of 10, then 10/s
        errors: list[Exception] = []

        def work() -> None:
            for _ in range(5):
                try:
                    kb.call("health")
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

        started = time.perf_counter()
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    assert errors == []
    assert srv.hits["GET /health"] == 20
    assert elapsed >= 0.85  # 10 beyond the burst at 10/s


def test_rate_limit_raises_when_no_slot_within_the_timeout(srv: RefServiceServer) -> None:
    with connector(srv.url, rate_limit_per_second=1, timeout_ms=100) as kb:
        kb.call("health")
        err = failure(kb, "health")
    assert (err.kind, err.attempts) == ("rate_limited", 0)
    assert "over the limit of 1 calls/s and no slot free within 100 ms" in err.message
    assert srv.hits["GET /health"] == 1  # the refused call never left


# -- test() --------------------------------------------------------------------------------------


def test_connector_test_reports_ok(srv: RefServiceServer) -> None:
    with connector(srv.url) as kb:
        report = kb.test()
    assert report.ok and report.status == 200 and report.problems == []
    assert report.endpoint == "health" and report.connector == "kb" and report.latency_ms > 0


def test_connector_test_reports_shape_problems(srv: RefServiceServer) -> None:
    endpoints = {
        "probe": {
            "path": "/kb/search",
            "params": {"q": "card delivery", "limit": 2},
            "response_schema": {
                "type": "object",
                "properties": {"results": {"items": {"properties": {"score": {"type": "string"}}}}},
            },
        }
    }
    with connector(srv.url, endpoints=endpoints, test="probe") as kb:
        report = kb.test()
    assert not report.ok and report.status == 200
    assert report.problems == [
        "results[0].score: expected string, got number",
        "results[1].score: expected string, got number",
    ]


def test_connector_test_reports_unreachable_and_missing_test_endpoint() -> None:
    port = free_port()
    with connector(f"http://127.0.0.1:{port}", retries=0) as kb:
        report = kb.test()
    assert not report.ok and report.status is None
    assert report.problems == [f"cannot reach http://127.0.0.1:{port} (connection refused)"]
    with connector("http://127.0.0.1:9", endpoints={"x": {"path": "/x"}}, test=None) as kb:
        report = kb.test()
    assert report.problems == ["no test endpoint: set connectors.kb.test (endpoints: x)"]


def test_retries_are_logged_without_secrets(
    srv: RefServiceServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv.faults.add(path="/kb/search", status=502, times=1)
    auth = {"type": "api_key", "token_env": "REF_TOKEN"}
    with caplog.at_level(logging.INFO, "agent_lightning.connectors"):
        with connector(srv.url, auth=auth) as kb:
            assert kb.call("search", params={"q": "wifi"}).attempts == 2
    assert "kb.search: HTTP 502 from GET /kb/search" in caplog.text
    assert "retry 1 of 2" in caplog.text and TOKEN not in caplog.text
