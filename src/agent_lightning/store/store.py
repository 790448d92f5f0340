"""The Store: every read and write of the platform goes through this one interface.

Callers never see a SQLAlchemy session. Each method is one transaction that has committed before
it returns, which is what lets the API acknowledge a write only once it is durable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, defer, sessionmaker

from agent_lightning.store.engine import PG_LOCK_KEY, create_store_engine, upgrade_schema
from agent_lightning.store.models import (
    ApiKey,
    App,
    Client,
    Decision,
    Event,
    Policy,
    PolicyVersion,
    Reward,
    Task,
)
from agent_lightning.store.pagination import Page, decode_cursor, encode_cursor


class StoreError(Exception):
    """Root of the store's errors."""


class NotFound(StoreError):
    """The record does not exist (or belongs to another app, which we never reveal)."""


class Conflict(StoreError):
    """The write contradicts what is stored (an id reused with other content, a name taken)."""


class LiveMoved(Conflict):
    """A version was to go live over its parent, but another version is live now."""

    def __init__(self, parent: int | None, live: int | None) -> None:
        super().__init__(f"the live version is {live}, no longer the parent {parent}")
        self.parent, self.live = parent, live


def new_id(prefix: str = "") -> str:
    """Time-ordered unique id (UUIDv7 layout) so ids sort by creation, like the rows they name."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return prefix + str(uuid.UUID(int=value))


def content_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """What a listing may be narrowed by; `None` means no constraint."""

    since: datetime | None = None
    until: datetime | None = None
    session_id: str | None = None
    user_id: str | None = None
    decision_point: str | None = None
    decision_id: str | None = None
    policy_name: str | None = None
    policy_version: int | None = None
    status: str | None = None


@dataclass(frozen=True)
class InsertOutcome:
    """Per-record result of an idempotent insert: `created`, `duplicate` or `conflict`."""

    id: str
    status: str


@dataclass(frozen=True)
class TrainingExample:
    """A decision joined with its rewards, aggregated as the app's settings say."""

    decision: Decision
    reward: float
    reward_count: int
    correct_action_id: str | None
    defaulted: bool


@dataclass(frozen=True)
class CompactReport:
    """What `Store.compact` did: the store's size in bytes before and after (None: unknown)."""

    dialect: str
    before_bytes: int | None
    after_bytes: int | None


AGGREGATIONS = ("sum", "earliest", "last")
RECORD_KINDS = {"events": Event, "decisions": Decision, "rewards": Reward}


