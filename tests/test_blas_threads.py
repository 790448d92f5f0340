"""The server caps BLAS threads (AGL_BLAS_THREADS, default 1): learning leaves cores to decide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_lightning.config import ConfigError, Settings

PROBE = """
import json
from threadpoolctl import threadpool_info
import numpy, scipy.linalg
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
from agent_lightning.server.main import app_from_env
app_from_env()
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"before": before, "after": after}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:
    # A fresh process: the cap is process-wide, and this one's BLAS is pinned by conftest.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    environ.update(AGL_DATA_DIR=str(tmp_path), OPENBLAS_NUM_THREADS="3", **env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one core")
def test_the_server_caps_blas_at_one_thread_unless_told_otherwise(tmp_path: Path) -> None:
    capped = _probe(tmp_path / "a")
    assert capped["before"] and all(n > 1 for n in capped["before"])  # OpenBLAS: up to the cores
    assert all(n == 1 for n in capped["after"])
    left = _probe(tmp_path / "b", AGL_BLAS_THREADS="0")  # 0: the library's own choice
    assert left["after"] == left["before"]


def test_blas_threads_setting(monkeypatch) -> None:
    monkeypatch.delenv("AGL_BLAS_THREADS", raising=False)
    assert Settings.from_env().blas_threads == 1
    monkeypatch.setenv("AGL_BLAS_THREADS", "4")
    assert Settings.from_env().blas_threads == 4
    monkeypatch.setenv("AGL_BLAS_THREADS", "-1")
    with pytest.raises(ConfigError, match="AGL_BLAS_THREADS"):
        Settings.from_env()
