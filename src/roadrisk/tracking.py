"""Finished runs into MLflow: a run folder's record and files, logged as one MLflow run.

Optional twice over: tracking is off unless ``--track mlflow`` (or ``MLFLOW_TRACKING_URI``) asks for it,
and mlflow is the ``[track]`` extra, imported only when a run is logged, never by a run that is not.
The run folder is the truth and MLflow a copy of it: logging reads the record (``records.read``) and
writes nothing into the folder, logging the same folder again updates the same MLflow run (found by
its ``roadrisk.run_id`` tag), and a failure to log is one warning line, never a failed run.

Where runs go: ``MLFLOW_TRACKING_URI`` when it is set, else a SQLite store beside the runs
(``<runs dir>/mlflow.db``, artifacts under ``<runs dir>/mlartifacts/``). docs/tracking.md says what is
logged; ``roadrisk track`` logs folders written elsewhere (in a container, on a cluster).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import sqlite3
import warnings
from datetime import datetime
from pathlib import Path

from . import records
from .records import LOG_FILE, OOF_FILE, RUN_FILE, SUBMISSION_FILE, SWEEP_FILE, TUNE_FILE

TRACK_CHOICES = ("mlflow", "none")
URI_VARIABLE = "MLFLOW_TRACKING_URI"
STORE_FILE = "mlflow.db"  # the default store, in the runs folder
ARTIFACTS_DIR = "mlartifacts"  # its artifacts, beside it
INSTALL_FIX = "pip install 'roadrisk[track]'"
ARTIFACTS = (RUN_FILE, OOF_FILE, SUBMISSION_FILE, LOG_FILE)
ENVIRONMENTS = ("native", "docker", "docker-mps", "docker-gpu", "cluster")  # the labels the make targets give
TRAIN_PARAMS = ("model", "recipe", "target", "cv", "cv_bins", "folds", "seed", "cv_seed", "data_seed", "device",
                "matmul_precision", "profile", "plan_id", "threads", "data_fingerprint")
MLFLOW_STATUS = {"complete": "FINISHED", "dry-run": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
                 "pruned": "KILLED", "running": "RUNNING"}  # a pruned tune trial was stopped on purpose
PARAM_LIMIT = 6000  # MLflow's longest param value
TAG_LIMIT = 5000  # below MLflow's 8000
BATCH = {"params": 100, "tags": 100, "metrics": 1000}  # MLflow's log_batch limits
UNCHANGED = "(the run and its record are unchanged)"


def mlflow_installed() -> bool:
    """Whether mlflow can be imported here, without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def tracking_on(flag: str | None) -> bool:
    """``--track mlflow``, or ``MLFLOW_TRACKING_URI`` set and no ``--track none``."""
    if flag == "none":
        return False
    return flag == "mlflow" or bool(os.environ.get(URI_VARIABLE))


def default_store(runs_dir: Path) -> str:
    """The store when no URI is set: SQLite in the runs folder (MLflow is leaving plain file stores behind)."""
    return "sqlite:///" + str((Path(runs_dir) / STORE_FILE).resolve())


def tracker_for(flag: str | None, runs_dir: Path, echo=print) -> Tracker | None:
    """The tracker a command's ``--track`` value asks for, or None: tracking off, or mlflow missing (said in
    one line; the run goes on). ``runs_dir``: the runs folder, where the default store lives (a sweep's or
    tune's own folder stands for the one above it, so its runs share the store of every other run)."""
    if not tracking_on(flag):
        return None
    if not mlflow_installed():
        echo(f"warning: --track mlflow: mlflow is not installed. Fix: {INSTALL_FIX}")
        return None
    runs_dir = Path(runs_dir)
    if (runs_dir / SWEEP_FILE).is_file() or (runs_dir / TUNE_FILE).is_file():
        runs_dir = runs_dir.parent
    return Tracker(runs_dir, os.environ.get(URI_VARIABLE) or None, echo)


