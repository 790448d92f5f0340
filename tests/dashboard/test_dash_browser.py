"""End to end in a real headless Chromium: the dashboard against a server seeded by the demo.

The learning demo (`agent-lightning demo`, Banking77 traffic through the SDK, learning tasks,
versions past the off-policy gate) fills a SQLite store; a real server (uvicorn on loopback)
then serves it with the dashboard, and Playwright drives Debian's Chromium (`/usr/bin/chromium`,
never a downloaded browser). Screenshots of each view go to `screenshots/`.

Without Chromium or Playwright the tests skip with the reason, except under CI (`CI` set), where
a missing browser is a failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dash_app import dashboard_app

CHROMIUM = os.environ.get("AGL_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
APP = "support-bot"
# What customers typed in the demo (cli/demo.py PII_SUFFIXES): none of it may reach a page.
RAW_PII = ["4111 1111 1111 1111", "jane.doe@example.com", "+44 20 7946 0958", "GB82 WEST"]
CARD_SESSION = "chat-388"  # message 388 carries the card number (388 % 97 == 0, suffix 0)
DEMO_INTERACTIONS = 800
DEMO_LEARN_EVERY = 200


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


@dataclass
class Demo:
    url: str
    store: object
    admin: tuple[str, str]
    analyst_key: str
    empty_admin: tuple[str, str]
    result: dict
    controller: object


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    from rich.console import Console

    from agent_lightning.cli.demo import banking77_dir, run_demo
    from agent_lightning.config import Settings
    from agent_lightning.gateway.testing import ThreadedServer
    from agent_lightning.security.audit import Actor
    from agent_lightning.security.identities import create_api_key, create_client
    from agent_lightning.server.wiring import with_components

    if banking77_dir() is None:
        _unavailable("Banking77 (shared/data/banking77) is not next to the project")
    workdir = tmp_path_factory.mktemp("demo")
    log = io.StringIO()
    result = run_demo(
        Console(file=log, width=120),
        interactions=DEMO_INTERACTIONS,
        learn_every=DEMO_LEARN_EVERY,
        data_dir=workdir,
    )
    settings = Settings(
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        token_burst=1000,
        token_rate=1000.0,
    )
    state = with_components(settings)
    # No background threads: a scheduled learning task must not change the live version under
    # the test (the controller does not know about pausing yet).
    app = dashboard_app(settings, state.store, state=state, start_background=False)
    server = ThreadedServer(app).start()
    audit = state.audit
    admin = create_client(state.store, audit, APP, ["AgentAdmin"], Actor("e2e"), "e2e admin")
    key = create_api_key(state.store, audit, APP, "analyst@example.com", ["Analyst"], Actor("e2e"))
    state.store.ensure_app("new-app")
    empty = create_client(state.store, audit, "new-app", ["AgentAdmin"], Actor("e2e"))
    try:
        yield Demo(
            server.url,
            state.store,
            (admin.client_id, admin.secret),
            key.key,
            (empty.client_id, empty.secret),
            result,
            state.controller,
        )
    finally:
        server.stop()
        state.store.close()
        (SHOTS / "demo-output.txt").parent.mkdir(exist_ok=True)
        (SHOTS / "demo-output.txt").write_text(log.getvalue())


class Session:
    """One browser tab that must only talk to our server and must not log errors."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and "401" not in msg.text
                else None
            ),
        )
        self.page.route("**/*", self._only_ours)

    def _only_ours(self, route) -> None:
        if route.request.url.startswith(self.base + "/"):
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def go(self, hash_: str, ready: str) -> None:
        self.page.goto(f"{self.base}/#/{hash_}")
        self.page.wait_for_selector(ready, timeout=15_000)

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(exist_ok=True)
        path = SHOTS / f"dashboard-{name}.png"
        self.page.wait_for_timeout(150)  # let charts finish their first layout
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def text(self) -> str:
        return self.page.inner_text("body")

    def close(self) -> None:
        self.context.close()
        assert not self.foreign, f"requests to other origins: {self.foreign}"
        assert not self.errors, "\n".join(self.errors)


