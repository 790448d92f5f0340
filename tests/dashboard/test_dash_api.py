"""The dashboard's JSON API against a real store (SQLite and PostgreSQL) and the real app."""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dash_app import dashboard_app, module_settings
from dash_seed import CARD_NUMBER, EMAIL, PII_SESSION, QUALITY, seed
from fastapi.testclient import TestClient
from tests.conftest import Api

from agent_lightning.config import Settings
from agent_lightning.dashboard import STATIC_DIR, promotion_paused
from agent_lightning.dashboard.queries import DECISIONS, DashboardData
from agent_lightning.ingestion import DataIngestionPipeline
from agent_lightning.security.audit import AuditLog
from agent_lightning.store import Decision, Event, Reward, Store, Task, utcnow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def dash(request, tmp_path_factory) -> Iterator[Api]:
    """The app with the dashboard, seeded once per database for the tests that only read."""
    with contextlib.ExitStack() as stack:
        settings = stack.enter_context(module_settings(request.param, tmp_path_factory, "dash"))
        store = Store(settings.database_url)
        stack.callback(store.close)
        seed(store)
        client = TestClient(dashboard_app(settings, store), base_url="http://testserver")
        stack.callback(client.close)
        yield Api(client.app, store, client)


@pytest.fixture
def dash_sqlite(settings: Settings) -> Iterator[Api]:
    """A fresh app and store per test, for the tests that change something."""
    store = Store(settings.database_url)
    seed(store, sessions=120)
    client = TestClient(dashboard_app(settings, store), base_url="http://testserver")
    yield Api(client.app, store, client)
    client.close()
    store.close()


def _get(api: Api, path: str, roles=("Analyst",), app_id="support-bot", **params):
    response = api.client.get(path, params=params, headers=api.auth(app_id, roles))
    assert response.status_code == 200, response.text
    return response.json()


def _expected(store: Store, app_id: str = "support-bot") -> dict:
    """What the overview must say, computed the slow way, row by row."""
    with store.session() as s:
        decisions = {d.id: d for d in s.query(Decision).filter_by(app_id=app_id)}
        rewards = list(s.query(Reward).filter_by(app_id=app_id))
        events = list(s.query(Event).filter_by(app_id=app_id))
    by_version: dict[int, list[float]] = {}
    for r in rewards:
        version = decisions[r.decision_id].policy_version
        by_version.setdefault(version, []).append(r.value)
    return {
        "events": len(events),
        "decisions": len(decisions),
        "rewards": len(rewards),
        "escalated": sum(1 for d in decisions.values() if d.action_id == "escalate"),
        "rates": {v: sum(x > 0 for x in vals) / len(vals) for v, vals in by_version.items()},
        "intents": Counter(e.intent_prediction for e in events),
        "satisfaction": sum(e.feedback_score for e in events) / len(events),
    }


def test_overview_matches_the_rows_on_both_databases(dash: Api) -> None:
    want = _expected(dash.store)
    got = _get(dash, "/v1/dashboard/overview", bucket="hour")
    assert got["totals"]["events"] == want["events"] == 240
    assert got["totals"]["decisions"] == want["decisions"]
    assert got["totals"]["rewards"] == want["rewards"]
    assert got["totals"]["escalated"] == want["escalated"] > 0
    assert sum(got["series"]["events"]) == want["events"]
    assert len(got["buckets"]) == len(got["series"]["events"]) in (24, 25)
    rates = {row["version"]: row["rate"] for row in got["resolution_by_version"]}
    assert rates == pytest.approx(want["rates"])
    # The story the seed tells: every version resolves more than the one before.
    assert [rates[v] for v in sorted(rates)] == sorted(rates.values())
    assert set(rates) == set(QUALITY)
    intents = {row["intent"]: row["count"] for row in got["intents"]}
    assert intents == dict(want["intents"])
    assert got["rates"]["satisfaction"] == pytest.approx(want["satisfaction"])
    assert got["rates"]["escalation"] == pytest.approx(want["escalated"] / want["decisions"])
    assert got["sla"]["available"] is True and got["totals"]["model_calls"] == 0


def test_minute_hour_and_day_buckets_add_up_to_the_same_totals(dash: Api) -> None:
    now = utcnow()
    day = _get(dash, "/v1/dashboard/overview", bucket="day", since=(now - timedelta(days=3)))
    hour = _get(dash, "/v1/dashboard/overview", bucket="hour")
    recent = _get(
        dash, "/v1/dashboard/overview", bucket="minute", since=now - timedelta(hours=2), until=now
    )
    assert sum(day["series"]["rewards"]) == sum(hour["series"]["rewards"]) == 240
    assert len(day["buckets"]) in (3, 4)
    # Two hours of minute buckets hold the newest 2/20 of the sessions (one every 5 minutes).
    assert 20 <= recent["totals"]["events"] <= 26
    assert len(recent["buckets"]) in (120, 121)


