"""runtime.yaml: validation that names the line and field, and model routing."""

from __future__ import annotations

import types

import pytest

import agent_lightning.gateway as gateway_pkg
from agent_lightning.cli.project import RUNTIME_YAML
from agent_lightning.gateway.config import (
    Router,
    RuntimeConfigError,
    Target,
    load_runtime_config,
    parse_runtime_config,
)


def test_the_file_agent_lightning_init_writes_is_valid() -> None:
    config = parse_runtime_config(RUNTIME_YAML)
    assert config.runtimes["default"].base_url == "https://api.openai.com/v1"
    assert Router(config).resolve("anything").targets == (Target("default", None),)


def test_errors_name_the_line_and_the_field() -> None:
    text = "runtimes:\n  main:\n    kind: openai\n    base_url: ftp://nope\n"
    with pytest.raises(RuntimeConfigError) as caught:
        parse_runtime_config(text, "rt.yaml")
    assert "rt.yaml:4: runtimes.main.base_url" in str(caught.value)
    with pytest.raises(RuntimeConfigError, match=r"rt.yaml:3: runtimes.main.kind"):
        parse_runtime_config("runtimes:\n  main:\n    kind: bedrock\n    base_url: http://x\n",
                             "rt.yaml")  # fmt: skip
    with pytest.raises(RuntimeConfigError, match=r"rt.yaml:3: not valid YAML"):
        parse_runtime_config("runtimes:\n  - [unclosed\n", "rt.yaml")
    with pytest.raises(RuntimeConfigError, match="rt.yaml:3: runtimes.main.timeot"):
        parse_runtime_config("runtimes:\n  main:\n    timeot: 3\n    base_url: http://x\n",
                             "rt.yaml")  # fmt: skip


def test_references_and_azure_requirements_are_checked() -> None:
    with pytest.raises(RuntimeConfigError, match="names no runtime 'nope'"):
        parse_runtime_config(
            "runtimes:\n  a: {base_url: 'http://x'}\nroutes:\n  - {model: m, runtime: nope}\n"
        )
    with pytest.raises(RuntimeConfigError, match="api_version"):
        parse_runtime_config("runtimes:\n  a: {kind: azure_openai, base_url: 'https://x'}\n")


def test_missing_file_says_how_to_get_one(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("AGL_RUNTIME_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(RuntimeConfigError, match="AGL_RUNTIME_CONFIG"):
        load_runtime_config()
    (tmp_path / "rt.yaml").write_text(RUNTIME_YAML)
    monkeypatch.setenv("AGL_RUNTIME_CONFIG", str(tmp_path / "rt.yaml"))
    assert "default" in load_runtime_config().runtimes


def test_routing_order_exact_glob_runtime_model_default() -> None:
    config = parse_runtime_config(
        """
runtimes:
  openai: {base_url: "https://api.openai.com/v1", fallback: local}
  local: {kind: llama_cpp, base_url: "http://127.0.0.1:8080/v1", model: llama-3}
routes:
  - {model: support-bot, runtime: openai, upstream_model: gpt-4o-mini, policy: prompts}
  - {model: "gpt-*", runtime: openai}
"""
    )
    router = Router(config)
    exact = router.resolve("support-bot")
    assert exact.targets == (Target("openai", "gpt-4o-mini"), Target("local", "llama-3"))
    assert exact.policy == "prompts"
    assert router.resolve("gpt-4o").targets[0] == Target("openai", None)
    assert router.resolve("llama-3").targets == (Target("local", None),)
    assert router.resolve("claude") is None  # two runtimes, none named default: unknown model
    assert config.runtimes["local"].kind == "openai"


def test_public_names_are_exported() -> None:
    public = {
        name
        for name, value in vars(gateway_pkg).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(gateway_pkg.__all__) == public


def test_the_server_runs_without_a_gateway_when_there_is_no_runtime_yaml(
    tmp_path,
    monkeypatch,  # noqa: ANN001
) -> None:
    from agent_lightning.config import Settings
    from agent_lightning.gateway import Gateway, mount_gateway_if_configured
    from agent_lightning.server.app import create_app
    from agent_lightning.server.state import build_state

    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'a.db'}",
                        jwt_secret="x" * 48)  # fmt: skip
    monkeypatch.setenv("AGL_RUNTIME_CONFIG", str(tmp_path / "runtime.yaml"))
    state = build_state(settings)
    assert mount_gateway_if_configured(create_app(settings, state=state), state) is None
    (tmp_path / "runtime.yaml").write_text("runtimes:\n  default: {base_url: 'http://x'}\n")
    mounted = mount_gateway_if_configured(create_app(settings, state=state), state)
    assert isinstance(mounted, Gateway) and state.extras["gateway"] is mounted
    assert (
        mounted.start in state.extras["on_startup"] and mounted.stop in state.extras["on_shutdown"]
    )
    (tmp_path / "runtime.yaml").write_text("runtimes: {default: {base_url: 3}}\n")
    state.store.close()
    state = build_state(settings)
    with pytest.raises(RuntimeConfigError):
        mount_gateway_if_configured(create_app(settings, state=state), state)
    state.store.close()
