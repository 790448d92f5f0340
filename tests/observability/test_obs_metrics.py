"""Prometheus metrics through the real server: request metrics, ingestion hooks, /v1/metrics."""

from __future__ import annotations

import httpx
from obs_harness import ObsApi, metric_value, obs_api_fixture  # noqa: F401

from agent_lightning.observability.metrics import Metrics, MetricsPortServer

CARD = "4111 1111 1111 1111"


def _scrape(api: ObsApi, app_id: str = "acme") -> str:
    response = api.client.get("/v1/metrics", headers=api.auth(app_id, ("Analyst",)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_registries_are_per_instance() -> None:
    first, second = Metrics(), Metrics()
    first.on_ingest("events", "acme", 3, {})
    assert metric_value(first.exposition().decode(), "agl_ingested_records_total") == 3
    assert metric_value(second.exposition().decode(), "agl_ingested_records_total") is None


def test_requests_are_counted_by_route_template_and_status_class(obs_api: ObsApi) -> None:
    headers = obs_api.auth("acme", ("Analyst",))
    for event_id in ("ev-1", "ev-2", "user@example.com"):
        assert obs_api.client.get(f"/v1/events/{event_id}", headers=headers).status_code == 404
    obs_api.client.get("/nowhere/at/all")
    text = _scrape(obs_api)
    assert (
        metric_value(
            text,
            "agl_http_requests_total",
            method="GET",
            route="/v1/events/{event_id}",
            status_class="4xx",
        )
        == 3
    )
    assert metric_value(text, "agl_http_requests_total", route="<unmatched>") == 1
    assert (
        metric_value(
            text,
            "agl_http_request_duration_seconds_count",
            method="GET",
            route="/v1/events/{event_id}",
        )
        == 3
    )
    # Raw ids never become label values.
    assert "ev-1" not in text and "user@example.com" not in text
    # The per-app tally the alert evaluator reads saw the authenticated requests.
    assert obs_api.obs.metrics.tally.get("acme")[0] >= 3


def test_ingestion_redactions_and_store_latency_are_counted(obs_api: ObsApi) -> None:
    headers = obs_api.auth("acme", ("Agent",))
    response = obs_api.client.post(
        "/v1/events/batch",
        json=[{"text": f"my card is {CARD}"}, {"text": "write to bob@example.com"}, {"text": 5}],
        headers=headers,
    )
    assert response.status_code == 200 and response.json()["created"] == 2
    decided = obs_api.client.post(
        "/v1/decisions", json={"actions": [{"id": "a"}, {"id": "b"}]}, headers=headers
    )
    assert decided.status_code == 201, decided.text
    text = _scrape(obs_api)
    assert metric_value(text, "agl_ingested_records_total", app_id="acme", kind="events") == 2
    assert metric_value(text, "agl_ingested_records_total", app_id="acme", kind="decisions") == 1
    assert (
        metric_value(
            text, "agl_pii_redactions_total", app_id="acme", kind="events", pii_type="CREDIT_CARD"
        )
        == 1
    )
    assert metric_value(text, "agl_pii_redactions_total", pii_type="EMAIL") == 1
    assert metric_value(text, "agl_store_write_duration_seconds_count", kind="events") == 1
    assert metric_value(text, "agl_store_write_duration_seconds_count", kind="decisions") == 1
    assert metric_value(text, "agl_decide_duration_seconds_count") == 1
    # Per policy version, read from the database: one decision made without a learned version.
    assert metric_value(text, "agl_policy_decisions", app_id="acme", version="none") == 1


def test_metrics_need_metrics_read_and_show_only_the_callers_app(obs_api: ObsApi) -> None:
    obs_api.client.post("/v1/events", json={"text": "hi"}, headers=obs_api.auth("acme", ("Agent",)))
    obs_api.client.post(
        "/v1/events", json={"text": "hi"}, headers=obs_api.auth("globex", ("Agent",))
    )
    assert obs_api.client.get("/v1/metrics").status_code == 401
    forbidden = obs_api.client.get("/v1/metrics", headers=obs_api.auth("acme", ("Agent",)))
    assert forbidden.status_code == 403
    acme = _scrape(obs_api, "acme")
    assert metric_value(acme, "agl_ingested_records_total", app_id="acme") == 1
    assert 'app_id="globex"' not in acme
    # Process-wide series (no tenant data) are shown to everyone allowed to read metrics.
    assert metric_value(acme, "agl_http_requests_total", route="/v1/events") is not None
    globex = _scrape(obs_api, "globex")
    assert metric_value(globex, "agl_ingested_records_total", app_id="globex") == 1
    assert 'app_id="acme"' not in globex


def test_separate_port_serves_everything_without_auth_on_loopback(obs_api: ObsApi) -> None:
    obs_api.obs.metrics.on_ingest("events", "acme", 2, {})
    obs_api.obs.metrics.on_ingest("events", "globex", 5, {})
    server = MetricsPortServer(obs_api.obs.metrics.registry, 0)
    server.start()
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        server.stop()
    assert metric_value(text, "agl_ingested_records_total", app_id="acme") == 2
    assert metric_value(text, "agl_ingested_records_total", app_id="globex") == 5
    assert server.addr == "127.0.0.1"


def test_request_id_is_the_one_returned_to_the_client(obs_api: ObsApi) -> None:
    given = obs_api.client.get("/v1/health", headers={"x-request-id": "trace-me-42"})
    assert given.headers["x-request-id"] == "trace-me-42"
    made = obs_api.client.get("/v1/health", headers={"x-request-id": "not valid!"})
    assert made.headers["x-request-id"] != "not valid!" and len(made.headers["x-request-id"]) == 32


def test_public_surface_is_listed_and_sorted() -> None:
    import inspect

    import agent_lightning.observability as package

    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert package.__all__ == sorted(package.__all__)
    assert public == set(package.__all__)
