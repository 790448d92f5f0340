"""The reference service over real HTTP: auth, KB search and export, tickets, CRM, faults."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
from refservice_harness import TOKEN

from agent_lightning.refservices import Faults, RefStore
from agent_lightning.refservices.testing import RefServiceServer

ROUTES = [
    ("GET", "/kb/search?q=vpn"),
    ("GET", "/kb/articles/password-reset"),
    ("POST", "/kb/articles"),
    ("GET", "/kb/export"),
    ("POST", "/tickets"),
    ("GET", "/tickets"),
    ("GET", "/tickets/1001"),
    ("PATCH", "/tickets/1001"),
    ("GET", "/crm/customers/u-1001"),
    ("GET", "/docs"),
]


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_health_needs_the_token(anon: httpx.Client, method: str, path: str) -> None:
    assert anon.request(method, path, json={}).status_code == 401
    wrong = {"Authorization": "Bearer not-it"}
    response = anon.request(method, path, json={}, headers=wrong)
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or invalid credentials"}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_health_is_public_and_says_whether_credentials_are_good(
    anon: httpx.Client, client: httpx.Client
) -> None:
    body = anon.get("/health").json()
    assert body["status"] == "ok" and body["articles"] >= 30 and body["search"] == "fts5"
    assert body["authenticated"] is False
    assert client.get("/health").json()["authenticated"] is True


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-API-Key": TOKEN}, 200),
        ({"X-API-Key": TOKEN + "x"}, 401),
        ({"Authorization": "Basic " + base64.b64encode(f"agent:{TOKEN}".encode()).decode()}, 200),
        ({"Authorization": "Basic " + base64.b64encode(f"eve:{TOKEN}".encode()).decode()}, 401),
        ({"Authorization": "Basic !!!notbase64"}, 401),
    ],
)
def test_api_key_and_basic_auth(anon: httpx.Client, headers: dict, status: int) -> None:
    assert anon.get("/kb/search", params={"q": "vpn"}, headers=headers).status_code == status


def test_no_auth_mode(tmp_path: Path) -> None:
    with RefServiceServer(tmp_path / "open.db", None) as open_server:
        response = httpx.get(f"{open_server.url}/crm/customers/u-1002")
    assert response.status_code == 200 and response.json()["plan"] == "free"


# -- knowledge base ----------------------------------------------------------------------------

QUERIES = [
    ("I forgot my password", "password-reset"),
    ("my VPN keeps disconnecting", "vpn-connect"),
    ("the printer says it is offline", "printer-offline"),
    ("when will my new card arrive?", "card-delivery"),
    ("I want my money back", "refund-policy"),
    ("my account is locked", "account-locked"),
    ("I was charged twice this month", "billing-double-charge"),
    ("how do I turn on 2fa", "two-factor-setup"),
    ("my refund has not been received yet", "refund-status"),
    ("somebody stole my card", "card-lost-stolen"),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_search_ranks_the_right_article_first(
    client: httpx.Client, query: str, expected: str
) -> None:
    body = client.get("/kb/search", params={"q": query, "limit": 3}).json()
    assert body["results"][0]["id"] == expected
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 3
    assert set(body["results"][0]) == {"id", "title", "body", "score"}


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_tfidf_fallback_ranks_the_same_way(query: str, expected: str) -> None:
    store = RefStore(":memory:", search="tfidf")
    try:
        assert store.search_backend == "tfidf"
        assert store.search(query, 3)[0]["id"] == expected
    finally:
        store.close()


@pytest.mark.parametrize("query", ["hello", "how do I", "zzqx plorp", '" OR 1=1 --', "NEAR(a b)"])
def test_search_with_nothing_useful_finds_nothing(client: httpx.Client, query: str) -> None:
    response = client.get("/kb/search", params={"q": query})
    assert response.status_code == 200 and response.json()["results"] == []


def test_search_validation(client: httpx.Client) -> None:
    missing = client.get("/kb/search")
    assert missing.status_code == 422 and missing.json()["detail"] == (
        "query.q: required field missing"
    )
    too_many = client.get("/kb/search", params={"q": "vpn", "limit": 500})
    assert too_many.status_code == 422 and too_many.json()["detail"].startswith("query.limit:")


def test_articles_get_add_and_export(client: httpx.Client) -> None:
    article = client.get("/kb/articles/vpn-connect").json()
    assert article["title"] == "Connecting to the company VPN" and "vpn" in article["tags"]
    assert client.get("/kb/articles/nope").json() == {"detail": "article 'nope' not found"}

    first = client.get("/kb/export")
    etag = first.headers["etag"]
    assert client.get("/kb/export", headers={"If-None-Match": etag}).status_code == 304

    new = {"title": "Expense report deadlines", "body": "Submit expenses by the 5th.",
           "tags": ["expenses", "reimbursement"]}  # fmt: skip
    created = client.post("/kb/articles", json=new)
    assert created.status_code == 201 and created.json()["id"] == "expense-report-deadlines"
    again = client.post("/kb/articles", json={**new, "id": "expense-report-deadlines"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    hits = client.get("/kb/search", params={"q": "when are expenses due"}).json()["results"]
    assert hits[0]["id"] == "expense-report-deadlines"

    second = client.get("/kb/export", headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    assert second.json()["count"] == first.json()["count"] + 1
    assert {"expense-report-deadlines", "password-reset"} <= {
        a["id"] for a in second.json()["articles"]
    }


def test_article_validation(client: httpx.Client) -> None:
    response = client.post("/kb/articles", json={"title": "", "body": "x", "colour": "red"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.title: String should have at least 1 character" in detail
    assert "body.colour: unknown field" in detail


# -- tickets and CRM ---------------------------------------------------------------------------


def test_ticket_round_trip(client: httpx.Client) -> None:
    created = client.post(
        "/tickets", json={"subject": "  VPN drops every 5 minutes ", "user_id": "u-1003"}
    )
    assert created.status_code == 201
    ticket = created.json()
    assert ticket["status"] == "open" and ticket["priority"] == "normal"
    assert ticket["subject"] == "VPN drops every 5 minutes" and ticket["id"] >= 1001
    assert client.get(f"/tickets/{ticket['id']}").json() == ticket

    patched = client.patch(f"/tickets/{ticket['id']}", json={"status": "resolved"})
    assert patched.status_code == 200 and patched.json()["status"] == "resolved"
    assert client.get(f"/tickets/{ticket['id']}").json()["status"] == "resolved"

    mine = client.get("/tickets", params={"user_id": "u-1003"}).json()["tickets"]
    assert ticket["id"] in [t["id"] for t in mine]
    assert all(t["user_id"] == "u-1003" for t in mine)


def test_ticket_validation_and_missing(client: httpx.Client) -> None:
    assert client.get("/tickets/424242").json() == {"detail": "ticket 424242 not found"}
    assert client.patch("/tickets/424242", json={"status": "closed"}).status_code == 404
    bad = client.post("/tickets", json={"subject": "x", "priority": "asap", "cc": "boss"})
    assert bad.status_code == 422
    assert (
        "body.priority: Input should be 'low', 'normal', 'high' or 'urgent'"
        in (bad.json()["detail"])
    )
    assert "body.cc: unknown field" in bad.json()["detail"]
    ticket = client.post("/tickets", json={"subject": "x"}).json()
    empty = client.patch(f"/tickets/{ticket['id']}", json={})
    assert empty.status_code == 422 and "give status and/or priority" in empty.json()["detail"]
    wrong = client.patch(f"/tickets/{ticket['id']}", json={"status": "done"})
    assert (
        wrong.status_code == 422
        and "'open', 'pending', 'resolved' or 'closed'" in (wrong.json()["detail"])
    )


def test_idempotency_key_returns_the_first_ticket(client: httpx.Client) -> None:
    key = {"Idempotency-Key": f"k-{time.monotonic_ns()}"}
    first = client.post("/tickets", json={"subject": "Card never arrived"}, headers=key).json()
    second = client.post("/tickets", json={"subject": "Card never arrived"}, headers=key).json()
    third = client.post("/tickets", json={"subject": "Card never arrived"}).json()
    assert first["id"] == second["id"] != third["id"]


def test_crm_counts_open_tickets(client: httpx.Client) -> None:
    before = client.get("/crm/customers/u-1005").json()
    assert before["name"] == "Emeka Obi" and before["plan"] == "free"
    ticket = client.post("/tickets", json={"subject": "Refund?", "user_id": "u-1005"}).json()
    assert client.get("/crm/customers/u-1005").json()["open_tickets"] == before["open_tickets"] + 1
    client.patch(f"/tickets/{ticket['id']}", json={"status": "closed"})
    assert client.get("/crm/customers/u-1005").json()["open_tickets"] == before["open_tickets"]
    assert client.get("/crm/customers/nobody").json() == {"detail": "customer 'nobody' not found"}


def test_data_survives_a_restart_and_is_seeded_once(tmp_path: Path) -> None:
    db = tmp_path / "persist.db"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with RefServiceServer(db, TOKEN) as first:
        ticket = httpx.post(f"{first.url}/tickets", json={"subject": "x"}, headers=auth).json()
        httpx.post(
            f"{first.url}/kb/articles", json={"title": "Extra", "body": "b"}, headers=auth
        ).raise_for_status()
        count = httpx.get(f"{first.url}/health").json()["articles"]
    with RefServiceServer(db, TOKEN) as second:
        assert httpx.get(f"{second.url}/health").json()["articles"] == count
        assert httpx.get(f"{second.url}/tickets/{ticket['id']}", headers=auth).status_code == 200


# -- faults ------------------------------------------------------------------------------------


def test_programmed_faults_fire_the_given_number_of_times(
    server: RefServiceServer, client: httpx.Client
) -> None:
    server.faults.add(path="/kb/*", status=429, retry_after=2, times=2)
    first = client.get("/kb/search", params={"q": "vpn"})
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    assert client.get("/kb/articles/vpn-connect").status_code == 429
    assert client.get("/kb/search", params={"q": "vpn"}).status_code == 200


def test_faults_apply_after_auth(server: RefServiceServer, anon: httpx.Client) -> None:
    server.faults.add(path="/tickets", status=500, times=1)
    assert anon.get("/tickets").status_code == 401  # not consumed by an anonymous caller
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert anon.get("/tickets", headers=auth).status_code == 500


def test_fault_header(client: httpx.Client) -> None:
    started = time.perf_counter()
    slow = client.get("/health", headers={"X-Fault": "delay=200; status=503; retry-after=1"})
    assert time.perf_counter() - started >= 0.2
    assert slow.status_code == 503 and slow.json() == {"detail": "injected fault: HTTP 503"}
    bad = client.get("/health", headers={"X-Fault": "explode=1"})
    assert bad.status_code == 400 and "unknown fault field 'explode'" in bad.json()["detail"]


def test_fault_header_can_be_disabled(tmp_path: Path) -> None:
    with RefServiceServer(tmp_path / "f.db", None, fault_header=False) as quiet:
        assert (
            httpx.get(f"{quiet.url}/health", headers={"X-Fault": "status=500"}).status_code == 200
        )


def test_faults_object_rejects_an_empty_fault() -> None:
    with pytest.raises(ValueError):
        Faults().add(path="/x")
