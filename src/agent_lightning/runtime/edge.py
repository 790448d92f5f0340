"""Edge sync: the runtime keeps serving from disk and follows the server when it can.

`PolicySync` mirrors the server's distribution manifest and the signed bundles it lists into
``state_dir`` (``manifest.json`` with its ETag, ``bundles/<policy>/<version>.json``), so a
runtime that starts with no server runs on the last good state. Every bundle is verified with the
trusted keys from agent.yaml when it is downloaded *and* when it is read back from disk; a
tampered bundle is refused and logged and the last good state keeps serving. A new state is
built completely (manifest + verified bundles + loaded policies) before one reference swap makes
it current, so no request ever sees half of an update.

Conflicts are resolved by version, never by dropping data: versions are immutable, so one we have
verified is never replaced by different bytes; a server manifest is only adopted when every
version it needs verifies; a manifest without a live version (a wiped or restored server) does
not replace ours; and decisions made on any version stay in the outbox with that version.

`RolloutDecider` picks the version for each message with the publisher's sticky assignment and
asks that version's learned policy. `KbSnapshot` keeps the knowledge base on disk so `fetch_kb`
can answer offline.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agent_lightning import learning
from agent_lightning.publisher import assignment
from agent_lightning.publisher.bundle import Bundle, BundleError, verify_bundle
from agent_lightning.runtime.types import Decider, IntentChoice

log = logging.getLogger("agent_lightning.runtime.edge")

ACTIVE_ROLLOUT = ("running", "paused")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


# -- small helpers ---------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so a reader (or a crash) sees the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _now_iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


class ServerSession:
    """HTTP to the agent-lightning server with an OAuth2 client-credentials token (cached,
    refreshed before expiry and once on a 401). Thread-safe."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = secret
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"ServerSession(base_url={self.base_url!r}, client_id={self._client_id!r})"

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.monotonic() >= self._expires:
                response = self._http.post(
                    "/v1/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self._client_id,
                        "client_secret": self._secret,
                    },
                )
                response.raise_for_status()
                body = response.json()
                ttl = float(body.get("expires_in") or 300)
                self._token = body["access_token"]
                self._expires = time.monotonic() + max(1.0, ttl - min(30.0, ttl / 2))
            assert self._token is not None
            return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authenticated request (raises httpx errors on transport failures)."""
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (0, 1):
            headers["Authorization"] = f"Bearer {self.token(force=attempt == 1)}"
            response = self._http.request(method, path, headers=headers, **kwargs)
            if response.status_code != 401:
                return response
        return response

    def stream(self, path: str, params: Mapping[str, Any]) -> Any:
        """A streaming GET (for server-sent events); use as a context manager."""
        headers = {"Authorization": f"Bearer {self.token()}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(self._timeout, read=60.0)
        return self._http.stream("GET", path, params=params, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()


# -- the knowledge-base snapshot ---------------------------------------------------------------


_WORD = re.compile(r"[a-z0-9]+")


class KbSnapshot:
    """The knowledge base as last exported (``state_dir/kb_snapshot.json``), searchable offline.

    The export is stored as the service returned it; articles are read from ``articles``,
    ``items``, ``results`` or a bare list, with ``title``/``question`` and ``body``/``answer``/
    ``content``/``text`` as the searchable text.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._articles: list[dict[str, Any]] | None = None
        self.saved_at: float | None = None

    @staticmethod
    def _articles_of(data: Any) -> list[dict[str, Any]]:
        if isinstance(data, Mapping):
            for key in ("articles", "items", "results", "documents"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if not isinstance(data, list):
            raise ValueError("a KB export is a list of articles or {articles: [...]}")
        return [a for a in data if isinstance(a, Mapping)]

    def save(self, export: Any) -> int:
        """Store a fresh export atomically; returns the number of articles."""
        articles = self._articles_of(export)
        atomic_write(self.path, json.dumps({"saved_at": time.time(), "export": export}).encode())
        with self._lock:
            self._articles = [dict(a) for a in articles]
            self.saved_at = time.time()
        return len(articles)

    def _load(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._articles is None:
                try:
                    stored = json.loads(self.path.read_text())
                    self._articles = [dict(a) for a in self._articles_of(stored["export"])]
                    self.saved_at = float(stored.get("saved_at") or 0) or None
                except (OSError, ValueError, KeyError, TypeError):
                    self._articles = []
            return self._articles

    @property
    def available(self) -> bool:
        return bool(self._load())

    def search(self, query: str, top_k: int = 3) -> dict[str, Any]:
        """Articles ranked by word overlap with ``query``, shaped like ``GET /kb/search``."""
        words = set(_WORD.findall(query.lower()))
        scored = []
        for article in self._load():
            title = str(article.get("title") or article.get("question") or "")
            body = " ".join(
                str(article.get(k) or "") for k in ("body", "answer", "content", "text", "tags")
            )
            title_words = set(_WORD.findall(title.lower()))
            body_words = set(_WORD.findall(body.lower()))
            if not words:
                continue
            score = (2 * len(words & title_words) + len(words & body_words)) / (3 * len(words))
            if score > 0:
                scored.append((score, article))
        scored.sort(key=lambda item: -item[0])
        return {
            "results": [{**a, "score": round(s, 4)} for s, a in scored[: max(0, top_k)]],
            "source": "snapshot",
            "snapshot_at": _now_iso(self.saved_at),
        }


def kb_export_fetcher(
    connectors_config: Mapping[str, Any], name: str = "kb", env: Mapping[str, str] | None = None
) -> Any:
    """A function that calls ``GET /kb/export`` on the ``kb`` connector's service, or None when
    no such connector is configured. Reuses the connector's base URL and auth."""
    raw = connectors_config.get(name)
    if not isinstance(raw, Mapping):
        return None
    from agent_lightning.connectors.rest import RestConnector

    endpoints = dict(raw.get("endpoints") or {})
    endpoints.setdefault("export", {"method": "GET", "path": "/kb/export"})
    connector = RestConnector.from_mapping(name, {**raw, "endpoints": endpoints}, env=env)

    def fetch() -> Any:
        return connector.call("export").data

    fetch.close = connector.close  # type: ignore[attr-defined]
    return fetch


class SnapshotKbConnector:
    """The `kb` connector, answering searches from the snapshot when the service is away.

    Only failures that say "not there" (unreachable, timeout) fall back; an HTTP error or a bad
    answer from a live service is still an error. Every other endpoint goes straight through.
    """

    FALLBACK_KINDS = frozenset({"unreachable", "timeout"})

    def __init__(
        self, connector: Any, snapshot: KbSnapshot, search_endpoints: Sequence[str] = ("search",)
    ) -> None:
        self.connector = connector
        self.snapshot = snapshot
        self.search_endpoints = frozenset(search_endpoints)
        self.offline_answers = 0

    def call(
        self,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        path_params: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retries: int | None = None,
    ) -> Any:
        from agent_lightning.connectors.errors import ConnectorError
        from agent_lightning.connectors.rest import ConnectorResponse

        started = time.perf_counter()
        try:
            return self.connector.call(
                endpoint,
                params=params,
                json=json,
                path_params=path_params,
                timeout_ms=timeout_ms,
                retries=retries,
            )
        except ConnectorError as exc:
            if (
                endpoint not in self.search_endpoints
                or exc.kind not in self.FALLBACK_KINDS
                or not self.snapshot.available
            ):
                raise
            params = dict(params or {})
            query = str(params.get("q") or params.get("query") or "")
            top_k = int(params.get("limit") or params.get("top_k") or 3)
            log.warning("%s; answering from the knowledge-base snapshot", exc)
            self.offline_answers += 1
            latency = round((time.perf_counter() - started) * 1000, 1)
            return ConnectorResponse(200, self.snapshot.search(query, top_k), latency)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connector, name)


class OfflineConnectors:
    """A connector registry whose `kb` connector falls back to the snapshot (see above)."""

    def __init__(self, registry: Any, snapshot: KbSnapshot, kb_name: str = "kb") -> None:
        self.registry = registry
        self.kb_name = kb_name
        self._kb = SnapshotKbConnector(registry[kb_name], snapshot) if kb_name in registry else None

    def __getitem__(self, name: str) -> Any:
        if name == self.kb_name and self._kb is not None:
            return self._kb
        return self.registry[name]

    def __contains__(self, name: object) -> bool:
        return name in self.registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)


