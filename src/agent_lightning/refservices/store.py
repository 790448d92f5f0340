"""SQLite storage of the reference service: KB articles, tickets, CRM customers.

One connection guarded by a lock: the service is a test and demo fixture, not a database
server, and serialising writes keeps it correct under uvicorn's thread pool.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from agent_lightning.refservices.search import TfidfIndex, bm25_search, fts5_available

SearchBackend = Literal["auto", "fts5", "tfidf"]
TICKET_STATUSES = ("open", "pending", "resolved", "closed")
OPEN_STATUSES = ("open", "pending")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, tags TEXT NOT NULL,
    category TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, body TEXT, user_id TEXT,
    priority TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, idempotency_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS tickets_user ON tickets (user_id);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT, plan TEXT NOT NULL
);
"""


class Conflict(Exception):
    """The thing being created exists already."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64] or "article"


def _seed(name: str) -> list[dict[str, Any]]:
    return json.loads(
        resources.files("agent_lightning.refservices").joinpath("data", name).read_text()
    )


class RefStore:
    """The reference service's data. Seeds the KB and CRM the first time a database is opened."""

    def __init__(self, db_path: str | Path, *, search: SearchBackend = "auto", seed: bool = True):
        if str(db_path) != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._tfidf: TfidfIndex | None = None
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            has_fts = fts5_available(self._conn)
            if search == "fts5" and not has_fts:
                raise RuntimeError("this SQLite build has no FTS5; use search='tfidf' or 'auto'")
            self.search_backend: str = "fts5" if has_fts and search != "tfidf" else "tfidf"
            if self.search_backend == "fts5":
                self._conn.execute(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING "
                    "fts5(id UNINDEXED, title, tags, body, tokenize='porter unicode61')"
                )
                self._reindex_fts()
            if seed and self._meta("seeded") is None:
                self._seed()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- helpers -----------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _seed(self) -> None:
        with self._lock, self._tx():
            for article in _seed("kb_articles.json"):
                if self._get_article(article["id"]) is None:
                    self._insert_article(article)
            for c in _seed("crm_customers.json"):
                self._conn.execute(
                    "INSERT OR IGNORE INTO customers (id, name, email, plan) VALUES (?, ?, ?, ?)",
                    (c["id"], c["name"], c.get("email"), c["plan"]),
                )
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('seeded', ?)", (_now(),))
            # Ticket numbers start at 1001, like a real desk's, so they never look like indexes.
            self._conn.execute(
                "INSERT OR IGNORE INTO sqlite_sequence (name, seq) SELECT 'tickets', "
                "1000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence "
                "WHERE name = 'tickets')"
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn)

    def _reindex_fts(self) -> None:
        with self._tx():
            self._conn.execute("DELETE FROM kb_fts")
            self._conn.execute(
                "INSERT INTO kb_fts (id, title, tags, body) SELECT id, title, "
                "replace(replace(replace(tags, '[', ''), ']', ''), '\"', ''), body FROM articles"
            )

    @staticmethod
    def _article(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "title": row["title"],
            "body": row["body"],
            "tags": json.loads(row["tags"]),
            "category": row["category"],
            "created_at": row["created_at"],
        }

    def _get_article(self, article_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM articles WHERE id = ?", (article_id,)).fetchone()
        return None if row is None else self._article(row)

    def _insert_article(self, a: dict[str, Any]) -> None:
        tags = [str(t) for t in a.get("tags") or []]
        self._conn.execute(
            "INSERT INTO articles (id, title, body, tags, category, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (a["id"], a["title"], a["body"], json.dumps(tags), a.get("category"), _now()),
        )
        if self.search_backend == "fts5":
            self._conn.execute(
                "INSERT INTO kb_fts (id, title, tags, body) VALUES (?, ?, ?, ?)",
                (a["id"], a["title"], " ".join(tags), a["body"]),
            )
        self._tfidf = None

    # -- knowledge base ----------------------------------------------------------------------

    def get_article(self, article_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get_article(article_id)

    def add_article(self, article: dict[str, Any]) -> dict[str, Any]:
        """Insert an article; its id defaults to a slug of the title. ``Conflict`` if taken."""
        with self._lock:
            article = dict(article)
            if not article.get("id"):
                base = slugify(article["title"])
                article["id"], n = base, 2
                while self._get_article(article["id"]) is not None:
                    article["id"], n = f"{base}-{n}", n + 1
            elif self._get_article(article["id"]) is not None:
                raise Conflict(f"article {article['id']!r} already exists")
            with self._tx():
                self._insert_article(article)
            return self._get_article(article["id"]) or {}

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        with self._lock:
            if self.search_backend == "fts5":
                hits = bm25_search(self._conn, query, limit)
            else:
                if self._tfidf is None:
                    rows = self._conn.execute("SELECT id, title, tags, body FROM articles")
                    self._tfidf = TfidfIndex(
                        (r["id"], r["title"], " ".join(json.loads(r["tags"])), r["body"])
                        for r in rows
                    )
                hits = self._tfidf.search(query, limit)
            results = []
            for article_id, score in hits:
                article = self._get_article(article_id)
                if article is not None:
                    results.append(
                        {
                            "id": article["id"],
                            "title": article["title"],
                            "body": article["body"],
                            "score": round(score, 4),
                        }
                    )
            return results

    def export(self) -> dict[str, Any]:
        """Every article plus a content hash (``version``), for the runtime's offline snapshot."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM articles ORDER BY id").fetchall()
        articles = [self._article(r) for r in rows]
        canonical = json.dumps(
            [{k: a[k] for k in ("id", "title", "body", "tags", "category")} for a in articles],
            sort_keys=True,
        )
        version = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        return {"version": version, "count": len(articles), "articles": articles}

    # -- tickets -----------------------------------------------------------------------------

    @staticmethod
    def _ticket(row: sqlite3.Row) -> dict[str, Any]:
        return {k: row[k] for k in row.keys() if k != "idempotency_key"}

    def create_ticket(
        self,
        subject: str,
        body: str | None = None,
        user_id: str | None = None,
        priority: str = "normal",
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """(ticket, created); a repeated ``idempotency_key`` returns the first ticket again."""
        with self._lock:
            if idempotency_key:
                row = self._conn.execute(
                    "SELECT * FROM tickets WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return self._ticket(row), False
            now = _now()
            cursor = self._conn.execute(
                "INSERT INTO tickets (subject, body, user_id, priority, status, created_at, "
                "updated_at, idempotency_key) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
                (subject, body, user_id, priority, now, now, idempotency_key or None),
            )
            return self.get_ticket(int(cursor.lastrowid or 0)) or {}, True

    def get_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        if not -(2**63) <= ticket_id < 2**63:
            return None  # no such ticket (SQLite cannot even bind the number: it was a 500)
        with self._lock:
            row = self._conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return None if row is None else self._ticket(row)

    def update_ticket(self, ticket_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if self.get_ticket(ticket_id) is None:
                return None
            fields = {k: v for k, v in changes.items() if k in ("status", "priority")}
            if fields:
                assignments = ", ".join(f"{k} = ?" for k in fields)
                self._conn.execute(
                    f"UPDATE tickets SET {assignments}, updated_at = ? WHERE id = ?",
                    (*fields.values(), _now(), ticket_id),
                )
            return self.get_ticket(ticket_id)

    def list_tickets(
        self, user_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM tickets WHERE 1 = 1", []
        if user_id is not None:
            sql, args = sql + " AND user_id = ?", [*args, user_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._ticket(r) for r in rows]

    # -- CRM ---------------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM customers WHERE id = ?", (customer_id,)
            ).fetchone()
            if row is None:
                return None
            marks = ", ".join("?" for _ in OPEN_STATUSES)
            count = self._conn.execute(
                f"SELECT count(*) FROM tickets WHERE user_id = ? AND status IN ({marks})",
                (customer_id, *OPEN_STATUSES),
            ).fetchone()[0]
        return {
            "id": row["id"],
            "name": row["name"],
            "email": row["email"],
            "plan": row["plan"],
            "open_tickets": int(count),
        }

    def article_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM articles").fetchone()[0])


class _Transaction:
    """BEGIN ... COMMIT (ROLLBACK on error) on an autocommit connection; nests by doing nothing."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._outer = False

    def __enter__(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
            self._outer = True

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._outer:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
