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
from dash_seed import CANARY_GUARDRAILS, arm_traffic

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
# Enough traffic that a version the gate passes at 400 or 600 messages (the gate needs 30
# held-out rewards first) still serves several hundred messages: the overview then always has
# two versions to compare, whichever task passes first.
DEMO_INTERACTIONS = 1200
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
    manager: object  # the server's RolloutManager (the publisher)


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
    from agent_lightning.publisher.service import install_publisher
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
    # No background threads: neither a scheduled learning task nor the rollout evaluator may
    # move the live version or a rollout under the test; the tests take those steps themselves.
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
            install_publisher(state).manager,
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


@dataclass
class Canary:
    id: str
    baseline: int
    candidate: int


CANARY_REASON = "learned overnight: canary first"


@pytest.fixture(scope="module")
def canary(demo: Demo) -> Canary:
    """A canary of a freshly learned version, started and advanced by the publisher.

    The agents keep talking to the live version (new rewarded decisions shaped like the demo's);
    a learning task trains a candidate on them and registers it without making it live; the
    server's RolloutManager starts a 5 → 25 → 50 → 100% canary of it; both arms get traffic;
    one evaluation passes the first step (25%), and some more candidate traffic arrives.
    """
    from agent_lightning.security.audit import Actor
    from agent_lightning.store import Decision

    store = demo.store
    live = store.get_policy(APP, "intents").live_version
    with store.session() as s:
        latest = s.query(Decision).filter_by(app_id=APP).order_by(Decision.pk.desc()).first()
        actions, context = list(latest.actions), dict(latest.context or {})
    shape = {"actions": actions, "context": context}
    arm_traffic(
        store, APP, "intents", live, 120, p_success=0.7, seed_value=11, prefix="fresh", **shape
    )
    task = demo.controller.run(APP, {"policy": "intents", "force": True, "make_live": False})
    assert task.status == "succeeded" and task.result["registered"], task.result
    candidate = task.result["version"]
    assert store.get_policy(APP, "intents").live_version == live  # a candidate, not live
    manager = demo.manager
    row = manager.start(
        APP,
        Actor("ops-admin", "client", APP),
        policy="intents",
        candidate_version=candidate,
        min_decisions_per_step=60,
        guardrails=CANARY_GUARDRAILS,
        reason=CANARY_REASON,
    )
    arm_traffic(
        store, APP, "intents", candidate, 70, p_success=0.74, seed_value=12, prefix="cand", **shape
    )
    arm_traffic(
        store, APP, "intents", live, 260, p_success=0.72, seed_value=13, prefix="base", **shape
    )
    assert manager.evaluate(APP, row.id).action == "advance"
    arm_traffic(
        store, APP, "intents", candidate, 24, p_success=0.74, seed_value=14, prefix="cand2", **shape
    )
    return Canary(row.id, live, candidate)


def test_admin_watches_a_canary_pauses_it_and_rolls_it_back(
    tab: Session, demo: Demo, canary: Canary
) -> None:
    from agent_lightning.security.audit import AuditLog

    _sign_in_as_admin(tab, demo)
    tab.go("rollouts", "#rollout[data-status=running] #rollout-guardrails svg")
    assert tab.page.get_attribute("#rollout", "data-rollout-id") == canary.id
    head = tab.page.inner_text("#rollout .rollout-head")
    assert f"v{canary.baseline}" in head and f"v{canary.candidate}" in head and "canary" in head
    steps = tab.page.eval_on_selector_all(
        "#rollout-steps li[data-state]", "els => els.map(e => [e.dataset.percent, e.dataset.state])"
    )
    assert steps == [["5", "done"], ["25", "current"], ["50", "pending"], ["100", "pending"]]
    assert tab.page.inner_text("#step-decisions") == "24 / 60 decisions"
    assert "25%" in tab.page.inner_text("#traffic-split")
    # Decisions per arm since the start: 70 + 24 on the candidate, 260 on the baseline.
    arms = tab.page.inner_text("#rollout-arms tr[data-row=decisions]").split()
    assert arms[-2:] == ["260", "94"], arms
    rows = tab.page.eval_on_selector_all(
        "#rollout-guardrails .g-row", "els => els.map(e => [e.dataset.metric, e.dataset.decision])"
    )
    assert rows == [[g["metric"], "ok"] for g in CANARY_GUARDRAILS]
    assert tab.page.locator("#rollout-guardrails .g-plot svg").count() == len(CANARY_GUARDRAILS)
    mean = _points(tab, "#rollout-guardrails .g-row[data-metric=mean_reward] .g-plot")
    assert mean["low"] < mean["estimate"] < mean["high"] and mean["limit"] == -0.1
    assert tab.page.locator("#rollout-share svg").count() == 1
    assert "automatic promotion on" in tab.text()
    tab.shot("rollouts")

    tab.page.click("#rollout-pause")
    tab.page.fill("#reason", "hold at 25% while we look at escalations")
    tab.page.click("#confirm")
    tab.page.wait_for_selector("#rollout[data-status=paused]")
    assert tab.page.inner_text("#rollout-status") == "paused"
    assert tab.page.locator("#rollout-pause").count() == 0
    assert tab.page.locator("#rollout-resume").count() == 1
    tab.shot("rollouts-paused")

    why = "escalations rose on the candidate"
    tab.page.click("#rollout-rollback")
    tab.page.click("#confirm")  # no reason: refused in the dialog
    tab.page.wait_for_selector("dialog .error-text:has-text('Give a reason')")
    tab.page.fill("#reason", why)
    tab.page.click("#confirm")
    tab.page.wait_for_selector(f"#past-rollouts li[data-rollout-id='{canary.id}']")
    tab.page.wait_for_selector("#no-rollout")
    past = tab.page.locator(f"#past-rollouts li[data-rollout-id='{canary.id}']")
    assert past.get_attribute("data-status") == "rolled_back"
    assert why in past.inner_text() and "reached 25%" in past.inner_text()
    assert why in tab.page.inner_text("#history [data-kind=rollout_rollback]")
    assert f"live v{canary.baseline}" in tab.page.inner_text("#live-version")
    tab.shot("rollouts-canary-rolled-back")

    row = demo.manager.get(APP, canary.id)
    assert row.status == "rolled_back" and row.reason == why
    assert [h["action"] for h in row.history][-2:] == ["pause", "rollback"]
    assert demo.store.get_policy(APP, "intents").live_version == canary.baseline
    entries = AuditLog(demo.store).entries(APP, limit=10_000)
    (paused,) = [e for e in entries if e.action == "rollout.pause"]
    assert paused.after["reason"].startswith("hold at 25%") and paused.actor == demo.admin[0]


