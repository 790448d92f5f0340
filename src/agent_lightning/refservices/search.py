"""Ranked knowledge-base search: SQLite FTS5 with bm25 when the SQLite build has it, else TF-IDF.

Queries are customer sentences ("I forgot my password"), so both backends drop stop words and
match *any* remaining term (OR), ranking by relevance; titles and tags weigh more than bodies.
A query with no useful term matches nothing, which is how the kb-lookup template knows to ask a
clarifying question or escalate.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence

STOP_WORDS = frozenset(
    """a about after again all am an and any are as at be been before being but by can cannot
    could did do does doing don't for from get got had has have having he her here hers him his
    how i i'm if in into is it its it's just me might more most must my myself no nor not now of
    off on once only or other our ours out over own please same she should so some such than that
    the their them then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours hi hello hey
    thanks thank help need want wanted tell know""".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
FIELD_WEIGHTS = {"title": 4.0, "tags": 3.0, "body": 1.0}


def terms(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stop words (apostrophes kept inside words)."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS and len(t) > 1]


def fts5_available(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._agl_fts_probe USING fts5(x)")
        conn.execute("DROP TABLE temp._agl_fts_probe")
        return True
    except sqlite3.OperationalError:
        return False


def fts5_query(text: str) -> str | None:
    """An FTS5 MATCH expression OR-ing the query's terms, each quoted (no FTS syntax injection)."""
    words = [w.replace("'", "") for w in terms(text)]
    words = list(dict.fromkeys(w for w in words if w))
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in words)


def _stem(word: str) -> str:
    """A crude suffix stripper, enough to match 'printers' with 'printer' in the fallback."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


class TfidfIndex:
    """In-memory TF-IDF over weighted fields; rebuilt whenever the article set changes."""

    def __init__(self, docs: Iterable[tuple[str, str, str, str]]) -> None:
        self._vectors: dict[str, Counter[str]] = {}
        self._norms: dict[str, float] = {}
        df: Counter[str] = Counter()
        for doc_id, title, tags, body in docs:
            counts: Counter[str] = Counter()
            for field, text in (("title", title), ("tags", tags), ("body", body)):
                for word in terms(text):
                    counts[_stem(word.replace("'", ""))] += FIELD_WEIGHTS[field]
            self._vectors[doc_id] = counts
            df.update(counts.keys())
        n = max(1, len(self._vectors))
        self._idf = {t: math.log(1 + n / c) for t, c in df.items()}
        for doc_id, counts in self._vectors.items():
            weights = {t: (1 + math.log(c)) * self._idf[t] for t, c in counts.items()}
            self._vectors[doc_id] = Counter(weights)
            self._norms[doc_id] = math.sqrt(sum(w * w for w in weights.values())) or 1.0

    def search(self, text: str, limit: int) -> list[tuple[str, float]]:
        query = {_stem(w.replace("'", "")) for w in terms(text)}
        query = {q for q in query if q in self._idf}
        if not query:
            return []
        scored = []
        for doc_id, vector in self._vectors.items():
            score = sum(vector.get(q, 0.0) * self._idf[q] for q in query)
            if score > 0:
                scored.append((doc_id, score / self._norms[doc_id]))
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored[:limit]


def bm25_search(conn: sqlite3.Connection, text: str, limit: int) -> list[tuple[str, float]]:
    """(article id, score) best first; score = -bm25, so higher is better."""
    match = fts5_query(text)
    if match is None:
        return []
    w = FIELD_WEIGHTS
    rows: Sequence[tuple[str, float]] = conn.execute(
        f"SELECT id, -bm25(kb_fts, 0.0, {w['title']}, {w['tags']}, {w['body']}) AS score "
        "FROM kb_fts WHERE kb_fts MATCH ? ORDER BY score DESC, id LIMIT ?",
        (match, limit),
    ).fetchall()
    return [(row[0], float(row[1])) for row in rows]
