"""Where folds run: in this process, in worker processes, or on a Ray cluster (``ray_executor.py``).

One small interface, as ``concurrent.futures`` has: hand an executor ``FoldTask``s, receive
``(task, result, error)`` as each finishes, in any order. The trainer and the sweep consume that
stream the same way whatever runs it, and every executor reports to the same progress hooks
(``started``, ``epoch`` from inside a fit, ``finished``). Parallel folds help where one fold leaves
the device idle (small folds on a GPU, many cores with a model that scales poorly); on 2 CPU cores
they mostly trade threads for processes (docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import queue
import threading
from collections.abc import Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import RoadriskError
from .features import FeatureSet
from .folds import FoldResult, FoldSpec, run_fold
from .models import MODELS
from .quiet import library_output_to

EXECUTORS = ("inline", "process", "ray")


@dataclass(frozen=True, eq=False)
class FoldData:
    """What every fold of a run reads: shared, never copied per fold where the executor can help it."""

    features: FeatureSet
    target: np.ndarray


@dataclass(frozen=True, eq=False)
class FoldTask:
    key: Hashable  # who asked: the fold index in a run, (member id, fold index) in a sweep
    spec: FoldSpec
    data: FoldData
    library_log: Path


class NullProgress:
    """The progress hooks every executor calls; a sink that ignores them."""

    def spread(self, tasks: int, workers: int, threads: int) -> None: ...
    def started(self, task: FoldTask) -> None: ...
    def epoch(self, task: FoldTask, event) -> None: ...
    def finished(self, task: FoldTask, result: FoldResult) -> None: ...


def where_am_i() -> dict:
    """The worker a fold ran on, for the record (a Ray worker adds its node and GPU ids)."""
    return {"host": platform.node(), "pid": os.getpid()}


def run_task(task: FoldTask, on_epoch=None) -> FoldResult:
    """One fold, wherever it runs: library chatter to the run's library log, the worker noted."""
    with library_output_to(task.library_log):
        result = run_fold(task.spec, task.data.features, task.data.target, on_epoch)
    result.where = where_am_i()
    return result


class InlineExecutor:
    """One fold after another in this process (the default; never imports Ray)."""

    name = "inline"
    workers = 1

    def describe(self) -> dict:
        return {"engine": "inline", "workers": 1, "host": platform.node()}

    def run(self, tasks: list[FoldTask], progress=None) -> Iterator[tuple[FoldTask, FoldResult | None,
                                                                                    BaseException | None]]:
        progress = progress or NullProgress()
        for task in tasks:
            progress.started(task)
            try:
                result = run_task(task, lambda event, t=task: progress.epoch(t, event))
            except Exception as exc:  # the caller decides what a failed fold means (a run fails; a sweep goes on)
                yield task, None, exc
                continue
            progress.finished(task, result)
            yield task, result, None

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- worker processes

_epoch_queue = None  # set in each worker by _init_worker: where epoch events go back to the parent


def _init_worker(events) -> None:
    global _epoch_queue
    _epoch_queue = events


def _task_in_worker(task: FoldTask) -> FoldResult:
    if MODELS[task.spec.model].uses_torch:
        import torch

        torch.set_num_threads(task.spec.threads)
    if _epoch_queue is not None:
        _epoch_queue.put((task.key, "started", None))
    send = None if _epoch_queue is None else (lambda event: _epoch_queue.put((task.key, "epoch", event)))
    log = task.library_log.with_name(f"{task.library_log.stem}.fold{task.spec.index}{task.library_log.suffix}")
    return run_task(replace(task, library_log=log), send)


class ProcessExecutor:
    """Folds side by side in ``jobs`` spawned processes, each with its share of the CPU threads.

    Spawned, not forked: forking a process that already ran torch/OpenMP can deadlock the child.
    """

    name = "process"

    def __init__(self, jobs: int):
        self.workers = max(1, jobs)

    def describe(self) -> dict:
        return {"engine": "process", "workers": self.workers, "host": platform.node()}

    def run(self, tasks: list[FoldTask], progress=None):
        progress = progress or NullProgress()
        workers = max(1, min(self.workers, len(tasks)))
        threads = max(1, tasks[0].spec.threads // workers) if tasks else 1
        tasks = [replace(t, spec=replace(t.spec, threads=threads)) for t in tasks]
        by_key = {t.key: t for t in tasks}
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        stop = threading.Event()
        forwarder = threading.Thread(target=self._forward_epochs, args=(events, by_key, progress, stop), daemon=True)
        forwarder.start()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(events,))
        try:
            pending = {pool.submit(_task_in_worker, task): task for task in tasks}
            progress.spread(len(tasks), workers, threads)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:
                        yield task, None, exc
                        continue
                    progress.finished(task, result)
                    yield task, result, None
        finally:
            # On Ctrl-C or an error, do not wait for folds still running in the workers.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            stop.set()
            forwarder.join(timeout=2)
            events.close()

    @staticmethod
    def _forward_epochs(events, by_key: dict, progress, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                key, kind, event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue went away with the pool
                return
            if kind == "started":
                progress.started(by_key[key])
            else:
                progress.epoch(by_key[key], event)

    def close(self) -> None:
        pass


def make_executor(name: str, jobs: int = 1, address: str | None = None, cpus_per_task: float | None = None,
                  gpus_per_task: float | None = None, library_log: Path | None = None):
    """The executor a flag names (``--jobs N`` alone means processes). Ray is imported only when asked for."""
    if name == "inline":
        return ProcessExecutor(jobs) if jobs > 1 else InlineExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                           library_log=library_log)
    raise RoadriskError(f"error: --executor {name}: use one of {', '.join(EXECUTORS)}")
