"""One training run, start to finish: device chosen, data in, folds trained, record written.

This is the only place that knows the order of a run; each step lives in its own module. A run can
stop half way (Ctrl-C, ``docker stop``, a crash) and be continued with ``resume``: every finished
fold is on disk (``fold_store``), and the resumed run checks it is the same run before adding to it.
"""

from __future__ import annotations

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
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DataError, DeviceUnavailable, RoadriskError
from .executors import run_parallel, run_serial
from .folds import FoldResult, plan, rmse
from .models import MODELS
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
    records.check_label(opts.label)
    run_dir = records.new_run_dir(opts.runs_dir, opts.label)
    record = records.RunRecord(run_dir, opts.label)
    record["command"] = opts.command
    record["options"] = opts.as_record()
    record.save()
    return _execute(opts, run_dir, record, previous=None)


# Flags that decide what a run computes: --resume takes them from the run itself, and a flag given
# with --resume must agree with the run (how folds are spread, --jobs, may change).
RESUME_FLAGS = ("data_dir", "profile", "model", "recipe", "device", "strict_device", "folds", "seed", "cv_seed",
                "data_seed", "matmul_precision", "param_overrides", "save_models")


def resume(run_dir: Path, given: dict, jobs: int | None = None, command: str | None = None) -> RunOutcome:
    """Continue an interrupted or failed run in ``run_dir``; ``given``: the run flags passed with --resume."""
    run_dir = Path(run_dir)
    previous = records.RunRecord.load(run_dir)
    status = previous["status"]
    if status == "complete":
        raise RoadriskError(f"error: --resume {run_dir}: this run is already complete. Fix: nothing to do, or start a "
                            "new run")
    if status == "dry-run":
        raise RoadriskError(f"error: --resume {run_dir}: a dry run trained nothing. Fix: run the same command "
                            "without --dry-run")
    if status == "running" and previous.process_alive():
        raise RoadriskError(f"error: --resume {run_dir}: still running (pid {previous['pid']} on this host). Fix: wait "
                            "for it, or stop it first (Ctrl-C or kill keeps its finished folds)")
    opts = TrainOptions.from_record(previous.data.get("options") or {})
    for name, value in given.items():
        if name in RESUME_FLAGS and getattr(opts, name) != value:
            flag = "--param" if name == "param_overrides" else "--" + name.replace("_", "-")
            raise RoadriskError(f"error: --resume {run_dir}: {flag} {value} differs from the run's {getattr(opts, name)}. "
                                "Fix: leave the flag out (a resumed run keeps its own settings) or start a new run")
    opts.jobs = jobs or opts.jobs
    opts.dry_run = False
    record = records.RunRecord(run_dir, previous["label"])
    record.hold_saves = True  # until the checks in _run pass, the old record stays as it is
    for key in ("run_id", "started_at", "command", "options"):
        record[key] = previous.data.get(key)
    record["resumes"] = [*previous.data.get("resumes", []),
                         {"at": records.now_iso(), "command": command, "from_status": status}]
    record["timings"]["before_resume_s"] = (previous["timings"] or {}).get("total_s") or 0.0
    return _execute(opts, run_dir, record, previous=previous)