class Store:
    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = url
        self.engine = create_store_engine(url, pool_size=pool_size)
        if migrate:
            upgrade_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """Hold the lock `name` among every process sharing this database for the block; yields
        False at once (holding nothing) when another holder has it.

        PostgreSQL: a session advisory lock on a connection kept for the block, so no
        transaction stays open however long the block runs; if the process dies, its
        connection closes and the lock goes with it. SQLite has one writing process: yields
        True, and callers guard their own threads.
        """
        if self.dialect != "postgresql":
            yield True
            return
        with self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            taken = connection.execute(
                text(f"SELECT pg_try_advisory_lock({PG_LOCK_KEY})"), {"name": name}
            ).scalar_one()
            try:
                yield bool(taken)
            finally:
                if taken:
                    try:
                        connection.execute(
                            text(f"SELECT pg_advisory_unlock({PG_LOCK_KEY})"), {"name": name}
                        )
                    except Exception:  # noqa: BLE001 - the block's own outcome stands
                        # Never pool a connection that may still hold the lock: closing it
                        # releases the lock (a lost connection already did).
                        connection.invalidate()

    def ping(self) -> None:
        """Raise if the database cannot be reached (used by readiness)."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def compact(self) -> CompactReport:
        """Give the space of deleted rows back (after retention), reporting the store's size.

        SQLite keeps freed pages inside its file: `VACUUM` rewrites the file without them (it
        needs free disk about the size of the database and holds the write lock meanwhile, so
        writers wait; the WAL is checkpointed and truncated first). PostgreSQL's plain `VACUUM`
        of the store's tables makes their dead rows' space reusable without locking writers
        out; the files shrink only by trailing empty pages (`VACUUM FULL` would return the rest
        but locks each table exclusively, so it is left to a maintenance window).
        """
        before = self._size_bytes()
        with self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "sqlite":
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                connection.exec_driver_sql("VACUUM")
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                tables = connection.exec_driver_sql(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = current_schema() ORDER BY tablename"
                ).scalars()
                names = ", ".join(tables)
                if names:
                    connection.exec_driver_sql(f"VACUUM (ANALYZE) {names}")
        return CompactReport(self.dialect, before, self._size_bytes())

    def _size_bytes(self) -> int | None:
        """Bytes the store occupies: SQLite's file and WAL, or PostgreSQL's tables and indexes
        in the store's schema. None for an in-memory database."""
        if self.dialect == "sqlite":
            database = self.engine.url.database or ""
            if not database or database == ":memory:":
                return None
            return sum(
                os.path.getsize(path)
                for path in (database, database + "-wal")
                if os.path.exists(path)
            )
        with self.engine.connect() as connection:
            size = connection.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            ).scalar_one()
        return int(size)

    # -- apps ---------------------------------------------------------------------------------

    def ensure_app(self, app_id: str, name: str = "") -> App:
        with self.session() as s:
            app = s.scalar(select(App).where(App.id == app_id))
            if app is None:
                app = App(id=app_id, name=name or app_id, settings={})
                s.add(app)
            return app

    def get_app(self, app_id: str) -> App:
        with self.session() as s:
            app = s.scalar(select(App).where(App.id == app_id))
            if app is None:
                raise NotFound(f"app {app_id!r} not found")
            return app

    def list_apps(self) -> list[App]:
        with self.session() as s:
            return list(s.scalars(select(App).order_by(App.pk)))

    def update_app(self, app_id: str, **changes: Any) -> tuple[dict[str, Any], App]:
        """Change reward settings; returns (before, after) for the audit log."""
        allowed = {
            "name",
            "reward_wait_seconds",
            "default_reward",
            "reward_aggregation",
            "reward_min",
            "reward_max",
            "settings",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown app settings: {', '.join(sorted(unknown))}")
        if "reward_aggregation" in changes and changes["reward_aggregation"] not in AGGREGATIONS:
            raise ValueError(f"reward_aggregation must be one of {', '.join(AGGREGATIONS)}")
        with self.session() as s:
            app = s.scalar(select(App).where(App.id == app_id))
            if app is None:
                raise NotFound(f"app {app_id!r} not found")
            before = app_settings(app)
            for key, value in changes.items():
                setattr(app, key, value)
            if app.reward_min >= app.reward_max:
                raise ValueError("reward_min must be below reward_max")
            return before, app

    # -- identities ---------------------------------------------------------------------------

    def add_client(self, client: Client) -> Client:
        with self.session() as s:
            s.add(client)
            return client

    def get_client(self, client_id: str) -> Client | None:
        with self.session() as s:
            return s.scalar(select(Client).where(Client.id == client_id))

    def list_clients(self, app_id: str | None = None) -> list[Client]:
        with self.session() as s:
            query = select(Client).order_by(Client.pk)
            if app_id is not None:
                query = query.where(Client.app_id == app_id)
            return list(s.scalars(query))

    def revoke_client(self, app_id: str, client_id: str) -> Client:
        with self.session() as s:
            client = s.scalar(select(Client).where(Client.id == client_id, Client.app_id == app_id))
            if client is None:
                raise NotFound(f"client {client_id!r} not found")
            if client.revoked_at is None:
                client.revoked_at = utcnow()
            return client

    def add_api_key(self, key: ApiKey) -> ApiKey:
        with self.session() as s:
            s.add(key)
            return key

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self.session() as s:
            return s.scalar(select(ApiKey).where(ApiKey.id == key_id))

    def list_api_keys(self, app_id: str) -> list[ApiKey]:
        with self.session() as s:
            return list(s.scalars(select(ApiKey).where(ApiKey.app_id == app_id)))

    def revoke_api_key(self, app_id: str, key_id: str) -> ApiKey:
        with self.session() as s:
            key = s.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.app_id == app_id))
            if key is None:
                raise NotFound(f"API key {key_id!r} not found")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            return key

    def touch_api_key(self, key_id: str) -> None:
        with self.session() as s:
            s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))

    # -- telemetry: idempotent batch inserts ----------------------------------------------------

    def insert_records(
        self,
        kind: str,
        app_id: str,
        rows: Sequence[dict[str, Any]],
        *,
        generated_ids: frozenset[str] | set[str] = frozenset(),
    ) -> list[InsertOutcome]:
        """Insert rows of one kind for one app in one transaction.

        Each row carries `id` and `content_hash`. An id already stored with the same hash is a
        `duplicate` (a retry: not stored twice); with another hash it is a `conflict`. The whole
        batch commits before this returns. Ids in `generated_ids` were just minted by us and cannot
        exist yet, so they skip the lookup (the unique constraint still guards them).
        """
        model = RECORD_KINDS[kind]
        for attempt in range(3):
            try:
                return self._insert_once(model, app_id, rows, generated_ids)
            except IntegrityError:
                # A concurrent writer inserted one of our ids between our check and our insert;
                # the next attempt sees it and reports it as duplicate or conflict.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert_once(
        self,
        model: Any,
        app_id: str,
        rows: Sequence[dict[str, Any]],
        generated_ids: frozenset[str] | set[str],
    ) -> list[InsertOutcome]:
        ids = [row["id"] for row in rows if row["id"] not in generated_ids]
        outcomes: list[InsertOutcome] = []
        with self.session() as s:
            if model is not Event:
                self._lock_records(s, app_id, shared=True)  # see `_settled_ceiling`
            existing: dict[str, str] = {}
            for chunk in _chunks(ids, 500):
                existing.update(
                    s.execute(
                        select(model.id, model.content_hash).where(
                            model.app_id == app_id, model.id.in_(chunk)
                        )
                    ).all()
                )
            fresh = []
            for row in rows:
                known = existing.get(row["id"])
                if known is None:
                    existing[row["id"]] = row["content_hash"]
                    fresh.append({**row, "app_id": app_id})
                    outcomes.append(InsertOutcome(row["id"], "created"))
                elif known == row["content_hash"]:
                    outcomes.append(InsertOutcome(row["id"], "duplicate"))
                else:
                    outcomes.append(InsertOutcome(row["id"], "conflict"))
            if fresh:
                # executemany needs one shape; keep batch order (it is the pk order readers see).
                s.execute(model.__table__.insert(), _same_shape(model, fresh))
        return outcomes

    def existing_decision_ids(self, app_id: str, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        with self.session() as s:
            for chunk in _chunks(list(set(ids)), 500):
                found.update(
                    s.scalars(
                        select(Decision.id).where(Decision.app_id == app_id, Decision.id.in_(chunk))
                    )
                )
        return found

    def decision_action_ids(self, app_id: str, ids: Iterable[str]) -> dict[str, set[str]]:
        """Decision id -> the ids of the actions it offered, for those of `ids` in this app."""
        offered: dict[str, set[str]] = {}
        with self.session() as s:
            for chunk in _chunks(list(set(ids)), 500):
                rows = s.execute(
                    select(Decision.id, Decision.actions).where(
                        Decision.app_id == app_id, Decision.id.in_(chunk)
                    )
                )
                for decision_id, actions in rows:
                    offered[decision_id] = {a.get("id") for a in actions or ()}
        return offered

    def get_record(self, kind: str, app_id: str, record_id: str) -> Any:
        model = RECORD_KINDS[kind]
        with self.session() as s:
            record = s.scalar(select(model).where(model.app_id == app_id, model.id == record_id))
            if record is None:
                raise NotFound(f"{kind[:-1]} {record_id!r} not found")
            return record

    def list_records(
        self,
        kind: str,
        app_id: str,
        filters: Filters = Filters(),
        *,
        cursor: str | None = None,
        limit: int = 100,
        order: str = "asc",
    ) -> Page[Any]:
        model = RECORD_KINDS[kind]
        query = select(model).where(model.app_id == app_id)
        query = _apply_filters(query, model, filters)
        return self._page(query, model, cursor, limit, order)

    def count_records(self, kind: str, app_id: str, filters: Filters = Filters()) -> int:
        model = RECORD_KINDS[kind]
        query = select(func.count()).select_from(model).where(model.app_id == app_id)
        query = _apply_filters(query, model, filters)
        with self.session() as s:
            return int(s.scalar(query) or 0)

    def _page(self, query: Select, model: Any, cursor: str | None, limit: int, order: str) -> Page:
        if order not in ("asc", "desc"):
            raise ValueError("order must be 'asc' or 'desc'")
        if cursor:
            pk = decode_cursor(cursor, order)
            query = query.where(model.pk > pk if order == "asc" else model.pk < pk)
        query = query.order_by(model.pk.asc() if order == "asc" else model.pk.desc())
        with self.session() as s:
            items = list(s.scalars(query.limit(limit + 1)))
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(items[-1].pk, order)
        return Page(items=items, next_cursor=next_cursor)

    # -- the reward join ------------------------------------------------------------------------

    def training_examples(
        self,
        app_id: str,
        decision_point: str,
        *,
        after_pk: int = 0,
        now: datetime | None = None,
        limit: int | None = None,
        newest: int | None = None,
        upto_pk: int | None = None,
    ) -> tuple[list[TrainingExample], int]:
        """Decisions after `after_pk` whose reward is settled, joined with their rewards.

        A decision is settled once it has a reward or its wait window has passed; an unrewarded
        decision past the window gets the app's default reward. Returns the examples and the pk of
        the last decision included (so the next task starts after it); a decision still inside its
        window stops the scan, keeping the data range contiguous.

        On PostgreSQL, pks are numbered at insert but rows show at commit, so a decision may
        commit after a higher-numbered one was read, and the next task (which starts after the
        last pk) would never learn it. The scan therefore stops at a ceiling below which every
        insert has committed (see `_settled_ceiling`): nothing is skipped, whatever the clocks
        or the length of other transactions. SQLite has one writer, so pk order is commit order.

        With `newest=N`, returns instead the N most recent settled decisions up to `upto_pk`
        (the evaluation window of the off-policy gate); unsettled ones are skipped.
        """
        now = now or utcnow()
        app = self.get_app(app_id)
        window = timedelta(seconds=app.reward_wait_seconds)
        if not newest and self.dialect == "postgresql":
            ceiling = self._settled_ceiling(app_id)
            upto_pk = ceiling if upto_pk is None else min(upto_pk, ceiling)
        with self.session() as s:
            query = select(Decision).where(
                Decision.app_id == app_id,
                Decision.decision_point == decision_point,
                Decision.pk > after_pk,
            )
            if upto_pk is not None:
                query = query.where(Decision.pk <= upto_pk)
            if newest:
                query = query.order_by(Decision.pk.desc()).limit(newest)
                decisions = list(reversed(list(s.scalars(query))))
            else:
                query = query.order_by(Decision.pk)
                if limit:
                    query = query.limit(limit)
                decisions = list(s.scalars(query))
            rewards: dict[str, list[Reward]] = {}
            for chunk in _chunks([d.id for d in decisions], 500):
                for reward in s.scalars(
                    select(Reward)
                    .where(Reward.app_id == app_id, Reward.decision_id.in_(chunk))
                    .order_by(Reward.pk)
                ):
                    rewards.setdefault(reward.decision_id or "", []).append(reward)
            # A reward for a whole session (a multi-step agent run) scores every decision in it.
            by_session: dict[str, list[Reward]] = {}
            sessions = sorted({d.session_id for d in decisions if d.session_id})
            for chunk in _chunks(sessions, 500):
                for reward in s.scalars(
                    select(Reward)
                    .where(
                        Reward.app_id == app_id,
                        Reward.decision_id.is_(None),
                        Reward.session_id.in_(chunk),
                    )
                    .order_by(Reward.pk)
                ):
                    by_session.setdefault(reward.session_id or "", []).append(reward)
        examples: list[TrainingExample] = []
        last_pk = after_pk
        for decision in decisions:
            got = rewards.get(decision.id, [])
            if decision.session_id and decision.session_id in by_session:
                got = sorted(got + by_session[decision.session_id], key=lambda r: r.pk)
            if not got and as_utc(decision.created_at) + window > now:
                if newest:
                    continue
                break
            deadline = as_utc(decision.created_at) + window
            # Rewards that arrive after the window are kept in the store but not trained on.
            got = [r for r in got if as_utc(r.created_at) <= deadline]
            if got:
                values = [r.value for r in got]
                if app.reward_aggregation == "earliest":
                    value = values[0]
                elif app.reward_aggregation == "last":
                    value = values[-1]
                else:
                    value = float(sum(values))
                # A correction only labels a decision that offered the action it names (a
                # session's correction may be meant for another of its decision points).
                offered = {a.get("id") for a in decision.actions or ()}
                correct = next(
                    (r.correct_action_id for r in got if r.correct_action_id in offered), None
                )
                examples.append(TrainingExample(decision, value, len(got), correct, False))
            else:
                examples.append(TrainingExample(decision, app.default_reward, 0, None, True))
            last_pk = decision.pk
        return examples, last_pk

    def _lock_records(self, s: Session, app_id: str, *, shared: bool) -> None:
        """PostgreSQL: the app's decision and reward inserts take this lock shared, for their
        whole transaction; `_settled_ceiling` takes it exclusively, which waits for them."""
        if self.dialect == "postgresql":
            mode = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
            s.execute(text(f"SELECT {mode}({PG_LOCK_KEY})"), {"name": f"agl.records {app_id}"})

    def _settled_ceiling(self, app_id: str) -> int:
        """The highest decision pk of the app below which every insert has committed (or never
        will): every decision insert takes its pk while holding the app's records lock shared,
        so once this takes it exclusively, no transaction numbered below the newest visible pk
        is still open; one that starts later numbers its rows above it. Rewards are inserted
        under the same lock, so every reward stamped before the scan's `now` is visible too.
        The exclusive lock waits at most 10 s for open inserts (new ones wait behind it, for
        as long as it takes to read one number)."""
        try:
            with self.session() as s:
                s.execute(text("SET LOCAL lock_timeout = '10s'"))
                self._lock_records(s, app_id, shared=False)
                return int(
                    s.scalar(select(func.max(Decision.pk)).where(Decision.app_id == app_id)) or 0
                )
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            raise StoreError(
                f"decisions of app {app_id!r} were still being stored after 10 s; try again"
            ) from None

    def first_decision_after(
        self, app_id: str, decision_point: str, after_pk: int
    ) -> Decision | None:
        """The oldest decision of a decision point after `after_pk` (the one a join waits on)."""
        with self.session() as s:
            return s.scalar(
                select(Decision)
                .where(
                    Decision.app_id == app_id,
                    Decision.decision_point == decision_point,
                    Decision.pk > after_pk,
                )
                .order_by(Decision.pk)
                .limit(1)
            )

    def count_decisions_after(self, app_id: str, decision_point: str, after_pk: int) -> int:
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Decision)
                    .where(
                        Decision.app_id == app_id,
                        Decision.decision_point == decision_point,
                        Decision.pk > after_pk,
                    )
                )
                or 0
            )

    # -- policies -------------------------------------------------------------------------------

    def create_policy(self, policy: Policy) -> Policy:
        with self.session() as s:
            taken = s.scalar(
                select(Policy.id).where(Policy.app_id == policy.app_id, Policy.name == policy.name)
            )
            if taken:
                raise Conflict(f"a policy named {policy.name!r} already exists")
            s.add(policy)
            return policy

    def get_policy(self, app_id: str, name: str) -> Policy:
        with self.session() as s:
            policy = s.scalar(select(Policy).where(Policy.app_id == app_id, Policy.name == name))
            if policy is None:
                raise NotFound(f"policy {name!r} not found")
            return policy

    def policy_for_decision_point(self, app_id: str, decision_point: str) -> Policy | None:
        """The policy serving a decision point (the oldest, if several name the same point)."""
        with self.session() as s:
            return s.scalar(
                select(Policy)
                .where(Policy.app_id == app_id, Policy.decision_point == decision_point)
                .order_by(Policy.pk)
                .limit(1)
            )

    def list_policies(
        self, app_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Policy]:
        return self._page(
            select(Policy).where(Policy.app_id == app_id), Policy, cursor, limit, "asc"
        )

    def add_policy_version(
        self, version: PolicyVersion, *, make_live: bool, over_parent: bool = False
    ) -> PolicyVersion:
        """Append an immutable version (numbered here, under the policy's row lock).

        With `over_parent`, going live is a compare-and-set: a version trained and gated against
        its parent goes live only while the parent is still live; if another version went live
        meanwhile (another server's task, an operator), `LiveMoved` is raised and nothing is
        written, so the caller can add it without making it live.
        """
        with self.session() as s:
            policy = s.scalar(
                select(Policy).where(Policy.id == version.policy_id).with_for_update()
            )
            if policy is None:
                raise NotFound("policy not found")
            if make_live and over_parent and policy.live_version != version.parent_version:
                raise LiveMoved(version.parent_version, policy.live_version)
            latest = s.scalar(
                select(func.max(PolicyVersion.version)).where(PolicyVersion.policy_id == policy.id)
            )
            version.version = (latest or 0) + 1
            version.app_id = policy.app_id
            if version.artifact is not None:
                version.artifact_sha256 = hashlib.sha256(version.artifact).hexdigest()
            version.artifact_bytes = len(version.artifact or b"")
            s.add(version)
            if make_live:
                policy.live_version = version.version
                policy.updated_at = utcnow()
            return version

    def set_live_version(
        self, app_id: str, name: str, version: int | None
    ) -> tuple[int | None, Policy]:
        with self.session() as s:
            policy = s.scalar(
                select(Policy).where(Policy.app_id == app_id, Policy.name == name).with_for_update()
            )
            if policy is None:
                raise NotFound(f"policy {name!r} not found")
            if version is not None and not s.scalar(
                select(PolicyVersion.pk).where(
                    PolicyVersion.policy_id == policy.id, PolicyVersion.version == version
                )
            ):
                raise NotFound(f"policy {name!r} has no version {version}")
            if version is not None:
                pruned = s.scalar(
                    select(PolicyVersion.artifact_pruned_at).where(
                        PolicyVersion.policy_id == policy.id, PolicyVersion.version == version
                    )
                )
                if pruned is not None:
                    raise Conflict(artifact_pruned_message(name, version, pruned))
            before = policy.live_version
            policy.live_version = version
            policy.updated_at = utcnow()
            return before, policy

    def get_policy_version(
        self, app_id: str, name: str, version: int, *, with_artifact: bool = True
    ) -> PolicyVersion:
        """One version; `with_artifact=False` leaves its bytes in the database (touching
        `.artifact` then raises), for callers that only need to know it exists."""
        query = (
            select(PolicyVersion)
            .join(Policy, Policy.id == PolicyVersion.policy_id)
            .where(Policy.app_id == app_id, Policy.name == name, PolicyVersion.version == version)
        )
        if not with_artifact:
            query = query.options(defer(PolicyVersion.artifact, raiseload=True))
        with self.session() as s:
            row = s.scalar(query)
            if row is None:
                raise NotFound(f"policy {name!r} has no version {version}")
            return row

    def list_policy_versions(
        self, app_id: str, name: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[PolicyVersion]:
        """Versions without their artifact bytes (`get_policy_version` has them): a listing
        should not read megabytes per version. Touching `.artifact` on these rows raises."""
        policy = self.get_policy(app_id, name)
        query = (
            select(PolicyVersion)
            .where(PolicyVersion.policy_id == policy.id)
            .options(defer(PolicyVersion.artifact, raiseload=True))
        )
        return self._page(query, PolicyVersion, cursor, limit, "asc")

    def prune_policy_artifacts(
        self,
        app_id: str,
        cutoff: datetime,
        *,
        keep_newest: int,
        pinned: Callable[[Session, str], Collection[int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Retention for learned artifacts: drop the bytes of versions created before `cutoff`.

        Never dropped: each policy's newest `keep_newest` versions, its live version and that
        version's parent (where a rollback goes first), and the versions `pinned(session,
        policy_id)` returns (a running rollout's baseline and candidate: components that hold
        versions say which, read under the same lock). The version row stays, with its
        lineage, metrics and SHA-256; `artifact_pruned_at` says when its bytes went. Each policy
        is pruned under its row lock, the lock `set_live_version` takes, so a version cannot
        become live while its bytes are being removed. Returns one entry per pruned version.
        """
        now = utcnow()
        out: list[dict[str, Any]] = []
        with self.session() as s:
            policy_ids = list(s.scalars(select(Policy.id).where(Policy.app_id == app_id)))
        for policy_id in policy_ids:
            with self.session() as s:
                policy = s.scalar(select(Policy).where(Policy.id == policy_id).with_for_update())
                if policy is None:  # deleted meanwhile
                    continue
                numbers = s.scalars(
                    select(PolicyVersion.version)
                    .where(PolicyVersion.policy_id == policy_id)
                    .order_by(PolicyVersion.version.desc())
                    .limit(max(int(keep_newest), 0))
                )
                keep = set(numbers)
                if pinned is not None:
                    keep.update(int(v) for v in pinned(s, policy_id))
                if policy.live_version is not None:
                    keep.add(policy.live_version)
                    parent = s.scalar(
                        select(PolicyVersion.parent_version).where(
                            PolicyVersion.policy_id == policy_id,
                            PolicyVersion.version == policy.live_version,
                        )
                    )
                    if parent is not None:
                        keep.add(parent)
                doomed = s.execute(
                    select(PolicyVersion.pk, PolicyVersion.version, PolicyVersion.artifact_bytes)
                    .where(
                        PolicyVersion.policy_id == policy_id,
                        PolicyVersion.artifact.is_not(None),
                        PolicyVersion.created_at < cutoff,
                        PolicyVersion.version.not_in(keep),
                    )
                    .order_by(PolicyVersion.version)
                ).all()
                if not doomed:
                    continue
                s.execute(
                    update(PolicyVersion)
                    .where(PolicyVersion.pk.in_([row[0] for row in doomed]))
                    .values(artifact=None, artifact_bytes=0, artifact_pruned_at=now)
                )
                out.extend(
                    {"policy": policy.name, "version": int(v), "bytes": int(n or 0)}
                    for _, v, n in doomed
                )
        return out

    def restore_policy_artifact(self, version_id: str, artifact: bytes) -> PolicyVersion:
        """Put back the bytes retention removed; they must hash to the version's SHA-256."""
        digest = hashlib.sha256(artifact).hexdigest()
        with self.session() as s:
            row = s.scalar(select(PolicyVersion).where(PolicyVersion.id == version_id))
            if row is None:
                raise NotFound("policy version not found")
            if row.artifact_sha256 != digest:
                raise Conflict("the artifact does not match the version's SHA-256")
            row.artifact, row.artifact_pruned_at = artifact, None
            row.artifact_bytes = len(artifact)
            return row

    # -- tasks ----------------------------------------------------------------------------------

    def create_task(self, task: Task) -> Task:
        with self.session() as s:
            s.add(task)
            return task

    def get_task(self, app_id: str, task_id: str) -> Task:
        with self.session() as s:
            task = s.scalar(select(Task).where(Task.app_id == app_id, Task.id == task_id))
            if task is None:
                raise NotFound(f"task {task_id!r} not found")
            return task

    def update_task(self, task_id: str, **changes: Any) -> Task:
        with self.session() as s:
            task = s.scalar(select(Task).where(Task.id == task_id))
            if task is None:
                raise NotFound(f"task {task_id!r} not found")
            for key, value in changes.items():
                setattr(task, key, value)
            return task

    def list_tasks(
        self,
        app_id: str,
        filters: Filters = Filters(),
        *,
        cursor: str | None = None,
        limit: int = 100,
        order: str = "desc",
    ) -> Page[Task]:
        query = select(Task).where(Task.app_id == app_id)
        if filters.status:
            query = query.where(Task.status == filters.status)
        if filters.since:
            query = query.where(Task.created_at >= filters.since)
        if filters.until:
            query = query.where(Task.created_at < filters.until)
        return self._page(query, Task, cursor, limit, order)

    def fail_interrupted_tasks(self, dead: Callable[[Task], bool]) -> int:
        """Tasks left `running` or `queued` by a server that stopped can never finish; say so
        in their record. `dead(task)` says which: other servers sharing the database run their
        own tasks, which must be left alone."""
        with self.session() as s:
            # Rows are locked in pk order here and in `beat_tasks`: two servers never deadlock.
            active = s.scalars(
                select(Task)
                .where(Task.status.in_(("running", "queued")))
                .order_by(Task.pk)
                .with_for_update()
            )
            doomed = [task for task in active if dead(task)]
            for task in doomed:
                task.status = "failed"
                task.error = "the server stopped while this task was running; trigger it again"
                task.finished_at = utcnow()
            return len(doomed)

    def beat_tasks(self, ids: Collection[str], runner: dict[str, Any]) -> None:
        """Record in `result.runner` that `runner` is still running (or about to run) the
        tasks `ids`; finished tasks are left as they are."""
        with self.session() as s:
            for task in s.scalars(
                select(Task)
                .where(Task.id.in_(list(ids)), Task.status.in_(("running", "queued")))
                .order_by(Task.pk)
                .with_for_update()
            ):
                task.result = {**(task.result or {}), "runner": runner}

    # -- erasure and retention ------------------------------------------------------------------

    def delete_user(self, app_id: str, user_id: str) -> dict[str, int]:
        """Right to erasure: every record of one user of one app, and of their sessions.

        A conversation is the user's even where a record of it names no user (a follow-up
        event, a reward for the whole session, a gateway call that sent only a session id),
        so the sessions the user's records name go whole. A session that also holds another
        user's records is shared: there only this user's own records go, and the answer counts
        it under `shared_sessions_kept`.
        """
        extra = _extra_tables(lambda t: "user_id" in t.c and "session_id" in t.c)
        with self.session() as s:
            tables = [m.__table__ for m in (Event, Decision, Reward)] + extra
            sessions: set[str] = set()
            for table in tables:
                sessions.update(
                    s.scalars(
                        select(table.c.session_id).where(
                            table.c.app_id == app_id,
                            table.c.user_id == user_id,
                            table.c.session_id.is_not(None),
                        )
                    )
                )
            shared: set[str] = set()
            for chunk in _chunks(sorted(sessions), 500):
                for table in tables:
                    shared.update(
                        s.scalars(
                            select(table.c.session_id).where(
                                table.c.app_id == app_id,
                                table.c.session_id.in_(chunk),
                                table.c.user_id.is_not(None),
                                table.c.user_id != user_id,
                            )
                        )
                    )
            whole = sorted(sessions - shared)

            def mine(table: Any, chunk: Sequence[str]) -> Any:
                return (table.c.app_id == app_id) & (
                    (table.c.user_id == user_id) | table.c.session_id.in_(chunk)
                )

            # The same condition chunk by chunk (a first pass with no sessions if there are
            # none); a row matched twice is deleted once, so the counts stay exact.
            chunks = list(_chunks(whole, 500)) or [[]]
            counts: dict[str, int] = {"rewards": 0, "decisions": 0, "events": 0}
            for chunk in chunks:
                decision_ids = list(
                    s.scalars(select(Decision.id).where(mine(Decision.__table__, chunk)))
                )
                for ids in _chunks(decision_ids, 500):
                    counts["rewards"] += int(
                        s.execute(
                            delete(Reward).where(
                                Reward.app_id == app_id, Reward.decision_id.in_(ids)
                            )
                        ).rowcount
                        or 0
                    )
                for name, model in (
                    ("rewards", Reward),
                    ("decisions", Decision),
                    ("events", Event),
                ):
                    counts[name] += int(
                        s.execute(delete(model).where(mine(model.__table__, chunk))).rowcount or 0
                    )
            # Tables added by other components (gateway spans, traces) that hold a user_id.
            for table in _extra_tables(lambda t: "user_id" in t.c):
                removed = 0
                for chunk in chunks:
                    where = (
                        mine(table, chunk)
                        if "session_id" in table.c
                        else (table.c.app_id == app_id) & (table.c.user_id == user_id)
                    )
                    removed += int(s.execute(table.delete().where(where)).rowcount or 0)
                counts[table.name] = removed
            counts["sessions"] = len(whole)
            counts["shared_sessions_kept"] = len(shared)
        return counts

    def delete_older_than(self, app_id: str, kind: str, cutoff: datetime) -> dict[str, int]:
        """Delete `kind` records created before `cutoff`; rows removed, per kind.

        Old decisions take their rewards with them (however new those are), so the answer
        for `decisions` also counts `rewards`: a retention report must say what went.
        """
        if kind == "spans":  # every component's span table (gateway calls, ingested traces)
            removed = 0
            with self.session() as s:
                for table in _extra_tables(lambda t: t.name.endswith("_spans")):
                    removed += int(
                        s.execute(
                            table.delete().where(
                                table.c.app_id == app_id, table.c.created_at < cutoff
                            )
                        ).rowcount
                        or 0
                    )
            return {"spans": removed}
        model = RECORD_KINDS[kind]
        counts: dict[str, int] = {}
        with self.session() as s:
            if kind == "decisions":
                # Rewards hang off decisions; the FK cascade does it on PostgreSQL, do it here too.
                old = select(Decision.id).where(
                    Decision.app_id == app_id, Decision.created_at < cutoff
                )
                counts["rewards"] = int(
                    s.execute(
                        delete(Reward).where(Reward.app_id == app_id, Reward.decision_id.in_(old))
                    ).rowcount
                    or 0
                )
            result = s.execute(
                delete(model).where(model.app_id == app_id, model.created_at < cutoff)
            )
            counts[kind] = int(result.rowcount or 0)
        return counts


def artifact_pruned_message(name: str, version: int, pruned_at: datetime) -> str:
    """What to say when a version whose artifact retention removed is asked to serve."""
    return (
        f"version {version} of policy {name!r} has no artifact: retention removed it on "
        f"{pruned_at:%Y-%m-%d}; choose a version that still has one, or import its exported "
        "bundle again to restore it"
    )


def app_settings(app: App) -> dict[str, Any]:
    return {
        "name": app.name,
        "reward_wait_seconds": app.reward_wait_seconds,
        "default_reward": app.default_reward,
        "reward_aggregation": app.reward_aggregation,
        "reward_min": app.reward_min,
        "reward_max": app.reward_max,
        "settings": dict(app.settings or {}),
    }


DEFAULT_ESCALATION_ACTIONS = ("escalate",)
DEFAULT_SLA_TARGET_MS = 2000.0


def outcome_settings(app: App) -> tuple[tuple[str, ...], float]:
    """The app's escalation actions and latency target, from `settings.dashboard`.

    Read by the dashboard and by rollout guardrails alike, so "escalated" means the same in both.
    """
    own = (app.settings or {}).get("dashboard") or {}
    actions = own.get("escalation_actions")
    escalation = (
        tuple(str(a) for a in actions)[:50]
        if isinstance(actions, list)
        else DEFAULT_ESCALATION_ACTIONS
    )
    target = own.get("sla_target_ms")
    sla = float(target) if isinstance(target, int | float) and target > 0 else DEFAULT_SLA_TARGET_MS
    return escalation, sla


def _apply_filters(query: Select, model: Any, filters: Filters) -> Select:
    if filters.since is not None:
        query = query.where(model.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(model.created_at < filters.until)
    if filters.session_id is not None and hasattr(model, "session_id"):
        query = query.where(model.session_id == filters.session_id)
    if filters.user_id is not None and hasattr(model, "user_id"):
        query = query.where(model.user_id == filters.user_id)
    if filters.decision_point is not None and hasattr(model, "decision_point"):
        query = query.where(model.decision_point == filters.decision_point)
    if filters.decision_id is not None and hasattr(model, "decision_id"):
        query = query.where(model.decision_id == filters.decision_id)
    if filters.policy_name is not None and hasattr(model, "policy_name"):
        query = query.where(model.policy_name == filters.policy_name)
    if filters.policy_version is not None and hasattr(model, "policy_version"):
        query = query.where(model.policy_version == filters.policy_version)
    return query


def _same_shape(model: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every row the same keys, filling gaps with the column's default (or NULL)."""
    keys = set().union(*rows)
    if all(len(row) == len(keys) for row in rows):
        return rows
    columns = model.__table__.c
    out = []
    for row in rows:
        full = dict(row)
        for key in keys - row.keys():
            default = columns[key].default
            if default is None:
                full[key] = None
            elif default.is_callable:
                full[key] = _call_default(default.arg)
            else:
                full[key] = default.arg
        out.append(full)
    return out


def _call_default(fn: Any) -> Any:
    try:
        return fn()
    except TypeError:  # SQLAlchemy wraps some defaults to take an execution context
        return fn(None)


_CORE_TABLES = {"events", "decisions", "rewards"}


def _extra_tables(predicate) -> list[Any]:
    from agent_lightning.store.models import Base

    return [
        t
        for t in Base.metadata.sorted_tables
        if t.name not in _CORE_TABLES and "app_id" in t.c and "created_at" in t.c and predicate(t)
    ]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
