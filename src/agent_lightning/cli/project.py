"""`agent-lightning init`: the project skeleton a new user starts from."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = ("blank",)

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
# agent-lightning project settings. Environment variables (AGL_*) override these.
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