# -- the state and its sync --------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeState:
    """One consistent view: a manifest and the verified bundles/policies of its versions."""

    manifest: dict[str, Any] | None = None
    etag: str | None = None
    bundles: dict[int, Bundle] = field(default_factory=dict)
    policies: dict[int, Any] = field(default_factory=dict)
    adopted_at: float | None = None

    @property
    def live_version(self) -> int | None:
        value = (self.manifest or {}).get("live_version")
        return int(value) if value is not None else None

    @property
    def rollout(self) -> dict[str, Any] | None:
        rollout = (self.manifest or {}).get("rollout")
        if isinstance(rollout, Mapping) and rollout.get("status", "running") in ACTIVE_ROLLOUT:
            return dict(rollout)
        return None

    def required_versions(self) -> set[int]:
        return _required(self.manifest or {})


def _required(manifest: Mapping[str, Any]) -> set[int]:
    needed = set()
    if manifest.get("live_version") is not None:
        needed.add(int(manifest["live_version"]))
    rollout = manifest.get("rollout")
    if isinstance(rollout, Mapping) and rollout.get("status", "running") in ACTIVE_ROLLOUT:
        for key in ("baseline_version", "candidate_version"):
            if rollout.get(key) is not None:
                needed.add(int(rollout[key]))
    return needed


