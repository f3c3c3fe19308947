"""One training run, start to finish: device chosen, data in, folds trained, record written.

This is the only place that knows the order of a run; each step lives in its own module. A run can
stop half way (Ctrl-C, ``docker stop``, a crash) and be continued with ``resume``: every finished
fold is on disk (``fold_store``), and the resumed run checks it is the same run before adding to it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import data as data_module
from . import doctor, environment, estimates, features, fold_store, records, schema
from .atomic import write_predictions_atomic
from .console import Console, FoldProgress
from .device import DeviceChoice, apply_threads, choose, matmul_precision_for
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DataError, DeviceUnavailable, RoadriskError, WriteFailed
from .executors import FoldData, FoldTask, make_executor
from .folds import FoldResult, plan, rmse
from .models import MODELS, validate_params
from .profiles import DEFAULT_PROFILE, PROFILES
from .recipes import RECIPES, default_for
from .risk_formula import floor_rmse

# Parameters roadrisk sets itself, from its own flags: never through --param.
RESERVED_PARAMS = {"device", "random_state", "n_threads", "verbosity", "categorical_features"}


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
    label: str = "native"
    runs_dir: Path = Path("runs")
    jobs: int = 1
    matmul_precision: str | None = None  # None: the recipe's and device's default
    param_overrides: dict = field(default_factory=dict)
    save_models: bool = False
    dry_run: bool = False
    executor: str = "inline"  # inline | process | ray (executors.py); --jobs N alone means process
    address: str | None = None  # a Ray cluster (else RAY_ADDRESS, else a local Ray)
    cpus_per_task: float | None = None  # Ray: CPUs each fold reserves (default 1)
    gpus_per_task: float | None = None  # Ray: GPUs each fold reserves, fractions allowed (0.25: 4 folds a GPU)
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
        return cls(**values)


@dataclass
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: str


def train(opts: TrainOptions) -> RunOutcome:
    run = TrainingRun.start(opts)
    return run.guard(lambda: run.execute(_executor_for(opts, run.run_dir)))


def _executor_for(opts: TrainOptions, run_dir: Path):
    if opts.dry_run:
        return None
    return make_executor(opts.executor, opts.jobs, opts.address, opts.cpus_per_task, opts.gpus_per_task,
                         run_dir / records.LIBRARY_LOG_FILE)


# Flags that decide what a run computes: --resume takes them from the run itself, and a flag given
# with --resume must agree with the run (how folds are spread, --jobs, may change).
RESUME_FLAGS = ("data_dir", "profile", "model", "recipe", "device", "strict_device", "folds", "seed", "cv_seed",
                "data_seed", "matmul_precision", "param_overrides", "save_models")
HOW_FLAGS = ("jobs", "executor", "address", "cpus_per_task", "gpus_per_task")  # may change on --resume


def resume(run_dir: Path, given: dict, command: str | None = None) -> RunOutcome:
    """Continue an interrupted or failed run in ``run_dir``; ``given``: the run flags passed with --resume."""
    run = TrainingRun.reopen(run_dir, given, command)
    return run.guard(lambda: run.execute(_executor_for(run.opts, run.run_dir)))


class TrainingRun:
    """One run, in steps a sweep can interleave with other runs' steps: ``prepare`` (device, config,
    data, features, the folds still to train), ``accept`` each finished fold, ``finish`` (outputs
    and metrics). ``guard`` turns whatever stops a step into the record's status and an exit code."""

    def __init__(self, opts: TrainOptions, run_dir: Path, record: records.RunRecord,
                 previous: records.RunRecord | None = None, stream=None, data_cache: dict | None = None):
        self.opts = opts
        self.run_dir = run_dir
        self.record = record
        self.previous = previous
        self.console = Console(run_dir / records.LOG_FILE, stream=stream)
        self.data_cache = {} if data_cache is None else data_cache  # shared by a sweep's members
        self.results: list[FoldResult] = []
        self.tasks: list[FoldTask] = []
        self.total_folds = 0
        self.started = time.perf_counter()
        if previous is not None:
            self.console.line(f"resume: {run_dir} (was {previous['status']})")

    # ------------------------------------------------------------ opening a run

    @classmethod
    def start(cls, opts: TrainOptions, stream=None, data_cache: dict | None = None) -> TrainingRun:
        records.check_label(opts.label)
        run_dir = records.new_run_dir(opts.runs_dir, opts.label)
        record = records.RunRecord(run_dir, opts.label)
        record["command"] = opts.command
        record["options"] = opts.as_record()
        try:
            record.save()
        except WriteFailed:  # a full disk: leave no empty run folder behind, only the one-line error
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            raise
        return cls(opts, run_dir, record, stream=stream, data_cache=data_cache)

    @classmethod
    def reopen(cls, run_dir: Path, given: dict, command: str | None = None, stream=None,
               data_cache: dict | None = None) -> TrainingRun:
        """An interrupted, failed or killed run, to be continued; refuses what cannot be continued."""
        run_dir = Path(run_dir)
        previous = records.RunRecord.load(run_dir)
        status = previous["status"]
        if status == "complete":
            raise RoadriskError(f"error: --resume {run_dir}: this run is already complete. Fix: nothing to do, or "
                                "start a new run")
        if status == "dry-run":
            raise RoadriskError(f"error: --resume {run_dir}: a dry run trained nothing. Fix: run the same command "
                                "without --dry-run")
        if status == "running" and previous.process_alive():
            raise RoadriskError(f"error: --resume {run_dir}: still running (pid {previous['pid']} on this host). Fix: "
                                "wait for it, or stop it first (Ctrl-C or kill keeps its finished folds)")
        opts = TrainOptions.from_record(previous.data.get("options") or {})
        for name, value in given.items():
            if name in RESUME_FLAGS and getattr(opts, name) != value:
                flag = "--param" if name == "param_overrides" else "--" + name.replace("_", "-")
                raise RoadriskError(f"error: --resume {run_dir}: {flag} {value} differs from the run's "
                                    f"{getattr(opts, name)}. Fix: leave the flag out (a resumed run keeps its own "
                                    "settings) or start a new run")
            if name in HOW_FLAGS:
                setattr(opts, name, value)
        opts.dry_run = False
        record = records.RunRecord(run_dir, previous["label"])
        record.hold_saves = True  # until the checks in prepare pass, the old record stays as it is
        for key in ("run_id", "started_at", "command", "options"):
            record[key] = previous.data.get(key)
        record["resumes"] = [*previous.data.get("resumes", []),
                             {"at": records.now_iso(), "command": command, "from_status": status}]
        record["timings"]["before_resume_s"] = (previous["timings"] or {}).get("total_s") or 0.0
        return cls(opts, run_dir, record, previous=previous, stream=stream, data_cache=data_cache)

    # ------------------------------------------------------------ whatever stops a step

    def guard(self, step, close: bool = True) -> RunOutcome:
        """Run one step; a failure or interruption becomes the record's status and an exit code."""
        try:
            status = step()
            return RunOutcome(EXIT_OK, self.run_dir, status)
        except KeyboardInterrupt:
            return self.interrupted()
        except Exception as exc:
            return self.failed(exc)
        finally:
            if close:
                self.console.close()

    def _stop(self, status: str, error: str) -> None:
        self.record["timings"]["total_s"] = round(self.record["timings"].get("before_resume_s", 0.0)
                                                  + time.perf_counter() - self.started, 4)
        self.record.finish(status, error)

    def interrupted(self) -> RunOutcome:
        done = len(self.results)
        self._stop("interrupted", f"interrupted after {done} finished fold(s)")
        self.console.line(f"interrupted: {done} fold(s) finished; record kept at {self.run_dir / records.RUN_FILE}")
        if not self.record.hold_saves:
            self.console.line(f"continue with: roadrisk train --resume {self.run_dir}")
        return RunOutcome(EXIT_INTERRUPTED, self.run_dir, "interrupted")

    def failed(self, exc: Exception) -> RunOutcome:
        if isinstance(exc, DataError):
            self._stop("failed", "\n".join(exc.problems))
            self.console.lines(exc.problems)
            return RunOutcome(exc.exit_code, self.run_dir, "failed")
        if isinstance(exc, RoadriskError):
            self._stop("failed", str(exc))
            self.console.line(str(exc) if str(exc).startswith("error:") else f"error: {exc}")
            return RunOutcome(exc.exit_code, self.run_dir, "failed")
        if self.console.log_file:  # a crash: keep the traceback for debugging, give the user one line
            self.console.log_file.write("".join(traceback.format_exception(exc)))
        self._stop("failed", f"{type(exc).__name__}: {exc}")
        self.console.line(f"error: training failed: {type(exc).__name__}: {exc} "
                          f"(traceback in {self.run_dir / records.LOG_FILE})"
                          + ("" if self.record.hold_saves
                             else f"; finished folds are kept: roadrisk train --resume {self.run_dir}"))
        return RunOutcome(EXIT_FAILED, self.run_dir, "failed")

    # ------------------------------------------------------------ the steps

    def execute(self, executor) -> str:
        """The whole run with one executor: what ``roadrisk train`` does."""
        try:
            self.prepare(executor)
            if self.opts.dry_run:
                return self.dry_run()
            progress = FoldProgress(self.console, self.total_folds, done_before=len(self.results))
            try:
                for _task, result, error in executor.run(self.tasks, progress) if self.tasks else ():
                    if error is not None:
                        raise error
                    self.accept(result)
            finally:
                progress.close()
        finally:
            if executor is not None:
                executor.close()
        return self.finish()

    def prepare(self, executor=None) -> None:
        """Steps 1-5: device, configuration, data, features, and the folds still to train (``tasks``).
        ``executor`` is asked what it offers: a Ray cluster's GPUs, its CPUs per task."""
        opts, run_dir, console, record = self.opts, self.run_dir, self.console, self.record
        if opts.profile is None and opts.data_dir is not None:
            console.line("note: --data-dir without --profile: using the full profile (TabM, the seed recipe, 5 folds), "
                         "as real data deserves; pass --profile quick for a short check")
        profile = PROFILES[opts.profile or ("full" if opts.data_dir is not None else DEFAULT_PROFILE)]
        model_name = opts.model or profile.default_model
        spec = MODELS[model_name]
        recipe = RECIPES[opts.recipe or default_for(profile.name)]

        # 1. Where are we, and which device do we get?
        facts = environment.collect(with_torch=spec.uses_torch)
        record["environment"] = facts
        try:
            choice = choose(opts.device, opts.strict_device, facts, model_name, spec.uses_torch)
        except DeviceUnavailable as exc:
            refused = DeviceChoice(opts.device, "none", True, False, str(exc))
            console.lines(doctor.format_lines(doctor.block(facts, refused)))
            record["device"] = {**refused.as_dict(), **_device_facts(facts)}
            raise
        if spec.uses_torch and opts.gpus_per_task and opts.device in ("auto", "cuda"):
            # The folds run on the Ray workers' GPUs, not this driver's: the worker checks CUDA is there.
            choice = DeviceChoice(opts.device, "cuda", opts.strict_device, False,
                                  f"--gpus-per-task {opts.gpus_per_task}: folds run on the Ray workers' GPUs")
        if spec.uses_torch:
            choice = apply_threads(choice, facts["cpu_count"])
        threads = choice.torch_threads or facts["cpu_count"]  # scikit-learn: OpenMP over the usable CPUs
        console.lines(doctor.format_lines(doctor.block(facts, choice)))
        record["device"] = {**choice.as_dict(), **_device_facts(facts)}
        record.save()

        # 2. Configuration: the recipe's defaults for this model, profile and device, recorded as used.
        defaults = spec.defaults(profile.name, choice.selected, recipe.name)
        params = {**defaults, **opts.param_overrides}
        n_folds = opts.folds or profile.folds
        precision = opts.matmul_precision or (matmul_precision_for(choice.selected) if recipe.device_speedups
                                              else "highest")
        # Checked before building, so an unknown key is a clear message rather than a constructor's TypeError.
        estimator_params = spec.build(defaults, choice.selected, opts.seed, threads).get_params()
        settable = set(estimator_params) - RESERVED_PARAMS
        for key in sorted(opts.param_overrides):
            if key in RESERVED_PARAMS:
                raise RoadriskError(f"error: --param {key}: set by roadrisk itself. Fix: use --device, --seed, or let "
                                    "the trainer choose threads from the CPUs it may use")
            if key not in settable:
                raise RoadriskError(f"error: --param {key}: not a parameter of {model_name}. Fix: use one of "
                                    f"{', '.join(sorted(settable))}")
        validate_params(spec, params)  # a value the estimator would reject: exit 2 now, not in the first fold
        estimator_params.update(opts.param_overrides)  # what building with ``params`` would report
        record["config"] = {
            "profile": profile.name, "profile_sizes": profile.as_dict(), "recipe": recipe.name,
            "recipe_settings": recipe.as_dict(), "model": model_name, "model_description": spec.description,
            "params": params, "param_overrides": opts.param_overrides, "estimator_params": estimator_params,
            "folds": n_folds, "seed": opts.seed, "cv_seed": opts.cv_seed,
            "data_seed": opts.data_seed if opts.data_dir is None else None,
            "device": choice.selected, "threads": threads,
            "matmul_precision": precision if spec.uses_torch else None,
            "empty_cache_after_fold": recipe.empty_cache_after_fold if spec.uses_torch else None,
            "save_models": opts.save_models,
        }
        console.line(f"config: profile={profile.name} recipe={recipe.name} model={model_name} folds={n_folds} "
                     f"seed={opts.seed} cv_seed={opts.cv_seed} device={choice.selected} threads={threads}"
                     + (f" matmul_precision={precision}" if spec.uses_torch else ""))
        console.line(f"params: {' '.join(f'{k}={v}' for k, v in params.items()) or '(the library defaults)'}")
        # Imports of torch and the model library, reading the machine, choosing the device.
        record["timings"]["setup_s"] = round(time.perf_counter() - self.started, 4)

        # 3. Data: the embedded default (generated once, then cached) or the user's directory.
        dataset = self._load_data(profile)
        record["data"] = dataset.summary()
        record.save()
        console.line(f"data: source={dataset.source} train_rows={len(dataset.train)} test_rows={len(dataset.test)} "
                     f"original_rows={0 if dataset.original is None else len(dataset.original)} "
                     f"fingerprint={dataset.fingerprint} path={dataset.path}")
        console.lines(dataset.notes)
        if n_folds > len(dataset.train):
            raise RoadriskError(f"error: --folds {n_folds}: more folds than train rows ({len(dataset.train)}). "
                                "Fix: use fewer folds or more data")
        if choice.selected == "cpu" and profile.name == "full":
            warning = estimates.cpu_warning(model_name, recipe.name, spec.epoch_plan and spec.epoch_plan(params),
                                            len(dataset.train), n_folds, threads)
            if warning:
                console.line(warning)

        # 4. Features (shared by every run of a sweep on the same data and recipe).
        t0 = time.perf_counter()
        key = ("features", dataset.fingerprint, recipe.name)
        if key not in self.data_cache:
            feature_set = features.build(dataset.train, dataset.test, dataset.original, recipe)
            self.data_cache[key] = FoldData(feature_set, dataset.train[schema.TARGET].to_numpy(dtype=float))
        fold_data = self.data_cache[key]
        feature_set = fold_data.features
        record["timings"]["features_s"] = round(time.perf_counter() - t0, 4)
        record["config"]["features"] = feature_set.names
        record["config"]["categorical"] = feature_set.categorical
        console.line(f"features: {len(feature_set.names)} ({', '.join(feature_set.names)})")
        console.line(f"categorical: {', '.join(feature_set.categorical)}")

        # 5. Folds: independent units. Each is saved the moment it finishes, so an interruption keeps it.
        fold_specs = plan(len(fold_data.target), n_folds, opts.cv_seed, model=model_name, params=params,
                          device=choice.selected, seed=opts.seed, threads=threads, matmul_precision=precision,
                          categorical=tuple(feature_set.categorical) if spec.wants_validation else (),
                          empty_cache=recipe.empty_cache_after_fold, keep_model=opts.save_models)
        record["outputs"] = {"folds": {}, **({"models": {}} if opts.save_models else {})}
        if self.previous is not None:
            _check_same_run(self.previous, record, run_dir)
            for fold in fold_specs:
                if (run_dir / fold_store.fold_file(fold.index)).is_file():
                    self._keep(fold_store.load(run_dir, fold.index, fold.val_idx), saved=True)
            record["resumed_folds"] = [r.index for r in self.results]
            record["resumes"][-1]["folds_kept"] = record["resumed_folds"]
            console.line(f"resume: {len(self.results)} of {n_folds} fold(s) kept from disk "
                         f"({', '.join(str(i + 1) for i in record['resumed_folds']) or 'none'}); training the rest")
            record.hold_saves = False  # the same run: from here on, this process owns the record
        self.dataset, self.fold_data, self.total_folds = dataset, fold_data, len(fold_specs)
        self.estimator_params, self.fold_specs = estimator_params, fold_specs
        done = {r.index for r in self.results}
        library_log = run_dir / records.LIBRARY_LOG_FILE
        self.tasks = [FoldTask(fold.index, fold, fold_data, library_log) for fold in fold_specs if fold.index not in done]
        record["config"]["jobs"] = opts.jobs
        if executor is not None:
            record["config"]["executor"] = executor.describe()
        record.save()

    def _load_data(self, profile) -> data_module.Dataset:
        opts, timings = self.opts, self.record["timings"]
        if opts.data_dir is None:
            t0 = time.perf_counter()
            data_dir, generated_now = data_module.embedded_dir(profile.train_rows, profile.test_rows,
                                                               profile.original_rows, opts.data_seed)
            timings["generate_s"] = round(time.perf_counter() - t0, 4) if generated_now else 0.0
            source = "embedded"
        else:
            data_dir, source = opts.data_dir, "directory"
        t0 = time.perf_counter()
        key = ("dataset", str(Path(data_dir).resolve()))
        if key not in self.data_cache:  # a sweep's members read their files once between them
            self.data_cache[key] = data_module.load(data_dir, source)
        timings["load_s"] = round(time.perf_counter() - t0, 4)
        return self.data_cache[key]

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
        """Everything a run would do, printed and recorded, without fitting anything."""
        console = self.console
        console.line("estimator_params: " + " ".join(f"{k}={v}" for k, v in sorted(self.estimator_params.items())))
        console.line("folds: " + ", ".join(f"{f.index + 1}: {len(f.train_idx)} train / {len(f.val_idx)} val"
                                           for f in self.fold_specs))
        self.record.finish("dry-run")
        console.lines(["status: dry-run (nothing was trained)", f"run_dir: {self.run_dir}"])
        return "dry-run"

    def finish(self) -> str:
        """Step 6: OOF and submission files, metrics against the floor when it is known."""
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
        record.finish("complete")
        floor_text = "None" if metrics["floor_rmse"] is None else format(metrics["floor_rmse"], ".6f")
        self.console.lines([
            "status: complete",
            f"oof_rmse: {metrics['oof_rmse']:.6f}",
            f"floor_rmse: {floor_text}",
            f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
            f"total_s: {timings['total_s']:.1f}",
            f"run_dir: {run_dir}",
        ])
        return "complete"