def _execute(opts: TrainOptions, run_dir: Path, record: records.RunRecord,
             previous: records.RunRecord | None) -> RunOutcome:
    console = Console(run_dir / records.LOG_FILE)
    if previous is not None:
        console.line(f"resume: {run_dir} (was {previous['status']})")
    results: list[FoldResult] = []
    started = time.perf_counter()

    def stop(status: str, error: str) -> None:
        record["timings"]["total_s"] = round(record["timings"].get("before_resume_s", 0.0)
                                             + time.perf_counter() - started, 4)
        record.finish(status, error)

    try:
        status = _run(opts, run_dir, console, record, results, previous, started)
        return RunOutcome(EXIT_OK, run_dir, status)
    except KeyboardInterrupt:
        stop("interrupted", f"interrupted after {len(results)} finished fold(s)")
        console.line(f"interrupted: {len(results)} fold(s) finished; record kept at {run_dir / records.RUN_FILE}")
        if not record.hold_saves:
            console.line(f"continue with: roadrisk train --resume {run_dir}")
        return RunOutcome(EXIT_INTERRUPTED, run_dir, "interrupted")
    except DataError as exc:
        stop("failed", "\n".join(exc.problems))
        console.lines(exc.problems)
        return RunOutcome(exc.exit_code, run_dir, "failed")
    except RoadriskError as exc:
        stop("failed", str(exc))
        console.line(str(exc) if str(exc).startswith("error:") else f"error: {exc}")
        return RunOutcome(exc.exit_code, run_dir, "failed")
    except Exception as exc:  # a crash: keep the traceback for debugging, give the user one line
        if console.log_file:
            console.log_file.write(traceback.format_exc())
        stop("failed", f"{type(exc).__name__}: {exc}")
        console.line(f"error: training failed: {type(exc).__name__}: {exc} "
                     f"(traceback in {run_dir / records.LOG_FILE})"
                     + ("" if record.hold_saves else f"; finished folds are kept: roadrisk train --resume {run_dir}"))
        return RunOutcome(EXIT_FAILED, run_dir, "failed")
    finally:
        console.close()


