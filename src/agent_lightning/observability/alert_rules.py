"""Alert rules: what an app's operators want to be told about, and where to tell them.

An app's configuration is replaced as a whole (`PUT /v1/alerts/rules`), which keeps it simple to
reason about and to audit (one before/after pair per change). Kinds:

- `resolution_drop`: the live version's resolution rate over the last `window_minutes` is more
  than `drop_points` percentage points below the policy's rate over the window before it. The
  resolution rate is the share of rewarded decisions with a reward > 0 (see `db_stats`); the
  previous window counts whichever version served then, so a bad promotion shows up. Both windows
  need `min_samples` rewarded decisions. `policy` names one policy; omitted, every policy with a
  live version is watched (each fires on its own).
- `error_rate`: the share of this app's authenticated requests answered with 5xx over the last
  `window_minutes` is at least `threshold` (0-1), on at least `min_requests` requests. Counted by
  this server process (each replica watches its own traffic).
- `no_events`: no event has arrived for `minutes` (counted from the newest event, or from when
  the rules were saved if there is none yet).

The webhook secret is stored encrypted with the server's SecretBox and never returned.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from sqlalchemy import select

from agent_lightning.observability.models import AlertConfig
from agent_lightning.observability.webhooks import WebhookRefused, check_url
from agent_lightning.store import Store, utcnow

MAX_RULES = 50


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    enabled: bool = True
    severity: Literal["info", "warning", "critical"] = "warning"
    description: str = Field("", max_length=500)


class ResolutionDropRule(_Rule):
    kind: Literal["resolution_drop"]
    policy: str | None = Field(None, min_length=1, max_length=200)
    drop_points: float = Field(10.0, gt=0, le=100)
    window_minutes: float = Field(60.0, gt=0, le=7 * 24 * 60)
    min_samples: int = Field(20, ge=1, le=10_000_000)


class ErrorRateRule(_Rule):
    kind: Literal["error_rate"]
    threshold: float = Field(0.05, gt=0, le=1)
    window_minutes: float = Field(5.0, gt=0, le=24 * 60)
    min_requests: int = Field(20, ge=1, le=10_000_000)


class NoEventsRule(_Rule):
    kind: Literal["no_events"]
    minutes: float = Field(30.0, gt=0, le=30 * 24 * 60)


Rule = Annotated[ResolutionDropRule | ErrorRateRule | NoEventsRule, Field(discriminator="kind")]
_RULES = TypeAdapter(list[Rule])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2000)
    # Omitted: keep the stored secret (if the URL's origin did not change); "" or null: remove.
    secret: str | None = Field(None, max_length=500)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value:
            try:
                check_url(value)
            except WebhookRefused as exc:
                raise ValueError(str(exc)) from None
        return value or None

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value and len(value) < 16:
            raise ValueError("a webhook secret needs at least 16 characters")
        return value


class RulesIn(BaseModel):
    """Body of `PUT /v1/alerts/rules`; `webhook` omitted keeps the stored one."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    webhook: WebhookIn | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesIn:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique: {', '.join(dupes)}")
        return self


def parse_rules(raw: list[Any]) -> list[Any]:
    return _RULES.validate_python(raw)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class AlertRules:
    """Persistence of the per-app configuration (`alert_configs`)."""

    def __init__(self, store: Store, box: Callable[[], Any]) -> None:
        self.store = store
        self._box = box  # a factory: the key file is only created if someone sets a secret

    def get(self, app_id: str) -> AlertConfig | None:
        with self.store.session() as s:
            return s.scalar(select(AlertConfig).where(AlertConfig.app_id == app_id))

    def configured(self) -> list[AlertConfig]:
        with self.store.session() as s:
            return list(s.scalars(select(AlertConfig).order_by(AlertConfig.pk)))

    def public(self, config: AlertConfig | None) -> dict[str, Any]:
        if config is None:
            return {
                "rules": [],
                "webhook": {"url": None, "has_secret": False},
                "updated_at": None,
                "updated_by": None,
            }
        return {
            "rules": list(config.rules or []),
            "webhook": {"url": config.webhook_url, "has_secret": bool(config.webhook_secret)},
            "updated_at": _iso(config.updated_at),
            "updated_by": config.updated_by,
        }

    def put(self, app_id: str, body: RulesIn, actor: str) -> tuple[dict, dict]:
        """Replace the app's configuration; returns (before, after) as the API shows them."""
        rules = [r.model_dump(mode="json") for r in body.rules]
        with self.store.session() as s:
            config = s.scalar(
                select(AlertConfig).where(AlertConfig.app_id == app_id).with_for_update()
            )
            before = self.public(config)
            if config is None:
                config = AlertConfig(app_id=app_id, rules=[], updated_by=actor)
                s.add(config)
            config.rules = rules
            if body.webhook is not None:
                given = body.webhook.model_fields_set
                if "secret" in given:
                    secret = body.webhook.secret
                    config.webhook_secret = self._box().encrypt(secret) if secret else None
                elif _origin(body.webhook.url) != _origin(config.webhook_url):
                    # A secret is for the receiver it was shared with, never for a new one.
                    config.webhook_secret = None
                config.webhook_url = body.webhook.url
            config.updated_by = actor
            config.updated_at = utcnow()
            s.flush()
            after = self.public(config)
        return before, after

    def webhook(self, app_id: str) -> tuple[str | None, str | None]:
        config = self.get(app_id)
        if config is None or not config.webhook_url:
            return None, None
        secret = (
            self._box().decrypt(config.webhook_secret).decode() if config.webhook_secret else None
        )
        return config.webhook_url, secret


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
