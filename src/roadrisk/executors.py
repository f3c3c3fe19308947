"""Where folds run: one after another in this process, or side by side in worker processes.

Both yield ``FoldResult``s as folds finish, so the trainer records them the same way, and both pass
each epoch of a fit to ``progress.epoch`` (from a worker, over a queue). Parallel folds help where
one fold leaves the device idle (small folds on a GPU, many cores with a model that scales poorly);
on 2 CPU cores they mostly trade threads for processes (docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
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
            result = run_fold(spec, features, target, lambda event, i=spec.index: progress.epoch(i, event))
        progress.fold_finished(result.index, result.rmse)
        yield result


_epoch_queue = None  # set in each worker by _init_worker: where epoch events go back to the parent


def _init_worker(events) -> None:
    global _epoch_queue
    _epoch_queue = events


def _fold_in_worker(spec: FoldSpec, features: FeatureSet, target: np.ndarray, library_log: Path) -> FoldResult:
    if MODELS[spec.model].uses_torch:
        import torch

        torch.set_num_threads(spec.threads)
    send = None if _epoch_queue is None else (lambda event: _epoch_queue.put((spec.index, event)))
    with library_output_to(library_log.with_name(f"{library_log.stem}.fold{spec.index}{library_log.suffix}")):
        return run_fold(spec, features, target, send)


def _forward_epochs(events, progress, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            index, event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):  # the queue went away with the pool
            return
        progress.epoch(index, event)


def run_parallel(specs: list[FoldSpec], features: FeatureSet, target: np.ndarray, library_log: Path,
                 progress, jobs: int) -> Iterator[FoldResult]:
    """Folds in ``jobs`` spawned processes, each with its share of the CPU threads.

    Spawned, not forked: forking a process that already ran torch/OpenMP can deadlock the child.
    """
    threads = max(1, specs[0].threads // jobs)
    specs = [replace(spec, threads=threads) for spec in specs]
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    stop = threading.Event()
    forwarder = threading.Thread(target=_forward_epochs, args=(events, progress, stop), daemon=True)
    forwarder.start()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(events,))
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
        stop.set()
        forwarder.join(timeout=2)
        events.close()