def _http_error(response: httpx.Response) -> str:
    """``HTTP 404 not_found: policy 'x' not found`` from a server error body, without its
    per-request ``request_id`` (so the same error reads the same on every poll)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, Mapping) and error.get("message"):
        return f"HTTP {response.status_code} {error.get('code') or 'error'}: {error['message']}"
    return f"HTTP {response.status_code} {response.text[:200]}"


def load_policy_from_bundle(bundle: Bundle) -> Any:
    """The learned policy inside a verified bundle; an untrained version (no artifact) gets a
    fresh policy from the bundle's spec, which scores zero-shot."""
    if bundle.artifact:
        return learning.Policy.from_bytes(bundle.artifact)
    spec = bundle.manifest.get("spec") or {}
    known = {"featurizer", "learner", "exploration", "warm_start", "seed", "structured_dim"}
    spec = {k: v for k, v in spec.items() if k in known} if isinstance(spec, Mapping) else {}
    if spec.get("warm_start") == "rules":
        spec.pop("warm_start")
    try:
        return learning.make_policy(spec)
    except learning.LearningError:
        return learning.make_policy()


@dataclass
class SyncStatus:
    """What `/v1/status` shows about sync."""

    last_sync_at: float | None = None  # last time the server answered the manifest poll
    last_attempt_at: float | None = None
    last_change_at: float | None = None
    server_reachable: bool | None = None
    last_error: str | None = None
    refused: list[str] = field(default_factory=list)  # recent refusals (tampered bundles...)
    streaming: bool = False
    last_report_at: float | None = None
    kb_snapshot_at: float | None = None