def runs_root(run_dir: Path) -> Path:
    """The runs folder a run folder lives in: above its sweep or tune folder, else above its label folder."""
    group = group_folder(run_dir)
    return (group or Path(run_dir).resolve().parent).parent


def group_folder(run_dir: Path) -> Path | None:
    """The sweep or tune folder a run belongs to (``runs/<sweep>/<member id>/<run>/``, an ensemble in
    ``runs/<sweep>/ensemble/<run>/``): the nearest of the run's two parents holding sweep.json or tune.json."""
    for folder in Path(run_dir).resolve().parents[:2]:
        if (folder / SWEEP_FILE).is_file() or (folder / TUNE_FILE).is_file():
            return folder
    return None


def experiment_name(run_dir: Path, record: dict) -> str:
    """The sweep's or tune's name for its runs; ``roadrisk-<label>`` for the others."""
    group = group_folder(run_dir)
    return group.name if group else f"roadrisk-{record.get('label') or 'native'}"


def environment_of(run_dir: Path, record: dict) -> str:
    """native, docker, docker-mps, docker-gpu or cluster: the label when it is one of those (what the make
    targets give), else the folder (``runs/cluster/<sweep>/``), else the record's container evidence."""
    label = record.get("label")
    if label in ENVIRONMENTS:
        return label
    group = group_folder(run_dir)
    if (group or Path(run_dir).resolve().parent).parent.name == "cluster":
        return "cluster"
    if (record.get("environment") or {}).get("in_container"):
        device = record.get("device") or {}
        if device.get("requested") == "mps":
            return "docker-mps"
        return "docker-gpu" if str(device.get("selected") or "").startswith("cuda") else "docker"
    return "native"


def find_runs(path: Path) -> list[Path]:
    """``path`` itself when it is a run folder, else every run folder below it (a sweep, a label, runs/),
    leaving out the default store's artifacts (copies of run.json) and hidden folders."""
    path = Path(path)
    if (path / RUN_FILE).is_file():
        return [path]
    if not path.is_dir():
        return []
    found = []
    for run_file in sorted(path.rglob(RUN_FILE)):
        parts = run_file.relative_to(path).parts[:-1]
        if not any(part == ARTIFACTS_DIR or part.startswith(".") for part in parts):
            found.append(run_file.parent)
    return found


# ---------------------------------------------------------------- what one run becomes

