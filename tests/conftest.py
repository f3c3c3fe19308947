from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Generated datasets go to a per-session cache, never the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ROADRISK_CACHE_DIR")
    os.environ["ROADRISK_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("ROADRISK_CACHE_DIR", None)
    else:
        os.environ["ROADRISK_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """A small generated dataset in Kaggle's layout (with the original file)."""
    from roadrisk.generator import write_dataset

    out = tmp_path_factory.mktemp("data")
    write_dataset(out, 1200, 300, 1500, seed=7)
    return out


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """The real console entry point, in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "roadrisk", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
