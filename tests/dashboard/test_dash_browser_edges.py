"""The dashboard in headless Chromium at its edges: short-lived tokens, timeline items without
optional parts, and a malformed URL hash.

A small store seeded by hand (no demo run) is served twice, with the default token lifetime and
with a 10-second one. Browser, tab and error checks are `test_dash_browser`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from dash_app import dashboard_app
from test_dash_browser import Session, playwright_browser  # noqa: F401

from agent_lightning.config import Settings
from agent_lightning.observability import TraceSpan
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.security.identities import create_client
from agent_lightning.store import Store, utcnow

APP = "edge-bot"
SESSION = "edge-1"


@dataclass
class Served:
    url: str  # default token lifetime
    short_url: str  # AGL_TOKEN_TTL_SECONDS=10
    client: tuple[str, str]


def _seed(store: Store) -> None:
    now = utcnow()
    store.ensure_app(APP)
    store.insert_records(
        "events", APP, [{"id": "e1", "session_id": SESSION, "text": "hi", "content_hash": "e1"}]
    )
    store.insert_records(
        "decisions",
        APP,
        [
            {
                "id": "d1",
                "session_id": SESSION,
                "decision_point": "route",
                "actions": [{"id": "reply"}],
                "action_id": "reply",
                "propensity": 1.0,
                "probabilities": {},  # nothing to chart: probabilities() has nothing to draw
                "content_hash": "d1",
            }
        ],
    )
    with store.session() as s:
        for span_id, name, status in (
            ("00000000000000a1", "tool.ok", "unset"),
            ("00000000000000a2", "tool.broken", "error"),
        ):
            s.add(
                TraceSpan(
                    app_id=APP,
                    trace_id="5b8efff798038103d269b633813fc60c",
                    span_id=span_id,
                    name=name,
                    kind="internal",
                    start_time=now,
                    end_time=now + timedelta(milliseconds=3),
                    duration_ms=3.0,
                    status_code=status,
                    session_id=SESSION,
                )
            )


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    from agent_lightning.gateway.testing import ThreadedServer

    tmp: Path = tmp_path_factory.mktemp("edges")
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'agl.db'}",
        jwt_secret="test-signing-key-0123456789abcdef0123456789abcdef",
        token_burst=1000,
        token_rate=1000.0,
    )
    short = replace(settings, token_ttl_seconds=10)
    store = Store(settings.database_url)
    _seed(store)
    client = create_client(store, AuditLog(store), APP, ["AgentAdmin"], Actor("e2e"))
    servers = [
        ThreadedServer(dashboard_app(s, store, start_background=False)).start()
        for s in (settings, short)
    ]
    try:
        yield Served(servers[0].url, servers[1].url, (client.client_id, client.secret))
    finally:
        for server in servers:
            server.stop()
        store.close()


def _sign_in(tab: Session, served: Served) -> None:
    tab.page.goto(tab.base + "/")
    tab.page.fill("#client-id", served.client[0])
    tab.page.fill("#client-secret", served.client[1])
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".shell", timeout=5_000)


@pytest.fixture
def tab(playwright_browser, served: Served) -> Iterator[Session]:  # noqa: F811
    session = Session(playwright_browser, served.url)
    yield session
    session.close()


def test_a_ten_second_token_still_signs_in(playwright_browser, served: Served) -> None:  # noqa: F811
    tab = Session(playwright_browser, served.short_url)
    try:
        _sign_in(tab, served)
        tab.page.wait_for_timeout(500)  # the next route() must still find the session
        tab.go("sessions", "#sessions tbody tr")
        assert tab.page.locator("#client-id").count() == 0
        stored = tab.page.evaluate("JSON.parse(sessionStorage.getItem('agl.session'))")
        left = (stored["expires_at"] - tab.page.evaluate("Date.now()")) / 1000
        assert 7 < left <= 9  # the token's 10 s, less a tenth of it
    finally:
        tab.close()


def test_timeline_items_without_optional_parts_print_no_null(tab: Session, served: Served) -> None:
    _sign_in(tab, served)
    tab.go(f"sessions/{SESSION}", "#timeline li[data-type=span]")
    metas = tab.page.eval_on_selector_all(
        "#timeline li[data-type=span] .meta", "els => els.map(e => e.innerText)"
    )
    assert len(metas) == 2 and not [m for m in metas if "null" in m], metas
    assert tab.page.locator("#timeline li[data-type=span] .badge.bad").count() == 1
    decision = tab.page.inner_text("#timeline li[data-type=decision]")
    assert "Chose" in decision and "null" not in decision
    assert "null" not in tab.page.inner_text("#timeline")


def test_a_malformed_escape_in_the_hash_is_an_unknown_session(tab: Session, served: Served) -> None:
    _sign_in(tab, served)
    tab.go(f"sessions/{SESSION}", "#timeline li")
    tab.page.goto(f"{served.url}/#/sessions/%E0%A4%A")
    tab.page.wait_for_selector("text=Nothing recorded for this session.", timeout=5_000)
    assert tab.page.inner_text("h1 .mono") == "%E0%A4%A"  # the segment as it was typed
    assert tab.errors == []