@pytest.fixture
def tab(playwright_browser, demo: Demo) -> Iterator[Session]:
    session = Session(playwright_browser, demo.url)
    yield session
    session.close()


def _sign_in(tab: Session, demo: Demo, client: tuple[str, str]) -> None:
    tab.page.goto(demo.url + "/")
    tab.page.fill("#client-id", client[0])
    tab.page.fill("#client-secret", client[1])
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".shell")


def _sign_in_as_admin(tab: Session, demo: Demo) -> None:
    tab.page.goto(demo.url + "/")
    tab.page.wait_for_selector("#client-id")
    tab.shot("login")
    tab.page.fill("#client-id", demo.admin[0])
    tab.page.fill("#client-secret", "wrong secret")
    tab.page.click("#sign-in")
    tab.page.wait_for_selector("#login-error:has-text('wrong secret')")
    tab.page.fill("#client-secret", demo.admin[1])
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".shell")


def _points(tab: Session, selector: str) -> list[dict]:
    return json.loads(tab.page.get_attribute(selector, "data-points") or "[]")


def test_admin_sees_traffic_and_the_learning_curve_rise(tab: Session, demo: Demo) -> None:
    _sign_in_as_admin(tab, demo)
    tab.go("overview?range=1h", "#chart-traffic svg")
    events = tab.page.inner_text("[data-kpi=events] .value").replace(",", "")
    assert int(events) == DEMO_INTERACTIONS
    assert tab.page.locator("#resolution-by-version tbody tr").count() >= 2
    tab.shot("overview")

    tab.go("learning", "#learning-curve svg")
    curve = {s["name"]: s["values"] for s in _points(tab, "#learning-curve")}
    live = [v for v in curve["live version (baseline)"] if v is not None]
    candidate = [v for v in curve["candidate estimate"] if v is not None]
    assert len(candidate) >= DEMO_INTERACTIONS // DEMO_LEARN_EVERY - 1
    # The learning curve rises: what the live version is estimated to earn grows as versions
    # that beat it go live (each registration needs the gain's lower bound above zero).
    assert live[-1] > live[0], f"live estimates over tasks: {live}"
    versions = tab.page.locator("#lineage [data-version]").count()
    stored = demo.store.list_policy_versions(APP, "intents", limit=1000).items
    assert versions == len(stored) >= 2  # every version, including the scheduler's
    observed = _points(tab, "#observed-by-version")
    assert observed and all(0 <= o["value"] <= 1 for o in observed if o["value"] is not None)
    assert tab.page.locator("#tasks tbody tr").count() >= len(candidate)
    tab.shot("learning")


def test_admin_opens_a_session_timeline(tab: Session, demo: Demo) -> None:
    _sign_in_as_admin(tab, demo)
    tab.go("sessions", "#sessions tbody tr")
    assert tab.page.locator("#sessions tbody tr").count() == 50
    tab.shot("sessions")
    tab.page.fill("#session-search", CARD_SESSION)
    tab.page.press("#session-search", "Enter")
    tab.page.wait_for_selector("#timeline li")
    kinds = tab.page.eval_on_selector_all("#timeline > li", "els => els.map(e => e.dataset.type)")
    assert set(kinds) >= {"event", "decision", "reward"}, kinds
    assert tab.page.inner_text("#timeline li[data-type=event] .pii") == "<CREDIT_CARD>"
    chosen = tab.page.locator("#timeline .probs .chosen").first.inner_text()
    assert chosen and "%" in tab.page.inner_text("#timeline .probs")
    body = tab.text()
    assert "Chose" in body and "with probability" in body
    assert not [raw for raw in RAW_PII if raw in tab.page.content()]
    tab.shot("session")


