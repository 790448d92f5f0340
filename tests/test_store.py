"""The store on both databases: idempotent inserts, pagination, filters, the reward join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm.exc import DetachedInstanceError

from agent_lightning.store import (
    Conflict,
    Filters,
    InvalidCursor,
    NotFound,
    Policy,
    PolicyVersion,
    Store,
    content_hash,
    new_id,
)


def _event(i: int, **extra) -> dict:
    row = {"id": f"e{i}", "text": f"message {i}", "session_id": f"s{i % 3}", **extra}
    row["content_hash"] = content_hash({k: v for k, v in row.items() if k != "id"})
    return row


def _decision(i: int, point: str = "intent", **extra) -> dict:
    row = {
        "id": f"d{i}",
        "decision_point": point,
        "context": {"text": f"q{i}"},
        "actions": [{"id": "a"}, {"id": "b"}],
        "action_id": "a",
        "propensity": 0.5,
        "probabilities": {"a": 0.5, "b": 0.5},
        **extra,
    }
    row["content_hash"] = content_hash(row)
    return row


def _reward(i: int, decision_id: str, value: float, **extra) -> dict:
    row = {"id": f"r{i}", "decision_id": decision_id, "value": value, "source": "user", **extra}
    row["content_hash"] = content_hash(row)
    return row


def test_schema_is_created_and_dialect_reported(store: Store) -> None:
    assert store.dialect in ("sqlite", "postgresql")
    store.ping()
    assert store.ensure_app("acme").id == "acme"
    assert store.ensure_app("acme").id == "acme"  # idempotent
    assert [a.id for a in store.list_apps()] == ["acme"]


def test_idempotent_insert_created_duplicate_conflict(store: Store) -> None:
    store.ensure_app("acme")
    first = store.insert_records("events", "acme", [_event(1), _event(2)])
    assert [o.status for o in first] == ["created", "created"]
    again = store.insert_records("events", "acme", [_event(1), _event(2), _event(3)])
    assert [o.status for o in again] == ["duplicate", "duplicate", "created"]
    changed = _event(1, text="something else")
    assert store.insert_records("events", "acme", [changed])[0].status == "conflict"
    assert store.count_records("events", "acme") == 3
    assert store.get_record("events", "acme", "e1").text == "message 1"


def test_same_id_in_two_apps_is_two_records_and_apps_never_see_each_other(store: Store) -> None:
    store.ensure_app("acme")
    store.ensure_app("globex")
    store.insert_records("events", "acme", [_event(1)])
    store.insert_records("events", "globex", [_event(1, text="globex secret")])
    assert store.get_record("events", "acme", "e1").text == "message 1"
    assert store.get_record("events", "globex", "e1").text == "globex secret"
    store.insert_records("events", "globex", [_event(9)])
    with pytest.raises(NotFound):
        store.get_record("events", "acme", "e9")
    assert store.count_records("events", "acme") == 1


def test_duplicate_id_inside_one_batch_is_stored_once(store: Store) -> None:
    store.ensure_app("acme")
    outcomes = store.insert_records("events", "acme", [_event(1), _event(1)])
    assert [o.status for o in outcomes] == ["created", "duplicate"]
    assert store.count_records("events", "acme") == 1


def test_cursor_pagination_walks_everything_once_in_both_orders(store: Store) -> None:
    store.ensure_app("acme")
    store.insert_records("events", "acme", [_event(i) for i in range(25)])
    for order in ("asc", "desc"):
        seen, cursor = [], None
        while True:
            page = store.list_records("events", "acme", cursor=cursor, limit=7, order=order)
            seen += [e.id for e in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = [f"e{i}" for i in range(25)]
        assert seen == (expected if order == "asc" else expected[::-1])
    with pytest.raises(InvalidCursor):
        store.list_records("events", "acme", cursor="garbage!")
    asc_cursor = store.list_records("events", "acme", limit=2).next_cursor
    with pytest.raises(InvalidCursor):  # a cursor of one order is refused by the other
        store.list_records("events", "acme", cursor=asc_cursor, order="desc")


def test_filters_by_session_policy_and_time(store: Store) -> None:
    store.ensure_app("acme")
    store.insert_records("events", "acme", [_event(i) for i in range(9)])
    page = store.list_records("events", "acme", Filters(session_id="s1"))
    assert [e.id for e in page.items] == ["e1", "e4", "e7"]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert store.list_records("events", "acme", Filters(since=future)).items == []
    assert len(store.list_records("events", "acme", Filters(until=future)).items) == 9
    store.insert_records(
        "decisions",
        "acme",
        [
            _decision(1, policy_name="p", policy_version=1),
            _decision(2, policy_name="p", policy_version=2),
        ],
    )
    page = store.list_records("decisions", "acme", Filters(policy_name="p", policy_version=2))
    assert [d.id for d in page.items] == ["d2"]


def test_reward_join_aggregates_and_defaults(store: Store) -> None:
    store.ensure_app("acme")
    store.update_app("acme", reward_wait_seconds=60, default_reward=-0.5, reward_aggregation="sum")
    store.insert_records("decisions", "acme", [_decision(i) for i in range(4)])
    store.insert_records(
        "rewards",
        "acme",
        [_reward(1, "d0", 0.25), _reward(2, "d0", 0.5), _reward(3, "d1", 1.0)],
    )
    # Right now d2 and d3 are still inside their window: the scan stops at the first of them.
    examples, last_pk = store.training_examples("acme", "intent")
    assert [e.decision.id for e in examples] == ["d0", "d1"]
    assert [e.reward for e in examples] == [0.75, 1.0]
    assert examples[0].reward_count == 2
    # After the window, the unrewarded ones get the default reward.
    later = datetime.now(UTC) + timedelta(seconds=120)
    examples, last_pk = store.training_examples("acme", "intent", now=later)
    assert [(e.decision.id, e.reward, e.defaulted) for e in examples] == [
        ("d0", 0.75, False),
        ("d1", 1.0, False),
        ("d2", -0.5, True),
        ("d3", -0.5, True),
    ]
    # The next task starts after the last included decision.
    assert store.training_examples("acme", "intent", after_pk=last_pk, now=later)[0] == []
    store.update_app("acme", reward_aggregation="last")
    assert store.training_examples("acme", "intent", now=later)[0][0].reward == 0.5
    store.update_app("acme", reward_aggregation="earliest")
    assert store.training_examples("acme", "intent", now=later)[0][0].reward == 0.25


def test_a_session_reward_scores_every_decision_of_the_session(store: Store) -> None:
    store.ensure_app("acme")
    store.insert_records(
        "decisions",
        "acme",
        [_decision(1, session_id="run-1"), _decision(2, session_id="run-1"), _decision(3)],
    )
    row = {"id": "rs", "session_id": "run-1", "value": 0.5, "source": "user"}
    store.insert_records("rewards", "acme", [{**row, "content_hash": content_hash(row)}])
    store.insert_records("rewards", "acme", [_reward(9, "d1", 0.25)])
    later = datetime.now(UTC) + timedelta(days=2)
    examples, _ = store.training_examples("acme", "intent", now=later)
    assert [(e.decision.id, e.reward, e.reward_count) for e in examples] == [
        ("d1", 0.75, 2),
        ("d2", 0.5, 1),
        ("d3", 0.0, 0),
    ]


def test_a_correction_labels_only_decisions_that_offered_its_action(store: Store) -> None:
    # One session, two decision points: the session's correction names an intent, which the
    # tool decision never offered. A label naming a missing action used to fail every task.
    store.ensure_app("acme")
    tool = {"actions": [{"id": "search"}, {"id": "ask"}], "action_id": "search"}
    store.insert_records(
        "decisions",
        "acme",
        [_decision(1, session_id="run-1"), _decision(2, "tool", session_id="run-1", **tool)],
    )
    row = {"id": "rs", "session_id": "run-1", "value": 0.0, "correct_action_id": "b"}
    store.insert_records("rewards", "acme", [{**row, "content_hash": content_hash(row)}])
    later = datetime.now(UTC) + timedelta(days=2)
    (intent,) = store.training_examples("acme", "intent", now=later)[0]
    (chosen_tool,) = store.training_examples("acme", "tool", now=later)[0]
    assert (intent.reward, intent.correct_action_id) == (0.0, "b")
    assert (chosen_tool.reward, chosen_tool.correct_action_id) == (0.0, None)
    assert store.decision_action_ids("acme", ["d1", "d2", "nope"]) == {
        "d1": {"a", "b"},
        "d2": {"search", "ask"},
    }


def test_erasing_a_user_takes_their_sessions_on_both_databases(store: Store) -> None:
    store.ensure_app("acme")
    events = [
        _event(1, user_id="u9", session_id="mine"),
        _event(2, session_id="mine"),  # anonymous follow-up: part of u9's conversation
        _event(3, user_id="u9", session_id="shared"),
        _event(4, user_id="u10", session_id="shared"),
        _event(5, session_id="shared"),
    ]
    store.insert_records("events", "acme", events)
    store.insert_records("decisions", "acme", [_decision(1, session_id="mine")])
    store.insert_records("rewards", "acme", [_reward(1, "d1", 1.0)])
    removed = store.delete_user("acme", "u9")
    assert removed["events"] == 3 and removed["decisions"] == 1 and removed["rewards"] == 1
    assert (removed["sessions"], removed["shared_sessions_kept"]) == (1, 1)
    left = store.list_records("events", "acme").items
    assert sorted(e.id for e in left) == ["e4", "e5"]


def test_app_settings_are_validated(store: Store) -> None:
    store.ensure_app("acme")
    with pytest.raises(ValueError, match="reward_aggregation"):
        store.update_app("acme", reward_aggregation="median")
    with pytest.raises(ValueError, match="unknown"):
        store.update_app("acme", colour="blue")
    with pytest.raises(ValueError, match="below"):
        store.update_app("acme", reward_min=2.0, reward_max=1.0)
    assert store.get_app("acme").reward_max == 1.0  # the failed change was rolled back


def test_policy_versions_are_numbered_immutable_and_live_switches(store: Store) -> None:
    store.ensure_app("acme")
    policy = store.create_policy(
        Policy(id=new_id(), app_id="acme", name="intents", decision_point="intent")
    )
    with pytest.raises(Conflict):
        store.create_policy(Policy(id=new_id(), app_id="acme", name="intents", decision_point="x"))
    v1 = store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=b"one"), make_live=True
    )
    v2 = store.add_policy_version(
        PolicyVersion(id=new_id(), policy_id=policy.id, artifact=b"two", parent_version=1),
        make_live=False,
    )
    assert (v1.version, v2.version) == (1, 2)
    assert v2.artifact_sha256 and v2.artifact_sha256 != v1.artifact_sha256
    assert store.get_policy("acme", "intents").live_version == 1
    before, after = store.set_live_version("acme", "intents", 2)
    assert before == 1 and after.live_version == 2
    with pytest.raises(NotFound):
        store.set_live_version("acme", "intents", 7)
    versions = store.list_policy_versions("acme", "intents").items
    assert [(v.version, v.parent_version) for v in versions] == [(1, None), (2, 1)]
    # A listing carries each artifact's size, not its bytes (megabytes per learned version).
    assert [v.artifact_bytes for v in versions] == [3, 3]
    with pytest.raises(DetachedInstanceError):
        _ = versions[0].artifact
    assert store.get_policy_version("acme", "intents", 1).artifact == b"one"
    light = store.get_policy_version("acme", "intents", 2, with_artifact=False)
    assert light.version == 2 and light.artifact_bytes == 3
    with pytest.raises(DetachedInstanceError):
        _ = light.artifact
    with pytest.raises(NotFound):
        store.get_policy_version("acme", "intents", 3, with_artifact=False)
    with pytest.raises(NotFound):
        store.get_policy("globex", "intents")


def test_upgrading_an_older_database_records_each_artifacts_size(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from agent_lightning.store.engine import MIGRATIONS_DIR, create_store_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_store_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:  # the schema as the release before 0005 left it
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO apps (id, name, created_at, reward_wait_seconds, default_reward,"
                " reward_aggregation, reward_min, reward_max, settings)"
                " VALUES ('acme', '', :t, 60, 0, 'last', 0, 1, '{}')"
            ),
            {"t": datetime.now(UTC)},
        )
        connection.execute(
            text(
                "INSERT INTO policies (id, app_id, name, decision_point, description, spec,"
                " created_by, created_at, updated_at) VALUES ('p1', 'acme', 'intents', 'intent',"
                " '', '{}', '', :t, :t)"
            ),
            {"t": datetime.now(UTC)},
        )
        for n, blob in ((1, b"x" * 1234), (2, None)):
            connection.execute(
                text(
                    "INSERT INTO policy_versions (id, app_id, policy_id, version, artifact,"
                    " data_range, metrics, notes, created_by, created_at)"
                    " VALUES (:id, 'acme', 'p1', :n, :a, '{}', '{}', '', '', :t)"
                ),
                {"id": f"v{n}", "n": n, "a": blob, "t": datetime.now(UTC)},
            )
    engine.dispose()
    store = Store(url)  # upgrades to the newest schema
    listed = store.list_policy_versions("acme", "intents").items
    sizes = [(v.version, v.artifact_bytes) for v in listed]
    assert sizes == [(1, 1234), (2, 0)]
    assert store.get_policy_version("acme", "intents", 1).artifact_pruned_at is None
    store.close()


def test_erasure_removes_a_user_everywhere(store: Store) -> None:
    store.ensure_app("acme")
    store.insert_records("events", "acme", [_event(1, user_id="u1"), _event(2, user_id="u2")])
    store.insert_records(
        "decisions", "acme", [_decision(1, user_id="u1"), _decision(2, user_id="u2")]
    )
    store.insert_records("rewards", "acme", [_reward(1, "d1", 1.0), _reward(2, "d2", 1.0)])
    removed = store.delete_user("acme", "u1")
    assert {k: removed[k] for k in ("events", "decisions", "rewards")} == {
        "events": 1,
        "decisions": 1,
        "rewards": 1,
    }
    assert store.count_records("events", "acme") == 1
    assert store.count_records("rewards", "acme") == 1
    assert store.list_records("decisions", "acme").items[0].user_id == "u2"


def test_reopening_an_existing_database_keeps_data(database_url: str) -> None:
    first = Store(database_url)
    first.ensure_app("acme")
    first.insert_records("events", "acme", [_event(1)])
    first.close()
    second = Store(database_url)  # migrations run again: a no-op
    assert second.count_records("events", "acme") == 1
    second.close()


def test_sqlite_runs_in_wal_with_foreign_keys(sqlite_url: str) -> None:
    s = Store(sqlite_url)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    s.ensure_app("acme")
    with pytest.raises(Exception, match="FOREIGN KEY"):
        s.insert_records("rewards", "acme", [_reward(1, "no-such-decision", 1.0)])
    s.close()


def test_compact_gives_deleted_rows_space_back(store: Store) -> None:
    store.ensure_app("acme")
    for start in range(0, 1500, 500):  # about 6 MB of message text
        store.insert_records(
            "events",
            "acme",
            [_event(i, text=f"{i} " + "x" * 4000) for i in range(start, start + 500)],
        )
    removed = store.delete_older_than("acme", "events", datetime.now(UTC) + timedelta(days=1))
    assert removed == {"events": 1500}
    report = store.compact()
    assert report.dialect == store.dialect
    assert report.before_bytes is not None and report.after_bytes is not None
    if store.dialect == "sqlite":
        # The deleted rows' pages stayed in the file (and its WAL) until VACUUM rewrote it.
        assert report.before_bytes > 5_000_000
        assert report.after_bytes < report.before_bytes / 4
    else:
        # PostgreSQL keeps the space for new rows: the tables are vacuumed, their size known.
        assert report.after_bytes > 0
    # Still a working store afterwards.
    assert store.insert_records("events", "acme", [_event(9999)])[0].status == "created"
