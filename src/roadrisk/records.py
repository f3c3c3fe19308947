"""Run directories and ``run.json``: where a run's results live and how they are kept safe.

This module owns run.json for both kinds of run (``train`` and ``ensemble``): it writes it, reads it
(``read``, which upgrades older schemas, so every reader sees the current layout), and names its
statuses. The record is rewritten atomically at each milestone (started, each fold, finished), so
whatever stops the process (Ctrl-C, a crash, a killed container) leaves a readable record saying so.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
import sys
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from pathlib import Path

from .atomic import atomic_write_json, overwrite_in_place
from .errors import RoadriskError, WriteFailed
from .recipes import RECIPE_ALIASES

# 2: config.seed is the model's seed alone, beside config.cv_seed (folds) and config.data_seed;
# config.recipe, kind, host, pid, outputs.folds and resumes were added.
# 3: config is the run plan (plan.py): target, cv, cv_bins, data_fingerprint, plan_id, seed_matters; the
# executor's description moved from config.executor to executor.
SCHEMA_VERSION = 3
RUN_FILE = "run.json"
SWEEP_FILE = "sweep.json"  # what `roadrisk sweep` writes beside its members' folders
TUNE_FILE = "tune.json"  # what `roadrisk tune` writes beside its trials' folders
LOG_FILE = "train.log"
LIBRARY_LOG_FILE = "library.log"
OOF_FILE = "oof.csv"
SUBMISSION_FILE = "submission.csv"
# What --resume reads from an existing record, and the type each must have: a record missing one was
# not written by roadrisk train (or was edited), and is refused in one line instead of a KeyError.
REQUIRED_KEYS = {"status": str, "label": str, "options": dict, "timings": (dict, type(None))}
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PACKAGES = ("torch", "pytabkit", "numpy", "pandas", "scikit-learn", "scipy", "pytorch-lightning", "roadrisk")


class Status(str, Enum):
    """A run's status in run.json (a str, so it is written and compared as the plain word)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    DRY_RUN = "dry-run"
    PRUNED = "pruned"  # a tune trial stopped after some folds: its running score was already worse than the rest

    def __str__(self) -> str:
        return self.value


STOPPED = (Status.INTERRUPTED, Status.FAILED, Status.RUNNING)  # what --resume (and a sweep) may continue


def upgrade(record: dict) -> dict:
    """Read an older record as a current one, in place: schema 1's single seed drove the folds too and it
    had no recipe; before schema 3 every run had the raw target on KFold folds."""
    config = record.get("config")
    if isinstance(config, dict):
        if record.get("schema_version", 1) < 2:
            config.setdefault("cv_seed", config.get("seed"))
            config.setdefault("recipe", "fast")  # what every run of that version trained with
        if record.get("schema_version", 1) < 3 and config:
            config.setdefault("cv", "kfold")
            config.setdefault("cv_bins", None)
            if record.get("kind", "train") == "train":
                config.setdefault("target", "raw")
        if config.get("recipe") in RECIPE_ALIASES:  # a recipe renamed since (seed -> reference)
            config["recipe"] = RECIPE_ALIASES[config["recipe"]]
    record.setdefault("kind", "train")
    return record