class PolicySync:
    """See module docstring.

    ``session`` is None for a runtime without a server (it serves what is on disk).
    ``queued`` returns the outbox's pending count for the runtime report.
    """

    def __init__(
        self,
        state_dir: str | Path,
        policy_name: str,
        trusted_keys: Sequence[Any],
        *,
        session: ServerSession | None = None,
        runtime_id: str | None = None,
        poll_seconds: float = 2.0,
        stream: bool = False,
        report_seconds: float = 30.0,
        kb_fetch: Callable[[], Any] | None = None,
        kb_seconds: float = 300.0,
        queued: Callable[[], int] | None = None,
    ) -> None:
        if not _NAME.match(policy_name):
            raise ValueError(f"policy name {policy_name!r} must match [A-Za-z0-9._-]+")
        self.state_dir = Path(state_dir)
        self.policy_name = policy_name
        self.trusted_keys = list(trusted_keys)
        self.session = session
        self.runtime_id = runtime_id or f"runtime-{uuid.uuid4().hex[:12]}"
        self.poll_seconds = poll_seconds
        self.stream_enabled = stream
        self.report_seconds = report_seconds
        self.kb_fetch = kb_fetch
        self.kb_seconds = kb_seconds
        self.queued = queued
        self.kb = KbSnapshot(self.state_dir / "kb_snapshot.json")
        self.status = SyncStatus()
        self._state = EdgeState()
        self._sync_lock = threading.Lock()
        self._listeners: list[Callable[[EdgeState], None]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reported: tuple | None = None
        self._report_tried: float | None = None
        self._report_failed = False
        self.load_from_disk()

    # -- paths and disk -------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.state_dir / "manifest.json"

    def bundle_path(self, version: int) -> Path:
        return self.state_dir / "bundles" / self.policy_name / f"{int(version)}.json"

    @property
    def state(self) -> EdgeState:
        """The current state (one reference read: callers hold a consistent snapshot)."""
        return self._state

    def on_change(self, listener: Callable[[EdgeState], None]) -> None:
        """Call ``listener(new_state)`` after each swap."""
        self._listeners.append(listener)

    def _verify(self, data: bytes, version: int) -> Bundle:
        bundle = verify_bundle(data, self.trusted_keys)
        if bundle.policy != self.policy_name or bundle.version != int(version):
            raise BundleError(
                f"the bundle is {bundle.policy} v{bundle.version}, "
                f"expected {self.policy_name} v{version}"
            )
        return bundle

    def _local_bundle(self, version: int) -> tuple[Bundle, Any] | None:
        """A bundle from disk, verified again (the disk is not trusted more than the network)."""
        path = self.bundle_path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            bundle = self._verify(data, version)
            return bundle, load_policy_from_bundle(bundle)
        except (BundleError, learning.LearningError) as exc:
            self._refuse(f"{path}: {exc}")
            return None

    def load_from_disk(self) -> EdgeState:
        """Serve the last good state from ``state_dir`` (works with no server at all)."""
        try:
            stored = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return self._state
        except (OSError, ValueError) as exc:
            self._refuse(f"{self.manifest_path}: unreadable ({exc}); starting without it")
            return self._state
        manifest, etag = stored.get("manifest"), stored.get("etag")
        if not isinstance(manifest, dict) or manifest.get("policy") != self.policy_name:
            self._refuse(f"{self.manifest_path}: not a manifest of {self.policy_name}")
            return self._state
        bundles, policies = {}, {}
        for version in sorted(_required(manifest) | set(manifest.get("versions") or [])):
            loaded = self._local_bundle(int(version))
            if loaded is not None:
                bundles[int(version)], policies[int(version)] = loaded
        missing = _required(manifest) - set(bundles)
        if missing:
            log.error(
                "the stored manifest needs versions %s whose bundles are missing or invalid; "
                "those units fall back to the versions that verified",
                sorted(missing),
            )
            etag = None  # make the next poll fetch (and repair) everything
        self._swap(EdgeState(manifest, etag, bundles, policies, stored.get("adopted_at")))
        return self._state

    def _refuse(self, message: str) -> None:
        log.error("refused: %s", message)
        self.status.last_error = message
        self.status.refused = [*self.status.refused[-9:], message]

    def _swap(self, state: EdgeState) -> None:
        old = self._state
        self._state = state
        if old.manifest != state.manifest:
            self.status.last_change_at = time.time()
            for listener in list(self._listeners):
                try:
                    listener(state)
                except Exception:  # noqa: BLE001 - a listener must not break sync
                    log.exception("a policy-change listener failed")

    # -- talking to the server ------------------------------------------------------------------

    def sync_once(self) -> str:
        """Poll the manifest once and adopt it if it is new and verifies; refresh the KB
        snapshot when due; report what we serve.

        Returns one of: "offline" (no server configured), "unreachable", "not_modified",
        "updated", "unchanged", "refused", "error".
        """
        if self.session is None:
            outcome = "offline"
        else:
            with self._sync_lock:
                outcome = self._poll_manifest()
            if outcome != "unreachable":
                self._maybe_report()
        self._refresh_kb()
        return outcome

    def _poll_manifest(self) -> str:
        assert self.session is not None
        self.status.last_attempt_at = time.time()
        headers = {"If-None-Match": self._state.etag} if self._state.etag else {}
        try:
            response = self.session.request(
                "GET",
                "/v1/runtime/manifest",
                params={"policy": self.policy_name},
                headers=headers,
            )
        except (httpx.HTTPError, OSError) as exc:
            return self._unreachable(exc)
        self.status.server_reachable = True
        if response.status_code == 304:
            self.status.last_sync_at = time.time()
            self.status.last_error = None
            return "not_modified"
        if response.status_code != 200:
            message = f"GET /v1/runtime/manifest: {_http_error(response)}"
            if message != self.status.last_error:
                log.warning("%s; serving the last good state", message)
            self.status.last_error = message
            return "error"
        try:
            manifest = response.json()
        except ValueError:
            self.status.last_error = "the manifest is not JSON"
            return "error"
        outcome = self._adopt(manifest, response.headers.get("ETag"))
        self.status.last_sync_at = time.time()
        if outcome in ("updated", "unchanged"):
            self.status.last_error = None  # /v1/status shows what is wrong now, not what was
        return outcome

    def _unreachable(self, exc: BaseException) -> str:
        if self.status.server_reachable is not False:
            log.warning("server unreachable (%s); serving the last good state from disk", exc)
        self.status.server_reachable = False
        self.status.last_error = f"server unreachable: {exc}"
        return "unreachable"

    def _download(self, version: int) -> tuple[Bundle, Any] | None:
        assert self.session is not None
        path = f"/v1/policies/{self.policy_name}/versions/{int(version)}/bundle"
        try:
            response = self.session.request("GET", path)
        except (httpx.HTTPError, OSError) as exc:
            self._unreachable(exc)
            return None
        if response.status_code != 200:
            self.status.last_error = f"GET {path}: HTTP {response.status_code}"
            log.warning("%s", self.status.last_error)
            return None
        try:
            bundle = self._verify(response.content, version)
            policy = load_policy_from_bundle(bundle)
        except (BundleError, learning.LearningError) as exc:
            self._refuse(f"bundle {self.policy_name} v{version} from the server: {exc}")
            return None
        atomic_write(self.bundle_path(version), response.content)
        return bundle, policy

    def _adopt(self, manifest: Any, etag: str | None) -> str:
        current = self._state
        if not isinstance(manifest, dict) or manifest.get("policy") != self.policy_name:
            self._refuse(f"the server sent a manifest that is not for {self.policy_name}")
            return "refused"
        # The same manifest is only "unchanged" when every version it needs verified: after a
        # start with a missing or corrupt bundle on disk, this poll is what repairs it.
        if manifest == current.manifest and _required(manifest) <= set(current.bundles):
            if etag != current.etag:
                self._swap(replace(current, etag=etag))
                self._persist(self._state)
            return "unchanged"
        if manifest.get("live_version") is None and current.live_version is not None:
            # A wiped or restored server: keep our newer state rather than forget it.
            self._refuse(
                f"the server has no live version of {self.policy_name}; keeping "
                f"v{current.live_version} (conflict resolved by version)"
            )
            return "refused"
        bundles, policies = dict(current.bundles), dict(current.policies)
        wanted = _required(manifest) | {int(v) for v in manifest.get("versions") or []}
        for version in sorted(wanted - set(bundles)):
            loaded = self._local_bundle(version) or self._download(version)
            if loaded is not None:
                bundles[version], policies[version] = loaded
        missing = _required(manifest) - set(bundles)
        if missing:
            self._refuse(
                f"manifest of {self.policy_name} needs versions {sorted(missing)} that could not "
                f"be verified; still serving {self._describe(current)}"
            )
            return "refused"
        state = EdgeState(manifest, etag, bundles, policies, time.time())
        self._persist(state)
        self._swap(state)
        log.info("now serving %s", self._describe(state))
        return "updated"

    def _persist(self, state: EdgeState) -> None:
        body = {"manifest": state.manifest, "etag": state.etag, "adopted_at": state.adopted_at}
        atomic_write(self.manifest_path, json.dumps(body, sort_keys=True, indent=1).encode())

    @staticmethod
    def _describe(state: EdgeState) -> str:
        if state.manifest is None:
            return "the zero-shot policy from the YAML"
        text = f"v{state.live_version}"
        rollout = state.rollout
        if rollout:
            text += (
                f" (rollout {rollout.get('id')}: v{rollout.get('candidate_version')} to "
                f"{rollout.get('percent')}%)"
            )
        return text

    def describe(self) -> str:
        """What the runtime serves, in words (for the `run` banner and logs)."""
        return self._describe(self._state)

    def versions_served(self) -> list[int]:
        state = self._state
        return sorted(v for v in state.required_versions() if v in state.policies)

    def arms(self) -> dict[str, int]:
        rollout = self._state.rollout
        if not rollout:
            live = self._state.live_version
            return {"live": live} if live is not None else {}
        return {
            "baseline": int(rollout["baseline_version"]),
            "candidate": int(rollout["candidate_version"]),
        }

    def report(self) -> bool:
        """POST /v1/runtime/report with the versions this runtime serves; True if accepted."""
        if self.session is None:
            return False
        body = {
            "runtime_id": self.runtime_id,
            "policy": self.policy_name,
            "versions": self.versions_served(),
            "arms": self.arms(),
            "queued": int(self.queued()) if self.queued else 0,
            "last_sync": _now_iso(self.status.last_sync_at),
        }
        try:
            response = self.session.request("POST", "/v1/runtime/report", json=body)
        except (httpx.HTTPError, OSError) as exc:
            self._unreachable(exc)
            return False
        if response.status_code >= 300:
            log.warning("runtime report refused: HTTP %s", response.status_code)
            return False
        self.status.last_report_at = time.time()
        self._reported = (tuple(body["versions"]), tuple(sorted(body["arms"].items())))
        return True

    def _maybe_report(self) -> None:
        """Report at once when what we serve changed, else every `report_seconds`; after a
        failed report wait a second before trying again."""
        served = (tuple(self.versions_served()), tuple(sorted(self.arms().items())))
        now = time.monotonic()
        since = None if self._report_tried is None else now - self._report_tried
        failed_recently = self._report_failed and since is not None and since < 1.0
        due = since is None or since >= self.report_seconds
        if (served != self._reported and not failed_recently) or due:
            self._report_tried = now
            self._report_failed = not self.report()

    def _refresh_kb(self) -> None:
        if self.kb_fetch is None:
            return
        last = self.status.kb_snapshot_at
        if last is not None and time.time() - last < self.kb_seconds:
            return
        try:
            count = self.kb.save(self.kb_fetch())
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old snapshot
            log.warning("knowledge-base snapshot not refreshed: %s", exc)
            return
        self.status.kb_snapshot_at = time.time()
        log.info("knowledge-base snapshot saved (%d articles)", count)

    # -- background -----------------------------------------------------------------------------

    def start(self) -> None:
        """Poll (and hold the SSE stream when enabled) in background threads; idempotent."""
        if self._threads or self.session is None:
            return
        self._threads.append(threading.Thread(target=self._poll_loop, name="agl-sync", daemon=True))
        if self.stream_enabled:
            self._threads.append(
                threading.Thread(target=self._stream_loop, name="agl-sync-sse", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("policy sync failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _stream_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            assert self.session is not None
            try:
                with self.session.stream(
                    "/v1/runtime/stream", {"policy": self.policy_name}
                ) as response:
                    if response.status_code != 200:
                        raise httpx.HTTPStatusError(
                            f"HTTP {response.status_code}",
                            request=response.request,
                            response=response,
                        )
                    self.status.streaming = True
                    backoff = 0.5
                    event = None
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line == "" and event == "manifest":
                            # The data is the manifest; polling fetches it with its ETag.
                            self._wake.set()
                            event = None
            except Exception as exc:  # noqa: BLE001 - reconnect on anything
                log.debug("manifest stream ended: %s", exc)
            self.status.streaming = False
            self._stop.wait(backoff * (0.5 + random.random() / 2))
            backoff = min(30.0, backoff * 2)

    def stop(self) -> None:
        """Stop the background threads (the stream thread ends at its next line or timeout)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def snapshot(self) -> dict[str, Any]:
        """Sync status as JSON for `/v1/status`."""
        s = self.status
        return {
            "policy": self.policy_name,
            "runtime_id": self.runtime_id,
            "serving": self.describe(),
            "live_version": self._state.live_version,
            "versions": self.versions_served(),
            "rollout": self._state.rollout,
            "last_sync": _now_iso(s.last_sync_at),
            "last_change": _now_iso(s.last_change_at),
            "last_report": _now_iso(s.last_report_at),
            "server_reachable": s.server_reachable,
            "streaming": s.streaming,
            "last_error": s.last_error,
            "refused": list(s.refused),
            "kb_snapshot": _now_iso(s.kb_snapshot_at or self.kb.saved_at),
        }


# -- deciding with the rollout -----------------------------------------------------------------


def in_segment(
    rollout: Mapping[str, Any],
    user_id: str | None,
    session_id: str | None,
    attributes: Mapping[str, Any],
) -> bool:
    """True when the unit is in the rollout's segment (or it has none); the same rule as the
    server's `publisher.selector`, so a unit lands in the same arm on both sides."""
    segment = rollout.get("segment")
    if not segment:
        return True
    attribute = segment.get("attribute")
    if attribute == "user_id":
        value: Any = user_id
    elif attribute == "session_id":
        value = session_id
    else:
        value = (attributes or {}).get(attribute)
    if value is None or isinstance(value, dict | list):
        return False
    return str(value) in {str(v) for v in segment.get("values") or []}


class RolloutDecider:
    """A `Decider` that serves the version the manifest assigns to this unit.

    ``fallback`` answers while no learned version exists (zero-shot from the YAML);
    ``make_decider(policy, version)`` wraps one version's learned policy in a decider that
    reports that version (the runtime's `LocalDecider`, which adds the YAML's rules and a
    calibrated confidence); without it the policy's exploration probabilities are used
    directly. The state is read once per call, so a swap mid-request cannot mix versions.
    """

    def __init__(
        self,
        sync: PolicySync,
        *,
        fallback: Decider | None = None,
        make_decider: Callable[[Any, int], Decider] | None = None,
        seed: int | None = None,
    ) -> None:
        self.sync = sync
        self.fallback = fallback
        self.make_decider = make_decider
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._deciders: dict[tuple[int, int], Decider] = {}

    def assign(
        self,
        state: EdgeState,
        *,
        user_id: str | None,
        session_id: str | None,
        attributes: Mapping[str, Any],
    ) -> tuple[int | None, str | None, str | None]:
        """(version, arm, rollout_id) for this unit under ``state``."""
        rollout = state.rollout
        if rollout is None:
            return state.live_version, None, None
        key = assignment.unit_key(user_id, session_id, uuid.uuid4().hex)
        candidate = in_segment(
            rollout, user_id, session_id, attributes
        ) and assignment.in_candidate(
            str(rollout.get("salt") or ""), key, float(rollout.get("percent") or 0.0)
        )
        version = rollout["candidate_version"] if candidate else rollout["baseline_version"]
        return int(version), "candidate" if candidate else "baseline", rollout.get("id")

    def choose(
        self,
        text: str,
        intents: Sequence[learning.Action],
        *,
        user_id: str | None,
        session_id: str | None,
        attributes: Mapping[str, Any],
    ) -> IntentChoice:
        state = self.sync.state
        version, arm, rollout_id = self.assign(
            state, user_id=user_id, session_id=session_id, attributes=attributes
        )
        if version is not None and version not in state.policies:
            # Its bundle did not verify: serve the live version rather than fail the request.
            version, arm, rollout_id = state.live_version, None, None
        if version is None or version not in state.policies:
            if self.fallback is None:
                raise RuntimeError("no verified policy version and no zero-shot fallback")
            choice = self.fallback.choose(
                text, intents, user_id=user_id, session_id=session_id, attributes=attributes
            )
            return replace(choice, arm=None, rollout_id=None)
        policy = state.policies[version]
        if self.make_decider is not None:
            key = (version, id(policy))
            decider = self._deciders.get(key)
            if decider is None:
                decider = self._deciders[key] = self.make_decider(policy, version)
            choice = decider.choose(
                text, intents, user_id=user_id, session_id=session_id, attributes=attributes
            )
            # The decider reports the version it scored with (None when a YAML rule decided).
            return replace(choice, arm=arm, rollout_id=rollout_id)
        probs = policy.probabilities([{"text": text}], list(intents))[0]
        ids = [a.id for a in intents]
        with self._rng_lock:
            draw = self._rng.random() * float(probs.sum())
        acc, index = 0.0, len(ids) - 1
        for j, p in enumerate(probs):
            acc += float(p)
            if draw < acc:
                index = j
                break
        probabilities = {a: float(p) for a, p in zip(ids, probs, strict=True)}
        chosen = ids[index]
        return IntentChoice(
            intent=chosen,
            confidence=probabilities[chosen],
            probabilities=probabilities,
            propensity=max(probabilities[chosen], 1e-9),
            policy_name=self.sync.policy_name,
            policy_version=version,
            arm=arm,
            rollout_id=rollout_id,
        )


__all__ = [
    "EdgeState",
    "KbSnapshot",
    "OfflineConnectors",
    "PolicySync",
    "RolloutDecider",
    "ServerSession",
    "SnapshotKbConnector",
    "SyncStatus",
    "atomic_write",
    "in_segment",
    "kb_export_fetcher",
    "load_policy_from_bundle",
]
