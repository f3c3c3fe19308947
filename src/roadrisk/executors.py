"""Where folds run: one after another in this process, or side by side in worker processes.

Both yield ``FoldResult``s as folds finish, so the trainer records them the same way. Parallel
folds help where one fold leaves the device idle (small folds on a GPU, many cores with a model
that scales poorly); on 2 CPU cores they mostly trade threads for processes (docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import numpy as np

from .features import FeatureSet
from .folds import FoldResult, FoldSpec, run_fold
from .models import MODELS
from .quiet import library_output_to


def run_serial(specs: list[FoldSpec], features: FeatureSet, target: np.ndarray, library_log: Path,
               progress) -> Iterator[FoldResult]:
    for spec in specs:
        progress.fold_started(spec.index)
        with library_output_to(library_log):
            result = run_fold(spec, features, target)
        progress.fold_finished(result.index, result.rmse)
        yield result


def _fold_in_worker(spec: FoldSpec, features: FeatureSet, target: np.ndarray, library_log: Path) -> FoldResult:
    if MODELS[spec.model].uses_torch:
        import torch

        torch.set_num_threads(spec.threads)
    with library_output_to(library_log.with_name(f"{library_log.stem}.fold{spec.index}{library_log.suffix}")):
        return run_fold(spec, features, target)


def run_parallel(specs: list[FoldSpec], features: FeatureSet, target: np.ndarray, library_log: Path,
                 progress, jobs: int) -> Iterator[FoldResult]:
    """Folds in ``jobs`` spawned processes, each with its share of the CPU threads.

    Spawned, not forked: forking a process that already ran torch/OpenMP can deadlock the child.
    """
    threads = max(1, specs[0].threads // jobs)
    specs = [replace(spec, threads=threads) for spec in specs]
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {}
        for spec in specs:
            pending[pool.submit(_fold_in_worker, spec, features, target, library_log)] = spec
        progress.parallel_started(len(specs), jobs, threads)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
                result = future.result()
                progress.fold_finished(result.index, result.rmse, sum(result.timings.values()))
                yield result
    finally:
        # On Ctrl-C or an error, do not wait for folds still running in the workers.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