def _run(opts: TrainOptions, run_dir: Path, console: Console, record: records.RunRecord,
         results: list[FoldResult], previous: records.RunRecord | None, started: float) -> str:
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
    record["timings"]["setup_s"] = round(time.perf_counter() - started, 4)

    # 3. Data: the embedded default (generated once, then cached) or the user's directory.
    timings = record["timings"]
    if opts.data_dir is None:
        t0 = time.perf_counter()
        data_dir, generated_now = data_module.embedded_dir(profile.train_rows, profile.test_rows,
                                                           profile.original_rows, opts.data_seed)
        timings["generate_s"] = round(time.perf_counter() - t0, 4) if generated_now else 0.0
        source = "embedded"
    else:
        data_dir, source = opts.data_dir, "directory"
    t0 = time.perf_counter()
    dataset = data_module.load(data_dir, source)
    timings["load_s"] = round(time.perf_counter() - t0, 4)
    record["data"] = dataset.summary()
    record.save()
    console.line(f"data: source={source} train_rows={len(dataset.train)} test_rows={len(dataset.test)} "
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

    # 4. Features.
    t0 = time.perf_counter()
    feature_set = features.build(dataset.train, dataset.test, dataset.original, recipe)
    timings["features_s"] = round(time.perf_counter() - t0, 4)
    record["config"]["features"] = feature_set.names
    record["config"]["categorical"] = feature_set.categorical
    console.line(f"features: {len(feature_set.names)} ({', '.join(feature_set.names)})")
    console.line(f"categorical: {', '.join(feature_set.categorical)}")

    # 5. Folds: independent units. Each is saved the moment it finishes, so an interruption keeps it.
    target = dataset.train[schema.TARGET].to_numpy(dtype=float)
    fold_specs = plan(len(target), n_folds, opts.cv_seed, model=model_name, params=params, device=choice.selected,
                      seed=opts.seed, threads=threads, matmul_precision=precision,
                      categorical=tuple(feature_set.categorical) if spec.wants_validation else (),
                      empty_cache=recipe.empty_cache_after_fold, keep_model=opts.save_models)
    record["outputs"] = {"folds": {}, **({"models": {}} if opts.save_models else {})}
    if previous is not None:
        _check_same_run(previous, record, run_dir)
        for fold in fold_specs:
            if (run_dir / fold_store.fold_file(fold.index)).is_file():
                _add_result(record, fold_store.load(run_dir, fold.index, fold.val_idx), results, run_dir, saved=True)
        record["resumed_folds"] = [r.index for r in results]
        record["resumes"][-1]["folds_kept"] = record["resumed_folds"]
        console.line(f"resume: {len(results)} of {n_folds} fold(s) kept from disk "
                     f"({', '.join(str(i + 1) for i in record['resumed_folds']) or 'none'}); training the rest")
        record.hold_saves = False  # the same run: from here on, this process owns the record
    if opts.dry_run:
        return _dry_run(record, console, estimator_params, fold_specs)
    record.save()
    todo = [fold for fold in fold_specs if fold.index not in {r.index for r in results}]
    jobs = max(1, min(opts.jobs, len(todo) or 1))
    record["config"]["jobs"] = jobs
    progress = FoldProgress(console, len(fold_specs), workers=jobs, done_before=len(results))
    library_log = run_dir / records.LIBRARY_LOG_FILE
    if todo:
        folds_in_order = (run_serial(todo, feature_set, target, library_log, progress) if jobs == 1
                          else run_parallel(todo, feature_set, target, library_log, progress, jobs))
        try:
            for result in folds_in_order:
                _add_result(record, result, results, run_dir, saved=False)
        finally:
            folds_in_order.close()
            progress.close()

    # 6. Results: OOF and submission files, metrics against the floor when it is known.
    results.sort(key=lambda r: r.index)  # parallel folds finish in any order
    record["metrics"]["folds"] = [r.metric_entry() for r in results]
    record["timings"]["folds"] = [r.timing_entry() for r in results]
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
    fold_times = timings["folds"]
    timings["fit_total_s"] = round(sum(f["fit_s"] for f in fold_times), 4)
    timings["predict_total_s"] = round(sum(f["predict_s"] for f in fold_times), 4)
    timings["total_s"] = round(timings.get("before_resume_s", 0.0) + time.perf_counter() - started, 4)
    record.finish("complete")
    console.lines([
        "status: complete",
        f"oof_rmse: {metrics['oof_rmse']:.6f}",
        f"floor_rmse: {metrics['floor_rmse'] if metrics['floor_rmse'] is None else format(metrics['floor_rmse'], '.6f')}",
        f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
        f"total_s: {timings['total_s']:.1f}",
        f"run_dir: {run_dir}",
    ])
    return "complete"


def _add_result(record: records.RunRecord, result: FoldResult, results: list[FoldResult], run_dir: Path,
                saved: bool) -> None:
    """Keep one finished fold: on disk first (unless it came from there), then in the record."""
    if not saved:
        fold_store.save(run_dir, result)
    results.append(result)
    outputs = record["outputs"]
    outputs["folds"][str(result.index)] = fold_store.fold_file(result.index)
    if "models" in outputs and (run_dir / fold_store.model_file(result.index)).is_file():
        outputs["models"][str(result.index)] = fold_store.model_file(result.index)
    record["timings"]["folds"].append(result.timing_entry())
    record["metrics"]["folds"].append(result.metric_entry())
    if not saved:
        record.save()


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


def _dry_run(record: records.RunRecord, console: Console, estimator_params: dict, fold_specs) -> str:
    """Everything a run would do, printed and recorded, without fitting anything."""
    console.line(f"estimator_params: {' '.join(f'{k}={v}' for k, v in sorted(estimator_params.items()))}")
    console.line("folds: " + ", ".join(f"{f.index + 1}: {len(f.train_idx)} train / {len(f.val_idx)} val"
                                       for f in fold_specs))
    record.finish("dry-run")
    console.lines(["status: dry-run (nothing was trained)", f"run_dir: {record.run_dir}"])
    return "dry-run"


def _device_facts(facts: dict) -> dict:
    keys = ("cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb", "gpu_capability", "torch_cuda_build",
            "mps_built", "mps_available", "in_container", "container_evidence", "cpu_count", "cpu_count_source")
    return {key: facts.get(key) for key in keys}