# What must be equal for saved folds to belong to the run being resumed.
SAME_RUN_FIELDS = (("data fingerprint", ("data", "fingerprint")), ("recipe", ("config", "recipe")),
                   ("model", ("config", "model")), ("profile", ("config", "profile")), ("folds", ("config", "folds")),
                   ("cv_seed", ("config", "cv_seed")), ("seed", ("config", "seed")), ("device", ("config", "device")),
                   ("params", ("config", "params")), ("features", ("config", "features")),
                   ("matmul_precision", ("config", "matmul_precision")))


def _check_same_run(previous: records.RunRecord, record: records.RunRecord, run_dir: Path) -> None:
    for name, path in SAME_RUN_FIELDS:
        before, now = records.record_field(previous.data, path), records.record_field(record.data, path)
        if before is not None and before != now:
            raise RoadriskError(f"error: --resume {run_dir}: {name} differs: the run has {before}, now {now}. "
                                "Fix: resume where the run started (same data, device and roadrisk version), or "
                                "start a new run")


def _device_facts(facts: dict) -> dict:
    keys = ("cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb", "gpu_capability", "torch_cuda_build",
            "mps_built", "mps_available", "in_container", "container_evidence", "cpu_count", "cpu_count_source")
    return {key: facts.get(key) for key in keys}
