"""Folds as independent units of work: a ``FoldSpec`` in, a ``FoldResult`` out.

Nothing here touches the run record or the terminal, so a parallel or distributed executor can
call ``run_fold`` anywhere that has the features in memory; what it learns along the way (epochs,
the fitted model when asked for) travels back in the result.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from . import portable
from .device import float32_matmul_precision
from .epochs import EpochEvent, observe_epochs
from .features import META, FeatureSet
from .models import MODELS, fit_predict
from .risk_formula import expected_risk, fit_noise_sd


@dataclass(frozen=True)
class FoldSpec:
    index: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    model: str
    params: dict
    device: str
    seed: int  # model initialisation
    threads: int
    matmul_precision: str = "highest"  # torch's float32 matmul setting during the fit (TF32 on CUDA)
    categorical: tuple[str, ...] = ()  # named to pytabkit as cat_col_names
    empty_cache: bool = True  # free the accelerator's cached memory after the fold, as the seed does
    keep_model: bool = False  # send the fitted estimator back, pickled (--save-models)
    target: str = "raw"  # raw, or residual: the model learns y minus the formula's clipped-normal mean


@dataclass
class FoldResult:
    index: int
    val_idx: np.ndarray
    val_pred: np.ndarray
    test_pred: np.ndarray
    rmse: float
    timings: dict = field(default_factory=dict)  # fit, predict (seconds)
    epochs: dict = field(default_factory=dict)  # epochs run, best epoch, its validation RMSE (torch models)
    model_blob: bytes | None = None  # the pickled estimator, when the spec asked to keep it
    where: dict = field(default_factory=dict)  # the worker it ran on: host, pid (Ray: node, IP, GPU ids, attempt)

    def timing_entry(self) -> dict:
        """This fold's line in run.json ``timings.folds``."""
        return {"fold": self.index, **{f"{k}_s": round(v, 4) for k, v in self.timings.items()},
                **({"worker": self.where} if self.where else {})}

    def metric_entry(self) -> dict:
        """This fold's line in run.json ``metrics.folds``."""
        return {"fold": self.index, "rows_val": int(len(self.val_idx)), "rmse": round(self.rmse, 6), **self.epochs}


def split(n_rows: int, folds: int, cv_seed: int, cv: str = "kfold", y: np.ndarray | None = None,
          bins: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds. ``kfold`` is the reference recipe's ``KFold(folds, shuffle=True, random_state=cv_seed)``;
    ``stratified`` is ``StratifiedKFold`` on ``bins`` quantile bins of the target, so every fold sees the
    whole range of risk. Runs that share the rows, ``cv``, ``bins``, ``folds`` and ``cv_seed`` share every
    fold, which is what lets their out-of-fold predictions be blended."""
    if cv == "stratified":
        labels = target_bins(np.asarray(y, dtype=float), bins or 10)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cv_seed)
        return list(splitter.split(np.arange(n_rows), labels))
    splitter = KFold(n_splits=folds, shuffle=True, random_state=cv_seed)
    return list(splitter.split(np.arange(n_rows)))


def target_bins(target: np.ndarray, bins: int) -> np.ndarray:
    """Quantile bins of the target (ties merge bins: the 0.01 grid of accident_risk has many)."""
    edges = np.unique(np.quantile(target, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, target, side="right")


def fold_assignment(n_rows: int, folds: int, cv_seed: int, cv: str = "kfold", y: np.ndarray | None = None,
                    bins: int | None = None) -> np.ndarray:
    """For each row, the fold in which it is a validation row (0 .. folds-1)."""
    assignment = np.empty(n_rows, dtype=np.int64)
    for index, (_, val_idx) in enumerate(split(n_rows, folds, cv_seed, cv, y, bins)):
        assignment[val_idx] = index
    return assignment


def plan(n_rows: int, folds: int, cv_seed: int, cv: str = "kfold", y: np.ndarray | None = None,
         bins: int | None = None, **settings) -> list[FoldSpec]:
    """One FoldSpec per fold of ``split``; ``settings`` are the FoldSpec fields every fold shares."""
    return [FoldSpec(index, train_idx, val_idx, **settings)
            for index, (train_idx, val_idx) in enumerate(split(n_rows, folds, cv_seed, cv, y, bins))]


def clip_risk(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0.0, 1.0)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2)))


def run_fold(spec: FoldSpec, features: FeatureSet, target: np.ndarray,
             on_epoch: Callable[[EpochEvent], None] | None = None) -> FoldResult:
    timings: dict[str, float] = {}

    @contextmanager
    def timer(phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            timings[phase] = time.perf_counter() - start

    x = features.train
    model_spec = MODELS[spec.model]
    epoch_plan = model_spec.epoch_plan(spec.params) if model_spec.epoch_plan else None
    precision = (float32_matmul_precision(spec.matmul_precision, spec.device) if model_spec.uses_torch
                 else nullcontext())
    epochs = observe_epochs(on_epoch, *epoch_plan, pytabkit=model_spec.uses_torch) if epoch_plan else nullcontext()
    base, base_test, extra = _target_base(spec, features, target)
    fit_target = target - base
    try:
        with precision, epochs as tracker:
            val_pred, test_pred, model = fit_predict(
                model_spec, params=spec.params, device=spec.device, seed=spec.seed, threads=spec.threads,
                x_train=x.iloc[spec.train_idx], y_train=fit_target[spec.train_idx],
                x_val=x.iloc[spec.val_idx], y_val=fit_target[spec.val_idx], x_test=features.test,
                timer=timer, categorical=spec.categorical,
            )
        # Saved on the CPU whatever it trained on, so the pickle loads on a machine without the accelerator.
        blob = portable.dumps(model) if spec.keep_model else None
        del model
    except SystemExit:
        # Lightning catches Ctrl-C (and the SIGTERM roadrisk turns into one) inside a fit and calls
        # sys.exit(1): it is still an interruption, and the run must say so (exit 130, resumable).
        raise KeyboardInterrupt from None
    finally:
        if model_spec.uses_torch and spec.empty_cache:
            _empty_accelerator_cache(spec.device)
    val_pred, test_pred = clip_risk(val_pred + base[spec.val_idx]), clip_risk(test_pred + base_test)
    summary = {**(tracker.summary() if tracker else {}), **extra}
    return FoldResult(spec.index, spec.val_idx, val_pred, test_pred, rmse(target[spec.val_idx], val_pred), timings,
                      summary, blob)


def _target_base(spec: FoldSpec, features: FeatureSet, target: np.ndarray):
    """What the model's predictions are added to: nothing (raw), or the formula's clipped-normal mean with
    σ fitted on this fold's training rows only (residual). Returns (train base, test base, record extras)."""
    if spec.target != "residual":
        return np.zeros(len(target)), np.zeros(len(features.test)), {}
    mu, mu_test = features.train[META].to_numpy(dtype=float), features.test[META].to_numpy(dtype=float)
    sd = fit_noise_sd(mu[spec.train_idx], target[spec.train_idx])
    return expected_risk(mu, sd), expected_risk(mu_test, sd), {"residual_sd": round(sd, 6)}


def _empty_accelerator_cache(device: str) -> None:
    """What the seed does between folds: drop the fold's tensors and hand cached memory back."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    elif device == "mps":
        import torch

        torch.mps.empty_cache()
