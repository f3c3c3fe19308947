"""One training run: its options, its folder and record, and how it is prepared for the driver.

The order of a run: the machine's facts and the device, the data, the plan (``plan.py``: everything
the run computes, hashed), the features, the folds still to train. ``prepare`` does those steps and
hands the driver (``driver.py``) a job; the driver trains the folds and calls back ``accept`` for
each and ``finish`` at the end. ``TrainingRun`` itself holds only the files, the record and the
console. A run can stop half way (Ctrl-C, ``docker stop``, a crash) and be continued with
``resume``: every finished fold is on disk (``fold_store``), and the resumed run checks its plan is
the same before adding to it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import data as data_module
from . import doctor, environment, estimates, fold_store, locks, plan, records, schema
from .atomic import write_predictions_atomic
from .console import Console, FoldProgress
from .device import DeviceChoice
from .driver import Job, drive
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DataError, DeviceUnavailable, RoadriskError, WriteFailed
from .executors import ExecutorConfig, make_executor
from .executors.base import FoldData, FoldTask
from .features import build as build_features
from .folds import FoldResult, rmse
from .folds import plan as plan_folds
from .models import MODELS
from .profiles import PROFILES
from .recipes import RECIPES
from .records import Status
from .risk_formula import floor_rmse


@dataclass
class TrainOptions:
    data_dir: Path | None = None
    profile: str | None = None  # None: quick, or full with --data-dir (real data deserves the real recipe)
    model: str | None = None  # None: the profile's
    recipe: str | None = None  # None: the profile's (seed on full)
    device: str = "auto"
    strict_device: bool = False
    folds: int | None = None
    seed: int = 42  # model initialisation
    cv_seed: int = 42  # the folds (the seed's KFold random_state)
    data_seed: int = 42  # the embedded data; unused with data_dir
    target: str = "raw"  # raw | residual
    cv: str = "kfold"  # kfold | stratified
    cv_bins: int | None = None  # quantile bins for --cv stratified (None: plan.DEFAULT_CV_BINS)
    label: str = "native"
    runs_dir: Path = Path("runs")
    matmul_precision: str | None = None  # None: the recipe's and device's default
    param_overrides: dict = field(default_factory=dict)
    save_models: bool = False
    dry_run: bool = False
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # how folds are spread; may change on --resume
    command: str | None = None

    def as_record(self) -> dict:
        """What run.json keeps to resume the run: the options as given, JSON-safe."""
        out = asdict(self)
        out["data_dir"] = None if self.data_dir is None else str(Path(self.data_dir).resolve())
        out["runs_dir"] = str(self.runs_dir)
        return out

    @classmethod
    def from_record(cls, saved: dict) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in saved.items() if key in known}
        if values.get("data_dir") is not None:
            values["data_dir"] = Path(values["data_dir"])
        values["runs_dir"] = Path(values.get("runs_dir", "runs"))
        executor = saved.get("executor")
        if isinstance(executor, dict):
            values["executor"] = ExecutorConfig(**executor)
        else:  # schema 2 kept the executor flags loose beside the other options
            values["executor"] = ExecutorConfig(executor or "inline", saved.get("jobs") or 1, saved.get("address"),
                                                saved.get("cpus_per_task"), saved.get("gpus_per_task"))
        return cls(**values)


# Options that decide what a run computes: --resume takes them from the run itself, and one given with
# --resume must agree with the run. The executor (how folds are spread) may change, and so may --data-dir
# (the folder moved): the plan's data fingerprint then checks it holds the same files.
RESUME_FLAGS = ("profile", "model", "recipe", "device", "strict_device", "folds", "seed", "cv_seed",
                "data_seed", "target", "cv", "cv_bins", "matmul_precision", "param_overrides", "save_models")


@dataclass
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: str


class DataCache:
    """Datasets and their features, read and built once for every run of a process (a sweep's members)."""

    def __init__(self):
        self._datasets: dict[Path, data_module.Dataset] = {}
        self._features: dict[tuple[str, str], FoldData] = {}

    def dataset(self, data_dir: Path, source: str) -> data_module.Dataset:
        key = Path(data_dir).resolve()
        if key not in self._datasets:
            self._datasets[key] = data_module.load(data_dir, source)
        return self._datasets[key]

    def add(self, dataset: data_module.Dataset) -> None:
        self._datasets[Path(dataset.path).resolve()] = dataset

    def fold_data(self, dataset: data_module.Dataset, recipe: str) -> FoldData:
        key = (dataset.fingerprint, recipe)
        if key not in self._features:
            feature_set = build_features(dataset.train, dataset.test, dataset.original, RECIPES[recipe])
            self._features[key] = FoldData(feature_set, dataset.train[schema.TARGET].to_numpy(dtype=float))
        return self._features[key]


def embedded_or_given(opts: TrainOptions, timings: dict | None = None) -> tuple[Path, str]:
    """The data folder a run reads: the user's, or the embedded data of its profile (generated once, cached)."""
    if opts.data_dir is not None:
        return Path(opts.data_dir), "directory"
    profile = PROFILES[plan.profile_for(opts)]
    t0 = time.perf_counter()
    data_dir, generated_now = data_module.embedded_dir(profile.train_rows, profile.test_rows, profile.original_rows,
                                                       opts.data_seed)
    if timings is not None:
        timings["generate_s"] = round(time.perf_counter() - t0, 4) if generated_now else 0.0
    return data_dir, "embedded"


def plan_for(opts: TrainOptions, facts: dict, dataset: data_module.Dataset,
             choice: DeviceChoice | None = None) -> plan.RunPlan:
    """The plan of ``opts`` on these facts and data (what ``prepare`` trains, and a sweep's member id)."""
    settings = plan.ExecutorSettings(opts.executor.engine, opts.executor.gpus_per_task)
    return plan.make_plan(opts, facts, dataset.fingerprint, dataset.original is not None and len(dataset.original) > 0,
                          len(dataset.train), settings, choice)


# ---------------------------------------------------------------- the commands

def train(opts: TrainOptions, executor=None) -> RunOutcome:
    """``roadrisk train``: a sweep of one run. ``executor`` (default: the one ``opts.executor`` names)."""
    run = TrainingRun.start(opts)
    return _drive_one(run, executor)


def resume(run_dir: Path, given: dict, command: str | None = None, executor=None, wait: bool = False) -> RunOutcome:
    """Continue an interrupted or failed run in ``run_dir``; ``given``: the run flags passed with --resume.
    ``wait``: queue behind a process that holds the run instead of refusing."""
    run = TrainingRun.reopen(run_dir, given, command, wait=wait)
    return _drive_one(run, executor)


def _drive_one(run: TrainingRun, executor) -> RunOutcome:
    job = None
    try:
        job = prepare(run, DataCache())
        if run.opts.dry_run:
            return run.guard(run.dry_run, close=False)
        executor = executor or make_executor(run.opts.executor, run.run_dir / records.LIBRARY_LOG_FILE)
        try:
            run.record["executor"] = executor.describe()
            run.record.save()
            drive([job], executor, FoldProgress(run.console, run.total_folds, done_before=len(run.results)))
        finally:
            executor.close()
        return job.outcome
    except (Exception, KeyboardInterrupt) as exc:
        if job is not None and not job.open:
            return job.outcome  # the driver has recorded how it ended (interrupted)
        return run.stopped_by(exc)
    finally:
        run.console.close()


class TrainingRun:
    """One run's folder, record and console, and what happens to them: ``accept`` a finished fold,
    ``finish`` (outputs and metrics), or stop as ``failed`` / ``interrupted`` with an exit code."""

    def __init__(self, opts: TrainOptions, run_dir: Path, record: records.RunRecord,
                 previous: records.RunRecord | None = None, stream=None, lock: locks.FolderLock | None = None):
        self.opts = opts
        self.lock = lock  # held while this process owns the run (locks.py); the process's end releases it
        self.run_dir = run_dir
        self.record = record
        self.previous = previous
        self.console = Console(run_dir / records.LOG_FILE, stream=stream)
        self.results: list[FoldResult] = []
        self.total_folds = 0
        self.started = time.perf_counter()
        self.plan: plan.RunPlan | None = None
        self.dataset: data_module.Dataset | None = None
        self.fold_data: FoldData | None = None
        self.fold_specs: list = []
        if previous is not None:
            self.console.line(f"resume: {run_dir} (was {previous['status']})")

    # ------------------------------------------------------------ opening a run

    @classmethod
    def start(cls, opts: TrainOptions, stream=None) -> TrainingRun:
        records.check_label(opts.label)
        run_dir = records.new_run_dir(opts.runs_dir, opts.label)
        lock = locks.take(run_dir, "this run")  # a new folder: nobody else has it, and --resume will ask
        record = records.RunRecord(run_dir, opts.label)
        record["command"] = opts.command
        record["options"] = opts.as_record()
        try:
            record.save()
        except WriteFailed:  # a full disk: leave no empty run folder behind, only the one-line error
            lock.release()
            for leftover in run_dir.iterdir():
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            raise
        return cls(opts, run_dir, record, stream=stream, lock=lock)

    @classmethod
    def reopen(cls, run_dir: Path, given: dict, command: str | None = None, stream=None,
               wait: bool = False) -> TrainingRun:
        """An interrupted, failed or killed run, to be continued; refuses what cannot be continued.
        The run's lock comes first: two --resume of one run never train the same folds."""
        run_dir = Path(run_dir)
        records.RunRecord.load(run_dir)  # a folder that is no run is said as such, before any lock file
        lock = locks.take(run_dir, "this run", wait=wait)
        try:
            return cls._reopen_locked(run_dir, given, command, stream, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _reopen_locked(cls, run_dir: Path, given: dict, command, stream, lock) -> TrainingRun:
        previous = records.RunRecord.load(run_dir)  # read again: the holder we waited for may have changed it
        status = previous["status"]
        if status == Status.COMPLETE:
            raise RoadriskError(f"error: --resume {run_dir}: this run is already complete. Fix: nothing to do, or "
                                "start a new run")
        if status == Status.DRY_RUN:
            raise RoadriskError(f"error: --resume {run_dir}: a dry run trained nothing. Fix: run the same command "
                                "without --dry-run")
        # A record still saying "running" while we hold its lock was left by a process that died (kill -9, OOM):
        # the lock, not its pid (which a container reuses), says nobody is writing it.
        opts = TrainOptions.from_record(previous.data.get("options") or {})
        for name, value in given.items():
            if name in RESUME_FLAGS and getattr(opts, name) != value:
                flag = "--param" if name == "param_overrides" else "--" + name.replace("_", "-")
                raise RoadriskError(f"error: --resume {run_dir}: {flag} {value} differs from the run's "
                                    f"{getattr(opts, name)}. Fix: leave the flag out (a resumed run keeps its own "
                                    "settings) or start a new run")
        if "executor" in given:
            opts.executor = given["executor"]
        if given.get("data_dir") is not None:
            opts.data_dir = Path(given["data_dir"])
        opts.dry_run = False
        record = records.RunRecord(run_dir, previous["label"])
        record.hold_saves = True  # until the checks in prepare pass, the old record stays as it is
        for key in ("run_id", "started_at", "command", "options"):
            record[key] = previous.data.get(key)
        record["options"] = opts.as_record()
        record["resumes"] = [*previous.data.get("resumes", []),
                             {"at": records.now_iso(), "command": command, "from_status": status}]
        record["timings"]["before_resume_s"] = (previous["timings"] or {}).get("total_s") or 0.0
        return cls(opts, run_dir, record, previous=previous, stream=stream, lock=lock)

    # ------------------------------------------------------------ how a run stops

    def guard(self, step, close: bool = True) -> RunOutcome:
        """Run one step; a failure or interruption becomes the record's status and an exit code."""
        try:
            status = step()
            return RunOutcome(EXIT_OK, self.run_dir, status)
        except (Exception, KeyboardInterrupt) as exc:
            return self.stopped_by(exc)
        finally:
            if close:
                self.console.close()

    def stopped_by(self, exc: BaseException) -> RunOutcome:
        return self.interrupted() if isinstance(exc, KeyboardInterrupt) else self.failed(exc)

    def _stop(self, status: Status, error: str) -> None:
        self.record["timings"]["total_s"] = round(self.record["timings"].get("before_resume_s", 0.0)
                                                  + time.perf_counter() - self.started, 4)
        self.record.finish(status, error)

    def interrupted(self) -> RunOutcome:
        done = len(self.results)
        self._stop(Status.INTERRUPTED, f"interrupted after {done} finished fold(s)")
        where = records.shown(self.run_dir)
        self.console.line(f"interrupted: {done} fold(s) finished; record kept at {where}/{records.RUN_FILE}")
        if not self.record.hold_saves:
            self.console.line(f"continue with: roadrisk train --resume {where}")
        return RunOutcome(EXIT_INTERRUPTED, self.run_dir, Status.INTERRUPTED.value)

    def failed(self, exc: BaseException) -> RunOutcome:
        if isinstance(exc, DataError):
            self._stop(Status.FAILED, "\n".join(exc.problems))
            self.console.lines(exc.problems)
            return RunOutcome(exc.exit_code, self.run_dir, Status.FAILED.value)
        if isinstance(exc, RoadriskError):
            self._stop(Status.FAILED, str(exc))
            self.console.line(str(exc) if str(exc).startswith("error:") else f"error: {exc}")
            return RunOutcome(exc.exit_code, self.run_dir, Status.FAILED.value)
        if self.console.log_file:  # a crash: keep the traceback for debugging, give the user one line
            self.console.log_file.write("".join(traceback.format_exception(exc)))
        self._stop(Status.FAILED, f"{type(exc).__name__}: {exc}")
        where = records.shown(self.run_dir)
        kept = (f"; finished folds are kept: roadrisk train --resume {where}" if self.results
                else f"; resume with: roadrisk train --resume {where}")
        self.console.line(f"error: training failed: {type(exc).__name__}: {exc} "
                          f"(traceback in {where}/{records.LOG_FILE})" + ("" if self.record.hold_saves else kept))
        return RunOutcome(EXIT_FAILED, self.run_dir, Status.FAILED.value)

    # ------------------------------------------------------------ what the driver calls

    def accept(self, result: FoldResult) -> None:
        """A fold finished: on disk first, then in the record."""
        self._keep(result, saved=False)

    def _keep(self, result: FoldResult, saved: bool) -> None:
        if not saved:
            fold_store.save(self.run_dir, result)
        self.results.append(result)
        outputs = self.record["outputs"]
        outputs["folds"][str(result.index)] = fold_store.fold_file(result.index)
        if "models" in outputs and (self.run_dir / fold_store.model_file(result.index)).is_file():
            outputs["models"][str(result.index)] = fold_store.model_file(result.index)
        self.record["timings"]["folds"].append(result.timing_entry())
        self.record["metrics"]["folds"].append(result.metric_entry())
        if not saved:
            self.record.save()

    @property
    def complete(self) -> bool:
        return len(self.results) == self.total_folds

    def dry_run(self) -> str:
        """Everything a run would do, printed and recorded, without fitting anything: the plan's lines are
        the record's ``config`` key for key."""
        console = self.console
        console.lines(self.plan.lines())
        console.line("folds: " + ", ".join(f"{f.index + 1}: {len(f.train_idx)} train / {len(f.val_idx)} val"
                                           for f in self.fold_specs))
        self.record.finish(Status.DRY_RUN)
        console.lines(["status: dry-run (nothing was trained)", f"run_dir: {records.shown(self.run_dir)}"])
        return Status.DRY_RUN.value

    def finish(self) -> str:
        """The OOF and submission files, and the metrics against the floor when it is known."""
        record, dataset, run_dir, timings = self.record, self.dataset, self.run_dir, self.record["timings"]
        results = sorted(self.results, key=lambda r: r.index)  # parallel folds finish in any order
        target = self.fold_data.target
        record["metrics"]["folds"] = [r.metric_entry() for r in results]
        timings["folds"] = [r.timing_entry() for r in results]
        oof = np.full(len(target), np.nan)
        for result in results:
            oof[result.val_idx] = result.val_pred
        test_pred = np.clip(np.mean([r.test_pred for r in results], axis=0), 0.0, 1.0)
        write_predictions_atomic(run_dir / records.OOF_FILE, schema.ID, dataset.train[schema.ID].to_numpy(),
                                 schema.TARGET, oof)
        write_predictions_atomic(run_dir / records.SUBMISSION_FILE, schema.ID, dataset.test[schema.ID].to_numpy(),
                                 schema.TARGET, test_pred)
        metrics = record["metrics"]
        metrics["oof_rmse"] = round(rmse(target, oof), 6)
        fold_rmses = [r.rmse for r in results]
        metrics["fold_rmse_mean"] = round(float(np.mean(fold_rmses)), 6)
        metrics["fold_rmse_std"] = round(float(np.std(fold_rmses)), 6)
        if dataset.generated is not None:
            floor = floor_rmse(dataset.train, target)
            metrics["floor_rmse"] = round(floor, 6)
            metrics["gap_to_floor_pct"] = round(100.0 * (metrics["oof_rmse"] - floor) / floor, 3)
        else:
            metrics["floor_rmse"] = None
            metrics["gap_to_floor_pct"] = None
        record["outputs"].update({"oof": records.OOF_FILE, "submission": records.SUBMISSION_FILE,
                                  "log": records.LOG_FILE, "library_log": records.LIBRARY_LOG_FILE})
        timings["fit_total_s"] = round(sum(f["fit_s"] for f in timings["folds"]), 4)
        timings["predict_total_s"] = round(sum(f["predict_s"] for f in timings["folds"]), 4)
        timings["total_s"] = round(timings.get("before_resume_s", 0.0) + time.perf_counter() - self.started, 4)
        record.finish(Status.COMPLETE)
        floor_text = "None" if metrics["floor_rmse"] is None else format(metrics["floor_rmse"], ".6f")
        self.console.lines([
            "status: complete",
            f"oof_rmse: {metrics['oof_rmse']:.6f}",
            f"floor_rmse: {floor_text}",
            f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
            f"total_s: {timings['total_s']:.1f}",
            f"run_dir: {records.shown(run_dir)}",
        ])
        return Status.COMPLETE.value


# ---------------------------------------------------------------- preparing a run for the driver

def prepare(run: TrainingRun, cache: DataCache, facts: dict | None = None) -> Job:
    """Device, data, plan, features and the folds still to train, recorded as they are decided.
    ``facts``: the machine's (a sweep collects them once for all its members)."""
    opts, console, record = run.opts, run.console, run.record
    if opts.profile is None and opts.data_dir is not None:
        console.line("note: --data-dir without --profile: using the full profile (TabM, the seed recipe, 5 folds), "
                     "as real data deserves; pass --profile quick for a short check")
    model_name = opts.model or PROFILES[plan.profile_for(opts)].default_model
    spec = MODELS[model_name]

    # 1. Where are we, and which device do we get?
    facts = facts or environment.collect(with_torch=spec.uses_torch)
    record["environment"] = facts
    settings = plan.ExecutorSettings(opts.executor.engine, opts.executor.gpus_per_task)
    try:
        choice = plan.device_for(opts, facts, settings)
    except DeviceUnavailable as exc:
        refused = DeviceChoice(opts.device, "none", True, False, str(exc))
        console.lines(doctor.format_lines(doctor.block(facts, refused)))
        record["device"] = {**refused.as_dict(), **_device_facts(facts)}
        raise
    console.lines(doctor.format_lines(doctor.block(facts, choice)))
    record["device"] = {**choice.as_dict(), **_device_facts(facts)}
    record.save()
    # Imports of torch and the model library, reading the machine, choosing the device.
    record["timings"]["setup_s"] = round(time.perf_counter() - run.started, 4)

    # 2. Data: the embedded default (generated once, then cached) or the user's directory.
    data_dir, source = embedded_or_given(opts, record["timings"])
    t0 = time.perf_counter()
    dataset = cache.dataset(data_dir, source)
    record["timings"]["load_s"] = round(time.perf_counter() - t0, 4)
    record["data"] = dataset.summary()
    record.save()
    console.line(f"data: source={dataset.source} train_rows={len(dataset.train)} test_rows={len(dataset.test)} "
                 f"original_rows={0 if dataset.original is None else len(dataset.original)} "
                 f"fingerprint={dataset.fingerprint} path={dataset.path}")
    console.lines(dataset.notes)

    # 3. The plan: every parameter, the folds, the target, the seeds; its hash is the run's identity.
    run_plan = plan_for(opts, facts, dataset, choice)
    record["config"] = run_plan.as_config()
    console.line(f"config: profile={run_plan.profile} recipe={run_plan.recipe} model={model_name} "
                 f"target={run_plan.target} cv={run_plan.cv} folds={run_plan.folds} seed={opts.seed} "
                 f"cv_seed={opts.cv_seed} device={run_plan.device} threads={run_plan.threads}"
                 + (f" matmul_precision={run_plan.matmul_precision}" if spec.uses_torch else "")
                 + f" plan_id={run_plan.identity}")
    console.line(f"params: {' '.join(f'{k}={v}' for k, v in run_plan.params.items()) or '(the library defaults)'}")
    if run_plan.device == "cpu" and run_plan.profile == "full":
        warning = estimates.cpu_warning(model_name, run_plan.recipe, spec.epoch_plan and spec.epoch_plan(run_plan.params),
                                        len(dataset.train), run_plan.folds, run_plan.threads)
        if warning:
            console.line(warning)
    if run.previous is not None:
        _check_same_run(run.previous, record, run.run_dir)

    # 4. Features (shared by every run of a sweep on the same data and recipe).
    t0 = time.perf_counter()
    fold_data = cache.fold_data(dataset, run_plan.recipe)
    record["timings"]["features_s"] = round(time.perf_counter() - t0, 4)
    console.line(f"features: {len(run_plan.features)} ({', '.join(run_plan.features)})")
    console.line(f"categorical: {', '.join(run_plan.categorical)}")

    # 5. Folds: independent units. Each is saved the moment it finishes, so an interruption keeps it.
    fold_specs = fold_plan(run_plan, fold_data.target)
    _check_fold_sizes(run_plan, fold_specs)
    record["outputs"] = {"folds": {}, **({"models": {}} if opts.save_models else {})}
    if run.previous is not None:
        for fold in fold_specs:
            if (run.run_dir / fold_store.fold_file(fold.index)).is_file():
                run._keep(fold_store.load(run.run_dir, fold.index, fold.val_idx), saved=True)
        record["resumed_folds"] = [r.index for r in run.results]
        record["resumes"][-1]["folds_kept"] = record["resumed_folds"]
        console.line(f"resume: {len(run.results)} of {run_plan.folds} fold(s) kept from disk "
                     f"({', '.join(str(i + 1) for i in record['resumed_folds']) or 'none'}); training the rest")
        record.hold_saves = False  # the same run: from here on, this process owns the record
    run.plan, run.dataset, run.fold_data, run.fold_specs = run_plan, dataset, fold_data, fold_specs
    run.total_folds = len(fold_specs)
    done = {r.index for r in run.results}
    library_log = run.run_dir / records.LIBRARY_LOG_FILE
    record.save()
    return Job(run.run_dir.name, run, [FoldTask(fold.index, fold, fold_data, library_log)
                                       for fold in fold_specs if fold.index not in done])


def fold_plan(run_plan: plan.RunPlan, target: np.ndarray) -> list:
    spec = MODELS[run_plan.model]
    return plan_folds(len(target), run_plan.folds, run_plan.cv_seed, run_plan.cv, target, run_plan.cv_bins,
                      model=run_plan.model, params=run_plan.params, device=run_plan.device, seed=run_plan.seed,
                      threads=run_plan.threads, matmul_precision=run_plan.matmul_precision or "highest",
                      categorical=run_plan.categorical if spec.wants_validation else (),
                      empty_cache=bool(run_plan.empty_cache_after_fold), keep_model=run_plan.save_models,
                      target=run_plan.target)


MIN_VALIDATION_ROWS = 10  # a fold's RMSE (and a torch model's early stopping) on fewer rows is noise


def _check_fold_sizes(run_plan: plan.RunPlan, fold_specs: list) -> None:
    smallest = min(len(f.val_idx) for f in fold_specs)
    if smallest < MIN_VALIDATION_ROWS:
        raise RoadriskError(f"error: --folds {run_plan.folds}: a fold would hold {smallest} validation rows, fewer than "
                            f"{MIN_VALIDATION_ROWS}. Fix: use fewer folds (at most "
                            f"{max(2, sum(len(f.val_idx) for f in fold_specs) // MIN_VALIDATION_ROWS)}) or more data")


def _check_same_run(previous: records.RunRecord, record: records.RunRecord, run_dir: Path) -> None:
    for name, before, now in plan.differences(previous.data, record.data, plan.SAME_RUN):
        if before is not None and before != now:
            raise RoadriskError(f"error: --resume {run_dir}: {plan.key_name(name)} differs: the run has {before}, now {now}. "
                                "Fix: resume where the run started (same data, device and roadrisk version), or "
                                "start a new run")


def _device_facts(facts: dict) -> dict:
    keys = ("cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb", "gpu_capability", "torch_cuda_build",
            "mps_built", "mps_available", "in_container", "container_evidence", "cpu_count", "cpu_count_source")
    return {key: facts.get(key) for key in keys}

