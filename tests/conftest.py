from __future__ import annotations

import os
import subprocess
import sys
import types
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


def signal_at_second_fold(runs_dir: Path, signum: int, model: str = "tabm", *extra: str,
                          trigger: str = "progress: fold 2/2 started") -> tuple[int, str]:
    """A real smoke run sent ``signum`` when it prints a line starting with ``trigger`` (default: as its second
    fold starts): (exit code, what it printed after).

    The child gets Ctrl-C's default disposition, as a terminal user has it: a suite started in the
    background (nohup, `cmd &` in a script) inherits SIGINT ignored, and Python would never raise
    KeyboardInterrupt."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "roadrisk", "train", "--profile", "smoke", "--model", model,
                             "--device", "cpu", "--runs-dir", str(runs_dir), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith(trigger):
            proc.send_signal(signum)
            break
    rest = proc.stdout.read()
    return proc.wait(timeout=120), rest


@pytest.fixture
def machine(monkeypatch):
    """Configure a pretend machine by patching what torch and the OS report."""

    def configure(*, os_name="Linux", arch="x86_64", mac_version="", rosetta=False, in_container=False,
                  mps_built=False, mps_available=False, cuda=False, cuda_build=None):
        import torch

        from roadrisk import environment

        monkeypatch.setattr(environment.platform, "system", lambda: os_name)
        monkeypatch.setattr(environment.platform, "machine", lambda: arch)
        monkeypatch.setattr(environment.platform, "mac_ver", lambda: (mac_version, ("", "", ""), ""))
        monkeypatch.setattr(environment, "macos_translated", lambda: rosetta)
        monkeypatch.setattr(environment, "detect_container",
                            lambda root=None: (True, "/.dockerenv exists (Docker)") if in_container
                            else (False, "no container markers"))
        monkeypatch.setattr(torch.backends.mps, "is_built", lambda: mps_built)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps_available)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(
            name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, major=9, minor=0))
        monkeypatch.setattr(torch.version, "cuda", cuda_build)
        return environment.collect()

    return configure