def _text(value, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _millis(stamp: str | None) -> int | None:
    if not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _key(name: str) -> str:
    return re.sub(r"[^\w\-./ ]", "_", name)


def params_of(record: dict) -> dict[str, str]:
    """The plan, flat: its keys, and each model parameter as ``params.<name>`` (an ensemble: its config and members)."""
    config = record.get("config") or {}
    if record.get("kind") == "ensemble":
        out = {key: value for key, value in config.items() if not isinstance(value, (dict, list))}
        out["member_ids"] = ",".join(m.get("run_id") or "" for m in record.get("members") or [])
    else:
        out = {key: config[key] for key in TRAIN_PARAMS if key in config}
        out.update({f"params.{name}": value for name, value in (config.get("params") or {}).items()})
    return {_key(key): _text(value, PARAM_LIMIT) for key, value in out.items()}


def metrics_of(record: dict) -> list[tuple[str, float, int]]:
    """(key, value, step): the scores (a list of numbers is a series, a mapping ``key.<name>``), the
    per-fold RMSE and timings as series over the fold index, each fold's validation curve as
    ``val_rmse_fold<k>`` over the epoch, and the timings; None values (no floor on real data) left out."""
    out: list[tuple[str, float, int]] = []
    metrics, timings = record.get("metrics") or {}, record.get("timings") or {}
    for name, value in metrics.items():
        if name == "folds":
            continue
        if _number(value):
            out.append((name, float(value), 0))
        elif isinstance(value, list):
            out += [(name, float(v), step) for step, v in enumerate(value) if _number(v)]
        elif isinstance(value, dict):
            out += [(f"{name}.{sub}", float(v), 0) for sub, v in value.items() if _number(v)]
    for fold in metrics.get("folds") or []:
        index = fold.get("fold", 0)
        if _number(fold.get("rmse")):
            out.append(("fold_rmse", float(fold["rmse"]), index))
        out += [(f"val_rmse_fold{index}", float(v), int(epoch)) for epoch, v in fold.get("curve") or []]
    for fold in timings.get("folds") or []:
        out += [(f"fold_{name}", float(v), fold.get("fold", 0)) for name, v in fold.items()
                if name.endswith("_s") and _number(v)]
    out += [(name, float(v), 0) for name, v in timings.items() if _number(v)]
    for name, value in (record.get("weights") or {}).items():
        if _number(value):
            out.append((f"weight.{name}", float(value), 0))
    return [(_key(key), value, step) for key, value, step in out]


def tags_of(run_dir: Path, record: dict) -> dict[str, str]:
    config, device = record.get("config") or {}, record.get("device") or {}
    environment, packages = record.get("environment") or {}, record.get("packages") or {}
    group = group_folder(run_dir)
    tags = {
        "roadrisk.run_id": record.get("run_id"),
        "roadrisk.kind": record.get("kind") or "train",
        "roadrisk.status": record.get("status"),
        "roadrisk.environment": environment_of(run_dir, record),
        "roadrisk.label": record.get("label"),
        "roadrisk.model": config.get("model"),
        "roadrisk.recipe": config.get("recipe"),
        "roadrisk.target": config.get("target"),
        "roadrisk.profile": config.get("profile"),
        "roadrisk.group": None if group is None else group.name,
        "roadrisk.run_dir": str(Path(run_dir).resolve()),
        "roadrisk.host": record.get("host"),
        "roadrisk.executor": (record.get("executor") or {}).get("engine"),
        "roadrisk.device.requested": device.get("requested"),
        "roadrisk.device.selected": device.get("selected"),
        "roadrisk.device.reason": device.get("reason"),
        "roadrisk.device.fell_back": device.get("fell_back"),
        "roadrisk.gpu_name": device.get("gpu_name") or environment.get("gpu_name"),
        "roadrisk.torch": environment.get("torch") or packages.get("torch"),
        "roadrisk.in_container": environment.get("in_container"),
        "roadrisk.error": record.get("error"),
        "mlflow.source.git.commit": record.get("git_commit"),
    }
    if record.get("kind") == "ensemble":
        tags.update({"roadrisk.method": record.get("method"), "roadrisk.members": len(record.get("members") or []),
                     "roadrisk.stack_model": config.get("stack_model")})
    tune = record.get("tune")
    if isinstance(tune, dict):
        tags.update({"roadrisk.tune.study": tune.get("study"), "roadrisk.tune.trial": tune.get("trial")})
    return {key: _text(value if isinstance(value, str) else str(value), TAG_LIMIT)
            for key, value in tags.items() if value is not None}


# ---------------------------------------------------------------- the tracker

@contextlib.contextmanager
def _quiet():
    """MLflow's own chatter (store migrations, deprecation notes) is not the run's output."""
    import mlflow  # noqa: F401  (first: importing it sets its loggers' levels)

    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _open_sqlite(uri: str) -> None:
    """A SQLite store that cannot be opened (a folder, not a database, an unwritable place) fails here at once:
    MLflow retries opening it for about 100 s before it gives up, at the end of a run that is already done."""
    if not uri.startswith("sqlite:///"):
        return
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if path in ("", ":memory:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # as MLflow does
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA schema_version")


def shown_uri(uri: str) -> str:
    """A tracking URI without its password, if it carries one."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", uri)


class Tracker:
    """Logs run folders to one MLflow store: ``uri``, else the SQLite store in ``runs_dir``."""

    def __init__(self, runs_dir: Path, uri: str | None = None, echo=print):
        self.runs_dir = Path(runs_dir)
        self.local = uri is None  # the default store: its artifacts go beside it, under runs_dir/mlartifacts
        self.uri = uri or default_store(runs_dir)
        self.echo = echo
        self._client = None
        self._experiments: dict[str, str] = {}  # name -> id: a sweep or tune logs many runs into one

    def log_run(self, run_dir: Path) -> str | None:
        """Log (or update) the MLflow run of ``run_dir``; its MLflow run id, or None after one warning line."""
        try:
            with _quiet():
                run_id, experiment = self._log(Path(run_dir))
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, the run stays done
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            cause = lines[0] if len(lines[0]) <= 300 else lines[0][:299] + "…"
            self.echo(f"warning: tracking: cannot log {run_dir} to {shown_uri(self.uri)}: {cause} {UNCHANGED}")
            return None
        self.echo(f"mlflow: {run_dir} -> run {run_id} in experiment {experiment} ({shown_uri(self.uri)})")
        return run_id

    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            _open_sqlite(self.uri)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _experiment(self, name: str) -> str:
        if name not in self._experiments:
            self._experiments[name] = self._find_or_create_experiment(name)
        return self._experiments[name]

    def _find_or_create_experiment(self, name: str) -> str:
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            where = None
            if self.local:
                folder = re.sub(r"[^A-Za-z0-9._-]", "_", name)
                where = (self.runs_dir / ARTIFACTS_DIR / folder).resolve().as_uri()
            return client.create_experiment(name, artifact_location=where)
        if experiment.lifecycle_stage != "active":
            raise RuntimeError(f"experiment {name!r} is deleted in this store; restore it (mlflow experiments "
                               "restore) or delete it for good (mlflow gc)")
        return experiment.experiment_id

    def _log(self, run_dir: Path) -> tuple[str, str]:
        record, problem = records.read(run_dir)
        if problem:
            raise RuntimeError(problem.removeprefix("error: "))
        from mlflow.entities import Metric, Param, RunTag

        client = self.client()
        name = experiment_name(run_dir, record)
        experiment_id = self._experiment(name)
        run_id = str(record.get("run_id") or run_dir.name)
        found = client.search_runs([experiment_id], filter_string=f"tags.`roadrisk.run_id` = '{run_id}'",
                                   max_results=1)
        if found:
            mlflow_run = found[0]
        else:
            mlflow_run = client.create_run(experiment_id, start_time=_millis(record.get("started_at")),
                                           run_name=f"{record.get('label')}/{run_id}")
        mlflow_id = mlflow_run.info.run_id
        stamp = _millis(record.get("ended_at")) or _millis(record.get("started_at")) or 0
        params = {key: value for key, value in params_of(record).items() if key not in mlflow_run.data.params}
        metrics = self._new_points(mlflow_run, metrics_of(record))
        batches = {
            "tags": [RunTag(key, value) for key, value in tags_of(run_dir, record).items()],
            "params": [Param(key, value) for key, value in params.items()],
            "metrics": [Metric(key, value, stamp, step) for key, value, step in metrics],
        }
        for kind, items in batches.items():
            for start in range(0, len(items), BATCH[kind]):
                client.log_batch(mlflow_id, **{kind: items[start:start + BATCH[kind]]})
        for artifact in ARTIFACTS:
            if (run_dir / artifact).is_file():
                client.log_artifact(mlflow_id, str(run_dir / artifact))
        status = MLFLOW_STATUS.get(record.get("status"), "FINISHED")
        if status == "RUNNING":
            client.update_run(mlflow_id, status="RUNNING")
        else:
            client.set_terminated(mlflow_id, status, end_time=_millis(record.get("ended_at")))
        return mlflow_id, name

    def _new_points(self, mlflow_run, points: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
        """The points MLflow does not hold yet: logging a folder again adds none twice."""
        known = mlflow_run.data.metrics
        if not known:
            return points
        client, seen = self.client(), {}
        for key in {key for key, _, _ in points if key in known}:
            seen[key] = {(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, key)}
        return [(key, value, step) for key, value, step in points if (step, value) not in seen.get(key, ())]