def test_window_limits_are_explained(dash_sqlite: Api) -> None:
    headers = dash_sqlite.auth("support-bot", ("Analyst",))
    now = utcnow()
    too_long = dash_sqlite.client.get(
        "/v1/dashboard/overview",
        params={"bucket": "minute", "since": (now - timedelta(days=2)).isoformat()},
        headers=headers,
    )
    assert too_long.status_code == 422
    assert "at most 6 hours" in too_long.json()["error"]["message"]
    backwards = dash_sqlite.client.get(
        "/v1/dashboard/overview",
        params={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert backwards.status_code == 422


def test_new_rows_show_up_while_closed_buckets_come_from_memory(dash_sqlite: Api) -> None:
    api = dash_sqlite
    first = _get(api, "/v1/dashboard/overview", bucket="hour")
    pipeline = DataIngestionPipeline(api.store)
    assert not pipeline.ingest_events("support-bot", [{"text": "late", "session_id": "x"}]).rejected
    api.app.state.agl.extras["dashboard_responses"].clear()  # the 5 s answer cache
    second = _get(api, "/v1/dashboard/overview", bucket="hour")
    assert second["totals"]["events"] == first["totals"]["events"] + 1
    # Only the open bucket (and the grace period) went to the database the second time.
    assert second["cache"]["cached_buckets"] > 0
    assert second["cache"]["queried_from"] >= (utcnow() - timedelta(hours=1)).isoformat()[:13]
    third = _get(api, "/v1/dashboard/overview", bucket="hour")
    assert third["cache"]["response"] == "hit"


def test_pk_floor_finds_the_first_row_at_a_time(dash: Api) -> None:
    data = DashboardData(dash.store)
    with dash.store.session() as s:
        rows = sorted(
            (d.pk, d.created_at) for d in s.query(Decision).filter_by(app_id="support-bot")
        )
    target = rows[len(rows) // 2][1] + timedelta(minutes=5)
    floor = data.pk_floor(DECISIONS, "support-bot", target)
    # The floor keeps a 5-minute margin: it is the first row at or after (target - 5 min).
    assert floor == rows[len(rows) // 2][0]
    assert data.pk_floor(DECISIONS, "nobody", target) is None
    assert data.pk_floor(DECISIONS, "support-bot", utcnow() + timedelta(days=1)) > rows[-1][0]


def test_learning_view_normalises_estimates_and_draws_the_curve(dash: Api) -> None:
    got = _get(dash, "/v1/dashboard/learning")
    (policy,) = got["policies"]
    assert policy["live_version"] == 4
    assert [v["version"] for v in policy["versions"]] == [1, 2, 3, 4]
    assert [v["parent_version"] for v in policy["versions"]] == [None, 1, 2, 3]
    assert [t["status"] for t in policy["tasks"]].count("failed") == 1
    curve = policy["curve"]
    assert [p["candidate"]["value"] for p in curve] == pytest.approx([0.52, 0.55, 0.66, 0.74])
    assert [p["baseline"]["value"] for p in curve] == pytest.approx([0.38, 0.52, 0.52, 0.66])
    assert all(p["candidate"]["ci_low"] < p["candidate"]["value"] for p in curve)
    # Both stored shapes (several estimators; one with its difference) come out the same way.
    first = policy["tasks"][0]["estimates"]
    assert first["estimator"] == "snips" and set(first["estimators"]) == {"snips", "ips"}
    assert policy["tasks"][2]["estimates"]["difference"]["value"] == pytest.approx(0.14)
    observed = {o["version"]: o["rate"] for o in policy["observed"]}
    assert observed[4] > observed[1]
    assert _get(dash, "/v1/dashboard/learning", policy="intents")["policies"][0]["name"]
    missing = dash.client.get(
        "/v1/dashboard/learning",
        params={"policy": "nope"},
        headers=dash.auth("support-bot", ("Analyst",)),
    )
    assert missing.status_code == 404


def test_estimates_without_numbers_become_null_not_an_error(dash_sqlite: Api) -> None:
    nan = float("nan")
    dash_sqlite.store.create_task(
        Task(
            id="task-nan",
            app_id="support-bot",
            kind="learn",
            params={"policy": "intents"},
            status="succeeded",
            result={
                "registered": False,
                "metrics": {
                    "ope": {
                        "estimator": "dr",
                        "candidate": {"value": nan, "ci_low": nan, "ci_high": nan},
                        "live": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6},
                    }
                },
            },
        )
    )
    got = _get(dash_sqlite, "/v1/dashboard/learning")
    task = next(t for t in got["policies"][0]["tasks"] if t["id"] == "task-nan")
    assert task["estimates"]["candidate"]["value"] is None
    assert task["estimates"]["baseline"]["value"] == 0.5


def test_rollouts_show_guardrails_and_the_reason_of_each_rollback(dash: Api) -> None:
    got = _get(dash, "/v1/dashboard/rollouts")
    (policy,) = got["policies"]
    assert policy["live_version"] == 4 and policy["rollback_to"] == 3
    assert policy["live"]["observed"]["resolution"] > policy["baseline"]["observed"]["resolution"]
    rollbacks = [h for h in policy["history"] if h["kind"] == "rollback"]
    assert rollbacks[0]["reason"] == "escalations doubled after v4"
    assert rollbacks[0]["from_version"] == 4 and rollbacks[0]["to_version"] == 3
    # Who did it is audit information: only those who may read the audit log see names.
    assert all(h["actor"] is None for h in policy["history"])
    admin = _get(dash, "/v1/dashboard/rollouts", roles=("AgentAdmin",))
    assert {h["actor"] for h in admin["policies"][0]["history"]} >= {"ops-admin"}


def test_pausing_a_rollout_is_admin_only_recorded_and_audited(dash_sqlite: Api) -> None:
    api = dash_sqlite
    body = {"policy": "intents", "paused": True, "reason": "holiday freeze"}
    for role in ("Analyst", "Developer"):
        denied = api.client.put(
            "/v1/dashboard/rollouts/pause", json=body, headers=api.auth("support-bot", (role,))
        )
        assert denied.status_code == 403
    admin = api.auth("support-bot", ("AgentAdmin",))
    unknown = api.client.put(
        "/v1/dashboard/rollouts/pause", json={**body, "policy": "nope"}, headers=admin
    )
    assert unknown.status_code == 404
    assert not promotion_paused(api.store, "support-bot", "intents")
    done = api.client.put("/v1/dashboard/rollouts/pause", json=body, headers=admin)
    assert done.status_code == 200 and done.json()["paused"] is True
    assert promotion_paused(api.store, "support-bot", "intents")
    got = _get(api, "/v1/dashboard/rollouts")
    pause = got["policies"][0]["pause"]
    assert pause["paused"] is True and pause["reason"] == "holiday freeze"
    assert pause["by"] is None  # the operator's name is for those who may read the audit log
    assert got["pause_enforced"] is True  # no learning controller here: nothing auto-promotes
    state = api.app.state.agl

    class OldController:  # a controller that does not read the flag yet
        pass

    class NewController:
        honours_pause = True

    state.controller = OldController()
    assert _get(api, "/v1/dashboard/rollouts")["pause_enforced"] is False
    state.controller = NewController()
    assert _get(api, "/v1/dashboard/rollouts")["pause_enforced"] is True
    state.controller = None
    entries = AuditLog(api.store).entries("support-bot", limit=1000)
    (paused,) = [e for e in entries if e.action == "promotion.pause"]
    assert paused.target_id == "intents" and paused.after["reason"] == "holiday freeze"
    resumed = api.client.put(
        "/v1/dashboard/rollouts/pause", json={**body, "paused": False}, headers=admin
    )
    assert resumed.status_code == 200
    assert not promotion_paused(api.store, "support-bot", "intents")
    assert AuditLog(api.store).verify().ok


def test_session_timeline_is_redacted_and_includes_decision_rewards(dash: Api) -> None:
    story = _get(dash, "/v1/dashboard/sessions", limit=200)
    assert len(story["items"]) == 200
    newest = story["items"][0]
    assert newest["session_id"] == "chat-240" and newest["rewards"] == 1
    got = _get(dash, "/v1/dashboard/session", session_id=PII_SESSION)
    kinds = [item["type"] for item in got["items"]]
    assert kinds == ["event", "decision", "reward"]  # the reward names only its decision
    text = str(got)
    assert "<CREDIT_CARD>" in text and CARD_NUMBER not in text
    assert re.sub(r"\s", "", CARD_NUMBER) not in text
    decision = got["items"][1]
    assert math.isclose(sum(decision["probabilities"].values()), 1.0, abs_tol=1e-6)
    assert got["summary"]["decisions"] == 1 and got["summary"]["user_id"]


def test_sessions_are_per_app_and_filter_by_user(dash_sqlite: Api) -> None:
    api = dash_sqlite
    DataIngestionPipeline(api.store).ingest_events(
        "support-bot", [{"text": f"mail {EMAIL}", "session_id": "fresh", "user_id": "u-new"}]
    )
    api.store.ensure_app("globex")
    DataIngestionPipeline(api.store).ingest_events(
        "globex", [{"text": "other tenant", "session_id": "globex-secret"}]
    )
    mine = _get(api, "/v1/dashboard/sessions", limit=5)
    assert mine["items"][0]["session_id"] == "fresh"
    assert "globex-secret" not in str(_get(api, "/v1/dashboard/sessions", limit=200))
    assert _get(api, "/v1/dashboard/session", session_id="globex-secret")["items"] == []
    only = _get(api, "/v1/dashboard/sessions", user_id="u-new")
    assert [s["session_id"] for s in only["items"]] == ["fresh"]
    timeline = _get(api, "/v1/dashboard/session", session_id="fresh")
    assert "<EMAIL>" in str(timeline) and EMAIL not in str(timeline)


def test_audit_is_newest_first_and_pages_backwards(dash_sqlite: Api) -> None:
    api = dash_sqlite
    first = _get(api, "/v1/dashboard/audit", roles=("AgentAdmin",), limit=3)
    seqs = [e["seq"] for e in first["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 3
    more = _get(
        api,
        "/v1/dashboard/audit",
        roles=("AgentAdmin",),
        limit=3,
        before_seq=first["next_before_seq"],
    )
    assert [e["seq"] for e in more["items"]] == [s - 3 for s in seqs]
    only = _get(api, "/v1/dashboard/audit", roles=("AgentAdmin",), action="policy.set_live")
    assert {e["action"] for e in only["items"]} == {"policy.set_live"}
    denied = api.client.get("/v1/dashboard/audit", headers=api.auth("support-bot", ("Analyst",)))
    assert denied.status_code == 403


def test_the_page_and_its_assets_are_local_and_locked_down(dash_sqlite: Api) -> None:
    page = dash_sqlite.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    script = dash_sqlite.client.get("/static/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert dash_sqlite.client.get("/static/js/nope.js").status_code == 404
    # No CDN: no asset refers to another origin (the SVG namespace is a name, not a fetch).
    for path in Path(STATIC_DIR).rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text().replace("http://www.w3.org/2000/svg", "")
            assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), path
    # Every module the page imports exists (a typo would only show in a browser otherwise).
    for path in Path(STATIC_DIR).rglob("*.js"):
        for target in re.findall(r'from "(\.[^"]+)"', path.read_text()):
            assert (path.parent / target).resolve().exists(), f"{path.name} imports {target}"


def test_dashboard_routes_every_role_own_and_other_app(settings: Settings) -> None:
    """The project's route × role × tenant walk (tests/test_rbac_matrix.py), for these routes.

    The full walk there covers every served route; this one runs it over the dashboard's own
    routes with the dashboard mounted, whatever else the server wires.
    """
    from tests.test_rbac_matrix import BODIES, LEAK_MARKERS, _seed

    from agent_lightning.security.rbac import ROUTE_PERMISSIONS, Role, allowed

    store = Store(settings.database_url)
    client = TestClient(dashboard_app(settings, store), base_url="http://testserver")
    api = Api(client.app, store, client)
    try:
        _seed(api, "acme")
        other = _seed(api, "globex")
        mine = sorted(k for k in ROUTE_PERMISSIONS if k[1].startswith("/v1/dashboard/"))
        served = {
            (m.upper(), p)
            for p, ops in api.app.openapi()["paths"].items()
            if p.startswith("/v1/dashboard/")
            for m in ops
        }
        assert served == set(mine) and len(mine) == 7
        tokens = {role: api.token("acme", (role.value,)) for role in Role}
        for method, path in mine:
            body = BODIES.get((method, path))
            assert method == "GET" or body is not None, f"{method} {path}: add it to BODIES"
            params = {"session_id": "s"} if path.endswith("/session") else {}
            anonymous = client.request(method, path, json=body, params=params)
            assert anonymous.status_code == 401, path
            for role in Role:
                response = client.request(
                    method,
                    path,
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {tokens[role]}"},
                )
                label = f"{role.value} {method} {path}"
                if not allowed((role,), ROUTE_PERMISSIONS[(method, path)]):
                    assert response.status_code == 403, label
                    continue
                assert response.status_code not in (401, 403, 500), f"{label}: {response.text}"
                leaked = [v for k, v in other.items() if k in LEAK_MARKERS and v in response.text]
                assert not leaked, f"{label}: leaked {leaked}"
    finally:
        client.close()
        store.close()


def test_start_up_warm_up_serves_the_first_load_from_memory(dash_sqlite: Api) -> None:
    from agent_lightning.dashboard.warmup import warm_dashboard

    state = dash_sqlite.app.state.agl
    state.extras.pop("dashboard", None)  # as after a restart: nothing kept yet
    warm_dashboard(state)
    first = _get(dash_sqlite, "/v1/dashboard/overview", bucket="hour")
    assert first["cache"]["response"] == "miss"
    # The very first request after start-up read only the open bucket from the database.
    assert first["cache"]["cached_buckets"] > 0
    assert first["cache"]["queried_from"] >= (utcnow() - timedelta(hours=1)).isoformat()[:13]
