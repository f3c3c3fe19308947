"""One training run, start to finish: device chosen, data in, folds trained, record written.

This is the only place that knows the order of a run; each step lives in its own module.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as data_module
from . import doctor, environment, features, records, schema
from .atomic import write_predictions_atomic
from .console import Console, FoldProgress
from .device import DeviceChoice, apply_threads, choose, matmul_precision_for
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DataError, DeviceUnavailable, RoadriskError
from .executors import run_parallel, run_serial
from .folds import FoldResult, plan, rmse
from .models import MODELS
from .profiles import PROFILES
from .risk_formula import floor_rmse


@dataclass
class TrainOptions:
    data_dir: Path | None = None
    profile: str = "quick"
    model: str | None = None
    device: str = "auto"
    strict_device: bool = False
    folds: int | None = None
    seed: int = 42
    label: str = "native"
    runs_dir: Path = Path("runs")
    jobs: int = 1
    matmul_precision: str | None = None  # None: the device's default (device.matmul_precision_for)
    param_overrides: dict = field(default_factory=dict)
    command: str | None = None


@dataclass
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: str


def train(opts: TrainOptions) -> RunOutcome:
    records.check_label(opts.label)
    run_dir = records.new_run_dir(opts.runs_dir, opts.label)
    console = Console(run_dir / records.LOG_FILE)
    record = records.RunRecord(run_dir, opts.label)
    record["command"] = opts.command
    record.save()
    results: list[FoldResult] = []
    try:
        _run(opts, run_dir, console, record, results)
        return RunOutcome(EXIT_OK, run_dir, "complete")
    except KeyboardInterrupt:
        record.finish("interrupted", f"interrupted after {len(results)} finished fold(s)")
        console.line(f"interrupted: {len(results)} fold(s) finished; record kept at {run_dir / records.RUN_FILE}")
        return RunOutcome(EXIT_INTERRUPTED, run_dir, "interrupted")
    except DataError as exc:
        record.finish("failed", "\n".join(exc.problems))
        console.lines(exc.problems)
        return RunOutcome(exc.exit_code, run_dir, "failed")
    except RoadriskError as exc:
        record.finish("failed", str(exc))
        console.line(str(exc) if str(exc).startswith("error:") else f"error: {exc}")
        return RunOutcome(exc.exit_code, run_dir, "failed")
    except Exception as exc:  # a crash: keep the traceback for debugging, give the user one line
        if console.log_file:
            console.log_file.write(traceback.format_exc())
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        console.line(f"error: training failed: {type(exc).__name__}: {exc} "
                     f"(traceback in {run_dir / records.LOG_FILE})")
        return RunOutcome(EXIT_FAILED, run_dir, "failed")
    finally:
        console.close()


def _run(opts: TrainOptions, run_dir: Path, console: Console, record: records.RunRecord,
         results: list[FoldResult]) -> None:
    started = time.perf_counter()
    profile = PROFILES[opts.profile]
    model_name = opts.model or profile.default_model
    spec = MODELS[model_name]

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

    # 2. Configuration: profile defaults for this model and device, recorded as used.
    defaults = spec.defaults(profile.name, choice.selected)
    params = {**defaults, **opts.param_overrides}
    n_folds = opts.folds or profile.folds
    precision = opts.matmul_precision or matmul_precision_for(choice.selected)
    # These are roadrisk's to set: the device, seed and threads come from their own flags. Checked
    # before building, so an unknown key is a clear message rather than a constructor's TypeError.
    reserved = {"device", "random_state", "n_threads", "verbosity", "categorical_features"}
    estimator_params = spec.build(defaults, choice.selected, opts.seed, threads).get_params()
    settable = set(estimator_params) - reserved
    for key in sorted(opts.param_overrides):
        if key in reserved:
            raise RoadriskError(f"error: --param {key}: set by roadrisk itself. Fix: use --device, --seed, or let "
                                "the trainer choose threads from the CPUs it may use")
        if key not in settable:
            raise RoadriskError(f"error: --param {key}: not a parameter of {model_name}. Fix: use one of "
                                f"{', '.join(sorted(settable))}")
    estimator_params.update(opts.param_overrides)  # what building with ``params`` would report
    record["config"] = {
        "profile": profile.name, "profile_sizes": profile.as_dict(), "model": model_name,
        "model_description": spec.description, "params": params, "param_overrides": opts.param_overrides,
        "estimator_params": estimator_params,
        "folds": n_folds, "seed": opts.seed, "device": choice.selected, "threads": threads,
        "matmul_precision": precision if spec.uses_torch else None,
    }
    console.line(f"config: profile={profile.name} model={model_name} folds={n_folds} seed={opts.seed} "
                 f"device={choice.selected} threads={threads}"
                 + (f" matmul_precision={precision}" if spec.uses_torch else ""))
    console.line(f"params: {' '.join(f'{k}={v}' for k, v in params.items())}")
    # Imports of torch and the model library, reading the machine, choosing the device.
    record["timings"]["setup_s"] = round(time.perf_counter() - started, 4)

    # 3. Data: the embedded default (generated once, then cached) or the user's directory.
    timings = record["timings"]
    if opts.data_dir is None:
        t0 = time.perf_counter()
        data_dir, generated_now = data_module.embedded_dir(profile.train_rows, profile.test_rows,
                                                           profile.original_rows, opts.seed)
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

    # 4. Features.
    t0 = time.perf_counter()
    feature_set = features.build(dataset.train, dataset.test, dataset.original)
    timings["features_s"] = round(time.perf_counter() - t0, 4)
    record["config"]["features"] = feature_set.names
    console.line(f"features: {len(feature_set.names)} ({', '.join(feature_set.names)})")

    # 5. Folds: independent units; the record is saved after each so an interruption keeps them.
    target = dataset.train[schema.TARGET].to_numpy(dtype=float)
    fold_specs = plan(len(target), n_folds, opts.seed, model_name, params, choice.selected, threads,
                      precision)
    jobs = max(1, min(opts.jobs, len(fold_specs)))
    record["config"]["jobs"] = jobs
    progress = FoldProgress(console, len(fold_specs), workers=jobs)
    library_log = run_dir / records.LIBRARY_LOG_FILE
    folds_in_order = (run_serial(fold_specs, feature_set, target, library_log, progress) if jobs == 1
                      else run_parallel(fold_specs, feature_set, target, library_log, progress, jobs))
    try:
        for result in folds_in_order:
            results.append(result)
            timings["folds"].append(result.timing_entry())
            record["metrics"]["folds"].append(result.metric_entry())
            record.save()
    finally:
        folds_in_order.close()
        progress.close()

    # 6. Results: OOF and submission files, metrics against the floor when it is known.
    results.sort(key=lambda r: r.index)  # parallel folds finish in any order
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
    record["outputs"] = {"oof": records.OOF_FILE, "submission": records.SUBMISSION_FILE,
                         "log": records.LOG_FILE, "library_log": records.LIBRARY_LOG_FILE}
    fold_times = timings["folds"]
    timings["fit_total_s"] = round(sum(f["fit_s"] for f in fold_times), 4)
    timings["predict_total_s"] = round(sum(f["predict_s"] for f in fold_times), 4)
    timings["total_s"] = round(time.perf_counter() - started, 4)
    record.finish("complete")
    console.lines([
        "status: complete",
        f"oof_rmse: {metrics['oof_rmse']:.6f}",
        f"floor_rmse: {metrics['floor_rmse'] if metrics['floor_rmse'] is None else format(metrics['floor_rmse'], '.6f')}",
        f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
        f"total_s: {timings['total_s']:.1f}",
        f"run_dir: {run_dir}",
    ])


def _device_facts(facts: dict) -> dict:
    keys = ("cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb", "gpu_capability", "torch_cuda_build",
            "mps_built", "mps_available", "in_container", "container_evidence", "cpu_count", "cpu_count_source")
    return {key: facts.get(key) for key in keys}
