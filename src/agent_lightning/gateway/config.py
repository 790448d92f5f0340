"""The gateway's runtime configuration: `runtime.yaml`, validated, and model routing.

The file `agent-lightning init` writes names upstreams under `runtimes`; the gateway adds two
optional sections:

```yaml
runtimes:
  default: {kind: openai, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
  local:   {kind: openai, base_url: "http://127.0.0.1:8080/v1", model: llama-3.1-8b}
  azure:   {kind: azure_openai, base_url: "https://res.openai.azure.com",
            api_version: "2024-10-21", deployment: gpt-4o-mini, api_key_env: AZURE_KEY}
routes:                      # what the agent asks for -> where it goes (first match wins)
  - model: support-bot       # exact name or a glob ("gpt-4*", "*")
    runtime: default
    upstream_model: gpt-4o-mini
    fallback: [local]
    policy: support-prompts  # a policy whose spec lists prompt variants
gateway:
  default_runtime: default
```

A model no route names goes to the runtime whose `model` is that name, else to the default
runtime, unchanged. Keys are never in the file: `api_key_env` names the variable that holds one.
Errors name the field and the line, so a typo is found without reading a traceback.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent_lightning._yaml import YamlSyntaxError, parse_yaml, validation_problems

ENV_VAR = "AGL_RUNTIME_CONFIG"
DEFAULT_PATH = Path("runtimes") / "runtime.yaml"

# vLLM, llama.cpp's server, Ollama, LM Studio ... all speak the OpenAI wire format.
_OPENAI_ALIASES = {"openai", "openai_compatible", "vllm", "llama_cpp", "llamacpp", "ollama"}

Seconds = Annotated[float, Field(gt=0, le=86_400)]


class RuntimeConfigError(ValueError):
    """The runtime configuration cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class Runtime(_Strict):
    """One upstream: an OpenAI-compatible endpoint or an Azure OpenAI resource."""

    kind: str = "openai"
    base_url: str
    api_key_env: str | None = None
    model: str | None = None
    api_version: str | None = None
    deployment: str | None = None
    deployments: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = 600.0
    connect_timeout: Seconds = 10.0
    read_timeout: Seconds = 300.0
    retries: int = Field(2, ge=0, le=10)
    backoff: Annotated[float, Field(ge=0, le=60)] = 0.25
    fallback: list[str] = Field(default_factory=list)

    _fallback = field_validator("fallback", mode="before")(_names)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        value = value.strip().lower().replace("-", "_")
        if value in _OPENAI_ALIASES:
            return "openai"
        if value in ("azure_openai", "azure"):
            return "azure_openai"
        raise ValueError("kind must be openai (or vllm, llama_cpp, ...) or azure_openai")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _azure_needs_version(self) -> Runtime:
        if self.kind == "azure_openai" and not self.api_version:
            raise ValueError("an azure_openai runtime needs api_version")
        return self

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class Route(_Strict):
    """Where calls for one model name (or glob) go, and what is applied on the way."""

    model: str = Field(min_length=1, max_length=200)
    runtime: str
    upstream_model: str | None = None
    fallback: list[str] = Field(default_factory=list)
    policy: str | None = None

    _fallback = field_validator("fallback", mode="before")(_names)


class GatewayOptions(_Strict):
    default_runtime: str | None = None
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    queue_size: int = Field(100_000, ge=1)
    batch_size: int = Field(500, ge=1, le=10_000)
    retry_statuses: list[int] = Field(default_factory=lambda: [408, 409, 429, 500, 502, 503, 504])
    max_retry_after: Seconds = 10.0
    capture_bodies: bool = True


class RuntimeConfig(_Strict):
    runtimes: dict[str, Runtime] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    @model_validator(mode="after")
    def _references_exist(self) -> RuntimeConfig:
        known = set(self.runtimes)
        for name, runtime in self.runtimes.items():
            for other in runtime.fallback:
                if other not in known:
                    raise ValueError(f"runtimes.{name}.fallback names no runtime {other!r}")
        for index, route in enumerate(self.routes):
            for other in [route.runtime, *route.fallback]:
                if other not in known:
                    raise ValueError(f"routes[{index}] names no runtime {other!r}")
        default = self.gateway.default_runtime
        if default is not None and default not in known:
            raise ValueError(f"gateway.default_runtime names no runtime {default!r}")
        return self

    @property
    def default_runtime(self) -> str | None:
        if self.gateway.default_runtime:
            return self.gateway.default_runtime
        if "default" in self.runtimes:
            return "default"
        return next(iter(self.runtimes)) if len(self.runtimes) == 1 else None


@dataclass(frozen=True)
class Target:
    """One upstream attempt: which runtime, and the model name to send (None: unchanged)."""

    runtime: str
    model: str | None


@dataclass(frozen=True)
class RoutePlan:
    targets: tuple[Target, ...]  # the primary first, then fallbacks in order
    policy: str | None


class Router:
    """Model name -> RoutePlan, memoised (the set of model names an app uses is small)."""

    def __init__(self, config: RuntimeConfig, max_cached: int = 4096) -> None:
        self.config = config
        self.max_cached = max_cached
        self._cache: dict[str, RoutePlan | None] = {}

    def resolve(self, model: str) -> RoutePlan | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        plan = self._resolve(model)
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[model] = plan
        return plan

    def _resolve(self, model: str) -> RoutePlan | None:
        config = self.config
        route = next((r for r in config.routes if r.model == model), None)
        if route is None:
            route = next((r for r in config.routes if fnmatch.fnmatchcase(model, r.model)), None)
        if route is not None:
            primary = Target(route.runtime, route.upstream_model)
            fallbacks = route.fallback or config.runtimes[route.runtime].fallback
            return RoutePlan((primary, *self._fallbacks(fallbacks)), route.policy)
        name = next((n for n, r in config.runtimes.items() if r.model == model), None)
        name = name or config.default_runtime
        if name is None:
            return None
        runtime = config.runtimes[name]
        return RoutePlan((Target(name, None), *self._fallbacks(runtime.fallback)), None)

    def _fallbacks(self, names: list[str]) -> tuple[Target, ...]:
        # A fallback runtime is usually another provider: ask it for its own model, if it names one.
        return tuple(Target(n, self.config.runtimes[n].model) for n in names)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`explicit`, else `$AGL_RUNTIME_CONFIG`, else `runtimes/runtime.yaml` in the cwd."""
    return Path(explicit or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_runtime_config(path: str | os.PathLike[str] | None = None) -> RuntimeConfig:
    path = config_path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RuntimeConfigError(
            f"{path}: no runtime configuration (set {ENV_VAR} or run `agent-lightning init`)"
        ) from None
    return parse_runtime_config(text, str(path))


def parse_runtime_config(text: str, source: str = "runtime.yaml") -> RuntimeConfig:
    try:
        data, node = parse_yaml(text, source)
    except YamlSyntaxError as exc:
        raise RuntimeConfigError(str(exc)) from None
    if not isinstance(data, Mapping):
        raise RuntimeConfigError(f"{source}: expected a mapping with a `runtimes` section")
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        raise RuntimeConfigError("; ".join(validation_problems(exc, node, source))) from None