def test_admin_pauses_promotion_and_rolls_the_live_version_back(tab: Session, demo: Demo) -> None:
    from agent_lightning.security.audit import AuditLog

    store = demo.store
    before = store.get_policy(APP, "intents")
    parent = store.get_policy_version(APP, "intents", before.live_version).parent_version
    assert parent is not None, "the demo registered no version past the gate"
    # The publisher's automatic-rollout option lives next to the pause: it must survive it.
    auto = {"kind": "canary", "steps": [10, 50, 100]}
    settings = dict(store.get_app(APP).settings or {})
    settings["rollouts"] = {"intents": {"auto": auto}}
    store.update_app(APP, settings=settings)
    _sign_in_as_admin(tab, demo)
    tab.go("rollouts", "[data-policy=intents] #auto-rollout")
    assert "10% → 50% → 100%" in tab.page.inner_text("#auto-rollout")

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
    entry = store.get_app(APP).settings["rollouts"]["intents"]
    assert entry["paused"] is True and entry["reason"].startswith("freeze")
    assert entry["auto"] == auto  # merged into the entry, not replaced
    entries = AuditLog(store).entries(APP, limit=10_000)
    (rollback,) = [e for e in entries if e.action == "policy.set_live"]
    assert rollback.before == {"live_version": before.live_version}
    assert rollback.after["reason"] == "resolution dropped after the last version"

    tab.go("audit", "#audit tbody tr[data-action='policy.set_live']")
    tab.page.wait_for_selector("#chain .badge:has-text('chain intact')")
    assert tab.page.locator("#audit tbody tr[data-action='promotion.pause']").count() == 1
    assert "resolution dropped after the last version" in tab.page.inner_text("#audit")
    tab.shot("audit")


def test_analyst_sees_no_controls_and_no_raw_text(tab: Session, demo: Demo, canary: Canary) -> None:
    from agent_lightning.security.audit import Actor

    manager = demo.manager
    running = manager.active(APP, "intents")
    if running is None:  # the admin test rolled the first canary back: start another
        running = manager.start(
            APP, Actor("ops-admin"), policy="intents", candidate_version=canary.candidate
        )
    tab.page.goto(demo.url + "/")
    tab.page.click("[data-mode=key]")
    tab.page.fill("#api-key", demo.analyst_key)
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".shell [data-role=Analyst]")
    assert tab.page.locator("[data-nav=audit]").count() == 0
    tab.page.goto(f"{demo.url}/#/audit")  # not offered, and not reachable by URL either
    tab.page.wait_for_selector("#overview-body")

    tab.go("rollouts", "#rollout #rollout-guardrails .g-row")
    assert tab.page.get_attribute("#rollout", "data-rollout-id") == running.id
    controls = (
        "#rollout-pause",
        "#rollout-resume",
        "#rollout-promote",
        "#rollout-rollback",
        "#pause",
        "#resume",
        "#rollback",
        "button.promote",
    )
    for control in controls:
        assert tab.page.locator(control).count() == 0, control
    assert tab.page.locator("#read-only").is_visible()
    assert tab.page.locator("#past-rollouts li").count() >= 1
    assert "ops-admin" not in tab.page.inner_text("#rollout")  # names are for auditors
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
    analyst = {"Authorization": f"Bearer {demo.analyst_key}"}
    response = tab.page.request.put(
        f"{demo.url}/v1/policies/intents/live",
        data={"version": 1, "reason": "analyst"},
        headers=analyst,
    )
    assert response.status == 403
    for verb, body in (("pause", {}), ("promote", {}), ("rollback", {"reason": "analyst"})):
        response = tab.page.request.post(
            f"{demo.url}/v1/rollouts/{running.id}/{verb}", data=body, headers=analyst
        )
        assert response.status == 403, verb
    assert manager.get(APP, running.id).status == "running"


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
