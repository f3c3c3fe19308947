"""Folds in this process (inline) or side by side in worker processes (process).

Parallel folds help where one fold leaves the device idle (small folds on a GPU, many cores with a
model that scales poorly); on 2 CPU cores they mostly trade threads for processes (docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import queue
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace

from ..folds import FoldResult, run_fold
from ..models import MODELS
from .base import Cancels, FoldRunner, FoldTask, NullProgress, run_task


class InlineExecutor(Cancels):
    """One fold after another in this process (the default; never imports Ray)."""

    name = "inline"
    workers = 1

    def __init__(self, fold_runner: FoldRunner = run_fold):
        self.fold_runner = fold_runner

    def describe(self) -> dict:
        return {"engine": "inline", "workers": 1, "host": platform.node()}

    def run(self, tasks: list[FoldTask], progress=None) -> Iterator[tuple[FoldTask, FoldResult | None,
                                                                                    BaseException | None]]:
        progress = progress or NullProgress()
        for task in tasks:
            if self.cancelled(task):
                continue
            progress.started(task)
            try:
                result = run_task(task, lambda event, t=task: progress.epoch(t, event), self.fold_runner)
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
    events.put((None, "pid", os.getpid()))  # so the parent can stop its workers without pool internals


def _task_in_worker(task: FoldTask) -> FoldResult:
    if MODELS[task.spec.model].uses_torch:
        import torch

        torch.set_num_threads(task.spec.threads)
    if _epoch_queue is not None:
        _epoch_queue.put((task.key, "started", None))
    send = None if _epoch_queue is None else (lambda event: _epoch_queue.put((task.key, "epoch", event)))
    log = task.library_log.with_name(f"{task.library_log.stem}.fold{task.spec.index}{task.library_log.suffix}")
    return run_task(replace(task, library_log=log), send)


class ProcessExecutor(Cancels):
    """Folds side by side in ``jobs`` spawned processes, each with its share of the CPU threads.

    Spawned, not forked: forking a process that already ran torch/OpenMP can deadlock the child.
    """

    name = "process"

    def __init__(self, jobs: int):
        self.workers = max(1, jobs)
        self._pids: set[int] = set()

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
                for future, task in list(pending.items()):  # a pruned run's queued folds: never started
                    if self.cancelled(task) and future.cancel():
                        del pending[future]
        finally:
            # On Ctrl-C or an error, do not wait for folds still running in the workers.
            for pid in self._pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            pool.shutdown(wait=False, cancel_futures=True)
            stop.set()
            forwarder.join(timeout=2)
            events.close()

    def _forward_epochs(self, events, by_key: dict, progress, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                key, kind, event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue went away with the pool
                return
            if kind == "pid":
                self._pids.add(event)
            elif kind == "started":
                progress.started(by_key[key])
            else:
                progress.epoch(by_key[key], event)

    def close(self) -> None:
        pass
