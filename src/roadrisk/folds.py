"""Folds as independent units of work: a ``FoldSpec`` in, a ``FoldResult`` out.

Nothing here touches the run record or the terminal, so a parallel or distributed executor can
call ``run_fold`` anywhere that has the features in memory.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold

from .device import float32_matmul_precision
from .features import FeatureSet
from .models import MODELS, fit_predict


@dataclass(frozen=True)
class FoldSpec:
    index: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    model: str
    params: dict
    device: str
    seed: int
    threads: int
    matmul_precision: str = "highest"  # torch's float32 matmul setting during the fit (TF32 on CUDA)


@dataclass
class FoldResult:
    index: int
    val_idx: np.ndarray
    val_pred: np.ndarray
    test_pred: np.ndarray
    rmse: float
    timings: dict = field(default_factory=dict)  # fit, predict (seconds)

    def timing_entry(self) -> dict:
        """This fold's line in run.json ``timings.folds``."""
        return {"fold": self.index, **{f"{k}_s": round(v, 4) for k, v in self.timings.items()}}

    def metric_entry(self) -> dict:
        """This fold's line in run.json ``metrics.folds``."""
        return {"fold": self.index, "rows_val": int(len(self.val_idx)), "rmse": round(self.rmse, 6)}


def split(n_rows: int, folds: int, cv_seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The seed recipe's split: ``KFold(folds, shuffle=True, random_state=cv_seed)`` (42 by default).
    Runs that share ``n_rows``, ``folds`` and ``cv_seed`` share every fold, which is what lets their
    out-of-fold predictions be blended."""
    splitter = KFold(n_splits=folds, shuffle=True, random_state=cv_seed)
    return list(splitter.split(np.arange(n_rows)))


def fold_assignment(n_rows: int, folds: int, cv_seed: int) -> np.ndarray:
    """For each row, the fold in which it is a validation row (0 .. folds-1)."""
    assignment = np.empty(n_rows, dtype=np.int64)
    for index, (_, val_idx) in enumerate(split(n_rows, folds, cv_seed)):
        assignment[val_idx] = index
    return assignment


def plan(n_rows: int, folds: int, seed: int, model: str, params: dict, device: str, threads: int,
         matmul_precision: str = "highest") -> list[FoldSpec]:
    return [FoldSpec(i, train_idx, val_idx, model, params, device, seed, threads, matmul_precision)
            for i, (train_idx, val_idx) in enumerate(split(n_rows, folds, seed))]


def clip_risk(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0.0, 1.0)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2)))


def run_fold(spec: FoldSpec, features: FeatureSet, target: np.ndarray) -> FoldResult:
    timings: dict[str, float] = {}

    @contextmanager
    def timer(phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            timings[phase] = time.perf_counter() - start

    x = features.train
    model = MODELS[spec.model]
    with float32_matmul_precision(spec.matmul_precision) if model.uses_torch else nullcontext():
        val_pred, test_pred = fit_predict(
            model, spec.params, spec.device, spec.seed, spec.threads,
            x.iloc[spec.train_idx], target[spec.train_idx], x.iloc[spec.val_idx], target[spec.val_idx],
            features.test, timer,
        )
    val_pred, test_pred = clip_risk(val_pred), clip_risk(test_pred)
    return FoldResult(spec.index, spec.val_idx, val_pred, test_pred, rmse(target[spec.val_idx], val_pred), timings)
