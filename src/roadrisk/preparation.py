"""Preparing a run for the driver: the machine's facts and the device, the data, the plan, the features
and the folds still to train, each recorded as it is decided (``prepare``); and what a process's runs
share (``DataCache``: a sweep's members read their files and build their features once).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import data as data_module
from . import doctor, environment, estimates, fold_store, plan, records, schema
from .device import DeviceChoice
from .driver import Job
from .errors import DeviceUnavailable, RoadriskError
from .executors.base import FoldData, FoldTask
from .features import build as build_features
from .folds import plan as plan_folds
from .models import MODELS
from .options import TrainOptions
from .profiles import PROFILES
from .recipes import RECIPES


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


def prepare(run, cache: DataCache, facts: dict | None = None) -> Job:
    """Device, data, plan, features and the folds still to train, recorded as they are decided in ``run``
    (a ``trainer.TrainingRun``: its folder, record and console).
    ``facts``: the machine's (a sweep collects them once for all its members)."""
    opts, console, record = run.opts, run.console, run.record
    if opts.profile is None and opts.data_dir is not None:
        console.line("note: --data-dir without --profile: using the full profile (TabM, the reference recipe, 5 folds), "
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

