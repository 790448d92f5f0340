"""`agent-lightning init`: the project skeleton a new user starts from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from agent_lightning.security.retention import KINDS, MAX_DAYS
from agent_lightning.store import AGGREGATIONS

if TYPE_CHECKING:
    from agent_lightning.store import Store

TEMPLATES = ("blank",)
CONFIG_PATH = Path("config/agent-lightning.yaml")

RUNTIME_YAML = """\
# Named runtimes: where the gateway and the runtime send model calls.
# Keys are never written here: `api_key_env` names the environment variable that holds them.
runtimes:
  default:
    kind: openai                 # any OpenAI-compatible endpoint
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    model: gpt-4o-mini

  # azure:
  #   kind: azure_openai
  #   base_url: https://YOUR-RESOURCE.openai.azure.com
  #   api_version: "2024-10-21"
  #   deployment: gpt-4o-mini
  #   api_key_env: AZURE_OPENAI_API_KEY

  # local:
  #   kind: openai               # vLLM, llama.cpp server, Ollama's OpenAI API ...
  #   base_url: http://127.0.0.1:8080/v1
  #   api_key_env: LOCAL_LLM_KEY
  #   model: llama-3.1-8b-instruct
"""

CONFIG_YAML = """\
# agent-lightning project settings. `agent-lightning serve`, started in this folder, applies
# them: the app is created if needed, and its reward join and retention are set as written
# here (each change audited). AGL_DATABASE_URL or --database-url override database_url.
app: {name}
database_url: sqlite:///.agl/agent-lightning.db   # or postgresql://user@host:5432/db
reward:
  wait_seconds: 3600        # how long a decision waits for its reward
  default: 0.0              # reward assumed when none arrives in time
  aggregation: sum          # sum | earliest | last
retention_days:
  events: 30
  decisions: 365
  rewards: 365
"""

POLICY_README = """\
# Policies

Policy definitions (intents, actions, guardrails) live here as YAML, one file per policy.
Learned versions are stored by the server and listed with `GET /v1/policies/{name}/versions`.
"""


class ProjectExists(FileExistsError):
    pass


def create_project(root: Path, template: str = "blank") -> list[str]:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    if root.exists() and any(root.iterdir()):
        raise ProjectExists(f"{root} exists and is not empty; choose a new name")
    files = {
        "config/agent-lightning.yaml": CONFIG_YAML.format(name=root.name),
        "runtimes/runtime.yaml": RUNTIME_YAML,
        "policies/README.md": POLICY_README,
        ".gitignore": ".agl/\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(files)


# -- the project's settings file -----------------------------------------------------------------


class ProjectConfigError(ValueError):
    """The settings file is wrong; the message names the file and line of each problem."""


class RewardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait_seconds: StrictFloat | StrictInt = Field(3600, ge=0, le=365 * 86400)
    default: StrictFloat | StrictInt = 0.0
    aggregation: Literal[AGGREGATIONS] = "sum"  # type: ignore[valid-type]


Kind = Literal[KINDS]  # type: ignore[valid-type]
Days = Annotated[StrictInt, Field(ge=1, le=MAX_DAYS)]


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str = Field(..., min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")
    database_url: str | None = Field(None, min_length=1)
    reward: RewardSettings | None = None
    retention_days: dict[Kind, Days] | None = None


def load_project_config(path: Path) -> ProjectConfig:
    """Read and check `config/agent-lightning.yaml`; `ProjectConfigError` names bad lines."""
    from agent_lightning._yaml import parse_yaml, validation_problems

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectConfigError(f"{path}: cannot read it ({exc})") from None
    data, node = parse_yaml(text, str(path))
    try:
        config = ProjectConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ProjectConfigError("\n".join(validation_problems(exc, node, str(path)))) from None
    return config


def apply_project_config(store: Store, config: ProjectConfig, source: str) -> list[str]:
    """Create the app if needed and set what the file names; one line per change made.

    Each change is audited with the file as its actor, so the log says where it came from.
    """
    from agent_lightning.security import retention
    from agent_lightning.security.audit import Actor, AuditLog
    from agent_lightning.store import app_settings

    audit, actor = AuditLog(store), Actor(source, "system", config.app)
    changed: list[str] = []
    store.ensure_app(config.app)
    if config.reward is not None:
        wanted = {
            "reward_wait_seconds": float(config.reward.wait_seconds),
            "default_reward": float(config.reward.default),
            "reward_aggregation": config.reward.aggregation,
        }
        before = app_settings(store.get_app(config.app))
        if any(before[k] != v for k, v in wanted.items()):
            before, app = store.update_app(config.app, **wanted)
            after = app_settings(app)
            audit.record(actor, "app.settings", "app", config.app, before=before, after=after)
            changed += [f"{k} {before[k]} → {after[k]}" for k in wanted if before[k] != after[k]]
    current = retention.rules(store, config.app)
    for kind, days in (config.retention_days or {}).items():
        if current[kind] != days:
            retention.set_rule(store, audit, config.app, kind, days, actor)
            changed.append(f"retention of {kind} {current[kind]} → {days} days")
    return changed
