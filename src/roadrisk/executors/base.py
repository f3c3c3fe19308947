"""What every executor shares: the unit of work (``FoldTask``), the progress hooks, and running one task.

One small interface, as ``concurrent.futures`` has: hand an executor ``FoldTask``s, receive
``(task, result, error)`` as each finishes, in any order (``driver.drive`` is the one loop that
consumes it). Every executor reports to the same progress hooks (``started``, ``epoch`` from inside
a fit, ``finished``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..features import FeatureSet
from ..folds import FoldResult, FoldSpec, run_fold
from ..quiet import library_output_to

FoldRunner = Callable[..., FoldResult]  # folds.run_fold, or a test's stand-in handed to the executor


@dataclass(frozen=True, eq=False)
class FoldData:
    """What every fold of a run reads: shared, never copied per fold where the executor can help it."""

    features: FeatureSet
    target: np.ndarray


@dataclass(frozen=True, eq=False)
class FoldTask:
    key: Hashable  # who asked: (run key, fold index)
    spec: FoldSpec
    data: FoldData | None  # None only on the way to a Ray worker, which gets the data by reference
    library_log: Path


class Cancels:
    """What every executor shares for pruning: ``cancel(run_key)`` means that run's folds not yet started
    never start (a fold already running finishes, and the driver ignores it)."""

    def cancel(self, run_key: Hashable) -> None:
        self.__dict__.setdefault("_cancelled", set()).add(run_key)

    def cancelled(self, task: FoldTask) -> bool:
        return task.key[0] in self.__dict__.get("_cancelled", ())  # the driver keys tasks (run key, fold)


class NullProgress:
    """The progress hooks every executor calls; a sink that ignores them."""

    def spread(self, tasks: int, workers: int, threads: int) -> None: ...
    def started(self, task: FoldTask) -> None: ...
    def epoch(self, task: FoldTask, event) -> None: ...
    def finished(self, task: FoldTask, result: FoldResult) -> None: ...


def where_am_i() -> dict:
    """The worker a fold ran on, for the record (a Ray worker adds its node and GPU ids)."""
    return {"host": platform.node(), "pid": os.getpid()}


def run_task(task: FoldTask, on_epoch=None, fold_runner: FoldRunner = run_fold, data: FoldData | None = None
             ) -> FoldResult:
    """One fold, wherever it runs: library chatter to the run's library log, the worker noted.
    ``data`` replaces ``task.data`` where the task travelled without it (Ray sends it once per run)."""
    data = data or task.data
    with library_output_to(task.library_log):
        result = fold_runner(task.spec, data.features, data.target, on_epoch)
    result.where = where_am_i()
    return result