def read(run_dir: Path) -> tuple[dict | None, str | None]:
    """The record in ``run_dir``, upgraded, or None and the one line that says why it cannot be used."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        return None, f"error: {run_dir}: not a directory. Fix: pass run folders such as runs/native/<run-id>"
    if not path.is_file():
        return None, f"error: {run_dir}: no {RUN_FILE}. Fix: pass a folder written by `roadrisk train`"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno})" if hasattr(exc, "lineno") else ""
        return None, (f"error: {path}: truncated or not JSON{where}; the run was probably killed while writing "
                      "an old version of roadrisk. Fix: rerun it, or leave it out")
    if not isinstance(record, dict) or "schema_version" not in record:
        return None, f"error: {path}: not a roadrisk run record (no schema_version). Fix: leave it out"
    version = record.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        return None, (f"error: {path}: written by a newer roadrisk (schema_version {version} > {SCHEMA_VERSION}). "
                      "Fix: upgrade roadrisk to read it")
    return upgrade(record), None


def write(run_dir: Path, record: dict) -> None:
    """Write a whole record at once, atomically and flushed to disk (an ensemble's, which is never partial)."""
    atomic_write_json(Path(run_dir) / RUN_FILE, record, durable=True)


def record_field(record: dict, path: tuple[str, ...]):
    """A nested value of a run record, None where any level is missing."""
    value = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


HOST_PATH_VARIABLE = "ROADRISK_HOST_PATH"  # "CONTAINER_DIR=HOST_DIR", set by the container sessions


def shown(path: Path) -> str:
    """A path as the user can open it: inside a container, the host's path of the mounted runs folder
    (the container sessions say which with ROADRISK_HOST_PATH), elsewhere the path itself."""
    inside, _, host = os.environ.get(HOST_PATH_VARIABLE, "").partition("=")
    if inside and host:
        try:
            return str(Path(host) / Path(path).relative_to(inside))
        except ValueError:
            pass
    return str(path)


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

    def __init__(self, run_dir: Path, label: str, kind: str = "train"):
        self.run_dir = run_dir
        self.data: dict = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "run_id": run_dir.name,
            "label": label,
            "status": Status.RUNNING.value,
            # Which process writes this record: a "running" record whose process is gone was killed.
            "host": platform.node(),
            "pid": os.getpid(),
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

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """The record of an existing run (for --resume), upgraded; one clear line when there is none."""
        if not (Path(run_dir) / RUN_FILE).is_file() and Path(run_dir).is_dir():
            raise RoadriskError(f"error: --resume {run_dir}: no {RUN_FILE} there. Fix: pass a run folder written by "
                                "roadrisk train, such as runs/native/<run-id>")
        data, problem = read(run_dir)
        if problem:
            raise RoadriskError(problem)
        if data.get("kind", "train") != "train":
            raise RoadriskError(f"error: --resume {run_dir}: not a training run. Fix: pass a folder written by "
                                "roadrisk train")
        # (A newer schema_version is refused by ``read``: rewriting it would drop what the newer roadrisk recorded.)
        path = Path(run_dir) / RUN_FILE
        broken = [key for key, kind in REQUIRED_KEYS.items() if key not in data or not isinstance(data[key], kind)]
        if broken:
            raise RoadriskError(f"error: {path}: missing or malformed key(s) {', '.join(broken)}. Fix: restore the "
                                "file roadrisk wrote, or start a new run")
        record = cls.__new__(cls)
        record.run_dir = Path(run_dir)
        record.data = data
        return record

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value

    # A resumed run holds its saves until its checks pass: a refused --resume leaves the record as it was.
    hold_saves = False

    def save(self, durable: bool = False) -> None:
        # Milestone saves only need atomicity (a killed process leaves the last one whole); the
        # final save is also flushed to disk, as every kept output is.
        if not self.hold_saves:
            atomic_write_json(self.run_dir / RUN_FILE, self.data, durable=durable)

    def finish(self, status: Status, error: str | None = None) -> None:
        self.data["status"] = Status(status).value
        self.data["ended_at"] = now_iso()
        self.data["error"] = error
        try:
            self.save(durable=True)
        except WriteFailed:
            # A full disk refuses the temporary copy an atomic save needs; the record must still not claim
            # ``running`` for a process about to end: overwrite it in place, shortened if it must be.
            if self.hold_saves or not overwrite_in_place(self.run_dir / RUN_FILE, self._compact_forms()):
                raise

    # What a shortened record keeps: what --resume needs and what says how the run ended.
    SHORT_KEYS = ("schema_version", "kind", "run_id", "label", "status", "host", "pid", "started_at", "ended_at",
                  "command", "options", "timings", "outputs", "error")

    def _compact_forms(self) -> list[bytes]:
        short = {key: self.data.get(key) for key in self.SHORT_KEYS}
        short["shortened"] = "the disk was full when the run ended; the rest of this record could not be written"
        checked = {**short, "config": self.data.get("config"), "data": self.data.get("data")}  # what resume compares
        return [json.dumps(form, separators=(",", ":"), default=str).encode() + b"\n"
                for form in (self.data, checked, short)]