def test_admin_pauses_and_rolls_back_with_reasons(tab: Session, demo: Demo) -> None:
    from agent_lightning.security.audit import AuditLog

    store = demo.store
    before = store.get_policy(APP, "intents")
    parent = store.get_policy_version(APP, "intents", before.live_version).parent_version
    assert parent is not None, "the demo registered no version past the gate"
    _sign_in_as_admin(tab, demo)
    tab.go("rollouts", "[data-policy=intents]")
    tab.shot("rollouts")

    tab.page.click("#pause")
    tab.page.fill("#reason", "freeze while we look at escalations")
    tab.page.click("#confirm")
    tab.page.wait_for_selector("#paused")
    # Honest about what the pause does on this server (see dashboard.rollouts.pause_enforced).
    enforced = getattr(demo.controller, "honours_pause", False)
    assert tab.page.locator("#pause-not-enforced").count() == (0 if enforced else 1)
    tab.page.click("#rollback")
    tab.page.click("#confirm")  # no reason: refused in the dialog
    tab.page.wait_for_selector("dialog .error-text:has-text('Give a reason')")
    tab.page.fill("#reason", "resolution dropped after the last version")
    tab.page.click("#confirm")
    tab.page.wait_for_selector(f"#live-version:has-text('live v{parent}')")
    tab.page.wait_for_selector("#history [data-kind=rollback]")
    assert "resolution dropped after the last version" in tab.page.inner_text("#history")
    tab.shot("rollouts-rolled-back")

    assert store.get_policy(APP, "intents").live_version == parent
    settings = store.get_app(APP).settings["rollouts"]["intents"]
    assert settings["paused"] is True and settings["reason"].startswith("freeze")
    entries = AuditLog(store).entries(APP, limit=10_000)
    (rollback,) = [e for e in entries if e.action == "policy.set_live"]
    assert rollback.before == {"live_version": before.live_version}
    assert rollback.after["reason"] == "resolution dropped after the last version"

    tab.go("audit", "#audit tbody tr[data-action='policy.set_live']")
    tab.page.wait_for_selector("#chain .badge:has-text('chain intact')")
    assert tab.page.locator("#audit tbody tr[data-action='rollout.pause']").count() == 1
    assert "resolution dropped after the last version" in tab.page.inner_text("#audit")
    tab.shot("audit")


def test_analyst_sees_no_controls_and_no_raw_text(tab: Session, demo: Demo) -> None:
    tab.page.goto(demo.url + "/")
    tab.page.click("[data-mode=key]")
    tab.page.fill("#api-key", demo.analyst_key)
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".shell [data-role=Analyst]")
    assert tab.page.locator("[data-nav=audit]").count() == 0
    tab.page.goto(f"{demo.url}/#/audit")  # not offered, and not reachable by URL either
    tab.page.wait_for_selector("#overview-body")

    tab.go("rollouts", "[data-policy=intents]")
    for control in ("#pause", "#resume", "#rollback", "button.promote"):
        assert tab.page.locator(control).count() == 0, control
    assert tab.page.locator("#read-only").is_visible()
    tab.shot("analyst-rollouts")

    seen = []
    for view, ready in (
        ("overview", "#chart-traffic svg"),
        ("learning", "#learning-curve svg"),
        ("sessions", "#sessions tbody tr"),
        (f"sessions/{CARD_SESSION}", "#timeline li"),
    ):
        tab.go(view, ready)
        seen.append(tab.page.content())
    assert "<CREDIT_CARD>" in tab.page.inner_text("#timeline")
    assert not [raw for raw in RAW_PII for page in seen if raw in page]
    tab.shot("analyst-session")
    # The server refuses what the page hides.
    response = tab.page.request.put(
        f"{demo.url}/v1/policies/intents/live",
        data={"version": 1, "reason": "analyst"},
        headers={"Authorization": f"Bearer {demo.analyst_key}"},
    )
    assert response.status == 403


def test_a_new_app_gets_empty_states_that_say_what_to_do(tab: Session, demo: Demo) -> None:
    _sign_in(tab, demo, demo.empty_admin)
    tab.go("overview", "#overview-body .empty")
    assert "No telemetry in the last 24 hours" in tab.text()
    assert "agl.log_event" in tab.text()
    tab.shot("empty-overview")
    tab.go("learning", ".empty")
    assert "No policies yet" in tab.text() and "agl.create_policy" in tab.text()
    tab.go("sessions", ".empty")
    assert "No sessions yet" in tab.text() and "session_id" in tab.text()
    tab.go("rollouts", ".empty")
    tab.go("audit", "#audit tbody tr")  # the client's own creation is already audited
