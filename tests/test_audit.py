"""The audit chain detects an edited, deleted or reordered entry, and says which."""

from __future__ import annotations

import json
import threading

from sqlalchemy import text
from typer.testing import CliRunner

from agent_lightning.cli import app as cli
from agent_lightning.security.audit import Actor, AuditLog
from agent_lightning.store import Store


def _fill(store: Store, n: int = 5) -> AuditLog:
    audit = AuditLog(store)
    for i in range(n):
        audit.record(
            Actor("alice", "client", "acme", "10.0.0.1"),
            "policy.set_live",
            "policy",
            f"p{i}",
            before={"live_version": i},
            after={"live_version": i + 1},
        )
    return audit


def test_untouched_chain_verifies(store: Store) -> None:
    result = _fill(store).verify()
    assert result.ok and result.checked == 5 and result.broken_seq is None


def test_edit_made_directly_in_the_database_is_named(store: Store) -> None:
    audit = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    result = audit.verify()
    assert not result.ok and result.broken_seq == 3
    assert "modified" in result.message


def test_deleted_entry_is_named(store: Store) -> None:
    audit = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    result = audit.verify()
    assert not result.ok and "entry 2 is missing" in result.message


def test_deleting_the_tail_and_renumbering_is_caught(store: Store) -> None:
    audit = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
        for seq in (3, 4, 5):
            conn.execute(
                text("UPDATE audit_log SET seq = :new WHERE seq = :old"),
                {"new": seq - 1, "old": seq},
            )
    result = audit.verify()
    assert not result.ok and result.broken_seq == 2


def test_reordered_entries_are_caught(store: Store) -> None:
    audit = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET seq = 100 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 100"))
    result = audit.verify()
    assert not result.ok and result.broken_seq == 2


def test_before_after_edit_is_caught(store: Store) -> None:
    audit = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET after = :after WHERE seq = 4"),
            {"after": json.dumps({"live_version": 99})},
        )
    assert audit.verify().broken_seq == 4


def test_concurrent_appends_keep_one_chain(store: Store) -> None:
    audit = AuditLog(store)

    def writer(name: str) -> None:
        for i in range(10):
            audit.record(Actor(name), "setting.change", "app", str(i))

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = audit.verify()
    assert result.ok and result.checked == 40


def test_cli_audit_verify_and_export(sqlite_url: str, tmp_path) -> None:
    store = Store(sqlite_url)
    _fill(store)
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--database-url", sqlite_url])
    assert ok.exit_code == 0 and "5 entries verified" in ok.output
    out = tmp_path / "audit.jsonl"
    exported = runner.invoke(cli, ["audit", "export", "-o", str(out), "--database-url", sqlite_url])
    assert exported.exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target_id = 'other' WHERE seq = 4"))
    broken = runner.invoke(cli, ["audit", "verify", "--database-url", sqlite_url])
    assert broken.exit_code == 2
    assert "entry 4" in broken.output
    store.close()


def test_a_cut_tail_passes_alone_but_not_against_a_recorded_head(store: Store) -> None:
    audit = _fill(store)
    first = audit.verify()
    assert (first.head_seq, len(first.head_hash or "")) == (5, 64)
    head = (first.head_seq, first.head_hash[:16])
    assert audit.verify(head=head).ok
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))  # hide the last actions
    assert audit.verify().ok  # a shorter chain is still a chain
    cut = audit.verify(head=head)
    assert not cut.ok and cut.broken_seq == 5
    assert "entry 5, recorded as the head, is gone: the log was cut after entry 3" in cut.message
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    assert "the log was emptied" in audit.verify(head=head).message


def test_a_rewritten_head_is_caught(store: Store) -> None:
    audit = _fill(store)
    head = audit.verify()
    # Rebuild entry 5 with other content and a hash that fits the chain (no key prevents it).
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    audit.record(Actor("mallory"), "policy.set_live", "policy", "p4", after={"live_version": 1})
    assert audit.verify().ok
    rewritten = audit.verify(head=(5, head.head_hash or ""))
    assert not rewritten.ok and "its hash differs" in rewritten.message


def test_cli_prints_the_head_and_checks_one(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    _fill(store)
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--database-url", sqlite_url])
    head = ok.output.split("head: ", 1)[1].split()[0]
    assert ok.exit_code == 0 and head.startswith("5:")
    again = runner.invoke(cli, ["audit", "verify", "--head", head, "--database-url", sqlite_url])
    assert again.exit_code == 0, again.output
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    cut = runner.invoke(cli, ["audit", "verify", "--head", head, "--database-url", sqlite_url])
    assert cut.exit_code == 2 and "cut after entry 4" in cut.output
    bad = runner.invoke(cli, ["audit", "verify", "--head", "5:xyz", "--database-url", sqlite_url])
    assert bad.exit_code == 1 and "--head must be SEQ:HASH" in bad.output
    store.close()
