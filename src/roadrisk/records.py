"""Run directories and ``run.json``: where a run's results live and how they are kept safe.

The record is rewritten atomically at each milestone (started, each fold, finished), so whatever
stops the process (Ctrl-C, a crash, a killed container) leaves a readable record saying so.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .atomic import atomic_write_json
from .errors import RoadriskError

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
LOG_FILE = "train.log"
LIBRARY_LOG_FILE = "library.log"
OOF_FILE = "oof.csv"
SUBMISSION_FILE = "submission.csv"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PACKAGES = ("torch", "pytabkit", "numpy", "pandas", "scikit-learn", "scipy", "pytorch-lightning", "roadrisk")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_label(label: str) -> str:
    if not LABEL_PATTERN.match(label):
        raise RoadriskError(f"error: --label {label!r}: use letters, digits, '.', '_' or '-' (at most 64), "
                            "e.g. --label docker-cpu")
    return label


def new_run_dir(runs_dir: Path, label: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(runs_dir) / label / f"{stamp}-{secrets.token_hex(3)}"
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise RoadriskError(f"error: --runs-dir {runs_dir}: cannot create {run_dir} ({exc.strerror}). "
                            "Fix: point --runs-dir at a writable folder") from None
    return run_dir


# Distributions whose module is already imported by the time a run starts report ``__version__``
# directly: a metadata lookup scans sys.path and cost ~12 ms a run.
_MODULE_OF = {"torch": "torch", "numpy": "numpy", "pandas": "pandas", "scikit-learn": "sklearn", "scipy": "scipy"}


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        module = sys.modules.get(_MODULE_OF.get(name, ""))
        if module is not None and isinstance(getattr(module, "__version__", None), str):
            versions[name] = str(module.__version__)
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    import os

    if os.environ.get("ROADRISK_GIT_COMMIT"):  # set by the images, which carry no .git
        return os.environ["ROADRISK_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class RunRecord:
    """The ``run.json`` of one run, saved atomically on every change of substance."""

    def __init__(self, run_dir: Path, label: str):
        self.run_dir = run_dir
        self.data: dict = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_dir.name,
            "label": label,
            "status": "running",
            "started_at": now_iso(),
            "ended_at": None,
            "git_commit": git_commit(),
            "command": None,
            "environment": {},
            "packages": package_versions(),
            "device": {},
            "data": {},
            "config": {},
            "timings": {"folds": []},
            "metrics": {"folds": []},
            "outputs": {},
            "error": None,
        }

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value

    def save(self, durable: bool = False) -> None:
        # Milestone saves only need atomicity (a killed process leaves the last one whole); the
        # final save is also flushed to disk, as every kept output is.
        atomic_write_json(self.run_dir / RUN_FILE, self.data, durable=durable)

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["ended_at"] = now_iso()
        self.data["error"] = error
        self.save(durable=True)
